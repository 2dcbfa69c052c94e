// Additions to the video conference (video.js) that work on its DOM, not its state: a
// microphone level meter in the pre-join check, and on every tile a button to pin it (it
// becomes this person's main view, whatever the floor or the active speaker) and one to show
// it full screen. video.js renders tiles and resets the stage's class at will: the pin lives
// in the stage's data-pinned attribute and the tile's is-pinned class, which it leaves alone.
import { t } from "./i18n.js";

/** Level 0..1 of an audio stream, read by an AnalyserNode (WebAudio); no audio is played. */
export class MicMeter {
  /** @param {HTMLMeterElement} meter */
  constructor(meter) {
    this.meter = meter;
    /** @type {MediaStream|null} */ this.stream = null;
    /** @type {AudioContext|null} */ this.ctx = null;
    /** @type {AnalyserNode|null} */ this.analyser = null;
    /** @type {MediaStreamAudioSourceNode|null} */ this.source = null;
    this.frame = 0;
  }

  /** Follow `stream` (null: stop). @param {MediaStream|null} stream */
  follow(stream) {
    if (stream === this.stream) return;
    this.stop();
    this.stream = stream;
    const track = stream?.getAudioTracks()[0];
    if (!stream || !track) { this.meter.value = 0; return; }
    const Context = globalThis.AudioContext ?? /** @type {any} */ (globalThis).webkitAudioContext;
    if (!Context) return;
    this.ctx = this.ctx ?? new Context();
    this.ctx.resume().catch(() => {});
    this.source = this.ctx.createMediaStreamSource(new MediaStream([track]));
    this.analyser = this.ctx.createAnalyser();
    this.analyser.fftSize = 1024;
    this.source.connect(this.analyser);  // never to the destination: nothing is heard
    const samples = new Uint8Array(this.analyser.fftSize);
    const read = () => {
      if (!this.analyser) return;
      this.analyser.getByteTimeDomainData(samples);
      let sum = 0;
      for (const s of samples) sum += ((s - 128) / 128) ** 2;
      // RMS, scaled so that speech at a normal distance fills about half the meter.
      this.meter.value = Math.min(1, Math.sqrt(sum / samples.length) * 4);
      this.frame = requestAnimationFrame(read);
    };
    read();
  }

  stop() {
    cancelAnimationFrame(this.frame);
    this.source?.disconnect();
    this.source = null;
    this.analyser = null;
    this.stream = null;
    this.meter.value = 0;
  }
}

export class VideoTiles {
  /** @param {HTMLElement} root the #video section */
  constructor(root) {
    this.root = root;
    this.stage = /** @type {HTMLElement|null} */ (root.querySelector("#video-stage"));
    this.tiles = /** @type {HTMLElement|null} */ (root.querySelector("#video-tiles"));
    this.preview = /** @type {HTMLVideoElement|null} */ (root.querySelector("#video-preview"));
    this.#meter();
    if (this.tiles) {
      new MutationObserver(() => this.#decorate()).observe(this.tiles, { childList: true });
      this.#decorate();
    }
  }

  #meter() {
    const mic = this.root.querySelector("#video-mic");
    if (!this.preview || !mic) return;
    const meter = Object.assign(document.createElement("meter"), {
      id: "video-mic-level", min: 0, max: 1, low: 0.05, high: 0.85, optimum: 0.4, value: 0,
    });
    const label = document.createElement("label");
    label.className = "video-meter";
    label.append(t("Microphone level"), meter);
    mic.closest("label")?.after(label);
    const level = new MicMeter(meter);
    // video.js sets the preview's srcObject when the check starts and clears it on joining;
    // a light poll follows it without hooking into video.js.
    setInterval(() => {
      const stream = /** @type {MediaStream|null} */ (this.preview?.srcObject ?? null);
      const lobby = /** @type {HTMLElement|null} */ (this.root.querySelector("#video-lobby"));
      level.follow(stream && !lobby?.hidden ? stream : null);
    }, 300);
  }

  #decorate() {
    if (!this.tiles || !this.stage) return;
    for (const tile of /** @type {NodeListOf<HTMLElement>} */ (this.tiles.querySelectorAll(".tile"))) {
      if (tile.querySelector(".tile-tools")) continue;
      const pin = Object.assign(document.createElement("button"), { type: "button", className: "tile-pin", textContent: t("Pin") });
      pin.setAttribute("aria-pressed", "false");
      pin.setAttribute("aria-label", t("Pin this video"));
      pin.addEventListener("click", () => this.pin(tile));
      const full = Object.assign(document.createElement("button"), { type: "button", className: "tile-full", textContent: t("Full screen") });
      full.setAttribute("aria-label", t("Show this video full screen"));
      full.addEventListener("click", () => this.fullScreen(tile));
      const tools = document.createElement("div");
      tools.className = "tile-tools";
      tools.append(pin, full);
      tile.append(tools);
    }
    const pinned = this.stage.dataset.pinned;
    if (pinned && !this.#byKey(pinned)) this.unpin();  // the pinned person left
  }

  /** @param {HTMLElement} tile */
  key(tile) { return `${tile.dataset.peer}:${tile.dataset.source}`; }

  /** @param {string} key */
  #byKey(key) {
    return [...(this.tiles?.querySelectorAll(".tile") ?? [])].find((el) => this.key(/** @type {HTMLElement} */ (el)) === key);
  }

  /** Pin `tile` (again: unpin). @param {HTMLElement} tile */
  pin(tile) {
    if (!this.stage) return;
    const key = this.key(tile);
    const again = this.stage.dataset.pinned === key;
    this.unpin();
    if (again) return;
    this.stage.dataset.pinned = key;
    tile.classList.add("is-pinned");
    const button = tile.querySelector(".tile-pin");
    button?.setAttribute("aria-pressed", "true");
    if (button) button.textContent = t("Unpin");
  }

  unpin() {
    if (!this.stage) return;
    delete this.stage.dataset.pinned;
    for (const el of this.tiles?.querySelectorAll(".tile.is-pinned") ?? []) {
      el.classList.remove("is-pinned");
      const button = el.querySelector(".tile-pin");
      button?.setAttribute("aria-pressed", "false");
      if (button) button.textContent = t("Pin");
    }
  }

  /** @param {HTMLElement} tile */
  fullScreen(tile) {
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    else tile.requestFullscreen?.().catch(() => {});
  }
}

