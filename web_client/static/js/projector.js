// The projector view (templates/projector.html): the meeting room's big screen shows the
// current item and its timer, the speaker, the open vote or the last result, and the page
// being presented. Read-only: it sends only reads (meeting:join, procedure:state,
// present:get) and follows the pushed events, keeping the newest seq per aspect.
import { loadCatalog, t } from "./i18n.js";
import { clock, optionLabel, tf } from "./procedure-ui.js";
import { Signaling } from "./signaling.js";
import { RecordingBadge, followRecording } from "./recording-badge.js";

const root = /** @type {HTMLElement} */ (document.getElementById("projector"));
const meetingId = Number.parseInt(root.dataset.meetingId ?? "", 10);
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

await loadCatalog();
const sig = new Signaling();
/** @type {any} */ let state = null;
/** @type {Record<string, number>} */ let seen = {};
let skewMs = 0;  // local clock minus the server's

/** Apply an event newer than what is shown (per aspect). @param {string} aspect @param {any} e @param {() => void} apply */
function receive(aspect, e, apply) {
  if (e.meeting_id !== meetingId || !state) return;
  if ((seen[aspect] ?? state.seq ?? 0) >= e.seq) return;
  seen[aspect] = e.seq;
  if (e.server_time) skewMs = Date.now() - Date.parse(e.server_time);
  apply();
  paint();
}
sig.onAgendaChanged = (e) => receive("agenda", e, () => { state.agenda = e.agenda; });
sig.onFloorChanged = (e) => receive("floor", e, () => {
  state.floor = { holder: e.holder, queue: e.queue, totals: e.totals };
});
sig.onVoteUpdated = (e) => receive(`vote:${e.vote.id}`, e, () => {
  const i = state.votes.findIndex((v) => v.id === e.vote.id);
  if (i >= 0) state.votes[i] = e.vote; else state.votes.push(e.vote);
});
sig.onMeetingUpdated = (m) => {
  if (m.id !== meetingId) return;
  root.dataset.status = m.status;
  $("pj-status").textContent = t(m.status);
  resync();
};
sig.socket.on("present:state", (p) => { if (p.meeting_id === meetingId) showPage(p); });

async function resync() {
  try {
    state = await sig.procedureState(meetingId);
    seen = {};
    if (state.server_time) skewMs = Date.now() - Date.parse(state.server_time);
    paint();
    showPage(await sig.request("present:get", { meeting_id: meetingId }));
  } catch (error) {
    $("pj-live").textContent = String(/** @type {Error} */ (error).message ?? error);
  }
}

const recBadge = new RecordingBadge($("pj-rec"), t);
const recording = followRecording(sig.socket, (e, p) => sig.request(e, p), meetingId,
  (state) => recBadge.show(state));

sig.onConnectionChange = async (connected) => {
  $("pj-live").textContent = connected ? t("Live") : t("Reconnecting…");
  if (!connected) return;
  try {
    await sig.joinMeeting(meetingId);
    await recording.refresh();
    await resync();
  } catch (error) {
    $("pj-live").textContent = String(/** @type {Error} */ (error).message ?? error);
  }
};

const serverNow = () => Date.now() - skewMs;

function paint() {
  if (!state) return;
  const current = state.agenda?.current;
  const item = current ? (state.agenda.items ?? []).find((i) => i.id === current.item_id) : null;
  $("pj-item").textContent = item ? item.title : t("No item under discussion");
  const holder = state.floor?.holder;
  $("pj-speaker").textContent = holder ? (holder.site ? `${holder.name} · ${holder.site}` : holder.name)
    : t("Nobody has the floor");
  paintVote();
  tick();
}

