// Meeting procedure panel: the chair's console, the secretary's tools and the delegate's
// tablet (check in, ask to speak, vote). It starts from the procedure:state snapshot and
// stays current with the events Signaling forwards, dropping any older than what it shows.
import { api } from "./api.js";
import { RECORDED_EVENT, outcomeText, startMeetingPrompts } from "./ballot-prompt.js";
import { t } from "./i18n.js";
import { MinutesReview } from "./minutes-review.js";
import { SignedFiles } from "./signed-files.js";
import { buildForms, buildStateControls, guardMeetingEnd } from "./procedure-forms.js";
import {
  clock, errorText, fill, forgetReceipt, h, loadReceipt, nextBallotSeq, optionLabel, receiptFor,
  saveReceipt, statusLabel, tf,
} from "./procedure-ui.js";

const PARTS_OF = {
  agenda: ["current", "agenda", "me", "votes"],
  attendance: ["attendance", "me"],
  floor: ["speaker", "floor", "me"],
  vote: ["votes", "me", "signed-files"],
  conclusions: ["minutes"],
};

/** How long a confirmation stays in the panel's message line. */
const SAID_MS = 6000;

export class ProcedurePanel {
  /**
   * @param {HTMLElement} root the #procedure section
   * @param {import("./signaling.js").Signaling} signaling
   * @param {number} meetingId
   */
  constructor(root, signaling, meetingId) {
    // Form controls buildForms (procedure-forms.js) makes, when this person may use them.
    /** @type {HTMLInputElement|undefined} */ this.floorLimit = undefined;
    /** @type {HTMLSelectElement|undefined} */ this.attendancePerson = undefined;
    /** @type {HTMLFormElement|undefined} */ this.rollCallForm = undefined;
    /** @type {HTMLSelectElement|undefined} */ this.voteItem = undefined;
    /** @type {HTMLTextAreaElement|undefined} */ this.conclusionsBox = undefined;
    this.root = root;
    /** @type {ReturnType<typeof setTimeout>|undefined} the message line's clearing */
    this.sayTimer = undefined;
    this.sig = signaling;
    this.meetingId = meetingId;
    this.state = null; // the snapshot, kept current by events
    this.base = 0; // the snapshot's seq
    this.seen = {}; // newest seq applied per aspect ("agenda", "vote:12", …)
    this.queued = []; // events that arrived while a snapshot was loading
    this.skewMs = 0; // local clock minus server clock
    this.versions = [];
    this.built = false;
    this.part = Object.fromEntries([.../** @type {NodeListOf<HTMLElement>} */ (root.querySelectorAll("[data-part]"))]
      .map((el) => [el.dataset.part, el]));
    const reviewBox = this.part["minutes-review"];
    this.review = reviewBox ? new MinutesReview(reviewBox, signaling.socket, meetingId) : null;
    const filesBox = this.part["signed-files"];
    this.signedFiles = filesBox ? new SignedFiles(filesBox, meetingId) : null;
    signaling.onAgendaChanged = (e) => this.#receive("agenda", "agenda", e, () => {
      this.state.agenda = e.agenda;
    });
    signaling.onAttendanceChanged = (e) => this.#receive("attendance", "attendance", e, () => {
      this.state.attendance = e.attendance;
    });
    signaling.onFloorChanged = (e) => this.#receive("floor", "floor", e, () => {
      this.state.floor = { holder: e.holder, queue: e.queue, totals: e.totals };
    });
    signaling.onVoteUpdated = (e) => this.#receive(`vote:${e.vote.id}`, "vote", e, () => {
      this.#mergeVote(e.vote);
    });
    signaling.onConclusionsChanged = (e) => this.#receive("conclusions", "conclusions", e, () => {
      this.state.conclusions = e.conclusions;
    });
    signaling.onMinutesGenerated = (e) => {
      if (e.meeting_id === this.meetingId) this.#loadMinutes();
    };
    // The ballot prompt and the floor notice (ballot-prompt.js), fed by this panel's snapshot.
    this.prompts = startMeetingPrompts(signaling.socket, meetingId, { load: false });
    document.addEventListener(RECORDED_EVENT, (e) => {
      const { voteId, receipt, from } = /** @type {CustomEvent} */ (e).detail;
      if (from === "panel" || !this.state) return;
      if (receipt) saveReceipt(voteId, receipt);
      if (!this.state.me.voted.includes(voteId)) this.state.me.voted.push(voteId);
      this.#render(["me"]);
    });
    guardMeetingEnd();
    setInterval(() => this.#tick(), 1000);
  }

  /** scheduled | open | paused | closed: live controls are offered only while open. */
  get status() { return this.state?.status ?? ""; }
  get live() { return this.status === "open"; }

  /** Load a fresh snapshot (on connect and reconnect). */
  async resync() {
    this.state = null;
    try {
      const snapshot = await this.sig.procedureState(this.meetingId);
      this.state = snapshot;
      this.base = snapshot.seq;
      this.seen = {};
      this.#clock(snapshot.server_time);
      this.prompts.sync(snapshot);
      this.#build();
      this.#showTools();
      const queued = this.queued;
      this.queued = [];
      for (const args of queued) this.#receive(...args);
      this.#render(Object.keys(this.part));
      await this.#loadMinutes();
    } catch (error) {
      this.queued = []; // the next resync starts afresh
      this.#say(errorText(error));
    }
  }

  #receive(key, aspect, event, apply) {
    if (event.meeting_id !== this.meetingId) return;
    if (this.state === null) {
      if (this.queued.length < 1000) this.queued.push([key, aspect, event, apply]);
      return;
    }
    if (event.seq <= (this.seen[key] ?? this.base)) return; // older than what is shown
    this.seen[key] = event.seq;
    this.#clock(event.server_time);
    apply();
    this.#render(PARTS_OF[aspect]);
  }

  #mergeVote(vote) {
    const votes = this.state.votes;
    const index = votes.findIndex((v) => v.id === vote.id);
    if (index < 0) votes.push(vote);
    else if (!(votes[index].final && !vote.final)) votes[index] = vote; // final is final
  }

  #clock(serverTime) {
    if (serverTime) this.skewMs = Date.now() - Date.parse(serverTime);
  }

  #serverNow() { return Date.now() - this.skewMs; }

  can(action) { return Boolean(this.state?.me.actions.includes(action)); }
  get role() { return this.state?.me.role; }

  #say(text, ok = false) {
    const box = this.part.message;
    if (!box) return;
    box.textContent = text;
    box.className = ok ? "proc-message ok" : "proc-message error";
    box.hidden = !text;
    // A confirmation ("Saved.", "The vote is open.") is true when said, not an hour later:
    // it clears after a while; an error stays until the next action (issue 14: stale lines).
    clearTimeout(this.sayTimer);
    if (ok && text) this.sayTimer = setTimeout(() => { if (box.textContent === text) this.#say(""); }, SAID_MS);
  }

  /** Run an action; show its error (or a confirmation) in the message box. */
  async act(work, done = "") {
    try {
      const result = await work();
      this.#say(done, true);
      return result;
    } catch (error) {
      this.#say(errorText(error));
      return undefined;
    }
  }

  #render(parts) {
    if (!this.state) return;
    const views = {
      current: () => this.#renderCurrent(), speaker: () => this.#renderSpeaker(),
      me: () => this.#renderMe(), agenda: () => this.#renderAgenda(),
      attendance: () => this.#renderAttendance(), floor: () => this.#renderFloor(),
      votes: () => this.#renderVotes(), minutes: () => this.#renderMinutes(),
      "signed-files": () => this.signedFiles?.show(this.role, this.state.votes),
    };
    for (const part of parts) views[part]?.();
  }

  #build() {
    if (this.built) return;
    this.built = true;
    buildForms(this);
    this.stateControls = buildStateControls(this);
  }

  /** Tools that do not apply in this state are not offered (a closed meeting: no check-in,
   * request to speak, opening a vote or giving the floor). */
  #showTools() {
    const hide = { "vote-tools": !this.live, "floor-tools": !this.live,
      "agenda-tools": this.status === "closed" };
    for (const [part, hidden] of Object.entries(hide)) if (this.part[part]) this.part[part].hidden = hidden;
    const attendanceForm = this.root.querySelector("#proc-attendance-form");
    if (attendanceForm) /** @type {HTMLElement} */ (attendanceForm).hidden = !this.live;
    this.stateControls?.render();
  }

  // --- live parts ---------------------------------------------------------------------

  #currentItem() {
    const id = this.state.agenda.current?.item_id;
    return this.state.agenda.items.find((i) => i.id === id) ?? null;
  }

  #renderCurrent() {
    const item = this.#currentItem();
    if (!item) { fill(this.part.current, h("span", { class: "muted" }, t("No item is under discussion."))); return; }
    fill(this.part.current,
      h("span", { class: "proc-label" }, this.status === "paused" ? t("Paused") : t("Now")),
      h("strong", { id: "proc-current-title" }, `${item.position}. ${item.title}`),
      item.presenter ? h("span", { class: "muted" }, `${t("Presenter")}: ${item.presenter}`) : null,
      h("span", { class: "proc-timer", id: "proc-item-timer" }));
    this.#tick();
  }

  #renderSpeaker() {
    const holder = this.state.floor.holder;
    if (!holder) { fill(this.part.speaker, h("span", { class: "muted" }, t("Nobody has the floor."))); return; }
    const who = holder.for_site ? holder.site : holder.name;
    fill(this.part.speaker,
      h("span", { class: "proc-label" }, t("Speaking")),
      h("strong", { id: "proc-speaker-name" }, who),
      holder.site && !holder.for_site ? h("span", { class: "muted" }, holder.site) : null,
      h("span", { class: "proc-timer", id: "proc-speaker-timer" }),
      this.can("chair_media") && this.live ? h("button", { type: "button", id: "proc-end-floor",
        onclick: () => this.act(() => this.sig.endFloor(this.meetingId)) }, t("End the turn")) : null);
    this.#tick();
  }

  #tick() {
    if (!this.state) return;
    const now = this.#serverNow();
    const current = this.state.agenda.current;
    const itemTimer = this.root.querySelector("#proc-item-timer");
    // Paused: `since` is null and the clock stands still; closed: no item is current.
    const running = current?.since && this.live ? (now - Date.parse(current.since)) / 1000 : 0;
    const elapsed = (current?.spent_before_seconds ?? 0) + running;
    const spent = this.root.querySelector("#proc-agenda-list li.current .proc-item-spent");
    if (current && spent) spent.textContent = ` · ${clock(elapsed)}`;
    if (current && itemTimer) {
      const item = this.#currentItem();
      const planned = (item?.planned_minutes ?? 0) * 60;
      itemTimer.textContent = planned
        ? tf("{elapsed} of {planned}, {remaining} left", {
          elapsed: clock(elapsed), planned: clock(planned), remaining: clock(planned - elapsed) })
        : clock(elapsed);
      itemTimer.classList.toggle("over", planned > 0 && elapsed > planned);
    }
    const holder = this.state.floor.holder;
    const speakerTimer = this.root.querySelector("#proc-speaker-timer");
    if (holder && speakerTimer) {
      const spoken = (now - Date.parse(holder.granted_at)) / 1000;
      speakerTimer.textContent = holder.limit_seconds
        ? `${clock(spoken)} / ${clock(holder.limit_seconds)}` : clock(spoken);
      speakerTimer.classList.toggle("over", Boolean(holder.limit_seconds) && spoken > holder.limit_seconds);
    }
  }

  #renderMe() {
    const me = this.state.me;
    const blocks = [];
    if (!this.live) {
      // Nothing to do live: say why, instead of offering buttons that would be refused.
      const why = { closed: t("The meeting has ended."), paused: t("The meeting is paused."),
        scheduled: t("The meeting has not been opened yet.") }[this.status] ?? "";
      fill(this.part.me, h("p", { class: "proc-ended", id: "proc-meeting-state" }, why));
      if (this.rollCallForm) this.rollCallForm.hidden = true;
      return;
    }
    if (this.can("check_in")) {
      const status = statusLabel(me.attendance);
      blocks.push(h("div", { class: "proc-block" },
        h("p", {}, `${t("Attendance")}: `, h("strong", { id: "proc-my-attendance" }, status)),
        h("div", { class: "toolbar" },
          h("button", { type: "button", id: "proc-checkin-in-person", class: me.attendance ? "" : "primary",
            onclick: () => this.#checkIn("in_person") }, t("Check in (in the room)")),
          h("button", { type: "button", id: "proc-checkin-online",
            onclick: () => this.#checkIn("online") }, t("Check in (online)")))));
    }
    if (this.can("request_floor")) blocks.push(this.#floorBlock());
    const open = this.state.votes.find((v) => v.status === "open");
    if (open && this.can("vote")) blocks.push(this.#ballot(open));
    if (open && this.role === "site_operator" && this.can("record_attendance")) {
      blocks.push(this.#siteCounts(open));
    }
    if (this.rollCallForm) this.rollCallForm.hidden = !this.state.attendance.roll_call_open;
    fill(this.part.me, blocks.length ? blocks : [h("p", { class: "muted" }, t("You follow the meeting."))]);
  }

  async #checkIn(mode) {
    const result = await this.act(() => this.sig.checkIn(this.meetingId, mode), t("You are checked in."));
    if (result) { this.state.me.attendance = result.status; this.#render(["me"]); }
  }

  #floorBlock() {
    const mine = [this.state.floor.holder, ...this.state.floor.queue]
      .filter((r) => r && r.user_id === this.state.me.user_id);
    const block = h("div", { class: "proc-block" });
    const speaking = mine.find((r) => r.status === "speaking");
    const queued = mine.find((r) => r.status === "queued");
    if (speaking) block.append(h("p", { class: "proc-you-speak", id: "proc-my-floor" }, t("You have the floor.")));
    if (queued) {
      const place = this.state.floor.queue.findIndex((r) => r.id === queued.id) + 1;
      block.append(h("p", { id: "proc-my-floor" }, tf("You are number {n} in the queue.", { n: place })),
        h("button", { type: "button", id: "proc-withdraw-floor",
          onclick: () => this.act(() => this.sig.withdrawFloor(this.meetingId, queued.id)) },
        t("Withdraw my request")));
    }
    if (!speaking && !queued) {
      const forSite = this.role === "site_operator";
      block.append(h("button", { type: "button", class: "primary big", id: "proc-request-floor",
        onclick: () => this.act(() => this.sig.requestFloor(this.meetingId, forSite),
          t("Your request is in the queue.")) },
      forSite ? t("Request the floor for my site") : t("Request to speak")));
    }
    return block;
  }

  #ballot(vote) {
    const voted = this.state.me.voted.includes(vote.id);
    const block = h("div", { class: "proc-block proc-ballot", dataset: { voteId: vote.id } },
      h("p", { class: "proc-question" }, vote.secret ? `${t("Secret ballot")}: ` : "", vote.question));
    if (voted) {
      block.append(h("p", { id: "proc-my-vote-status", class: "ok" }, t("Your vote was recorded.")));
      const receipt = loadReceipt(vote.id);
      if (vote.secret && receipt) {
        block.append(h("p", {}, t("Your receipt"), ": ", h("code", { id: "proc-my-receipt" }, receipt)));
      }
      if (!vote.allow_change) return block;
    }
    const buttons = vote.options.map((_, i) => h("button", {
      type: "button", class: `big option-${i}`, dataset: { option: i },
      onclick: () => this.#cast(vote, i),
    }, optionLabel(vote, i)));
    block.append(h("div", { class: "proc-options" }, buttons));
    return block;
  }

  async #cast(vote, option) {
    const voted = this.state.me.voted.includes(vote.id);
    const receipt = vote.secret ? receiptFor(vote.id) : null;  // kept before it is sent
    const seq = nextBallotSeq(vote.id);
    const result = await this.act(async () => {
      for (let attempt = 1; ; attempt += 1) {
        try {
          return await this.sig.castVote(this.meetingId, vote.id, option, seq, receipt);
        } catch (error) {
          // A refusal of a first secret ballot's code: the next try makes a new one.
          if (error?.code === "invalid" && vote.secret && !voted) forgetReceipt(vote.id);
          // No ack (timeout, dropped link): resend the very same ballot; if it was stored,
          // the server answers it again (`replayed`), with its receipt, instead of `stale`.
          if (error?.code || attempt >= 3) throw error;
        }
      }
    }, t("Your vote was recorded."));
    if (!result) return;
    if (result.receipt) saveReceipt(vote.id, result.receipt);
    if (!this.state.me.voted.includes(vote.id)) this.state.me.voted.push(vote.id);
    document.dispatchEvent(new CustomEvent(RECORDED_EVENT, { detail: { voteId: vote.id, option,
      receipt: result.receipt ?? null, from: "panel" } }));
    this.#render(["me"]);
  }

  #siteCounts(vote) {
    const inputs = vote.options.map((_, i) => h("input", { type: "number", min: 0, value: "0",
      dataset: { option: i } }));
    const form = h("form", { class: "proc-form proc-block", id: "proc-site-counts" },
      h("p", {}, t("Show of hands at my site")),
      h("div", { class: "proc-row" }, inputs.map((input, i) => h("label", {}, optionLabel(vote, i), input))),
      h("button", { type: "submit" }, t("Send my site's counts")));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      await this.act(() => this.sig.enterSiteCounts(this.meetingId, vote.id, this.state.me.site_id,
        inputs.map((x) => Number.parseInt(x.value || "0", 10))), t("Saved."));
    });
    return form;
  }

  #renderAgenda() {
    const edit = this.can("edit_agenda") && this.status !== "closed";
    const currentId = this.state.agenda.current?.item_id;
    const items = this.state.agenda.items;
    const rows = items.map((item, index) => h("li", {
      class: item.id === currentId ? "current" : "", dataset: { itemId: item.id } },
    h("span", { class: "proc-item-title" }, `${item.position}. ${item.title}`),
    h("span", { class: "muted" }, [
      item.presenter ? `${item.presenter} · ` : "",
      item.planned_minutes ? tf("{n} min planned", { n: item.planned_minutes }) : "",
    ].join(""),
    // The item under discussion: its time runs (filled by #tick), not the snapshot's.
    item.id === currentId ? h("span", { class: "proc-item-spent" })
      : item.spent_seconds ? ` · ${clock(item.spent_seconds)}` : ""),
    edit ? h("span", { class: "proc-item-tools" },
      item.id !== currentId && this.live ? h("button", { type: "button", class: "set-current",
        onclick: () => this.act(() => this.sig.setCurrentItem(this.meetingId, item.id)) },
      t("Discuss now")) : null,
      index > 0 ? h("button", { type: "button", title: t("Move up"), "aria-label": t("Move up"),
        onclick: () => this.#move(item, item.position - 1) }, "↑") : null,
      index < items.length - 1 ? h("button", { type: "button", title: t("Move down"),
        "aria-label": t("Move down"), onclick: () => this.#move(item, item.position + 1) }, "↓") : null,
      !item.started ? h("button", { type: "button", class: "remove", title: t("Remove"),
        onclick: () => this.act(() => api("DELETE",
          `/api/meetings/${this.meetingId}/agenda/${item.id}`)) }, "✕") : null) : null));
    const list = rows.length ? h("ol", { class: "proc-agenda", id: "proc-agenda-list" }, rows)
      : h("p", { class: "muted" }, t("The agenda is empty."));
    const stop = edit && currentId && this.live ? h("button", { type: "button",
      onclick: () => this.act(() => this.sig.setCurrentItem(this.meetingId, null)) },
    t("End the current item")) : null;
    fill(this.part.agenda, list, stop);
    this.#tick();
    if (this.voteItem) this.#refillSelect(this.voteItem, items.map((i) => [i.id, `${i.position}. ${i.title}`]), currentId);
  }

  #move(item, position) {
    return this.act(() => api("POST", `/api/meetings/${this.meetingId}/agenda/${item.id}/move`,
      { position }));
  }

  #refillSelect(select, pairs, preferred) {
    const keep = select.value;
    fill(select, pairs.map(([value, label]) => h("option", { value }, label)));
    const want = pairs.some(([v]) => String(v) === keep) ? keep : String(preferred ?? "");
    if (pairs.some(([v]) => String(v) === want)) select.value = want;
  }

  #renderAttendance() {
    const att = this.state.attendance;
    const q = att.quorum;
    // Members only (guests and people counted at sites beyond their seats are attendance).
    const summary = q.rule === "none"
      ? h("p", { id: "proc-quorum", class: "ok" }, tf("Present {present} of {members} members.", q),
        " ", h("span", { class: "muted" }, t("No quorum rule for this meeting.")))
      : h("p", { id: "proc-quorum", class: q.reached ? "ok" : "warn" },
        tf("Present {present} of {members} members; quorum needs {needed}.", q), " ",
        h("strong", {}, q.reached ? t("Quorum reached") : t("No quorum")));
    const inRoom = att.in_room ? h("p", { class: "muted", id: "proc-in-room" },
      tf("{n} people counted at the sites (attendance, not members).", { n: att.in_room })) : null;
    const people = h("ul", { class: "proc-people" }, att.people.map((p) => h("li", {
      dataset: { userId: p.user_id, status: p.status ?? "none" } },
    h("span", {}, p.name), " ",
    h("span", { class: `badge ${p.status ?? "none"}` }, statusLabel(p.status)),
    p.reason ? h("span", { class: "muted" }, ` (${p.reason})`) : null,
    p.site ? h("span", { class: "muted" }, ` · ${p.site}`) : null)));
    const answered = att.sites.filter((s) => s.answered);
    const sites = h("p", { class: "muted" }, att.roll_call_open ? t("Roll call of sites is open.") : "",
      " ", tf("{n} of {total} sites answered.", { n: answered.length, total: att.sites.length }));
    const siteList = answered.length ? h("ul", { class: "proc-sites" }, answered.map((s) =>
      h("li", {}, s.name, ": ", s.present ? tf("{n} present", { n: s.headcount }) : t("absent")))) : null;
    const chair = this.can("run_procedure") && this.live ? h("button", { type: "button", id: "proc-rollcall",
      onclick: () => this.act(() => att.roll_call_open ? this.sig.endRollCall(this.meetingId)
        : this.sig.startRollCall(this.meetingId)) },
    att.roll_call_open ? t("End the roll call") : t("Start the roll call of sites")) : null;
    fill(this.part.attendance, summary, inRoom, chair, people, sites, siteList);
    if (this.attendancePerson) {
      this.#refillSelect(this.attendancePerson, att.people.map((p) => [p.user_id, p.name]));
    }
    if (this.rollCallForm) this.rollCallForm.hidden = !att.roll_call_open;
  }

  #renderFloor() {
    const chair = this.can("chair_media") && this.live;
    const queue = this.state.floor.queue;
    const list = queue.length ? h("ol", { class: "proc-queue", id: "proc-queue" }, queue.map((r) => h("li", {
      dataset: { requestId: r.id, userId: r.user_id } },
    h("strong", {}, r.for_site ? r.site : r.name),
    h("span", { class: "muted" }, [r.for_site ? t("for the site") : r.site, r.item].filter(Boolean).join(" · ")),
    chair ? h("span", { class: "proc-item-tools" },
      h("button", { type: "button", class: "grant primary", onclick: () => {
        const minutes = Number.parseInt(this.floorLimit?.value || "0", 10);
        return this.act(() => this.sig.grantFloor(this.meetingId, r.id, minutes > 0 ? minutes * 60 : null));
      } }, t("Give the floor")),
      h("button", { type: "button", class: "skip", onclick: () =>
        this.act(() => this.sig.skipFloor(this.meetingId, r.id)) }, t("Skip"))) : null)))
      : h("p", { class: "muted" }, t("Nobody is waiting to speak."));
    const totals = this.state.floor.totals;
    const spoken = [...totals.people, ...totals.sites];
    const totalList = spoken.length ? h("details", {}, h("summary", {}, t("Speaking time")),
      h("ul", {}, spoken.map((x) => h("li", {}, `${x.name}: ${clock(x.seconds)}`)))) : null;
    fill(this.part.floor, list, totalList);
  }

  #renderVotes() {
    const votes = [...this.state.votes].reverse();
    fill(this.part.votes, votes.length ? votes.map((v) => this.#voteCard(v))
      : h("p", { class: "muted" }, t("No vote yet.")));
    const open = this.state.votes.find((v) => v.status === "open");
    if (open && this.can("run_procedure")) this.#refreshPending(open);
  }

  #voteCard(vote) {
    const result = vote.result;
    const head = h("p", {}, h("strong", {}, vote.question), " ",
      h("span", { class: `status status-${vote.status === "open" ? "open" : "closed"}` },
        vote.status === "open" ? t("Voting") : t("Closed")),
      " ", h("span", { class: "muted" }, vote.secret ? t("Secret ballot") : t("Open vote")));
    const card = h("div", { class: "proc-vote", dataset: { voteId: vote.id, status: vote.status } }, head);
    if (vote.turnout) {
      card.append(h("p", { class: "muted proc-turnout" }, tf("{cast} of {present} present voters have voted.",
        { cast: vote.turnout.cast, present: vote.turnout.present_voters })));
    }
    if (result) {
      // Count, base and percentage of the base (the vote's rule: all members or present).
      const base = result.base ?? result.eligible;
      card.append(h("table", { class: "proc-result" }, h("tbody", {}, vote.options.map((_, i) =>
        h("tr", { dataset: { option: i } }, h("td", {}, optionLabel(vote, i)),
          h("td", { class: "count" }, String(result.totals[i])),
          h("td", { class: "muted" }, `/ ${base}`),
          h("td", { class: "percent" }, `${(result.percentages?.[i] ?? 0).toLocaleString(document.documentElement.lang || undefined)}%`))))),
      h("p", { class: "muted proc-base" }, result.base_rule === "present"
        ? tf("Percentages of the {n} voting members present.", { n: base })
        : tf("Percentages of all {n} voting members.", { n: base })));
      for (const site of result.site_counts ?? []) {
        card.append(h("p", { class: "muted" }, tf("Counts entered for {site} by {who}.",
          { site: site.site, who: site.entered_by })));
      }
      if (vote.final) {
        card.append(h("p", { class: "proc-outcome" }, h("strong", {}, outcomeText(vote))));
      }
    } else if (vote.secret && !vote.final) {
      card.append(h("p", { class: "muted" }, t("A secret ballot's counts are shown when it closes.")));
    }
    if (vote.status === "open" && vote.closes_at) {
      card.append(h("p", { class: "muted" }, tf("Closes at {time}.", {
        time: new Date(vote.closes_at).toLocaleTimeString(document.documentElement.lang || undefined) })));
    }
    if (vote.status === "open" && this.can("run_procedure") && this.live) {
      card.append(h("p", { class: "muted proc-pending", dataset: { voteId: vote.id } }),
        h("button", { type: "button", class: "proc-vote-close", onclick: () =>
          this.act(() => this.sig.closeVote(this.meetingId, vote.id)) }, t("Close the vote")));
    }
    return card;
  }

  async #refreshPending(vote) {
    // The chair sees who has not voted (names for open votes, only a count for secret ones).
    if (this.pendingBusy) return;
    this.pendingBusy = true;
    try {
      const pending = await this.sig.pendingVoters(this.meetingId, vote.id);
      const box = this.part.votes.querySelector(`.proc-pending[data-vote-id="${vote.id}"]`);
      if (!box) return;
      box.textContent = pending.names
        ? (pending.names.length ? `${t("Not voted yet")}: ${pending.names.map((n) => n.name).join(", ")}`
          : t("Everyone present has voted."))
        : tf("{n} present voters have not voted yet.", { n: pending.count });
    } catch {
      // a closed vote or a lost connection: the next update redraws this
    } finally {
      this.pendingBusy = false;
    }
  }

  async #loadMinutes() {
    try {
      const body = await api("GET", `/api/meetings/${this.meetingId}/minutes`);
      this.versions = body.versions;
      this.#render(["minutes"]);
      await this.review?.show(this.versions, this.role);
    } catch {
      // shown as "none yet"
    }
  }

  #renderMinutes() {
    if (this.conclusionsBox && document.activeElement !== this.conclusionsBox) {
      this.conclusionsBox.value = this.state.conclusions;
    }
    const versions = [...this.versions].reverse();
    fill(this.part.minutes, versions.length ? h("ul", { class: "proc-minutes", id: "proc-minutes-list" },
      versions.map((v) => h("li", {}, h("a", { href: v.url, download: "" },
        tf("Minutes, version {n}", { n: v.version })),
      h("span", { class: "muted" }, ` · ${new Date(v.created_at).toLocaleString()} · sha256 ${v.sha256.slice(0, 12)}…`))))
      : h("p", { class: "muted" }, t("No minutes yet.")));
  }
}
