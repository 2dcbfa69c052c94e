// The replay page (templates/replay.html, issue 16): plays a recording back with the speaker's
// video, everyone's sound, the page presented at that moment, the agenda and the votes; the
// lists jump to an agenda item, a turn at the floor or a vote. Every media file is on the
// recording's clock (currentTime = seconds since its start), so seeking is the same number on
// each element. The timeline logic is replay-timeline.js.
import { api } from "./api.js";
import { loadCatalog, t } from "./i18n.js";
import { optionLabel } from "./procedure-ui.js";
import { clock, jumps, pageUrl, stateAt, videoFor } from "./replay-timeline.js";

const root = /** @type {HTMLElement} */ (document.getElementById("replay"));
const meetingId = Number.parseInt(root.dataset.meetingId ?? "", 10);
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const video = /** @type {HTMLVideoElement} */ ($("rp-video"));
const image = /** @type {HTMLImageElement} */ ($("rp-page"));
const DRIFT_S = 0.3;  // an audio element further than this from the video is seeked back

await loadCatalog();
/** @type {any} */ let data = null;
/** @type {HTMLAudioElement[]} */ let audios = [];
/** @type {any} */ let shownTrack = null;
let shownPage = "";
let position = 0;  // seconds on the recording's clock, when no video drives it
let switching = false;  // a new file is loading: its currentTime is not the clock yet

const base = () => `/api/meetings/${meetingId}/recordings/${data.recording.id}`;
const fileUrl = (/** @type {string} */ name) => `${base()}/files/${encodeURIComponent(name)}`;
const now = () => (shownTrack ? video.currentTime : position);

async function load() {
  const list = (await api("GET", `/api/meetings/${meetingId}/recordings`)).recordings;
  const select = /** @type {HTMLSelectElement} */ ($("rp-recording"));
  if (!list.length) {
    $("rp-empty").hidden = false;
    return;
  }
  select.replaceChildren(...list.map((/** @type {any} */ r) => new Option(
    `${new Date(r.started_at).toLocaleString()}${r.running ? ` (${t("recording now")})` : ""}`,
    String(r.id))));
  const wanted = new URLSearchParams(location.search).get("recording");
  select.value = wanted && list.some((/** @type {any} */ r) => String(r.id) === wanted)
    ? wanted : String(list[list.length - 1].id);
  select.onchange = () => open(Number(select.value));
  $("rp-player").hidden = false;
  await open(Number(select.value));
}

/** @param {number} recordingId */
async function open(recordingId) {
  data = await api("GET", `/api/meetings/${meetingId}/recordings/${recordingId}/timeline`);
  for (const a of audios) { a.pause(); a.remove(); }
  audios = data.tracks.filter((/** @type {any} */ tr) => tr.kind === "audio").map((/** @type {any} */ tr) => {
    const a = new Audio(fileUrl(tr.file));
    a.preload = "auto";
    a.dataset.file = tr.file;
    a.dataset.offset = String(tr.offset_ms);
    $("rp-audio").append(a);
    return a;
  });
  shownTrack = null;
  shownPage = "";
  paintLists();
  await seek(0, false);
}

/** Jump to `seconds` on the recording's clock; keep playing if asked. @param {number} seconds @param {boolean} play */
async function seek(seconds, play) {
  position = seconds;
  showVideoAt(seconds);
  if (shownTrack) video.currentTime = seconds;
  for (const a of audios) a.currentTime = Math.max(seconds, Number(a.dataset.offset) / 1000);
  paint();
  if (play) await playAll();
}

async function playAll() {
  try {
    if (shownTrack) await video.play();
    for (const a of audios) if (Number(a.dataset.offset) / 1000 <= now() + 0.5) a.play().catch(() => {});
  } catch (error) {
    $("rp-message").textContent = String(/** @type {Error} */ (error).message ?? error);
  }
}

/** The floor holder's video at that moment, switching files only when it changes. @param {number} seconds */
function showVideoAt(seconds) {
  const ms = seconds * 1000;
  const state = stateAt(data.entries, ms);
  const track = videoFor(data.tracks, state.floor?.user_id ?? null, ms);
  if (track?.file === shownTrack?.file) return;
  const playing = !video.paused;
  shownTrack = track;
  if (!track) {
    video.removeAttribute("src");
    video.load();
    return;
  }
  switching = true;
  video.src = fileUrl(track.file);
  video.dataset.file = track.file;
  video.currentTime = seconds;
  if (playing) video.play().catch(() => {});
}

