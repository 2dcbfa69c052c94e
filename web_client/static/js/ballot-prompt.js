// The ballot as a prompt on every screen of every eligible delegate (issue 14): when a vote
// opens, a modal dialog takes the focus with the question, the choices, a countdown when
// the chair set a time limit, and, once cast, what was recorded; a short tone and a pulse
// announce it. When the vote closes, the prompt shows the result (counts, base and
// percentages). Any page of a meeting hosts it: `startMeetingPrompts(socket, meetingId)`
// (or the procedure panel, which already holds the snapshot, calls `sync`). It listens on
// the page's socket.io connection (the page has joined the meeting's channel) without
// taking any of Signaling's single callbacks, so the page's own handlers stay as they are.
//
// A ballot cast here and one cast in the procedure panel are the same ballot: each side
// says so with a `hopso:ballot-recorded` DOM event, so neither asks again.
import { t } from "./i18n.js";
import { FloorNotice } from "./floor-notice.js";
import {
  PromptDialog, clock, errorText, forgetReceipt, h, loadReceipt, nextBallotSeq, optionLabel,
  receiptFor, saveReceipt, tf,
} from "./procedure-ui.js";

export const RECORDED_EVENT = "hopso:ballot-recorded";

/** Send an event with an ack, as Signaling.request does: the result, or throw {code}. */
export function requester(socket) {
  return async (event, payload, timeoutMs = 10000) => {
    const ack = await socket.timeout(timeoutMs).emitWithAck(event, payload);
    if (!ack?.ok) {
      throw Object.assign(new Error(ack?.error?.message ?? ""), { code: ack?.error?.code ?? "unknown" });
    }
    return ack.result;
  };
}

/** The result line of a closed vote: outcome, then each option's count / base and %. */
export function resultLines(vote) {
  const r = vote.result;
  if (!r) return [h("p", { class: "muted" }, t("The vote is closed."))];
  const base = r.base ?? r.eligible;
  const pct = (i) => r.percentages?.[i] ?? (base ? Math.round((10000 * r.totals[i]) / base) / 100 : 0);
  const rows = vote.options.map((_, i) => h("li", { dataset: { option: i } },
    tf("{option}: {n} / {base} ({percent}%)", { option: optionLabel(vote, i), n: r.totals[i],
      base, percent: pct(i).toLocaleString(document.documentElement.lang || undefined) })));
  return [h("p", { class: "prompt-outcome" }, h("strong", {}, outcomeText(vote))),
    h("ul", { class: "prompt-result" }, rows),
    h("p", { class: "muted" }, r.base_rule === "present"
      ? tf("Percentages of the {n} voting members present.", { n: base })
      : tf("Percentages of all {n} voting members.", { n: base }))];
}

/** "Adopted" / "Not adopted" / "Elected: …" in the page's language. */
export function outcomeText(vote) {
  const r = vote.result;
  if (!r) return "";
  if (r.outcome === "elected") {
    return tf("Elected: {names}", { names: (r.elected ?? []).map((i) => optionLabel(vote, i)).join(", ") });
  }
  if (r.outcome === "none_elected") return t("Nobody was elected.");
  if (r.outcome === "chosen") return tf("Chosen: {option}", { option: optionLabel(vote, r.chosen) });
  return r.adopted ? t("Adopted") : t("Not adopted");
}

/** An election names itself as such ("Bầu cử"), a motion is a vote ("Biểu quyết"). */
function promptTitle(vote) {
  if (vote.kind === "election") return vote.secret ? t("Secret election") : t("Election");
  return vote.secret ? t("Secret ballot") : t("Vote");
}

