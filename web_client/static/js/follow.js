// Follow the presenter: a following tablet turns to the presenter's document, page, zoom and
// scroll; touching the page by hand leaves follow mode, one tap rejoins. The presenter's side
// broadcasts its view and the laser pointer. Network calls go through DocumentsClient.

const UPDATE_EVERY_MS = 120;  // presenter view broadcasts, at most
const POINTER_EVERY_MS = 40;  // the server drops more than 30 a second
const POINTER_HIDE_MS = 4000; // a pointer that stopped moving fades

const clamp01 = (v) => Math.min(Math.max(v, 0), 1);

/**
 * The view as the protocol carries it: zoom relative to the fit scale, scroll as ratios of
 * the scrollable extent (0 when the page fits), so screens of any size can follow.
 * @param {import("./pdf-view.js").PdfView} view
 */
export function toPresent(view) {
  const { w, h } = view.pageSize();
  const s = view.scale();
  const vw = view.stage.clientWidth;
  const vh = view.stage.clientHeight;
  const ex = w * s - vw;
  const ey = h * s - vh;
  return {
    documentId: Number(view.doc.id), page: view.page, zoom: view.zoom,
    scrollX: ex > 0 ? clamp01((view.cx * s - vw / 2) / ex) : 0,
    scrollY: ey > 0 ? clamp01((view.cy * s - vh / 2) / ey) : 0,
  };
}

/** A PresentState → this screen's view state ({page, zoom, cx, cy}). */
export function fromPresent(view, state) {
  const page = state.page;
  const [w, h] = view.doc.pageSizes[page] ?? [595, 842];
  const zoom = Math.min(Math.max(state.zoom ?? 1, 1), 6);
  const s = view.fitScale(page) * zoom;
  const vw = view.stage.clientWidth;
  const vh = view.stage.clientHeight;
  const ex = w * s - vw;
  const ey = h * s - vh;
  return {
    page, zoom,
    cx: ex > 0 ? (clamp01(state.scroll_x ?? 0) * ex + vw / 2) / s : w / 2,
    cy: ey > 0 ? (clamp01(state.scroll_y ?? 0) * ey + vh / 2) / s : h / 2,
  };
}

export class Follow {
  /**
   * @param {object} o
   * @param {import("./pdf-view.js").PdfView} o.view
   * @param {import("./documents-api.js").DocumentsClient} o.client
   * @param {(documentId: number, version: number) => Promise<boolean>} o.openDocument
   * @param {HTMLElement} o.laserDot
   */
  constructor({ view, client, openDocument, laserDot }) {
    this.view = view;
    this.client = client;
    this.openDocument = openDocument;
    this.laserDot = laserDot;
    this.following = true;
    this.presenting = false;
    this.state = null;      // the last PresentState applied
    this.lastSeq = -1;
    this.pointer = null;
    this.sendTimer = 0;
    this.lastSent = 0;
    this.lastPointer = 0;
    this.pointerTimer = 0;
    this.hideTimer = 0;
    this.applying = null;
    /** @type {() => void} the chip and buttons need redrawing */
    this.onChange = () => {};
    /** @type {(error: Error) => void} */
    this.onError = () => {};
    /** @type {(name: string) => boolean} may we take over from this presenter? */
    this.confirmTakeOver = () => false;
    this.takeOver = false;
  }

  get active() { return Boolean(this.state?.active); }

  get presenterName() { return this.state?.presenter?.name ?? ""; }

  isMe(state = this.state) {
    return state?.presenter && this.client.userId !== null
      && String(state.presenter.user_id) === this.client.userId;
  }

  /** A present:state (live or from present:get); stale ones (lower seq) are ignored. */
  async handleState(state) {
    if (!state || state.seq < this.lastSeq) return;
    this.lastSeq = state.seq;
    this.state = state;
    this.presenting = Boolean(state.active && this.isMe(state));
    if (!state.active) this.showPointer(null);
    this.onChange();
    if (state.active && this.following && !this.presenting) await this.#apply(state);
  }