function tick() {
  if (!state) return;
  const closed = root.dataset.status === "closed";
  const current = state.agenda?.current;
  const itemTimer = $("pj-item-timer");
  itemTimer.hidden = !current;
  if (current) {
    const running = current.since && !closed ? (serverNow() - Date.parse(current.since)) / 1000 : 0;
    const spent = (current.spent_before_seconds ?? 0) + Math.max(0, running);
    const item = (state.agenda.items ?? []).find((i) => i.id === current.item_id);
    const planned = item?.planned_minutes ? item.planned_minutes * 60 : null;
    itemTimer.textContent = planned ? `${clock(spent)} / ${clock(planned)}` : clock(spent);
    itemTimer.classList.toggle("over", Boolean(planned) && spent > planned);
  }
  const holder = state.floor?.holder;
  const speakerTimer = $("pj-speaker-timer");
  speakerTimer.hidden = !holder?.granted_at;
  if (holder?.granted_at) {
    const spoken = Math.max(0, (serverNow() - Date.parse(holder.granted_at)) / 1000);
    speakerTimer.textContent = holder.limit_seconds ? `${clock(spoken)} / ${clock(holder.limit_seconds)}` : clock(spoken);
    speakerTimer.classList.toggle("over", Boolean(holder.limit_seconds) && spoken > holder.limit_seconds);
  }
}

/** @param {string} tag @param {string} [cls] @param {string} [text] */
function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function paintVote() {
  const box = $("pj-vote");
  const votes = state.votes ?? [];
  const vote = votes.find((v) => v.status === "open") ?? [...votes].reverse().find((v) => v.final || v.status === "closed");
  if (!vote) { box.replaceChildren(el("p", "pj-muted", t("No vote yet"))); return; }
  const parts = [el("p", "pj-question", vote.question)];
  if (vote.status === "open") {
    parts.push(el("p", "pj-muted", t("Voting")));
    if (vote.turnout) {
      parts.push(el("p", "", tf("{cast} of {present} present voters have voted.",
        { cast: vote.turnout.cast, present: vote.turnout.present_voters })));
    }
  }
  const result = vote.result;
  if (result && vote.status !== "open") {
    const table = el("table", "pj-result");
    const body = table.appendChild(el("tbody"));
    vote.options.forEach((/** @type {string} */ _, /** @type {number} */ i) => {
      const row = body.appendChild(el("tr"));
      row.append(el("td", "", optionLabel(vote, i)), el("td", "n", String(result.totals[i])),
        el("td", "n", `/ ${result.base ?? result.eligible}`));
      const pct = result.percentages?.[i];
      // In the page's language, as the console shows it (Vietnamese: "66,67%"; "66.67" would
      // read as a thousands separator there).
      row.append(el("td", "n", pct === undefined || pct === null ? ""
        : `${Number(pct).toLocaleString(document.documentElement.lang || undefined)}%`));
    });
    parts.push(table);
    if (vote.final) {
      const outcome = { adopted: "Adopted", not_adopted: "Not adopted", elected: "Elected",
        none_elected: "Nobody elected", chosen: "Chosen" }[result.outcome ?? ""]
        ?? (result.adopted ? "Adopted" : "Not adopted");
      let text = t(outcome);
      if (result.outcome === "elected" && Array.isArray(result.elected)) {
        text += `: ${result.elected.map((/** @type {number} */ i) => optionLabel(vote, i)).join(", ")}`;
      }
      parts.push(el("p", "pj-outcome", text));
    }
  } else if (vote.secret && vote.status !== "open") {
    parts.push(el("p", "pj-muted", t("A secret ballot's counts are shown when it closes.")));
  }
  box.replaceChildren(...parts);
}

let shownPage = "";
/** @param {any} p a PresentState */
function showPage(p) {
  const img = /** @type {HTMLImageElement} */ ($("pj-page"));
  const caption = $("pj-page-caption");
  if (!p?.active || !p.document_id) {
    img.hidden = true;
    shownPage = "";
    caption.textContent = t("Nobody is presenting");
    return;
  }
  const src = `/api/documents/${p.document_id}/pages/${p.page}?version=${p.version}&width=1536`;
  caption.textContent = tf("{name} presents, page {page}", { name: p.presenter?.name ?? "", page: p.page });
  if (src !== shownPage) {
    shownPage = src;
    img.src = src;
    img.alt = tf("Page {page} of the presented document", { page: p.page });
  }
  img.hidden = false;
}

$("pj-fullscreen").addEventListener("click", () => {
  if (document.fullscreenElement) document.exitFullscreen();
  else document.documentElement.requestFullscreen().catch(() => {});
});
setInterval(tick, 1000);
