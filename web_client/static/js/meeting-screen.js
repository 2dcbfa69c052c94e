// The meeting screen (/meetings/{id}): one page whose panes are the meeting (the video call
// and the procedure) and the documents reader, so that reading never leaves the call. A pane
// is shown or hidden, never reloaded: the call's connections, the documents' socket and the
// procedure's state live on. While the reader is shown, a small speaker view floats over it.
// The video toolbar's raise-hand button is the procedure's request to speak (floor:request).

import { errorText } from "./procedure-ui.js";

/** @typedef {import("./meeting-status.js").Summary} Summary */

const PANES = ["meeting", "documents"];
const SPEAKER_EVERY_MS = 1000; // the mini view follows the main tile at most this often

export class MeetingScreen {
  /**
   * @param {object} o
   * @param {HTMLElement} o.root  #meeting
   * @param {import("./signaling.js").Signaling} o.signaling
   * @param {number} o.meetingId
   * @param {(msgid: string) => string} o.t
   */
  constructor({ root, signaling, meetingId, t }) {
    this.root = root;
    this.sig = signaling;
    this.meetingId = meetingId;
    this.t = t;
    /** @type {(id: string) => HTMLElement|null} */
    this.$ = (id) => document.getElementById(id);
    /** @type {Summary|null} */
    this.summary = null;
    this.mini = this.$("speaker-mini");
    this.miniVideo = /** @type {HTMLVideoElement|null} */ (this.mini?.querySelector("video") ?? null);
    this.#wireTabs();
    this.#wireRaiseHand();
    this.#wireBarButtons();
    const wanted = new URLSearchParams(window.location.search).get("pane");
    this.show(PANES.includes(wanted) ? wanted : "meeting", false);
    setInterval(() => this.#followSpeaker(), SPEAKER_EVERY_MS);
  }

  get pane() { return this.root.dataset.pane; }

  /** Show one pane; the others stay alive, hidden. */
  show(pane, remember = true) {
    this.root.dataset.pane = pane;
    for (const name of PANES) {
      const panel = this.$(`pane-${name}`);
      const tab = this.$(`tab-${name}`);
      if (panel) panel.hidden = name !== pane;
      tab?.setAttribute("aria-selected", String(name === pane));
      if (tab) tab.tabIndex = name === pane ? 0 : -1;
    }
    // The reader takes the height of the screen; the meeting pane scrolls like a page.
    document.body.classList.toggle("meeting-reading", pane === "documents");
    if (remember) {
      const url = new URL(window.location.href);
      if (pane === "meeting") {
        for (const key of ["pane", "doc", "page"]) url.searchParams.delete(key);
      } else {
        url.searchParams.set("pane", pane);
      }
      history.replaceState(null, "", url);
    }
    this.#followSpeaker();
  }

  #wireTabs() {
    for (const name of PANES) {
      const tab = this.$(`tab-${name}`);
      if (!tab) continue;
      // The tab is a link to the standalone page (a new tab, no script); a plain click stays here.
      tab.addEventListener("click", (e) => {
        if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
        e.preventDefault();
        this.show(name);
      });
      tab.addEventListener("keydown", (e) => {
        if (e.key !== "ArrowRight" && e.key !== "ArrowLeft") return;
        const next = PANES[(PANES.indexOf(name) + (e.key === "ArrowRight" ? 1 : PANES.length - 1)) % PANES.length];
        this.show(next);
        this.$(`tab-${next}`)?.focus();
      });
    }
    this.mini?.querySelector(".mini-back")?.addEventListener("click", () => this.show("meeting"));
    const fold = this.mini?.querySelector(".mini-fold");
    fold?.addEventListener("click", () => {
      const folded = this.mini.classList.toggle("folded");
      fold.setAttribute("aria-expanded", String(!folded));
      fold.textContent = folded ? "▴" : "▾";
    });
  }

