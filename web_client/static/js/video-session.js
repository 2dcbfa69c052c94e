// One person's video conference session, without DOM: the media signaling connection, the two
// RTCPeerConnections the SFU wants (docs/media.md: on `send` we offer and the server answers;
// on `recv` the server offers and we answer), subscription batching, and what is known of
// the call (peers, producers, chair locks, floor, quality). video.js shows it and calls it;
// the session tells it what changed through its on* callbacks.
// Over 400 lines: one state machine whose parts (joining, sending, receiving) share the two
// connections and the call's state; each part is a section below.
import { MediaSignaling } from "./media-signaling.js";
import { cameraEncodings } from "./simulcast.js";

const SUBSCRIBE_BATCH = 64; // media:subscribe takes at most 64 producer ids
const SUBSCRIBE_AFTER_MS = 60; // producers announced together are subscribed together
/** Close reasons after which the session joins again by itself, and after how many seconds. */
const REJOIN_AFTER = { "ice-timeout": 1, "transport-failed": 1, "transport-closed": 1,
                       "slow-consumer": 2 };
/**
 * @typedef {"mic"|"camera"|"screen"|"screen-audio"} Source
 * @typedef {{peer_id: string, user_id?: number|null, name: string, site?: string|null,
 *   site_id?: number|null, role?: string, remote?: boolean}} Peer
 * @typedef {{id: string, peer_id: string, user_id?: number|null, name?: string,
 *   site?: string|null, site_id?: number|null, role?: string, remote?: boolean,
 *   kind: "audio"|"video", source: Source, paused?: boolean, paused_by?: string|null}} Producer
 * @typedef {{mid: string, producer_id: string, producer_peer_id: string, source: Source}} Consumer
 * @typedef {{user_id?: number|null, peer_ids?: string[]}} FloorHolder
 * @typedef {{sdp: string, consumers: Consumer[]}} Offer
 * @typedef {"reconnecting"|"receive-only"|"too-many"|"rejoining"|"audio-only"|"video-back"} Notice
 */

/**
 * @typedef {object} JoinResult  the media:join result: Config + the call (docs/protocol.md)
 * @property {string} peer_id
 * @property {Peer & {user_id: number}} me
 * @property {Peer[]} peers
 * @property {Producer[]} producers
 * @property {Array<{user_id: number, kinds: Array<"audio"|"video">}>} locks
 * @property {FloorHolder|null} floor
 * @property {{peer_id: string}|null} active_speaker
 * @property {RTCConfiguration} rtc_configuration
 * @property {boolean} can_publish
 * @property {boolean} can_chair
 */

/** Group a call's peers into people (a person may have several devices), sorted by site and name. */
export function peopleOf(peers) {
  // user id (or peer id, for people at another node) -> {user_id, name, site, ..., peers: []}
  const people = new Map();
  for (const peer of peers) {
    const key = peer.remote ? `peer:${peer.peer_id}` : peer.user_id;
    const person = people.get(key) ?? { ...peer, peers: [] };
    person.peers.push(peer.peer_id);
    people.set(key, person);
  }
  return [...people.values()].sort((a, b) => (a.site || "").localeCompare(b.site || "", "vi")
    || a.name.localeCompare(b.name, "vi"));
}

/** Unmuting refused here, before asking the server: the chair locked this kind for me. */
export class ChairLockError extends Error {
  /** @param {"audio"|"video"} kind */
  constructor(kind) {
    super(`the chair locked ${kind}`);
    this.code = "muted_by_chair"; // as the server's own refusal
    this.kind = kind;
  }
}

