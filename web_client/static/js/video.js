// The meeting's video conference on the page: lobby (device choice + preview), the call (grid
// or speaker view, own mute/camera/screen buttons), the chair's panel (video-chair.js) and
// per-participant quality. The session (video-session.js) holds the connections and what is
// known of the call; this module shows it and turns clicks into session calls.
import { loadCatalog, t } from "./i18n.js";
import { ChairPanel } from "./video-chair.js";
import { h, initials, QUALITY_TEXT } from "./video-dom.js";
import { layerWant } from "./simulcast.js";
import { ChairLockError, VideoSession } from "./video-session.js";
import { VideoTiles } from "./video-tiles.js";

class VideoConference {
  /** @param {HTMLElement} root */
  constructor(root) {
    this.root = root;
    this.meetingId = Number.parseInt(root.dataset.meetingId, 10);
    /** @type {(id: string) => HTMLElement} */
    this.$ = (id) => document.getElementById(id);
    this.session = new VideoSession(this.meetingId);
    /** @type {"grid"|"speaker"} */
    this.layout = "grid";
    /** @type {Map<string, any>} "<peer>:camera" | "<peer>:screen" -> tile parts */
    this.tiles = new Map();
    /** @type {Map<string, HTMLAudioElement>} producer id -> <audio> */
    this.audios = new Map();
    this.chair = new ChairPanel(this.$("video-participants"), this.session, {
      run: (action, done) => this.#chair(action, done),
    });
    this.#listen();
    this.#wireLobby();
    this.#wireRoom();
    globalThis.hopsoVideo = this.session; // diagnostics handle (tests read getStats through it)
  }

  #listen() {
    const s = this.session;
    s.startOptions = () => ({ muted: this.#input("video-start-muted").checked,
                              cameraOff: this.#input("video-start-camera-off").checked });
    s.onChange = () => this.render();
    s.onQualityChange = () => this.#renderBadges();
    s.onStatsChange = () => this.chair.render();
    s.onError = (error) => this.fail(error);
    s.onNotice = (notice) => {
      if (notice === "reconnecting") this.say(t("Reconnecting…"));
      else if (notice === "receive-only") this.say(t("Your role in this meeting receives video only."));
      else if (notice === "too-many") this.say(t("Too many video streams for one session; leave and join again."), true);
      else if (notice === "rejoining") this.say(t("The connection was lost; joining again…"));
      else if (notice === "audio-only") this.say(t("Your connection is too weak for video: audio only until it recovers."), true);
      else if (notice === "video-back") this.say(t("Video is back."));
    };
    s.onJoinFailed = (error) => {
      this.#button("video-join").disabled = this.root.dataset.status !== "open";
      this.fail(error);
    };
    s.onInCall = () => this.#showRoom(true);
    s.onEntered = () => { if (!this.$("video-message").classList.contains("error")) this.say(""); };
    s.onEnded = (reason) => {
      this.#showRoom(false);
      const text = {
        removed: t("The chair removed you from the video conference."),
        "meeting-closed": t("The meeting was closed."),
      }[reason] || t("You left the video conference.");
      this.say(text, reason === "removed");
    };
    s.onTrack = (info, track) => this.#onTrack(info, track);
    s.onConsumers = (live) => this.#dropClosedConsumers(live);
    s.onProducerClosed = (producerId, producer) => {
      this.audios.get(producerId)?.remove();
      this.audios.delete(producerId);
      if (producer?.source === "screen") this.#dropTile(`${producer.peer_id}:screen`);
      else if (producer?.kind === "video") {
        const tile = this.tiles.get(`${producer.peer_id}:camera`);
        if (tile?.producerId === producerId) { tile.video.srcObject = null; tile.producerId = null; }
      }
    };
    s.onPeerClosed = (peerId) => {
      this.#dropTile(`${peerId}:camera`);
      this.#dropTile(`${peerId}:screen`);
    };
    s.onFloor = (holder) => {
      if (holder) this.layout = "speaker";
      this.render();
    };
    s.onMyLock = (event) => {
      if (event.locked) {
        this.say(event.kind === "audio" ? t("The chair muted your microphone.") : t("The chair stopped your camera."));
      } else {
        this.say(event.kind === "audio" ? t("The chair allows you to speak: unmute when you are ready.")
          : t("The chair allows your camera again."));
      }
    };
    s.onTeardown = () => {
      for (const audio of this.audios.values()) audio.remove();
      for (const tile of this.tiles.values()) tile.el.remove();
      this.tiles = new Map();
      this.audios = new Map();
    };
  }

  // Elements of video.html by kind, for the type checker (the lookup is the same).
  /** @param {string} id */
  #button(id) { return /** @type {HTMLButtonElement} */ (this.$(id)); }
  /** @param {string} id */
  #input(id) { return /** @type {HTMLInputElement} */ (this.$(id)); }
  /** @param {string} id */
  #select(id) { return /** @type {HTMLSelectElement} */ (this.$(id)); }
  /** @param {string} id */
  #video(id) { return /** @type {HTMLVideoElement} */ (this.$(id)); }

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

  async #chair(action, done) {
    try {
      await action();
      if (done) this.say(done);
    } catch (error) {
      this.fail(error);
    }
  }