  async #apply(state) {
    const run = async () => {
      const doc = this.view.doc;
      if (!doc || String(doc.id) !== String(state.document_id) || doc.version !== state.version) {
        const opened = await this.openDocument(state.document_id, state.version);
        if (!opened || this.state !== state) return;
      }
      this.view.setView(fromPresent(this.view, this.state), { user: false });
      this.view.stage.dataset.followedSeq = String(state.seq);
    };
    // One at a time: a page turn that arrives while a document opens waits for it.
    this.applying = (this.applying ?? Promise.resolve()).then(run, run);
    try { await this.applying; } catch (error) { this.onError(error); }
  }

  /** The user moved the page by hand: stop following (only while someone presents). */
  userNavigated() {
    if (this.presenting) { this.#scheduleUpdate(); return; }
    if (this.following && this.active) {
      this.following = false;
      this.onChange();
    }
  }

  /** One tap: follow again, and jump to where the presenter is now. */
  async rejoin() {
    this.following = true;
    this.onChange();
    if (this.active && !this.presenting) await this.#apply(this.state);
  }

  /** After a reconnect or on first load. */
  async refresh() {
    try { await this.handleState(await this.client.presentGet()); } catch (error) { this.onError(error); }
  }

  // --- presenter side ------------------------------------------------------------

  /**
   * Start presenting. While someone else presents the server refuses (`presenter_busy`)
   * unless `takeOver`: `confirmTakeOver(name)` asks the user first.
   */
  async startPresenting() {
    if (!this.view.doc) return;
    this.takeOver = false;
    if (this.active && !this.isMe()) {
      if (!this.confirmTakeOver(this.presenterName)) return;
      this.takeOver = true;
    }
    this.presenting = true;
    this.onChange();
    await this.#sendUpdate();
  }

  async stopPresenting() {
    this.presenting = false;
    this.onChange();
    try { await this.handleState(await this.client.presentStop()); } catch (error) { this.onError(error); }
  }

  /** The presenter's view moved (any reason): broadcast it, throttled. */
  viewChanged() {
    if (this.presenting) this.#scheduleUpdate();
    this.#placePointer();
  }

  #scheduleUpdate() {
    if (this.sendTimer) return;
    const wait = Math.max(0, UPDATE_EVERY_MS - (performance.now() - this.lastSent));
    this.sendTimer = setTimeout(() => { this.sendTimer = 0; this.#sendUpdate(); }, wait);
  }

  async #sendUpdate() {
    if (!this.presenting || !this.view.doc) return;
    this.lastSent = performance.now();
    const takeOver = this.takeOver;
    this.takeOver = false;  // once: later updates are ours
    try {
      const state = await this.client.presentUpdate(toPresent(this.view), takeOver);
      if (state.seq >= this.lastSeq) { this.lastSeq = state.seq; this.state = state; this.onChange(); }
    } catch (error) {
      if (error.code === "presenter_busy") {  // someone else presents (or took over)
        this.presenting = false;
        await this.refresh();
        this.onChange();
      }
      this.onError(error);
    }
  }

  /** The laser tool moved (page points) or lifted (null). */
  laser(point) {
    if (!this.presenting || !this.view.doc) return;
    this.showPointer(point ? { documentId: this.view.doc.id, page: this.view.page, ...point } : null);
    const send = () => {
      this.lastPointer = performance.now();
      this.client.presentPointer(Number(this.view.doc.id), this.view.page, this.pendingPointer)
        .catch((error) => this.onError(error));
    };
    this.pendingPointer = point;
    clearTimeout(this.pointerTimer);
    const wait = POINTER_EVERY_MS - (performance.now() - this.lastPointer);
    if (wait <= 0 || point === null) send(); else this.pointerTimer = setTimeout(send, wait);
  }

  // --- the laser dot ----------------------------------------------------------------

  showPointer(pointer) {
    this.pointer = pointer && pointer.x !== null && pointer.y !== null ? pointer : null;
    clearTimeout(this.hideTimer);
    if (this.pointer) this.hideTimer = setTimeout(() => this.showPointer(null), POINTER_HIDE_MS);
    this.#placePointer();
  }

  #placePointer() {
    const p = this.pointer;
    const doc = this.view.doc;
    const visible = p && doc && String(p.documentId) === String(doc.id) && p.page === this.view.page;
    this.laserDot.hidden = !visible;
    if (!visible) return;
    const at = this.view.pageToStage(p.x, p.y);
    this.laserDot.style.transform = `translate(${at.x}px, ${at.y}px)`;
  }
}
