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
    /** @type {(meeting: object) => void} */
    this.onMeetingUpdated = () => {};
    this.socket.on("connect", () => this.onConnectionChange(true));
    this.socket.on("disconnect", () => this.onConnectionChange(false));
    this.socket.on("meeting:updated", (m) => this.onMeetingUpdated(m));
  }

  /** Send an event; resolves with its result or rejects with a SignalingError. */
  async request(event, payload, timeoutMs = 10000) {
    const ack = await this.socket.timeout(timeoutMs).emitWithAck(event, payload);
    if (!ack?.ok) throw new SignalingError(ack?.error?.code ?? "unknown", ack?.error?.message ?? "");
    return ack.result;
  }

  joinMeeting(meetingId) { return this.request("meeting:join", { meeting_id: meetingId }); }
  leaveMeeting(meetingId) { return this.request("meeting:leave", { meeting_id: meetingId }); }
}
