// The meeting's video conference: lobby (device choice + preview), the call (grid or speaker
// view, own mute/camera/screen buttons), the chair's controls and per-participant quality.
// Two RTCPeerConnections, as the SFU wants (docs/media.md): on `send` we offer and the server
// answers; on `recv` the server offers and we answer. The wire protocol is media-signaling.js.
import { loadCatalog, t } from "./i18n.js";
import { MediaSignaling } from "./media-signaling.js";

const SUBSCRIBE_BATCH = 64;
const REJOIN_AFTER = { "ice-timeout": 1, "transport-failed": 1, "transport-closed": 1,
                       "slow-consumer": 2 };

/** A tiny element builder: h("div", {class: "x"}, "text", child). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) el.append(child);
  return el;
}

function initials(name) {
  return (name || "?").split(/\s+/).filter(Boolean).slice(-2).map((w) => w[0]).join("").toUpperCase();
}

const QUALITY_TEXT = {
  good: "Connection: good", fair: "Connection: fair", poor: "Connection: poor",
  connecting: "Connecting…",
};

class VideoConference {
  /** @param {HTMLElement} root */
  constructor(root) {
    this.root = root;
    this.meetingId = Number.parseInt(root.dataset.meetingId, 10);
    this.$ = (id) => document.getElementById(id);
    this.sig = null;
    this.local = null; // MediaStream from the camera/microphone
    this.screen = null; // {stream, transceiver, producerId}
    this.sendPc = null;
    this.recvPc = null;
    this.joined = null; // the media:join result
    this.wanted = false; // the person wants to be in the call (rejoin after a drop)
    this.layout = "grid";
    this.#resetCall();
    this.#wireLobby();
    this.#wireRoom();
    globalThis.hopsoVideo = this; // diagnostics handle (tests read getStats through it)
  }

  #resetCall() {
    this.peers = new Map(); // peer_id -> peer dict
    this.producers = new Map(); // producer id -> producer dict
    this.consumers = new Map(); // mid -> consumer info
    this.tiles = new Map(); // "<peer>:camera" | "<peer>:screen" -> tile parts
    this.audios = new Map(); // producer id -> <audio>
    this.mine = {}; // source -> producer id
    this.locked = new Set(); // kinds the chair locked for me
    this.lockedUsers = new Map(); // user id -> Set(kinds)
    this.quality = {};
    this.stats = {};
    this.floor = null;
    this.speaker = null;
    this.removed = new Map(); // user id -> name, removed by me (chair) this session
    this.offerChain = Promise.resolve();
    this.sendChain = Promise.resolve();
    this.pendingSubs = new Set();
    this.subTimer = null;
    this.tooMany = 0; // too_many refusals in a row
  }

  // --- messages ---------------------------------------------------------------------------
  say(text, isError = false) {
    const box = this.$("video-message");
    box.textContent = text;
    box.hidden = !text;
    box.classList.toggle("error", isError);
  }

  fail(error) {
    console.warn("video:", error);
    const known = {
      removed: t("The chair removed you from the video conference."),
      meeting_not_open: t("The video conference starts when the meeting is opened."),
      too_many: t("Too many video streams for one session; leave and join again."),
      timeout: t("The server does not answer; check the network."),
    }[error?.code];
    this.say(known || error?.message || String(error), true);
  }

  // --- lobby --------------------------------------------------------------------------------
  #wireLobby() {
    this.$("video-preview-start").addEventListener("click", () => this.preview().catch((e) => this.fail(e)));
    this.$("video-join").addEventListener("click", () => this.join());
    for (const id of ["video-camera", "video-mic"]) {
      this.$(id).addEventListener("change", () => {
        if (this.local) this.preview().catch((e) => this.fail(e));
      });
    }
    if (this.root.dataset.status !== "open") {
      this.$("video-join").disabled = true;
      this.say(t("The video conference starts when the meeting is opened."));
    }
  }

  async preview() {
    this.#stopLocal();
    const camera = this.$("video-camera").value;
    const mic = this.$("video-mic").value;
    const video = { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 20 } };
    if (camera) video.deviceId = { exact: camera };
    const audio = mic ? { deviceId: { exact: mic } } : true;
    try {
      this.local = await navigator.mediaDevices.getUserMedia({ audio, video });
    } catch (error) {
      try { // no camera (or refused): try the microphone alone
        this.local = await navigator.mediaDevices.getUserMedia({ audio });
        this.say(t("No camera available; you join with your microphone only."));
      } catch {
        this.local = null;
        throw new Error(t("Your browser did not give access to a camera or microphone.") + ` (${error.name})`);
      }
    }
    const preview = this.$("video-preview");
    preview.srcObject = this.local;
    this.$("video-preview-empty").hidden = this.local.getVideoTracks().length > 0;
    await this.#listDevices();
    return this.local;
  }

  async #listDevices() {
    const devices = await navigator.mediaDevices.enumerateDevices();
    const fill = (select, kind, label) => {
      const current = select.value || this.local?.getTracks().find((tr) => tr.kind === kind.slice(0, 5))
        ?.getSettings().deviceId || "";
      select.replaceChildren(h("option", { value: "", text: label }));
      let n = 0;
      for (const d of devices.filter((dev) => dev.kind === kind)) {
        n += 1;
        select.append(h("option", { value: d.deviceId, text: d.label || `${label} ${n}` }));
      }
      select.value = [...select.options].some((o) => o.value === current) ? current : "";
    };
    fill(this.$("video-camera"), "videoinput", t("Default camera"));
    fill(this.$("video-mic"), "audioinput", t("Default microphone"));
  }

  #stopLocal() {
    for (const track of this.local?.getTracks() ?? []) track.stop();
    this.local = null;
  }

  // --- joining --------------------------------------------------------------------------------
  async join() {
    const button = this.$("video-join");
    button.disabled = true;
    this.say(t("Joining…"));
    try {
      if (!this.local) await this.preview().catch((e) => this.say(e.message, true));
      this.wanted = true;
      if (!this.sig) this.#connect();
      if (this.sig.connected) await this.#enter();
      // otherwise the connect handler enters
    } catch (error) {
      this.wanted = false;
      this.fail(error);
      button.disabled = false;
    }
  }

  #connect() {
    const sig = this.sig = new MediaSignaling(this.meetingId);
    sig.onConnectionChange = (connected) => {
      if (!connected) {
        if (this.joined) this.say(t("Reconnecting…"));
        this.#teardown();
        return;
      }
      if (this.wanted && !this.joined) {
        this.#enter().catch((e) => {
          this.wanted = false;
          this.$("video-join").disabled = this.root.dataset.status !== "open";
          this.fail(e);
        });
      }
    };
    sig.onOffer = (e) => this.applyOffer(e.offer);
    sig.onProducerAdded = (e) => this.#producerAdded(e.producer);
    sig.onProducerClosed = (e) => this.#producerClosed(e.producer_id);
    sig.onProducerPaused = (e) => this.#producerPaused(e);
    sig.onPeerJoined = (e) => { this.peers.set(e.peer.peer_id, e.peer); this.render(); };
    sig.onPeerClosed = (e) => this.#peerClosed(e.peer_id);
    sig.onActiveSpeaker = (e) => { this.speaker = e.peer_id; this.render(); };
    sig.onFloor = (e) => this.#floor(e.holder);
    sig.onLock = (e) => this.#lock(e);
    sig.onClosed = (e) => { if (e.peer_id === this.joined?.peer_id) this.#closed(e.reason); };
    sig.onQuality = (e) => { this.quality = e.peers; this.#renderBadges(); };
    sig.onStats = (e) => { this.stats = Object.fromEntries(e.peers.map((p) => [p.peer_id, p])); this.#renderChair(); };
    sig.onTransport = () => {};
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
      this.#showRoom(true);
      this.recvPc = this.#newPc(joined.rtc_configuration, "recv");
      this.recvPc.ontrack = (e) => this.#onTrack(e);
      for (const producer of joined.producers) this.#producerAdded(producer);
      if (joined.can_publish && this.local?.getTracks().length) await this.#publish();
      else if (!joined.can_publish) this.say(t("Your role in this meeting receives video only."));
      this.render();
      if (this.floor) this.#floor(this.floor);
      if (!this.$("video-message").classList.contains("error")) this.say("");
    } finally {
      this.entering = false;
    }
  }

  #newPc(configuration, direction) {
    const pc = new RTCPeerConnection(configuration);
    pc.addEventListener("iceconnectionstatechange", () => {
      if (pc.iceConnectionState !== "failed" || pc !== (direction === "send" ? this.sendPc : this.recvPc)) return;
      if (direction === "send") this.#restartSend().catch((e) => this.fail(e));
      else this.sig.restartIce().then((r) => this.applyOffer(r.offer)).catch((e) => this.fail(e));
    });
    return pc;
  }

  async #publish() {
    const pc = this.sendPc = this.#newPc(this.joined.rtc_configuration, "send");
    for (const track of this.local.getTracks()) {
      pc.addTransceiver(track, { direction: "sendonly", streams: [this.local] });
    }
    const result = await this.#offerToServer();
    for (const producer of result.added) this.mine[producer.source] = producer.id;
    const startMuted = this.$("video-start-muted").checked;
    const cameraOff = this.$("video-start-camera-off").checked;
    if (this.mine.mic && (startMuted || this.locked.has("audio"))) await this.#setMine("mic", false, true);
    if (this.mine.camera && (cameraOff || this.locked.has("video"))) await this.#setMine("camera", false, true);
    this.#renderToolbar();
  }

  /** Offer the send transport's current state; the server answers (serialised). */
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

  // --- receiving ----------------------------------------------------------------------------
  /** Apply a server offer and answer it, then any offer that piled up meanwhile (in order).
   * The server recycles m-sections: a closed consumer's m-section comes back rejected (port
   * 0), which stops its transceiver and ends its track; later a new consumer takes that
   * index with a new mid, a new transceiver here (ontrack). Mids are never reused, and an
   * offer lists every live consumer, so the mid map is rebuilt from it. */
  applyOffer(offer) {
    if (!offer) return this.offerChain;
    const pc = this.recvPc;
    const run = async () => {
      let next = offer;
      while (next && pc === this.recvPc) {
        this.consumers = new Map(next.consumers.map((c) => [c.mid, c]));
        await pc.setRemoteDescription({ type: "offer", sdp: next.sdp });
        this.#dropClosedConsumers(next.consumers);
        await pc.setLocalDescription();
        next = (await this.sig.answer(pc.localDescription.sdp)).offer;
      }
    };
    this.offerChain = this.offerChain.then(run, run).catch((e) => this.fail(e));
    return this.offerChain;
  }

  /** Audio elements and tiles whose consumer is gone (its track ended) stop showing it. */
  #dropClosedConsumers(consumers) {
    const live = new Set(consumers.map((c) => c.producer_id));
    for (const [producerId, audio] of this.audios) {
      if (!live.has(producerId)) { audio.remove(); this.audios.delete(producerId); }
    }
    let changed = false;
    for (const tile of this.tiles.values()) {
      if (!tile.own && tile.producerId && !live.has(tile.producerId)) {
        tile.video.srcObject = null;
        tile.producerId = null;
        changed = true;
      }
    }
    if (changed) this.render();
  }

  #subscribeSoon(producerId) {
    this.pendingSubs.add(producerId);
    if (!this.subTimer) this.subTimer = setTimeout(() => this.#flushSubscribes(), 60);
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
          if (this.tooMany >= 3) this.say(t("Too many video streams for one session; leave and join again."), true);
          for (const id of batch) if (this.producers.has(id)) this.pendingSubs.add(id);
          const wait = error.code === "too_many" ? 3000 : 1000;
          if (!this.subTimer) this.subTimer = setTimeout(() => this.#flushSubscribes(), wait);
        } else {
          this.fail(error);
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

  #onTrack(event) {
    const info = this.consumers.get(event.transceiver.mid);
    if (!info) return;
    const track = event.track;
    if (track.kind === "audio") {
      this.audios.get(info.producer_id)?.remove();
      const audio = h("audio", { autoplay: true });
      audio.srcObject = new MediaStream([track]);
      this.$("video-audio").append(audio);
      this.audios.set(info.producer_id, audio);
      audio.play().catch(() => {});
      return;
    }
    const tile = this.#tile(info.producer_peer_id, info.source === "screen" ? "screen" : "camera");
    tile.video.srcObject = new MediaStream([track]);
    tile.producerId = info.producer_id;
    tile.video.play().catch(() => {});
    this.render();
  }

  #producerAdded(producer) {
    this.producers.set(producer.id, producer);
    if (producer.peer_id === this.joined?.peer_id) return;
    if (!this.peers.has(producer.peer_id)) {
      this.peers.set(producer.peer_id, { peer_id: producer.peer_id, user_id: producer.user_id,
        name: producer.name, site: producer.site, site_id: producer.site_id, role: producer.role,
        remote: Boolean(producer.remote) });
    }
    this.#subscribeSoon(producer.id);
    this.render();
  }

  #producerClosed(producerId) {
    const producer = this.producers.get(producerId);
    this.producers.delete(producerId);
    this.audios.get(producerId)?.remove();
    this.audios.delete(producerId);
    if (producer?.source === "screen") this.#dropTile(`${producer.peer_id}:screen`);
    else if (producer?.kind === "video") {
      const tile = this.tiles.get(`${producer.peer_id}:camera`);
      if (tile?.producerId === producerId) { tile.video.srcObject = null; tile.producerId = null; }
    }
    for (const [source, id] of Object.entries(this.mine)) if (id === producerId) delete this.mine[source];
    this.render();
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
    this.render();
  }

  #peerClosed(peerId) {
    this.peers.delete(peerId);
    for (const [id, producer] of this.producers) if (producer.peer_id === peerId) this.#producerClosed(id);
    this.#dropTile(`${peerId}:camera`);
    this.#dropTile(`${peerId}:screen`);
    this.render();
  }

  #floor(holder) {
    this.floor = holder;
    if (holder) this.layout = "speaker";
    this.render();
  }

  #lock(event) {
    const kinds = this.lockedUsers.get(event.user_id) ?? new Set();
    if (event.locked) kinds.add(event.kind); else kinds.delete(event.kind);
    this.lockedUsers.set(event.user_id, kinds);
    if (event.user_id === this.joined?.me.user_id) {
      this.locked = new Set(kinds);
      const source = event.kind === "audio" ? "mic" : "camera";
      if (event.locked) {
        const track = this.#localTrack(source);
        if (track) track.enabled = false;
        this.say(event.kind === "audio" ? t("The chair muted your microphone.") : t("The chair stopped your camera."));
      } else {
        this.say(event.kind === "audio" ? t("The chair allows you to speak: unmute when you are ready.")
          : t("The chair allows your camera again."));
      }
    }
    this.render();
  }

  #closed(reason) {
    const rejoin = REJOIN_AFTER[reason];
    this.#teardown();
    if (rejoin !== undefined && this.wanted) {
      this.say(t("The connection was lost; joining again…"));
      setTimeout(() => { if (this.wanted && !this.joined) this.#enter().catch((e) => this.fail(e)); }, rejoin * 1000);
      return;
    }
    this.wanted = false;
    this.#showRoom(false);
    const text = {
      removed: t("The chair removed you from the video conference."),
      "meeting-closed": t("The meeting was closed."),
    }[reason] || t("You left the video conference.");
    this.say(text, reason === "removed");
  }

  #teardown() {
    this.sendPc?.close();
    this.recvPc?.close();
    this.sendPc = this.recvPc = null;
    this.joined = null;
    if (this.screen) { for (const tr of this.screen.stream.getTracks()) tr.stop(); this.screen = null; }
    for (const audio of this.audios.values()) audio.remove();
    for (const tile of this.tiles.values()) tile.el.remove();
    if (this.subTimer) clearTimeout(this.subTimer);
    const removed = this.removed;
    this.#resetCall();
    this.removed = removed;
  }

  async leave() {
    this.wanted = false;
    try { if (this.joined) await this.sig.leave(); } catch { /* gone already */ }
    this.#teardown();
    this.#stopLocal();
    this.#showRoom(false);
    this.$("video-preview").srcObject = null;
    this.$("video-preview-empty").hidden = false;
    this.say(t("You left the video conference."));
  }

  #showRoom(inCall) {
    this.$("video-lobby").hidden = inCall;
    this.$("video-room").hidden = !inCall;
    this.$("video-join").disabled = !inCall && this.root.dataset.status !== "open";
    this.$("video-chair").hidden = !(inCall && this.joined?.can_chair);
  }

  // --- my controls -------------------------------------------------------------------------
  #wireRoom() {
    this.$("video-toggle-mic").addEventListener("click", () => this.toggle("mic"));
    this.$("video-toggle-camera").addEventListener("click", () => this.toggle("camera"));
    this.$("video-toggle-screen").addEventListener("click", () => this.toggleScreen());
    this.$("video-toggle-layout").addEventListener("click", () => {
      this.layout = this.layout === "grid" ? "speaker" : "grid";
      this.render();
    });
    this.$("video-leave").addEventListener("click", () => this.leave());
    this.$("video-mute-all").addEventListener("click", () => this.#chair(() => this.sig.muteAll(), t("Everyone else is muted.")));
    this.$("video-floor-clear").addEventListener("click", () => this.#chair(() => this.sig.giveFloor(null)));
  }

  #localTrack(source) {
    if (source === "mic") return this.local?.getAudioTracks()[0];
    if (source === "camera") return this.local?.getVideoTracks()[0];
    return null;
  }

  isOn(source) {
    const producer = this.producers.get(this.mine[source]);
    return Boolean(producer && !producer.paused);
  }

  async toggle(source) {
    if (!this.mine[source]) return;
    try {
      await this.#setMine(source, !this.isOn(source));
    } catch (error) {
      if (error.code === "muted_by_chair") this.say(error.message || t("The chair muted your microphone."), true);
      else this.fail(error);
    }
    this.render();
  }

  async #setMine(source, on, quiet = false) {
    const id = this.mine[source];
    const track = this.#localTrack(source);
    if (on) {
      const kind = source === "mic" ? "audio" : "video";
      if (this.locked.has(kind) && !quiet) {
        throw Object.assign(new Error(kind === "audio" ? t("The chair muted your microphone; wait until the chair allows you to speak.")
          : t("The chair stopped your camera; wait until the chair allows it.")), { code: "muted_by_chair" });
      }
      await this.sig.unmute(id);
      if (track) track.enabled = true;
    } else {
      if (track) track.enabled = false;
      try { await this.sig.mute(id); } catch (error) { if (!quiet) throw error; }
    }
    const producer = this.producers.get(id);
    if (producer) { producer.paused = !on; producer.paused_by = on ? null : producer.paused_by || "self"; }
  }

  async toggleScreen() {
    if (!this.sendPc) return;
    try {
      if (this.screen) await this.#stopScreen();
      else await this.#startScreen();
    } catch (error) {
      if (error.name !== "NotAllowedError") this.fail(error);
    }
    this.render();
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

  // --- chair controls ------------------------------------------------------------------------
  async #chair(action, done) {
    try {
      await action();
      if (done) this.say(done);
    } catch (error) {
      this.fail(error);
    }
  }

  #people() {
    // user id (or peer id, for people at another node) -> {user_id, name, site, ..., peers: []}
    const people = new Map();
    for (const peer of this.peers.values()) {
      const key = peer.remote ? `peer:${peer.peer_id}` : peer.user_id;
      const person = people.get(key) ?? { ...peer, peers: [] };
      person.peers.push(peer.peer_id);
      people.set(key, person);
    }
    return [...people.values()].sort((a, b) => (a.site || "").localeCompare(b.site || "", "vi")
      || a.name.localeCompare(b.name, "vi"));
  }

  #renderChair() {
    const box = this.$("video-participants");
    if (!this.joined?.can_chair) return;
    const me = this.joined.me.user_id;
    const list = h("ul", { class: "video-people" });
    let site;
    for (const person of this.#people()) {
      if (person.site !== site) {
        site = person.site;
        if (site && !person.remote) {
          const siteId = person.site_id;
          list.append(h("li", { class: "video-site" }, h("strong", { text: site }),
            h("button", { type: "button", class: "small", "data-site": siteId,
                          onclick: () => this.#chair(() => this.sig.chairMute({ site_id: siteId }, "audio"), t("The site is muted.")) },
              t("Mute site"))));
        }
      }
      const stat = person.peers.map((id) => this.stats[id]).find(Boolean);
      if (person.remote) {
        list.append(this.#remotePerson(person));
        continue;
      }
      const kinds = this.lockedUsers.get(person.user_id) ?? new Set();
      const target = { user_id: person.user_id };
      const has = this.floor?.user_id === person.user_id;
      const buttons = person.user_id === me ? [] : [
        kinds.has("audio")
          ? h("button", { type: "button", class: "small", "data-chair": "allow-audio", onclick: () => this.#chair(() => this.sig.chairAllow(target, "audio")) }, t("Allow to speak"))
          : h("button", { type: "button", class: "small", "data-chair": "mute", onclick: () => this.#chair(() => this.sig.chairMute(target, "audio")) }, t("Mute")),
        kinds.has("video")
          ? h("button", { type: "button", class: "small", "data-chair": "allow-video", onclick: () => this.#chair(() => this.sig.chairAllow(target, "video")) }, t("Allow video"))
          : h("button", { type: "button", class: "small", "data-chair": "stop-video", onclick: () => this.#chair(() => this.sig.chairMute(target, "video")) }, t("Stop video")),
        h("button", { type: "button", class: "small", "data-chair": "remove", onclick: () => {
          if (!window.confirm(t("Remove this person from the video conference?"))) return;
          this.removed.set(person.user_id, person.name);
          this.#chair(() => this.sig.remove(person.user_id));
        } }, t("Remove from video")),
      ];
      buttons.unshift(has
        ? h("button", { type: "button", class: "small active", "data-chair": "floor", onclick: () => this.#chair(() => this.sig.giveFloor(null)) }, t("Has the floor"))
        : h("button", { type: "button", class: "small", "data-chair": "floor", onclick: () => this.#chair(() => this.sig.giveFloor(person.user_id)) }, t("Give the floor")));
      const numbers = stat ? [
        `${Math.round((stat.bitrate_in_bps + stat.bitrate_out_bps) / 1000)} kbit/s`,
        `${t("loss")} ${(100 * Math.max(stat.loss_up, stat.loss_down)).toFixed(1)}%`,
        stat.rtt_ms !== null ? `RTT ${Math.round(stat.rtt_ms)} ms` : null,
      ].filter(Boolean).join(" · ") : "";
      list.append(h("li", { class: "video-person", "data-user": person.user_id },
        h("span", { class: `quality q-${this.#qualityOf(person.peers[0])}`, title: t(QUALITY_TEXT[this.#qualityOf(person.peers[0])] ?? "") },
          h("i"), h("i"), h("i")),
        h("span", { class: "video-person-name", text: person.name }),
        kinds.has("audio") ? h("span", { class: "badge", text: t("muted by the chair") }) : null,
        h("span", { class: "muted video-person-stats", text: numbers }),
        h("span", { class: "video-person-buttons" }, ...buttons)));
    }
    for (const [userId, name] of this.removed) {
      if (this.#people().some((p) => p.user_id === userId)) { this.removed.delete(userId); continue; }
      list.append(h("li", { class: "video-person removed" }, h("span", { class: "video-person-name", text: name }),
        h("span", { class: "badge", text: t("removed") }),
        h("button", { type: "button", class: "small", onclick: () => {
          this.removed.delete(userId);
          this.#chair(() => this.sig.readmit(userId), t("They may join the video conference again."));
          this.#renderChair();
        } }, t("Let back in"))));
    }
    box.replaceChildren(list);
  }

  /** A person at another cascade node: controlled through their producers, on their node. */
  #remotePerson(person) {
    const peerId = person.peer_id;
    const mic = this.#producerOf(peerId, "mic");
    const camera = this.#producerOf(peerId, "camera");
    const toggle = (producer, kind, [onText, offText, onKey, offKey]) => producer && (producer.paused
      ? h("button", { type: "button", class: "small", "data-chair": offKey, onclick: () => this.#chair(() => this.sig.chairAllow({ producer_id: producer.id }, kind)) }, t(offText))
      : h("button", { type: "button", class: "small", "data-chair": onKey, onclick: () => this.#chair(() => this.sig.chairMute({ producer_id: producer.id }, kind)) }, t(onText)));
    const has = Boolean(this.floor?.peer_ids?.includes(peerId));
    const buttons = [
      has
        ? h("button", { type: "button", class: "small active", "data-chair": "floor", onclick: () => this.#chair(() => this.sig.giveFloor(null)) }, t("Has the floor"))
        : h("button", { type: "button", class: "small", "data-chair": "floor", onclick: () => this.#chair(() => this.sig.giveFloorToPeer(peerId)) }, t("Give the floor")),
      toggle(mic, "audio", ["Mute", "Allow to speak", "mute", "allow-audio"]),
      toggle(camera, "video", ["Stop video", "Allow video", "stop-video", "allow-video"]),
    ].filter(Boolean);
    return h("li", { class: "video-person", "data-peer": peerId },
      h("span", { class: "video-person-name", text: person.name }),
      h("span", { class: "muted video-person-stats", text: person.site || "" }),
      h("span", { class: "video-person-buttons" }, ...buttons));
  }

  #qualityOf(peerId) {
    return this.quality[peerId] || "connecting";
  }

  // --- rendering ---------------------------------------------------------------------------
  #tile(peerId, source) {
    const key = `${peerId}:${source}`;
    let tile = this.tiles.get(key);
    if (tile) return tile;
    const own = peerId === this.joined?.peer_id;
    const video = h("video", { autoplay: true, playsinline: true, muted: true, class: own && source === "camera" ? "mirror" : null });
    video.muted = true; // audio plays through <audio> elements
    const placeholder = h("div", { class: "tile-placeholder" });
    const name = h("span", { class: "tile-name" });
    const site = h("span", { class: "tile-site" });
    const mic = h("span", { class: "tile-badge tile-mic", text: t("Mic off") });
    const floor = h("span", { class: "tile-badge tile-floor", text: t("Has the floor") });
    const quality = h("span", { class: "quality" }, h("i"), h("i"), h("i"));
    const el = h("div", { class: `tile tile-${source}`, "data-peer": peerId, "data-source": source },
      video, placeholder, h("div", { class: "tile-label" }, quality, name, site), mic, floor);
    tile = { el, video, placeholder, name, site, mic, floor, quality, peerId, source, own, producerId: null };
    this.tiles.set(key, tile);
    this.$("video-tiles").append(el);
    return tile;
  }

  #dropTile(key) {
    this.tiles.get(key)?.el.remove();
    this.tiles.delete(key);
  }

  /** Producer of a peer by source. */
  #producerOf(peerId, source) {
    for (const p of this.producers.values()) if (p.peer_id === peerId && p.source === source) return p;
    return null;
  }

  #mainKey() {
    const tiles = this.tiles;
    if (this.floor) {
      for (const peerId of this.floor.peer_ids ?? []) if (tiles.has(`${peerId}:camera`)) return `${peerId}:camera`;
      for (const [key, tile] of tiles) {
        if (tile.source === "camera" && this.floor.user_id != null
            && this.peers.get(tile.peerId)?.user_id === this.floor.user_id) return key;
      }
    }
    for (const [key, tile] of tiles) if (tile.source === "screen") return key;
    if (this.speaker && tiles.has(`${this.speaker}:camera`)) return `${this.speaker}:camera`;
    for (const [key, tile] of tiles) if (!tile.own) return key;
    return tiles.keys().next().value ?? null;
  }

  render() {
    if (!this.joined) return;
    // A tile per peer (camera), plus one per screen share; mine first.
    const me = this.joined.me;
    this.#tile(this.joined.peer_id, "camera");
    const ownTile = this.tiles.get(`${this.joined.peer_id}:camera`);
    if (this.local && ownTile.local !== this.local) {
      ownTile.local = this.local;
      ownTile.video.srcObject = new MediaStream(this.local.getVideoTracks());
      ownTile.video.play().catch(() => {});
    }
    for (const peer of this.peers.values()) {
      if (peer.peer_id !== this.joined.peer_id) this.#tile(peer.peer_id, "camera");
    }
    for (const p of this.producers.values()) {
      if (p.source === "screen" && p.peer_id !== this.joined.peer_id) this.#tile(p.peer_id, "screen");
    }
    const stage = this.$("video-stage");
    stage.className = `video-stage layout-${this.layout}`;
    const main = this.layout === "speaker" ? this.#mainKey() : null;
    for (const [key, tile] of this.tiles) {
      const peer = tile.own ? { ...me } : this.peers.get(tile.peerId) ?? {};
      const camera = this.#producerOf(tile.peerId, tile.source);
      const mic = this.#producerOf(tile.peerId, "mic");
      const showVideo = tile.own ? this.isOn("camera") && this.local?.getVideoTracks().length
        : Boolean(camera && !camera.paused && tile.video.srcObject);
      tile.el.classList.toggle("is-main", key === main);
      tile.el.classList.toggle("is-speaking", tile.peerId === this.speaker);
      tile.el.classList.toggle("no-video", !showVideo);
      tile.name.textContent = tile.own ? `${peer.name} (${t("you")})` : peer.name || "";
      tile.site.textContent = tile.source === "screen" ? t("Screen") : peer.site || "";
      tile.placeholder.textContent = initials(peer.name);
      const micOff = tile.source === "camera" && (!mic || mic.paused);
      tile.mic.hidden = !micOff;
      tile.mic.textContent = mic?.paused_by === "chair" || this.lockedUsers.get(peer.user_id)?.has("audio")
        ? t("Muted by the chair") : t("Mic off");
      const holds = this.floor && (this.floor.peer_ids?.includes(tile.peerId)
        || (this.floor.user_id != null && this.floor.user_id === peer.user_id));
      tile.floor.hidden = !(holds && tile.source === "camera");
    }
    this.$("video-toggle-layout").textContent = this.layout === "grid" ? t("Speaker view") : t("Grid view");
    this.#renderToolbar();
    this.#renderBadges();
    this.#renderChair();
  }

  #renderBadges() {
    for (const tile of this.tiles.values()) {
      const level = this.#qualityOf(tile.peerId);
      tile.quality.className = `quality q-${level}`;
      tile.quality.title = t(QUALITY_TEXT[level] ?? "");
    }
  }

  #renderToolbar() {
    const set = (id, pressed, text, disabled = false) => {
      const b = this.$(id);
      b.setAttribute("aria-pressed", String(pressed));
      b.textContent = text;
      b.disabled = disabled;
      b.classList.toggle("off", pressed);
    };
    const micOn = this.isOn("mic");
    const camOn = this.isOn("camera");
    set("video-toggle-mic", !micOn, micOn ? t("Mute") : (this.locked.has("audio") ? t("Muted by the chair") : t("Unmute")), !this.mine.mic);
    set("video-toggle-camera", !camOn, camOn ? t("Stop camera") : (this.locked.has("video") ? t("Camera stopped by the chair") : t("Start camera")), !this.mine.camera);
    set("video-toggle-screen", Boolean(this.screen), this.screen ? t("Stop sharing") : t("Share screen"),
        !this.sendPc || !navigator.mediaDevices?.getDisplayMedia);
  }

  // --- diagnostics (used by tests; harmless in production) --------------------------------------
  /** Inbound RTP per kind and peer, and the ICE candidates both connections use. */
  async inbound() {
    const out = [];
    if (!this.recvPc) return out;
    (await this.recvPc.getStats()).forEach((r) => {
      if (r.type !== "inbound-rtp") return;
      const info = this.consumers.get(r.mid) ?? {};
      out.push({ kind: r.kind, mid: r.mid, peer: info.producer_peer_id, source: info.source,
                 packets: r.packetsReceived || 0, frames: r.framesDecoded || 0 });
    });
    return out;
  }

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

await loadCatalog();
const root = document.getElementById("video");
if (root) new VideoConference(root);
