// The one module that speaks the socket.io wire protocol (docs/protocol.md).
// Pages use Signaling's methods and callbacks, never raw event names.

export class SignalingError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

export class Signaling {
  constructor() {
    /** @type {import("socket.io-client").Socket} */
    this.socket = globalThis.io({ transports: ["websocket", "polling"], withCredentials: true });
    /** @type {(connected: boolean) => void} */
    this.onConnectionChange = () => {};
    /** @type {(meeting: {id: number, status: string}) => void} */
    this.onMeetingUpdated = () => {};
    this.socket.on("connect", () => this.onConnectionChange(true));
    this.socket.on("disconnect", () => this.onConnectionChange(false));
    this.socket.on("meeting:updated", (m) => this.onMeetingUpdated(m));
    this.#listenProcedure();
  }

  /** Send an event; resolves with its result or rejects with a SignalingError. */
  async request(event, payload, timeoutMs = 10000) {
    const ack = await this.socket.timeout(timeoutMs).emitWithAck(event, payload);
    if (!ack?.ok) throw new SignalingError(ack?.error?.code ?? "unknown", ack?.error?.message ?? "");
    return ack.result;
  }

  joinMeeting(meetingId) { return this.request("meeting:join", { meeting_id: meetingId }); }
  leaveMeeting(meetingId) { return this.request("meeting:leave", { meeting_id: meetingId }); }

  // --- Meeting procedure (docs/protocol.md (Meeting procedure)): agenda, attendance, floor, votes, minutes. ---
  // Every pushed event carries {meeting_id, seq, server_time}; a page keeps the newest seq
  // per aspect (per vote for votes) and drops older ones, since events may arrive out of order.

  #listenProcedure() {
    /** @type {(e: {meeting_id: number, seq: number, server_time: string, agenda: object}) => void} */
    this.onAgendaChanged = () => {};
    /** @type {(e: {meeting_id: number, seq: number, server_time: string, attendance: object}) => void} */
    this.onAttendanceChanged = () => {};
    /** @type {(e: {meeting_id: number, seq: number, server_time: string, holder: object|null, queue: object[], totals: object}) => void} */
    this.onFloorChanged = () => {};
    /** @type {(e: {meeting_id: number, seq: number, server_time: string, vote: {id: number}}) => void} */
    this.onVoteUpdated = () => {};
    /** @type {(e: {meeting_id: number, seq: number, minutes: object}) => void} */
    this.onMinutesGenerated = () => {};
    /** @type {(e: {meeting_id: number, seq: number, conclusions: string}) => void} */
    this.onConclusionsChanged = () => {};
    const pushed = {
      "agenda:changed": (e) => this.onAgendaChanged(e),
      "attendance:changed": (e) => this.onAttendanceChanged(e),
      "floor:changed": (e) => this.onFloorChanged(e),
      "vote:updated": (e) => this.onVoteUpdated(e),
      "minutes:generated": (e) => this.onMinutesGenerated(e),
      "conclusions:changed": (e) => this.onConclusionsChanged(e),
    };
    for (const [event, handler] of Object.entries(pushed)) this.socket.on(event, handler);
  }

  procedureState(meetingId) { return this.request("procedure:state", { meeting_id: meetingId }); }
  setCurrentItem(meetingId, itemId) {
    return this.request("agenda:set_current", { meeting_id: meetingId, item_id: itemId });
  }
  /** @param {"in_person"|"online"} mode */
  checkIn(meetingId, mode) { return this.request("attendance:check_in", { meeting_id: meetingId, mode }); }
  /** @param {"in_person"|"online"|"absent"} status */
  recordAttendance(meetingId, userId, status, reason = "") {
    return this.request("attendance:record", { meeting_id: meetingId, user_id: userId, status, reason });
  }
  startRollCall(meetingId) { return this.request("rollcall:start", { meeting_id: meetingId }); }
  endRollCall(meetingId) { return this.request("rollcall:end", { meeting_id: meetingId }); }
  answerRollCall(meetingId, siteId, present, headcount) {
    return this.request("rollcall:answer", { meeting_id: meetingId, site_id: siteId, present, headcount });
  }
  requestFloor(meetingId, forSite = false) {
    return this.request("floor:request", { meeting_id: meetingId, for_site: forSite });
  }
  withdrawFloor(meetingId, requestId) {
    return this.request("floor:withdraw", { meeting_id: meetingId, request_id: requestId });
  }
  /** @param {number|null} limitSeconds */
  grantFloor(meetingId, requestId, limitSeconds = null) {
    return this.request("floor:grant", { meeting_id: meetingId, request_id: requestId, limit_seconds: limitSeconds });
  }
  skipFloor(meetingId, requestId) {
    return this.request("floor:skip", { meeting_id: meetingId, request_id: requestId });
  }
  endFloor(meetingId) { return this.request("floor:end", { meeting_id: meetingId }); }
  /** @param {{agenda_item_id: number, question: string, secret?: boolean, allow_change?: boolean, options?: string[]|null}} spec */
  openVote(meetingId, spec) { return this.request("vote:open", { meeting_id: meetingId, ...spec }); }
  /** `seq` is the voter's own increasing counter for this vote; `receipt` is a secret ballot's
   * code (made by the client for its first ballot, needed to change it). */
  castVote(meetingId, voteId, option, seq, receipt = null) {
    const payload = { meeting_id: meetingId, vote_id: voteId, option, seq };
    if (receipt) payload.receipt = receipt;
    return this.request("vote:cast", payload);
  }
  closeVote(meetingId, voteId) { return this.request("vote:close", { meeting_id: meetingId, vote_id: voteId }); }
  pendingVoters(meetingId, voteId) {
    return this.request("vote:pending", { meeting_id: meetingId, vote_id: voteId });
  }
  enterSiteCounts(meetingId, voteId, siteId, counts) {
    return this.request("vote:site_counts", { meeting_id: meetingId, vote_id: voteId, site_id: siteId, counts });
  }
}
