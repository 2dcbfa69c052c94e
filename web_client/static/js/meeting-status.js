// The meeting's state in one line, shown above every pane of the meeting screen (the call,
// the documents, the procedure): status, current item and its timer, who has the floor, the
// open vote, and whether the meeting has ended. Fed by the procedure's snapshot and its
// pushed events (docs/protocol.md (Meeting procedure)); `MeetingState` has no DOM, so the
// node tests drive it directly, and `MeetingBar` only paints its summary.

/** @param {number} seconds */
export function clock(seconds) {
  const s = Math.max(0, Math.floor(Math.abs(seconds)));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const mm = String(m).padStart(h ? 2 : 1, "0");
  const ss = String(s % 60).padStart(2, "0");
  return `${seconds < 0 ? "−" : ""}${h ? `${h}:` : ""}${mm}:${ss}`;
}

/**
 * @typedef {object} Summary
 * @property {string} status           scheduled | open | paused | closed | …
 * @property {boolean} ended
 * @property {{title: string, elapsed: number, planned: number, over: boolean}|null} item
 * @property {{name: string, spoken: number, limit: number|null, over: boolean, me: boolean}|null} speaker
 * @property {{id: number, question: string}|null} vote  the open vote, if any
 * @property {{id: number, status: string, place: number}|null} myRequest  my request to speak
 * @property {boolean} canRequest  may I ask to speak (and is the meeting open)?
 * @property {boolean} forSite     a site operator asks for their site
 */

export class MeetingState {
  /** @param {number} meetingId @param {string} status  as the page was rendered */
  constructor(meetingId, status) {
    this.meetingId = meetingId;
    this.status = status;
    this.state = null;
    this.base = 0;
    /** @type {Record<string, number>} newest seq applied per aspect (per vote for votes) */
    this.seen = {};
    this.skewMs = 0; // local clock minus server clock
    /** Events heard while a snapshot is on its way, applied after it (null: none awaited).
     * A snapshot read before a change can be answered after that change's event: without
     * this the event was lost and the bar said, say, that a closed vote was still open.
     * @type {Array<[string, any, (s: any) => void]>|null} */
    this.pending = [];
  }

  /** A snapshot has been asked for: keep the events heard until it arrives. */
  expect() { this.pending ??= []; }

  /** The snapshot did not come: go on with what is known. */
  abandon() {
    const pending = this.pending ?? [];
    this.pending = null;
    for (const [key, event, apply] of pending) this.#apply(key, event, apply);
  }

  /** A `procedure:state` snapshot; then the events heard meanwhile that are newer. */
  load(snapshot) {
    this.state = snapshot;
    this.base = snapshot.seq;
    this.seen = {};
    if (snapshot.status) this.status = snapshot.status;
    this.#clock(snapshot.server_time);
    this.abandon();
  }