function paint() {
  const ms = now() * 1000;
  const state = stateAt(data.entries, ms);
  $("rp-time").textContent = clock(ms);
  $("rp-item").textContent = state.agenda ? (titleOf(state.agenda.item_id) ?? state.agenda.title)
    : t("No item under discussion");
  $("rp-speaker").textContent = state.floor
    ? (state.floor.site ? `${state.floor.name} · ${state.floor.site}` : state.floor.name)
    : t("Nobody has the floor");
  const vote = state.votes[state.votes.length - 1];
  $("rp-vote").textContent = !vote ? t("No vote yet")
    : vote.open ? `${t("Vote open")}: ${vote.question}`
      : `${vote.question}: ${voteOutcome(vote)}`;
  const p = state.presented;
  const url = p ? pageUrl(p) : "";
  if (url !== shownPage) {
    shownPage = url;
    image.hidden = !p;
    if (p) {
      image.src = url;
      image.dataset.document = String(p.document_id);
      image.dataset.page = String(p.page);
      image.alt = `${data.documents[String(p.document_id)] ?? ""} · ${t("page")} ${p.page + 1}`;
    } else {
      image.removeAttribute("src");
    }
    $("rp-page-caption").textContent = p
      ? `${data.documents[String(p.document_id)] ?? `#${p.document_id}`} · ${t("page")} ${p.page + 1}`
      : t("Nobody is presenting");
  }
  for (const li of /** @type {NodeListOf<HTMLElement>} */ (root.querySelectorAll("[data-offset-ms]"))) {
    li.classList.toggle("rp-past", Number(li.dataset.offsetMs) <= ms);
  }
}

/** @param {number} itemId */
function titleOf(itemId) {
  return data.agenda.find((/** @type {any} */ i) => i.id === itemId)?.title;
}

/** @param {any} vote */
function voteOutcome(vote) {
  const r = vote.result ?? {};
  const options = vote.options ?? [];
  const counts = options.map((/** @type {string} */ _o, /** @type {number} */ i) =>
    `${optionLabel({ options, custom_options: false }, i)} ${r.totals?.[i] ?? 0}`).join(", ");
  const outcome = r.adopted === true ? t("Adopted") : r.adopted === false ? t("Not adopted") : "";
  return [outcome, counts].filter(Boolean).join(" — ");
}

function paintLists() {
  const j = jumps(data.entries, data.agenda);
  fill($("rp-items"), j.items, t("No agenda item during the recording"));
  fill($("rp-speakers"), j.speakers, t("Nobody had the floor during the recording"));
  fill($("rp-votes"), j.votes.map((v) => ({ ...v, label: `${v.detail === "vote_closed" ? t("Result") : t("Opened")}: ${v.label}` })),
       t("No vote during the recording"));
  const log = $("rp-log");
  log.replaceChildren(...data.entries.filter((/** @type {any} */ e) => e.kind === "chat").map((/** @type {any} */ e) => {
    const li = document.createElement("li");
    li.dataset.offsetMs = String(e.offset_ms);
    const b = jumpButton(e.offset_ms, `${e.data.sender_name}: ${e.data.hidden && !e.data.text ? t("(hidden by the chair)") : e.data.text}`);
    li.append(b);
    return li;
  }));
  $("rp-chat").hidden = !log.children.length;
}

/** @param {HTMLElement} list @param {{offset_ms: number, label: string, key: string}[]} items @param {string} empty */
function fill(list, items, empty) {
  if (!items.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = empty;
    list.replaceChildren(li);
    return;
  }
  list.replaceChildren(...items.map((it) => {
    const li = document.createElement("li");
    li.dataset.offsetMs = String(it.offset_ms);
    li.dataset.key = it.key;
    li.append(jumpButton(it.offset_ms, it.label));
    return li;
  }));
}

/** @param {number} offsetMs @param {string} label */
function jumpButton(offsetMs, label) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "rp-jump";
  const time = document.createElement("span");
  time.className = "rp-at";
  time.textContent = clock(offsetMs);
  b.append(time, " ", label);
  b.addEventListener("click", () => { seek(offsetMs / 1000, true); });
  return b;
}

video.addEventListener("timeupdate", () => {
  if (!data || switching) return;
  position = video.currentTime;
  const before = shownTrack?.file;
  showVideoAt(video.currentTime);
  if (shownTrack?.file !== before && shownTrack) video.play().catch(() => {});
  for (const a of audios) {
    const start = Number(a.dataset.offset) / 1000;
    if (video.paused || video.currentTime < start) continue;
    if (a.paused) a.play().catch(() => {});
    if (Math.abs(a.currentTime - video.currentTime) > DRIFT_S) a.currentTime = video.currentTime;
  }
  paint();
});
// A recording without video: the first sound drives the clock.
$("rp-audio").addEventListener("timeupdate", (event) => {
  if (!data || shownTrack || event.target !== audios[0]) return;
  position = audios[0].currentTime;
  paint();
}, true);
video.addEventListener("pause", () => { for (const a of audios) a.pause(); });
video.addEventListener("play", () => { playAll(); });
video.addEventListener("loadeddata", () => { switching = false; });
video.addEventListener("error", () => { switching = false; });
video.addEventListener("seeked", () => {
  switching = false;
  for (const a of audios) a.currentTime = Math.max(video.currentTime, Number(a.dataset.offset) / 1000);
  paint();
});

load().catch((error) => { $("rp-message").textContent = String(error.message ?? error); });
