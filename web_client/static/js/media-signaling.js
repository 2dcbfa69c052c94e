// The wire protocol of the video conference (docs/protocol.md, "Media (socket.io)").
// Its own socket.io connection: the media session is tied to it, and it closes with it.
// Pages use these methods and callbacks, never raw event names.

export class MediaSignalingError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

/** Server-pushed events and the callback each one calls (payloads in docs/protocol.md). */
const PUSHED = {
  "media:offer": "onOffer",
  "media:producer-added": "onProducerAdded",
  "media:producer-closed": "onProducerClosed",
  "media:producer-paused": "onProducerPaused",
  "media:peer-joined": "onPeerJoined",
  "media:peer-closed": "onPeerClosed",
  "media:active-speaker": "onActiveSpeaker",
  "media:floor": "onFloor",
  "media:lock": "onLock",
  "media:closed": "onClosed",
  "media:stats": "onStats",
  "media:quality": "onQuality",
  "media:transport": "onTransport",
  "media:downlink": "onDownlink",
};

export class MediaSignaling {
  /** @param {number} meetingId */
  constructor(meetingId) {
    this.meetingId = meetingId;
    /** @type {import("socket.io-client").Socket} */
    this.socket = globalThis.io({ transports: ["websocket", "polling"], withCredentials: true,
                                  forceNew: true });
    /** @type {(connected: boolean) => void} */
    this.onConnectionChange = () => {};
    // One callback per pushed event (PUSHED); payloads as docs/protocol.md describes them.
    /** @type {(e: {offer: any}) => void} */ this.onOffer = () => {};
    /** @type {(e: {producer: any}) => void} */ this.onProducerAdded = () => {};
    /** @type {(e: {producer_id: string}) => void} */ this.onProducerClosed = () => {};
    /** @type {(e: {producer_id: string, peer_id: string, paused: boolean, paused_by: string|null}) => void} */
    this.onProducerPaused = () => {};
    /** @type {(e: {peer: any}) => void} */ this.onPeerJoined = () => {};
    /** @type {(e: {peer_id: string}) => void} */ this.onPeerClosed = () => {};
    /** @type {(e: {peer_id: string|null}) => void} */ this.onActiveSpeaker = () => {};
    /** @type {(e: {holder: any}) => void} */ this.onFloor = () => {};
    /** @type {(e: {user_id: number, kind: "audio"|"video", locked: boolean}) => void} */ this.onLock = () => {};
    /** @type {(e: {peer_id: string, reason: string}) => void} */ this.onClosed = () => {};
    /** @type {(e: {peers: any[]}) => void} */ this.onStats = () => {};
    /** @type {(e: {peers: Record<string, string>}) => void} */ this.onQuality = () => {};
    /** @type {(e: object) => void} */ this.onTransport = () => {};
    /** @type {(e: {video_off: boolean, estimate_bps: number|null}) => void} */ this.onDownlink = () => {};
    this.socket.on("connect", () => this.onConnectionChange(true));
    this.socket.on("disconnect", () => this.onConnectionChange(false));
    for (const [event, callback] of Object.entries(PUSHED)) {
      this.socket.on(event, (payload) => {
        if (payload?.meeting_id === this.meetingId) this[callback](payload);
      });
    }
  }

  get connected() { return this.socket.connected; }

  /** Send an event of this meeting; resolves with its result or rejects with a MediaSignalingError. */
  async request(event, payload = {}, timeoutMs = 15000) {
    let ack;
    try {
      ack = await this.socket.timeout(timeoutMs).emitWithAck(event, { meeting_id: this.meetingId, ...payload });
    } catch {
      throw new MediaSignalingError("timeout", `${event}: no answer from the server`);
    }
    if (!ack?.ok) throw new MediaSignalingError(ack?.error?.code ?? "unknown", ack?.error?.message ?? "");
    return ack.result;
  }

  config() { return this.request("media:config"); }
  join() { return this.request("media:join"); }
  leave() { return this.request("media:leave"); }
  producers() { return this.request("media:producers"); }
  /** @param {string} sdp  @param {Record<string, "mic"|"camera"|"screen"|"screen-audio">} [sources] */
  publish(sdp, sources) { return this.request("media:publish", sources ? { sdp, sources } : { sdp }); }
  /** @param {string[]} producerIds */
  subscribe(producerIds) { return this.request("media:subscribe", { producer_ids: producerIds }); }
  unsubscribe(consumerId) { return this.request("media:unsubscribe", { consumer_id: consumerId }); }
  answer(sdp) { return this.request("media:answer", { sdp }); }
  restartIce() { return this.request("media:restart-ice"); }
  mute(producerId) { return this.request("media:mute", { producer_id: producerId }); }
  unmute(producerId) { return this.request("media:unmute", { producer_id: producerId }); }
  /** The layer a tile needs of a subscribed producer. @param {string} producerId @param {"high"|"low"|"off"} want */
  layers(producerId, want) { return this.request("media:layers", { producer_id: producerId, want }); }

  // --- chair (Action.chair_media) ---
  /** @param {{user_id?: number, site_id?: number, producer_id?: string}} target  @param {"audio"|"video"} kind */
  chairMute(target, kind = "audio") { return this.request("media:chair-mute", { ...target, kind }); }
  chairAllow(target, kind = "audio") { return this.request("media:chair-allow", { ...target, kind }); }
  muteAll() { return this.request("media:mute-all"); }
  /** @param {number|null} userId */
  giveFloor(userId) { return this.request("media:floor", { user_id: userId }); }
  /** The floor to a person at another cascade node. @param {string} peerId */
  giveFloorToPeer(peerId) { return this.request("media:floor", { peer_id: peerId }); }
  remove(userId) { return this.request("media:remove", { user_id: userId }); }
  readmit(userId) { return this.request("media:readmit", { user_id: userId }); }

  close() { this.socket.disconnect(); }
}