  /** A pushed event; false if it is not this meeting's, older than what is known, or early
   * (kept until the snapshot awaited arrives). */
  #receive(key, event, apply) {
    if (event.meeting_id !== this.meetingId) return false;
    if (this.pending || !this.state) {
      if ((this.pending ??= []).length < 1000) this.pending.push([key, event, apply]);
      return false;
    }
    return this.#apply(key, event, apply);
  }

  #apply(key, event, apply) {
    if (!this.state || event.seq <= (this.seen[key] ?? this.base)) return false;
    this.seen[key] = event.seq;
    this.#clock(event.server_time);
    apply(this.state);
    return true;
  }

  agenda(e) { return this.#receive("agenda", e, (s) => { s.agenda = e.agenda; }); }

  floor(e) {
    return this.#receive("floor", e, (s) => { s.floor = { holder: e.holder, queue: e.queue, totals: e.totals }; });
  }

  vote(e) {
    return this.#receive(`vote:${e.vote.id}`, e, (s) => {
      const index = s.votes.findIndex((v) => v.id === e.vote.id);
      if (index < 0) s.votes.push(e.vote);
      else if (!(s.votes[index].final && !e.vote.final)) s.votes[index] = e.vote; // final is final
    });
  }

  /** `meeting:updated`. */
  meeting(m) {
    if (m.id !== this.meetingId) return false;
    this.status = m.status;
    return true;
  }

  #clock(serverTime) {
    if (serverTime) this.skewMs = Date.now() - Date.parse(serverTime);
  }

  /** @param {number} [now] local ms @returns {Summary} */
  summary(now = Date.now()) {
    const serverNow = now - this.skewMs;
    const s = this.state;
    const ended = this.status === "closed";
    /** @type {Summary} */
    const out = { status: this.status, ended, item: null, speaker: null, vote: null, myRequest: null,
                  canRequest: false, forSite: false };
    if (!s) return out;
    const current = s.agenda.current;
    const item = current && s.agenda.items.find((i) => i.id === current.item_id);
    if (current && item) {
      // A stopped clock (a paused meeting) has no `since`: the time spent so far.
      const since = current.since ? Date.parse(current.since) : Number.NaN;
      const elapsed = (current.spent_before_seconds ?? 0) + (Number.isNaN(since) ? 0 : (serverNow - since) / 1000);
      const planned = (item.planned_minutes ?? 0) * 60;
      out.item = { title: item.title, elapsed, planned, over: planned > 0 && elapsed > planned };
    }
    const holder = s.floor.holder;
    const me = s.me?.user_id;
    if (holder) {
      const spoken = (serverNow - Date.parse(holder.granted_at)) / 1000;
      const limit = holder.limit_seconds ?? null;
      out.speaker = { name: holder.for_site ? holder.site || holder.name : holder.name, spoken, limit,
                      over: Boolean(limit) && spoken > limit, me: holder.user_id === me };
    }
    const open = s.votes.find((v) => v.status === "open");
    if (open && !ended) out.vote = { id: open.id, question: open.question };
    const mine = [holder, ...s.floor.queue].find((r) => r && r.user_id === me
      && (r.status === "queued" || r.status === "speaking"));
    if (mine) {
      out.myRequest = { id: mine.id, status: mine.status,
                        place: s.floor.queue.findIndex((r) => r.id === mine.id) + 1 };
    }
    // The chair gives the floor; they do not queue for it (issue 14).
    out.canRequest = !ended && this.status === "open" && s.me?.role !== "chair"
      && Boolean(s.me?.actions?.includes("request_floor"));
    out.forSite = s.me?.role === "site_operator";
    return out;
  }
}

export class MeetingBar {
  /**
   * @param {HTMLElement} root  #meeting-bar
   * @param {MeetingState} model
   * @param {(msgid: string) => string} t
   */
  constructor(root, model, t) {
    this.root = root;
    this.model = model;
    this.t = t;
    /** @type {(id: string) => HTMLElement} */
    this.$ = (id) => root.querySelector(`#${id}`);
    /** @type {(summary: Summary) => void} after each paint (the raise-hand button follows it) */
    this.onPaint = () => {};
    setInterval(() => this.paint(), 1000);
  }

  paint() {
    const t = this.t;
    const s = this.model.summary();
    this.root.dataset.status = s.status;
    this.root.dataset.ended = String(s.ended);
    const show = (id, text) => {
      const el = this.$(id);
      el.hidden = !text;
      if (text) {
        const value = el.querySelector(".value") ?? el;
        value.textContent = text;
      }
      return el;
    };
    show("bar-ended", s.ended ? t("The meeting has ended.")
      : s.status === "paused" ? t("The meeting is paused.") : "");
    show("bar-item", s.item && !s.ended ? s.item.title : "");
    const timer = show("bar-item-timer", s.item && !s.ended
      ? (s.item.planned ? `${clock(s.item.elapsed)} / ${clock(s.item.planned)}` : clock(s.item.elapsed)) : "");
    timer.classList.toggle("over", Boolean(s.item?.over));
    const speaker = show("bar-speaker", s.speaker && !s.ended
      ? `${s.speaker.me ? t("You have the floor.") : s.speaker.name} · ${clock(s.speaker.spoken)}`
        + (s.speaker.limit ? ` / ${clock(s.speaker.limit)}` : "") : "");
    speaker.classList.toggle("over", Boolean(s.speaker?.over));
    const vote = show("bar-vote", s.vote ? s.vote.question : "");
    vote.dataset.voteId = s.vote ? String(s.vote.id) : "";
    this.$("bar-idle").hidden = Boolean(s.ended || s.status === "paused" || s.item || s.speaker || s.vote);
    this.onPaint(s);
  }
}