export class BallotPrompt {
  /**
   * @param {(event: string, payload: object) => Promise<any>} request
   * @param {number} meetingId
   */
  constructor(request, meetingId) {
    this.request = request;
    this.meetingId = meetingId;
    this.me = null; // the snapshot's `me`
    this.status = "";
    this.skewMs = 0;
    this.voteId = null; // the vote the dialog is about
    this.vote = null;
    this.dismissed = new Set(); // votes this person put off ("Later"): not prompted again
    this.dialog = new PromptDialog("ballot-prompt", "ballot-prompt");
    this.dialog.onClose = () => { if (this.vote && this.vote.status === "open") this.dismissed.add(this.vote.id); };
    this.timer = setInterval(() => this.#tick(), 1000);
    document.addEventListener(RECORDED_EVENT, (e) => this.#recordedElsewhere(/** @type {CustomEvent} */ (e).detail));
  }

  get eligible() { return Boolean(this.me?.actions?.includes("vote")); }

  /** A procedure:state snapshot: who I am, the meeting's status, the votes. */
  sync(snapshot) {
    this.me = snapshot.me;
    this.status = snapshot.status;
    if (snapshot.server_time) this.skewMs = Date.now() - Date.parse(snapshot.server_time);
    const open = snapshot.votes.find((v) => v.status === "open");
    const mine = snapshot.votes.find((v) => v.id === this.voteId);
    if (mine && mine !== open) this.#closed(mine);
    if (open) this.voteUpdated(open);
  }

  /** The meeting's status changed (meeting:updated). */
  meetingStatus(status) {
    this.status = status;
    if (status === "closed" && this.dialog.isOpen && this.vote?.status === "open") {
      this.dialog.update(this.#frame(this.vote, [h("p", { class: "error", role: "alert" }, t("The meeting has ended."))],
        [this.#closeButton()]));
    }
  }

  /** A vote:updated push (or a vote from a snapshot). */
  voteUpdated(vote) {
    if (vote.final || vote.status === "closed") { this.#closed(vote); return; }
    if (!this.eligible) return;
    if (this.voteId === vote.id) { this.vote = vote; return; } // a live tally: nothing to ask
    if (this.dismissed.has(vote.id)) return;
    this.voteId = vote.id;
    this.vote = vote;
    this.#ask();
  }

  #serverNow() { return Date.now() - this.skewMs; }

  #voted(vote) { return this.me?.voted?.includes(vote.id); }

  #frame(vote, body, buttons) {
    return [
      h("h2", { id: "ballot-prompt-title" }, promptTitle(vote)),
      h("div", { id: "ballot-prompt-body" },
        h("p", { class: "prompt-question" }, vote.question),
        vote.closes_at ? h("p", { class: "prompt-countdown", id: "ballot-prompt-countdown", "aria-live": "off" }) : null,
        body),
      h("div", { class: "prompt-buttons" }, buttons)];
  }

  #closeButton(label = t("Close")) {
    return h("button", { type: "button", class: "prompt-close", onclick: () => this.dialog.close() }, label);
  }

  #ask(error = "") {
    const vote = this.vote;
    if (this.#voted(vote) && !vote.allow_change) { this.#confirm(vote, null); return; }
    const checkedIn = ["in_person", "online"].includes(this.me?.attendance);
    const body = [];
    if (error) body.push(h("p", { class: "error", role: "alert" }, error));
    let focus = null;
    if (!checkedIn) {
      body.push(h("p", {}, t("Check in to vote.")));
      focus = h("button", { type: "button", class: "primary big", id: "ballot-prompt-checkin",
        onclick: () => this.#checkIn() }, t("Check in (online)"));
      body.push(focus);
    }
    const options = vote.options.map((_, i) => h("button", {
      type: "button", class: `big option-${i}`, dataset: { option: i }, disabled: !checkedIn,
      onclick: () => this.#cast(vote, i),
    }, optionLabel(vote, i)));
    body.push(h("div", { class: "prompt-options", role: "group", "aria-label": t("Choices") }, options));
    const parts = this.#frame(vote, body, [this.#closeButton(t("Later"))]);
    if (this.dialog.isOpen) this.dialog.update(parts, focus ?? options[0]);
    else this.dialog.show(parts, focus ?? options[0]);
    this.#tick();
  }

  async #checkIn() {
    try {
      const result = await this.request("attendance:check_in", { meeting_id: this.meetingId, mode: "online" });
      this.me.attendance = result.status;
      this.#ask();
    } catch (error) {
      this.#ask(errorText(error));
    }
  }

  async #cast(vote, option) {
    const voted = this.#voted(vote);
    const receipt = vote.secret ? receiptFor(vote.id) : null;
    const seq = nextBallotSeq(vote.id);
    for (const b of this.dialog.el.querySelectorAll("button")) {
      /** @type {HTMLButtonElement} */ (b).disabled = true;
    }
    let result;
    try {
      for (let attempt = 1; ; attempt += 1) {
        try {
          result = await this.request("vote:cast", { meeting_id: this.meetingId, vote_id: vote.id,
            option, seq, receipt });
          break;
        } catch (error) {
          if (error?.code === "invalid" && vote.secret && !voted) forgetReceipt(vote.id);
          if (error?.code || attempt >= 3) throw error;
        }
      }
    } catch (error) {
      if (error?.code === "vote_closed" || error?.code === "meeting_closed") {
        // A stale screen: the vote (or the meeting) closed before this ballot; nothing counted.
        this.dialog.update(this.#frame(vote, [h("p", { class: "error", role: "alert", id: "ballot-prompt-error" },
          errorText(error)), h("p", {}, t("Your ballot was not recorded."))], [this.#closeButton()]));
        return;
      }
      this.#ask(errorText(error));
      return;
    }
    if (result.receipt) saveReceipt(vote.id, result.receipt);
    if (!this.me.voted.includes(vote.id)) this.me.voted.push(vote.id);
    document.dispatchEvent(new CustomEvent(RECORDED_EVENT, { detail: { voteId: vote.id, option,
      receipt: result.receipt ?? null, from: "prompt" } }));
    this.#confirm(vote, option);
  }

  #confirm(vote, option) {
    const receipt = vote.secret ? loadReceipt(vote.id) : null;
    const body = [h("p", { class: "ok prompt-recorded", id: "ballot-prompt-recorded", role: "status" },
      option === null ? t("Your vote was recorded.")
        : tf("Your vote was recorded: {option}.", { option: optionLabel(vote, option) }))];
    if (receipt) body.push(h("p", {}, t("Your receipt"), ": ", h("code", {}, receipt)));
    const buttons = [this.#closeButton()];
    if (vote.allow_change && vote.status === "open") {
      buttons.unshift(h("button", { type: "button", onclick: () => this.#ask() }, t("Change my vote")));
    }
    const parts = this.#frame(vote, body, buttons);
    if (this.dialog.isOpen) this.dialog.update(parts, buttons[buttons.length - 1]);
    else if (option !== null) this.dialog.show(parts);
  }

  #recordedElsewhere(detail) {
    if (detail.from === "prompt" || !this.me) return;
    if (!this.me.voted.includes(detail.voteId)) this.me.voted.push(detail.voteId);
    if (this.vote?.id === detail.voteId && this.dialog.isOpen) this.#confirm(this.vote, detail.option);
  }

  #closed(vote) {
    if (this.voteId !== vote.id) return;
    this.vote = vote;
    if (!this.dialog.isOpen) return;
    this.dialog.update(this.#frame(vote, [h("p", { class: "prompt-closed", role: "status" }, t("The vote is closed.")),
      ...resultLines(vote)], [this.#closeButton()]));
  }

  #tick() {
    const box = this.dialog.el.querySelector("#ballot-prompt-countdown");
    if (!box || !this.vote?.closes_at) return;
    const closes = Date.parse(this.vote.closes_at);
    // Never more than the limit itself: the estimate of the server's clock may be off.
    const limit = this.vote.opened_at ? (closes - Date.parse(this.vote.opened_at)) / 1000 : Infinity;
    const left = Math.min((closes - this.#serverNow()) / 1000, limit);
    if (this.vote.status !== "open") { box.textContent = ""; return; }
    box.textContent = left > 0 ? tf("Time left: {time}", { time: clock(Math.ceil(left)) }) : t("Time is up.");
    box.classList.toggle("over", left <= 10);
  }
}

/**
 * Start the prompts of a meeting page: the ballot and the floor notice, fed by the page's
 * socket (the page joins the meeting's channel). `load`: fetch the procedure snapshot on
 * each connect; a page whose procedure panel already loads it passes false and calls
 * `sync(snapshot)` itself.
 */
export function startMeetingPrompts(socket, meetingId, { load = true } = {}) {
  const request = requester(socket);
  const ballot = new BallotPrompt(request, meetingId);
  const floor = new FloorNotice(meetingId);
  const seen = {}; // newest seq applied per aspect, as the panel does
  const fresh = (key, e) => {
    if (e.meeting_id !== meetingId || (e.seq ?? 0) <= (seen[key] ?? seen.base ?? -1)) return false;
    seen[key] = e.seq ?? 0;
    return true;
  };
  // The events heard lately: a snapshot read before one of them can arrive after it (the
  // answer and the push cross); the newer ones are applied again over the snapshot.
  /** @type {Array<[string, any, (e: any) => void]>} */
  const recent = [];
  const hear = (key, e, apply) => {
    if (e.meeting_id !== meetingId) return;
    recent.push([key, e, apply]);
    if (recent.length > 50) recent.shift();
    if (fresh(key, e)) apply(e);
  };
  const sync = (snapshot) => {
    for (const key of Object.keys(seen)) delete seen[key];
    seen.base = snapshot.seq;
    ballot.sync(snapshot);
    floor.sync(snapshot);
    for (const [key, e, apply] of recent) if (fresh(key, e)) apply(e);
  };
  socket.on("vote:updated", (e) => hear(`vote:${e.vote?.id}`, e, () => ballot.voteUpdated(e.vote)));
  socket.on("floor:changed", (e) => hear("floor", e, () => floor.floorChanged(e)));
  socket.on("meeting:updated", (m) => {
    if (m.id !== meetingId) return;
    ballot.meetingStatus(m.status);
    floor.meetingStatus(m.status);
  });
  const resync = async () => {
    try { sync(await request("procedure:state", { meeting_id: meetingId })); } catch { /* next connect */ }
  };
  if (load) {
    socket.on("connect", () => setTimeout(resync, 200)); // after the page's meeting:join
    if (socket.connected) resync();
  }
  return { ballot, floor, sync, resync };
}