  // --- lobby --------------------------------------------------------------------------------
  #wireLobby() {
    this.$("video-preview-start").addEventListener("click", () => this.preview().catch((e) => this.fail(e)));
    this.$("video-join").addEventListener("click", () => this.join());
    for (const id of ["video-camera", "video-mic"]) {
      this.$(id).addEventListener("change", () => {
        if (this.session.local) this.preview().catch((e) => this.fail(e));
      });
    }
    if (this.root.dataset.status !== "open") {
      this.#button("video-join").disabled = true;
      this.say(t("The video conference starts when the meeting is opened."));
    }
  }

  async preview() {
    const s = this.session;
    s.stopLocal();
    const camera = this.#select("video-camera").value;
    const mic = this.#select("video-mic").value;
    /** @type {MediaTrackConstraints} */
    const video = { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 20 } };
    if (camera) video.deviceId = { exact: camera };
    const audio = mic ? { deviceId: { exact: mic } } : true;
    try {
      s.local = await navigator.mediaDevices.getUserMedia({ audio, video });
    } catch (error) {
      try { // no camera (or refused): try the microphone alone
        s.local = await navigator.mediaDevices.getUserMedia({ audio });
        this.say(t("No camera available; you join with your microphone only."));
      } catch {
        s.local = null;
        throw new Error(t("Your browser did not give access to a camera or microphone.") + ` (${error.name})`);
      }
    }
    const preview = this.#video("video-preview");
    preview.srcObject = s.local;
    this.$("video-preview-empty").hidden = s.local.getVideoTracks().length > 0;
    await this.#listDevices();
    return s.local;
  }

  async #listDevices() {
    const devices = await navigator.mediaDevices.enumerateDevices();
    const fill = (select, kind, label) => {
      const current = select.value || this.session.local?.getTracks().find((tr) => tr.kind === kind.slice(0, 5))
        ?.getSettings().deviceId || "";
      select.replaceChildren(h("option", { value: "", text: label }));
      let n = 0;
      for (const d of devices.filter((dev) => dev.kind === kind)) {
        n += 1;
        select.append(h("option", { value: d.deviceId, text: d.label || `${label} ${n}` }));
      }
      select.value = [...select.options].some((o) => o.value === current) ? current : "";
    };
    fill(this.#select("video-camera"), "videoinput", t("Default camera"));
    fill(this.#select("video-mic"), "audioinput", t("Default microphone"));
  }

  // --- joining and leaving --------------------------------------------------------------------
  async join() {
    const button = this.#button("video-join");
    button.disabled = true;
    this.say(t("Joining…"));
    try {
      if (!this.session.local) await this.preview().catch((e) => this.say(e.message, true));
      await this.session.join();
    } catch (error) {
      this.fail(error);
      button.disabled = false;
    }
  }

  async leave() {
    await this.session.leave();
    this.#showRoom(false);
    this.#video("video-preview").srcObject = null;
    this.$("video-preview-empty").hidden = false;
    this.say(t("You left the video conference."));
  }

  #showRoom(inCall) {
    this.$("video-lobby").hidden = inCall;
    this.$("video-room").hidden = !inCall;
    this.#button("video-join").disabled = !inCall && this.root.dataset.status !== "open";
    this.$("video-chair").hidden = !(inCall && this.session.joined?.can_chair);
  }

  // --- receiving ----------------------------------------------------------------------------
  /** Audio elements and tiles whose consumer is gone (its track ended) stop showing it. */
  #dropClosedConsumers(live) {
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

  #onTrack(info, track) {
    if (track.kind === "audio") {
      this.audios.get(info.producer_id)?.remove();
      const audio = /** @type {HTMLAudioElement} */ (h("audio", { autoplay: true }));
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

  // --- my controls -------------------------------------------------------------------------
  #wireRoom() {
    this.$("video-toggle-mic").addEventListener("click", () => this.toggle("mic"));
    this.$("video-toggle-camera").addEventListener("click", () => this.toggle("camera"));
    this.$("video-toggle-screen").addEventListener("click", () => this.session.toggleScreen());
    this.$("video-toggle-layout").addEventListener("click", () => {
      this.layout = this.layout === "grid" ? "speaker" : "grid";
      this.render();
    });
    this.$("video-leave").addEventListener("click", () => this.leave());
    this.$("video-mute-all").addEventListener("click", () => this.#chair(() => this.session.sig.muteAll(), t("Everyone else is muted.")));
    this.$("video-floor-clear").addEventListener("click", () => this.#chair(() => this.session.sig.giveFloor(null)));
  }

  async toggle(source) {
    const s = this.session;
    if (!s.mine[source]) return;
    try {
      await s.setMine(source, !s.isOn(source));
    } catch (error) {
      if (error instanceof ChairLockError) {
        this.say(error.kind === "audio" ? t("The chair muted your microphone; wait until the chair allows you to speak.")
          : t("The chair stopped your camera; wait until the chair allows it."), true);
      } else if (error.code === "muted_by_chair") {
        this.say(error.message || t("The chair muted your microphone."), true);
      } else {
        this.fail(error);
      }
    }
    this.render();
  }

  // --- rendering ---------------------------------------------------------------------------
  #tile(peerId, source) {
    const key = `${peerId}:${source}`;
    let tile = this.tiles.get(key);
    if (tile) return tile;
    const own = peerId === this.session.joined?.peer_id;
    const video = /** @type {HTMLVideoElement} */ (h("video", { autoplay: true, playsinline: true, muted: true, class: own && source === "camera" ? "mirror" : null }));
    video.muted = true; // audio plays through <audio> elements
    const placeholder = h("div", { class: "tile-placeholder" });
    const name = h("span", { class: "tile-name" });
    const site = h("span", { class: "tile-site" });
    const mic = h("span", { class: "tile-badge tile-mic", text: t("Mic off") });
    const floor = h("span", { class: "tile-badge tile-floor", text: t("Has the floor") });
    const quality = h("span", { class: "quality" }, h("i"), h("i"), h("i"));
    const el = h("div", { class: `tile tile-${source}`, "data-peer": peerId, "data-source": source },
      video, placeholder, h("div", { class: "tile-label" }, quality, name, site), mic, floor);
    tile = { el, video, placeholder, name, site, mic, floor, quality, peerId, source, own, producerId: null, local: null };
    this.tiles.set(key, tile);
    this.$("video-tiles").append(el);
    return tile;
  }

  #dropTile(key) {
    this.tiles.get(key)?.el.remove();
    this.tiles.delete(key);
  }

  #mainKey() {
    const s = this.session;
    const tiles = this.tiles;
    if (s.floor) {
      for (const peerId of s.floor.peer_ids ?? []) if (tiles.has(`${peerId}:camera`)) return `${peerId}:camera`;
      for (const [key, tile] of tiles) {
        if (tile.source === "camera" && s.floor.user_id != null
            && s.peers.get(tile.peerId)?.user_id === s.floor.user_id) return key;
      }
    }
    for (const [key, tile] of tiles) if (tile.source === "screen") return key;
    if (s.speaker && tiles.has(`${s.speaker}:camera`)) return `${s.speaker}:camera`;
    for (const [key, tile] of tiles) if (!tile.own) return key;
    return tiles.keys().next().value ?? null;
  }

  render() {
    const s = this.session;
    if (!s.joined) return;
    // A tile per peer (camera), plus one per screen share; mine first.
    const me = s.joined.me;
    this.#tile(s.joined.peer_id, "camera");
    const ownTile = this.tiles.get(`${s.joined.peer_id}:camera`);
    if (s.local && ownTile.local !== s.local) {
      ownTile.local = s.local;
      ownTile.video.srcObject = new MediaStream(s.local.getVideoTracks());
      ownTile.video.play().catch(() => {});
    }
    for (const peer of s.peers.values()) {
      if (peer.peer_id !== s.joined.peer_id) this.#tile(peer.peer_id, "camera");
    }
    for (const p of s.producers.values()) {
      if (p.source === "screen" && p.peer_id !== s.joined.peer_id) this.#tile(p.peer_id, "screen");
    }
    const stage = this.$("video-stage");
    stage.className = `video-stage layout-${this.layout}`;
    const main = this.layout === "speaker" ? this.#mainKey() : null;
    for (const [key, tile] of this.tiles) {
      /** @type {Partial<import("./video-session.js").Peer>} */
      const peer = tile.own ? { ...me } : s.peers.get(tile.peerId) ?? {};
      const camera = s.producerOf(tile.peerId, tile.source);
      const mic = s.producerOf(tile.peerId, "mic");
      const showVideo = tile.own ? s.isOn("camera") && s.local?.getVideoTracks().length
        : Boolean(camera && !camera.paused && tile.video.srcObject);
      tile.el.classList.toggle("is-main", key === main);
      tile.el.classList.toggle("is-speaking", tile.peerId === s.speaker);
      tile.el.classList.toggle("no-video", !showVideo);
      tile.name.textContent = tile.own ? `${peer.name} (${t("you")})` : peer.name || "";
      tile.site.textContent = tile.source === "screen" ? t("Screen") : peer.site || "";
      tile.placeholder.textContent = initials(peer.name);
      const micOff = tile.source === "camera" && (!mic || mic.paused);
      tile.mic.hidden = !micOff;
      tile.mic.textContent = mic?.paused_by === "chair" || s.lockedUsers.get(peer.user_id)?.has("audio")
        ? t("Muted by the chair") : t("Mic off");
      const holds = s.floor && (s.floor.peer_ids?.includes(tile.peerId)
        || (s.floor.user_id != null && s.floor.user_id === peer.user_id));
      tile.floor.hidden = !(holds && tile.source === "camera");
    }
    this.#wantLayers(main);
    this.$("video-toggle-layout").textContent = this.layout === "grid" ? t("Speaker view") : t("Grid view");
    this.#renderToolbar();
    this.#renderBadges();
    this.chair.render();
  }

  /** Each remote camera/screen tile asks for the layer it needs (video-tiles.js). @param {string|null} main */
  #wantLayers(main) {
    const s = this.session;
    const shown = typeof document === "undefined" || document.visibilityState !== "hidden";
    /** @type {Map<string, "high"|"low"|"off">} */
    const wants = new Map();
    for (const [key, tile] of this.tiles) {
      const producer = tile.own ? null : s.producerOf(tile.peerId, tile.source);
      if (!producer) continue;
      wants.set(producer.id, layerWant({ layout: this.layout, main: key === main,
                                         tiles: this.tiles.size, shown: shown && !tile.el.hidden }));
    }
    s.wantLayers(wants);
  }

  #renderBadges() {
    for (const tile of this.tiles.values()) {
      const level = this.session.qualityOf(tile.peerId);
      tile.quality.className = `quality q-${level}`;
      tile.quality.title = t(QUALITY_TEXT[level] ?? "");
    }
  }

  #renderToolbar() {
    const s = this.session;
    const set = (id, pressed, text, disabled = false) => {
      const b = this.#button(id);
      b.setAttribute("aria-pressed", String(pressed));
      b.textContent = text;
      b.disabled = disabled;
      b.classList.toggle("off", pressed);
    };
    const micOn = s.isOn("mic");
    const camOn = s.isOn("camera");
    set("video-toggle-mic", !micOn, micOn ? t("Mute") : (s.locked.has("audio") ? t("Muted by the chair") : t("Unmute")), !s.mine.mic);
    set("video-toggle-camera", !camOn, camOn ? t("Stop camera") : (s.locked.has("video") ? t("Camera stopped by the chair") : t("Start camera")), !s.mine.camera);
    set("video-toggle-screen", Boolean(s.screen), s.screen ? t("Stop sharing") : t("Share screen"),
        !s.sendPc || !navigator.mediaDevices?.getDisplayMedia);
  }
}

await loadCatalog();
const root = document.getElementById("video");
if (root) {
  new VideoConference(root);
  new VideoTiles(root);  // mic level meter, pin and full screen (video-tiles.js)
}