export class VideoSession {
  /**
   * @param {number} meetingId
   * @param {object} [o]  what the browser provides (tests give their own)
   * @param {(meetingId: number) => MediaSignaling} [o.connect]
   * @param {(configuration: RTCConfiguration) => RTCPeerConnection} [o.newPeerConnection]
   */
  constructor(meetingId, { connect = (id) => new MediaSignaling(id),
                           newPeerConnection = (configuration) => new RTCPeerConnection(configuration) } = {}) {
    this.meetingId = meetingId;
    this.connect = connect;
    this.newPeerConnection = newPeerConnection;
    /** @type {MediaSignaling|null} */
    this.sig = null;
    /** @type {MediaStream|null} the camera and microphone, chosen in the lobby */
    this.local = null;
    /** @type {{stream: MediaStream, transceiver: RTCRtpTransceiver, producerId: string|null}|null} */
    this.screen = null;
    /** @type {RTCPeerConnection|null} */
    this.sendPc = null;
    /** @type {RTCPeerConnection|null} */
    this.recvPc = null;
    /** @type {JoinResult|null} while in the call */
    this.joined = null;
    this.wanted = false; // the person wants to be in the call (rejoin after a drop)
    this.entering = false;
    /** @type {() => {muted: boolean, cameraOff: boolean}} how to start publishing */
    this.startOptions = () => ({ muted: false, cameraOff: false });

    // What changed, for the view. All default to doing nothing.
    /** @type {() => void} anything shown may have changed */
    this.onChange = () => {};
    /** @type {() => void} */
    this.onQualityChange = () => {};
    /** @type {() => void} */
    this.onStatsChange = () => {};
    /** @type {(notice: Notice) => void} */
    this.onNotice = () => {};
    /** @type {(error: any) => void} */
    this.onError = () => {};
    /** @type {(error: any) => void} joining (after a connect) failed: the person is out */
    this.onJoinFailed = () => {};
    /** @type {() => void} the call started: show the room */
    this.onInCall = () => {};
    /** @type {() => void} joining finished */
    this.onEntered = () => {};
    /** @type {(reason: string) => void} the server closed the session for good */
    this.onEnded = () => {};
    /** @type {(info: Consumer, track: MediaStreamTrack) => void} a consumer's track arrived */
    this.onTrack = () => {};
    /** @type {(liveProducerIds: Set<string>) => void} consumers of other producers are gone */
    this.onConsumers = () => {};
    /** @type {(producerId: string, producer: Producer|undefined) => void} */
    this.onProducerClosed = () => {};
    /** @type {(peerId: string) => void} */
    this.onPeerClosed = () => {};
    /** @type {(holder: FloorHolder|null) => void} */
    this.onFloor = () => {};
    /** @type {(event: {user_id: number, kind: "audio"|"video", locked: boolean}) => void} the chair locked or freed my own */
    this.onMyLock = () => {};
    /** @type {() => void} the call's media is gone (connections closed): drop what shows it */
    this.onTeardown = () => {};
    this.#resetCall();
  }