  #wireBarButtons() {
    // "To the ballot": the meeting pane, scrolled to the vote card.
    this.$("bar-vote-go")?.addEventListener("click", () => {
      this.show("meeting");
      const id = this.$("bar-vote")?.dataset.voteId;
      const card = document.querySelector(`.proc-ballot[data-vote-id='${id}']`)
        ?? document.querySelector(`.proc-vote[data-vote-id='${id}']`) ?? this.$("procedure");
      card?.scrollIntoView({ block: "center" });
    });
  }

  // --- raise hand (video toolbar) ------------------------------------------------------------

  #wireRaiseHand() {
    const button = this.$("video-raise-hand");
    if (!button) return;
    button.addEventListener("click", async () => {
      const s = this.summary;
      if (!s) return;
      button.toggleAttribute("disabled", true);
      try {
        if (s.myRequest?.status === "queued") await this.sig.withdrawFloor(this.meetingId, s.myRequest.id);
        else if (!s.myRequest) await this.sig.requestFloor(this.meetingId, s.forSite);
      } catch (error) {
        this.#say(errorText(error)); // as the procedure panel says it ("Check in first.")
      } finally {
        button.toggleAttribute("disabled", false);
        if (this.summary) this.update(this.summary);
      }
    });
  }

  #say(text) {
    const box = this.$("video-message");
    if (!box) return;
    box.textContent = text;
    box.hidden = !text;
    box.classList.toggle("error", Boolean(text));
  }

  /** The meeting state changed (or a second passed): the raise-hand button follows it. */
  update(summary) {
    this.summary = summary;
    this.root.dataset.meetingState = summary.status;
    const button = this.$("video-raise-hand");
    if (!button) return;
    const mine = summary.myRequest;
    button.hidden = !summary.canRequest && !mine;
    button.setAttribute("aria-pressed", String(Boolean(mine)));
    button.dataset.state = mine?.status ?? "none";
    const t = this.t;
    button.textContent = !mine ? (summary.forSite ? t("Raise hand for my site") : t("Raise hand"))
      : mine.status === "speaking" ? t("You have the floor.")
        : t("Lower hand (number {n} in the queue)").replace("{n}", String(mine.place));
    button.toggleAttribute("disabled", mine?.status === "speaking");
  }

  // --- the speaker over the reader -------------------------------------------------------------

  /** The tile the call shows as its main one: the floor, a screen, the speaker, someone else. */
  #speakerTile() {
    const tiles = [...document.querySelectorAll("#video-stage .tile")];
    const playing = (tile) => Boolean(/** @type {HTMLVideoElement|null} */ (tile.querySelector("video"))?.srcObject)
      && !tile.classList.contains("no-video");
    const own = (tile) => tile.querySelector("video.mirror") !== null;
    const choices = [
      (tile) => tile.querySelector(".tile-floor:not([hidden])") !== null,
      (tile) => tile.classList.contains("is-main"),
      (tile) => tile.classList.contains("tile-screen"),
      (tile) => tile.classList.contains("is-speaking") && !own(tile),
      (tile) => !own(tile),
    ];
    for (const choice of choices) {
      const found = tiles.find((tile) => choice(tile) && playing(tile));
      if (found) return found;
    }
    return null;
  }

  #followSpeaker() {
    if (!this.mini || !this.miniVideo) return;
    const inCall = this.$("video-room") && !this.$("video-room").hidden;
    const tile = this.pane !== "meeting" && inCall ? this.#speakerTile() : null;
    this.mini.hidden = !tile;
    if (!tile) {
      if (this.miniVideo.srcObject) this.miniVideo.srcObject = null;
      return;
    }
    const source = /** @type {HTMLVideoElement} */ (tile.querySelector("video")).srcObject;
    if (this.miniVideo.srcObject !== source) {
      this.miniVideo.srcObject = source;
      this.miniVideo.play().catch(() => {});
    }
    this.mini.dataset.peer = tile.getAttribute("data-peer") ?? "";
    const name = this.mini.querySelector(".mini-name");
    if (name) name.textContent = tile.querySelector(".tile-name")?.textContent ?? "";
  }
}