  #resetCall() {
    /** @type {Map<string, Peer>} */
    this.peers = new Map();
    /** @type {Map<string, Producer>} */
    this.producers = new Map();
    /** @type {Map<string, Consumer>} by mid */
    this.consumers = new Map();
    /** @type {Record<string, string>} my producer id by source */
    this.mine = {};
    /** @type {Set<string>} kinds the chair locked for me */
    this.locked = new Set();
    /** @type {Map<number, Set<string>>} user id -> locked kinds */
    this.lockedUsers = new Map();
    /** @type {Record<string, string>} peer id -> "good" | "fair" | "poor" */
    this.quality = {};
    /** @type {Record<string, any>} peer id -> media:stats line */
    this.stats = {};
    /** @type {FloorHolder|null} */
    this.floor = null;
    /** @type {string|null} peer id */
    this.speaker = null;
    this.videoOff = false;  // the server sends audio only: the downlink is below its floor
    /** @type {Map<string, "high"|"low"|"off">} what media:layers last asked per producer */
    this.layerWants = new Map();
    this.offerChain = Promise.resolve();
    this.sendChain = Promise.resolve();
    /** @type {Set<string>} */
    this.pendingSubs = new Set();
    this.subTimer = null;
    this.tooMany = 0; // too_many refusals in a row
  }

  // --- joining and leaving ----------------------------------------------------------------
  /** Join the call (with `local`, if any); rejects when the server refuses. */
  async join() {
    try {
      this.wanted = true;
      if (!this.sig) this.#connect();
      if (this.sig.connected) await this.#enter();
      // otherwise the connect handler enters
    } catch (error) {
      this.wanted = false;
      throw error;
    }
  }

  async leave() {
    this.wanted = false;
    try { if (this.joined) await this.sig.leave(); } catch { /* gone already */ }
    this.#teardown();
    this.stopLocal();
  }

  stopLocal() {
    for (const track of this.local?.getTracks() ?? []) track.stop();
    this.local = null;
  }

  #connect() {
    const sig = this.sig = this.connect(this.meetingId);
    sig.onConnectionChange = (connected) => {
      if (!connected) {
        if (this.joined) this.onNotice("reconnecting");
        this.#teardown();
        return;
      }
      if (this.wanted && !this.joined) {
        this.#enter().catch((e) => {
          this.wanted = false;
          this.onJoinFailed(e);
        });
      }
    };
    sig.onOffer = (e) => this.applyOffer(e.offer);
    sig.onProducerAdded = (e) => this.#producerAdded(e.producer);
    sig.onProducerClosed = (e) => this.#producerClosed(e.producer_id);
    sig.onProducerPaused = (e) => this.#producerPaused(e);
    sig.onPeerJoined = (e) => { this.peers.set(e.peer.peer_id, e.peer); this.onChange(); };
    sig.onPeerClosed = (e) => this.#peerClosed(e.peer_id);
    sig.onActiveSpeaker = (e) => { this.speaker = e.peer_id; this.onChange(); };
    sig.onFloor = (e) => this.#floor(e.holder);
    sig.onLock = (e) => this.#lock(e);
    sig.onClosed = (e) => { if (e.peer_id === this.joined?.peer_id) this.#closed(e.reason); };
    sig.onQuality = (e) => { this.quality = e.peers; this.onQualityChange(); };
    sig.onStats = (e) => { this.stats = Object.fromEntries(e.peers.map((p) => [p.peer_id, p])); this.onStatsChange(); };
    sig.onTransport = () => {};
    sig.onDownlink = (e) => {
      // Only a change is told: "Video is back." when it never went off would hide whatever
      // the message box says (a refused raise hand, say).
      if (e.video_off === this.videoOff) return;
      this.videoOff = e.video_off;
      this.onNotice(e.video_off ? "audio-only" : "video-back");
    };
  }

  async #enter() {
    if (this.entering) return;
    this.entering = true;
    try {
      const joined = await this.sig.join();
      this.#teardown();
      this.joined = joined;
      for (const peer of joined.peers) this.peers.set(peer.peer_id, peer);
      for (const lock of joined.locks) this.lockedUsers.set(lock.user_id, new Set(lock.kinds));
      this.locked = new Set(this.lockedUsers.get(joined.me.user_id) ?? []);
      this.floor = joined.floor;
      this.speaker = joined.active_speaker?.peer_id ?? null;
      this.onInCall();
      this.recvPc = this.#newPc(joined.rtc_configuration, "recv");
      this.recvPc.ontrack = (e) => {
        const info = this.consumers.get(e.transceiver.mid);
        if (info) this.onTrack(info, e.track);
      };
      for (const producer of joined.producers) this.#producerAdded(producer);
      if (joined.can_publish && this.local?.getTracks().length) await this.#publish();
      else if (!joined.can_publish) this.onNotice("receive-only");
      this.onChange();
      if (this.floor) this.#floor(this.floor);
      this.onEntered();
    } finally {
      this.entering = false;
    }
  }

  /** @param {RTCConfiguration} configuration  @param {"send"|"recv"} direction */
  #newPc(configuration, direction) {
    const pc = this.newPeerConnection(configuration);
    pc.addEventListener("iceconnectionstatechange", () => {
      if (pc.iceConnectionState !== "failed" || pc !== (direction === "send" ? this.sendPc : this.recvPc)) return;
      if (direction === "send") this.#restartSend().catch((e) => this.onError(e));
      else this.sig.restartIce().then((r) => this.applyOffer(r.offer)).catch((e) => this.onError(e));
    });
    return pc;
  }

  #closed(reason) {
    const rejoin = REJOIN_AFTER[reason];
    this.#teardown();
    if (rejoin !== undefined && this.wanted) {
      this.onNotice("rejoining");
      setTimeout(() => { if (this.wanted && !this.joined) this.#enter().catch((e) => this.onError(e)); }, rejoin * 1000);
      return;
    }
    this.wanted = false;
    this.onEnded(reason);
  }

  #teardown() {
    this.sendPc?.close();
    this.recvPc?.close();
    this.sendPc = this.recvPc = null;
    this.joined = null;
    if (this.screen) { for (const tr of this.screen.stream.getTracks()) tr.stop(); this.screen = null; }
    this.onTeardown();
    if (this.subTimer) clearTimeout(this.subTimer);
    this.#resetCall();
  }

  // --- sending -------------------------------------------------------------------------------
  async #publish() {
    const pc = this.sendPc = this.#newPc(this.joined.rtc_configuration, "send");
    for (const track of this.local.getTracks()) {
      /** @type {RTCRtpTransceiverInit} */
      const init = { direction: "sendonly", streams: [this.local] };
      const encodings = track.kind === "video" ? cameraEncodings(track.getSettings?.().height ?? 0) : undefined;
      if (encodings) init.sendEncodings = encodings;
      pc.addTransceiver(track, init);
    }
    const result = await this.#offerToServer();
    for (const producer of result.added) this.mine[producer.source] = producer.id;
    const { muted, cameraOff } = this.startOptions();
    if (this.mine.mic && (muted || this.locked.has("audio"))) await this.setMine("mic", false, true);
    if (this.mine.camera && (cameraOff || this.locked.has("video"))) await this.setMine("camera", false, true);
    this.onChange();
  }

  /** Offer the send transport's current state; the server answers (serialised).
   * @param {() => Record<string, Source>} [sources] */
  #offerToServer(sources) {
    const run = async () => {
      const pc = this.sendPc;
      await pc.setLocalDescription();
      const result = await this.sig.publish(pc.localDescription.sdp, sources?.());
      await pc.setRemoteDescription({ type: "answer", sdp: result.sdp });
      for (const producer of result.added) this.producers.set(producer.id, producer);
      for (const id of result.removed) this.producers.delete(id);
      return result;
    };
    const next = this.sendChain.then(run, run);
    this.sendChain = next.catch(() => {});
    return next;
  }

  async #restartSend() {
    this.sendPc.restartIce();
    await this.#offerToServer();
  }

  /** @param {string} source */
  #localTrack(source) {
    if (source === "mic") return this.local?.getAudioTracks()[0];
    if (source === "camera") return this.local?.getVideoTracks()[0];
    return null;
  }

  /** Is my producer of this source live (published and not paused)? @param {string} source */
  isOn(source) {
    const producer = this.producers.get(this.mine[source]);
    return Boolean(producer && !producer.paused);
  }

  /**
   * Pause or resume one of my producers. Resuming is refused (ChairLockError) when the chair
   * locked it, unless `quiet`; a quiet pause also ignores the server's refusal.
   * @param {string} source  @param {boolean} on
   */
  async setMine(source, on, quiet = false) {
    const id = this.mine[source];
    const track = this.#localTrack(source);
    if (on) {
      const kind = source === "mic" ? "audio" : "video";
      if (this.locked.has(kind) && !quiet) throw new ChairLockError(kind);
      await this.sig.unmute(id);
      if (track) track.enabled = true;
    } else {
      if (track) track.enabled = false;
      try { await this.sig.mute(id); } catch (error) { if (!quiet) throw error; }
    }
    const producer = this.producers.get(id);
    if (producer) { producer.paused = !on; producer.paused_by = on ? null : producer.paused_by || "self"; }
  }

  /** Share the screen, or stop sharing it. */
  async toggleScreen() {
    if (!this.sendPc) return;
    try {
      if (this.screen) await this.#stopScreen();
      else await this.#startScreen();
    } catch (error) {
      if (error.name !== "NotAllowedError") this.onError(error);
    }
    this.onChange();
  }

  async #startScreen() {
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 10 } }, audio: false });
    const track = stream.getVideoTracks()[0];
    track.contentHint = "detail";
    const transceiver = this.sendPc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
    this.screen = { stream, transceiver, producerId: null };
    track.addEventListener("ended", () => { if (this.screen?.stream === stream) this.toggleScreen(); });
    const result = await this.#offerToServer(() => ({ [transceiver.mid]: "screen" }));
    const screen = result.added.find((p) => p.source === "screen");
    if (screen) { this.screen.producerId = screen.id; this.mine.screen = screen.id; }
  }

  async #stopScreen() {
    const { stream, transceiver } = this.screen;
    this.screen = null;
    delete this.mine.screen;
    for (const track of stream.getTracks()) track.stop();
    transceiver.direction = "inactive";
    await this.#offerToServer();
  }

  // --- receiving ----------------------------------------------------------------------------
  /** Apply a server offer and answer it, then any offer that piled up meanwhile (in order).
   * The server recycles m-sections: a closed consumer's m-section comes back rejected (port
   * 0), which stops its transceiver and ends its track; later a new consumer takes that
   * index with a new mid, a new transceiver here (ontrack). Mids are never reused, and an
   * offer lists every live consumer, so the mid map is rebuilt from it.
   * @param {Offer|null} offer */
  applyOffer(offer) {
    if (!offer) return this.offerChain;
    const pc = this.recvPc;
    const run = async () => {
      let next = offer;
      while (next && pc === this.recvPc) {
        this.consumers = new Map(next.consumers.map((c) => [c.mid, c]));
        await pc.setRemoteDescription({ type: "offer", sdp: next.sdp });
        this.onConsumers(new Set(next.consumers.map((c) => c.producer_id)));
        await pc.setLocalDescription();
        next = (await this.sig.answer(pc.localDescription.sdp)).offer;
      }
    };
    this.offerChain = this.offerChain.then(run, run).catch((e) => this.onError(e));
    return this.offerChain;
  }

  /** @param {string} producerId */
  #subscribeSoon(producerId) {
    this.pendingSubs.add(producerId);
    if (!this.subTimer) this.subTimer = setTimeout(() => this.#flushSubscribes(), SUBSCRIBE_AFTER_MS);
  }

  async #flushSubscribes() {
    this.subTimer = null;
    const ids = [...this.pendingSubs].filter((id) => this.producers.has(id));
    this.pendingSubs.clear();
    for (let i = 0; i < ids.length; i += SUBSCRIBE_BATCH) {
      const batch = ids.slice(i, i + SUBSCRIBE_BATCH);
      try {
        const result = await this.sig.subscribe(batch);
        for (const c of result.consumers) this.consumers.set(c.mid, c);
        this.tooMany = 0;
        await this.applyOffer(result.offer);
      } catch (error) {
        if (error.code === "rate_limited" || error.code === "not_found" || error.code === "too_many") {
          if (error.code === "not_found") await this.#refreshProducers();
          // too_many: too many live streams, or closed streams' m-sections not recycled yet
          // (offers catching up): retry, and only tell the person if it persists.
          this.tooMany = error.code === "too_many" ? (this.tooMany ?? 0) + 1 : 0;
          if (this.tooMany >= 3) this.onNotice("too-many");
          for (const id of batch) if (this.producers.has(id)) this.pendingSubs.add(id);
          const wait = error.code === "too_many" ? 3000 : 1000;
          if (!this.subTimer) this.subTimer = setTimeout(() => this.#flushSubscribes(), wait);
        } else {
          this.onError(error);
        }
      }
    }
  }

  /** A producer we knew of is gone: take the server's list as the truth. */
  async #refreshProducers() {
    try {
      const { producers } = await this.sig.producers();
      const live = new Set(producers.map((p) => p.id));
      for (const id of [...this.producers.keys()]) if (!live.has(id)) this.#producerClosed(id);
      for (const p of producers) this.producers.set(p.id, p);
    } catch { /* the next event will tell */ }
  }

  /** @param {Producer} producer */
  #producerAdded(producer) {
    this.producers.set(producer.id, producer);
    if (producer.peer_id === this.joined?.peer_id) return;
    if (!this.peers.has(producer.peer_id)) {
      this.peers.set(producer.peer_id, { peer_id: producer.peer_id, user_id: producer.user_id,
        name: producer.name, site: producer.site, site_id: producer.site_id, role: producer.role,
        remote: Boolean(producer.remote) });
    }
    this.#subscribeSoon(producer.id);
    this.onChange();
  }

  /** @param {string} producerId */
  #producerClosed(producerId) {
    const producer = this.producers.get(producerId);
    this.producers.delete(producerId);
    this.onProducerClosed(producerId, producer);
    for (const [source, id] of Object.entries(this.mine)) if (id === producerId) delete this.mine[source];
    this.onChange();
  }

  #producerPaused(event) {
    const producer = this.producers.get(event.producer_id);
    if (!producer) return;
    producer.paused = event.paused;
    producer.paused_by = event.paused_by;
    if (event.peer_id === this.joined?.peer_id && event.paused && event.paused_by === "chair") {
      const source = Object.keys(this.mine).find((s) => this.mine[s] === event.producer_id);
      const track = this.#localTrack(source);
      if (track) track.enabled = false;
    }
    this.onChange();
  }

  /** @param {string} peerId */
  #peerClosed(peerId) {
    this.peers.delete(peerId);
    for (const [id, producer] of this.producers) if (producer.peer_id === peerId) this.#producerClosed(id);
    this.onPeerClosed(peerId);
    this.onChange();
  }

  /** @param {FloorHolder|null} holder */
  #floor(holder) {
    this.floor = holder;
    this.onFloor(holder);
  }

  #lock(event) {
    const kinds = this.lockedUsers.get(event.user_id) ?? new Set();
    if (event.locked) kinds.add(event.kind); else kinds.delete(event.kind);
    this.lockedUsers.set(event.user_id, kinds);
    if (event.user_id === this.joined?.me.user_id) {
      this.locked = new Set(kinds);
      if (event.locked) {
        const track = this.#localTrack(event.kind === "audio" ? "mic" : "camera");
        if (track) track.enabled = false;
      }
      this.onMyLock(event);
    }
    this.onChange();
  }

  // --- what the view asks ----------------------------------------------------------------------
  /** The people in the call (see peopleOf). */
  /**
   * Ask the server for the layer each tile needs (`media:layers`): only what changed since
   * the last call, for producers this session subscribes to. Failures (a producer that just
   * closed) are dropped: the next render asks again.
   * @param {Map<string, "high"|"low"|"off">} wants producer id -> want
   */
  wantLayers(wants) {
    const sent = this.layerWants;
    for (const id of [...sent.keys()]) if (!wants.has(id)) sent.delete(id);
    for (const [id, want] of wants) {
      if (sent.get(id) === want || !this.sig) continue;
      sent.set(id, want);
      this.sig.layers(id, want).catch(() => { if (sent.get(id) === want) sent.delete(id); });
    }
  }

  people() { return peopleOf(this.peers.values()); }

  /** A peer's producer of a source, or null. @param {string} peerId  @param {string} source */
  producerOf(peerId, source) {
    for (const p of this.producers.values()) if (p.peer_id === peerId && p.source === source) return p;
    return null;
  }

  /** @param {string} peerId */
  qualityOf(peerId) {
    return this.quality[peerId] || "connecting";
  }

  // --- diagnostics (used by tests; harmless in production) --------------------------------------
  /** Inbound RTP per kind and peer. */
  async inbound() {
    const out = [];
    if (!this.recvPc) return out;
    (await this.recvPc.getStats()).forEach((r) => {
      if (r.type !== "inbound-rtp") return;
      const info = this.consumers.get(r.mid);
      out.push({ kind: r.kind, mid: r.mid, peer: info?.producer_peer_id, source: info?.source,
                 packets: r.packetsReceived || 0, frames: r.framesDecoded || 0 });
    });
    return out;
  }

  /** The ICE candidates both connections use. */
  async candidates() {
    const out = [];
    for (const pc of [this.sendPc, this.recvPc]) {
      if (!pc) continue;
      (await pc.getStats()).forEach((r) => {
        if (r.type === "local-candidate" || r.type === "remote-candidate") {
          out.push({ type: r.type, address: r.address || r.ip, candidateType: r.candidateType });
        }
      });
      for (const line of (pc.remoteDescription?.sdp ?? "").split("\n")) {
        if (line.startsWith("a=candidate:")) out.push({ type: "sdp-remote", address: line.split(" ")[4] });
      }
    }
    return out;
  }
}
