// One page at a time: pdf.js renders the sanitised PDF into a canvas (capped for iPads,
// devicePixelRatio aware); the server's raster image stands in, page by page, when pdf.js
// fails or when the document may only be viewed as images. Pinch-zoom and pan use pointer
// events (gestures.js). Knows nothing about the network: the page passes in URLs.

import { Gestures } from "./gestures.js";

// iOS Safari refuses canvases over 16.7 Mpx; old Android GPUs over 4096 px a side.
export const MAX_CANVAS_PIXELS = 16_777_216;
export const MAX_CANVAS_SIDE = 4096;
// The whole page is rendered within a smaller budget (half the limit: memory and time on old
// tablets); past it, the screen-sized detail canvas brings back full sharpness.
export const PAGE_CANVAS_PIXELS = 8_388_608;
export const MIN_ZOOM = 1;   // 1 = the page fits the stage's width (fitScale)
// Past this width (CSS px) a page gets no easier to read, only longer to scroll: wide desktop
// screens show it at this width, or whole if that is larger.
export const READ_WIDTH_MAX = 1280;
export const MAX_ZOOM = 6;
const RENDER_DELAY_MS = 120; // re-render after a gesture settles, not on every frame

/**
 * @typedef {object} ViewDocument
 * @property {string} id
 * @property {number} [version]
 * @property {number} pageCount
 * @property {Array<[number, number]>} pageSizes  width, height in PDF points (rotation applied)
 * @property {string|null} pdfUrl                 null: raster images only (confidential/view-only)
 * @property {(page: number) => string} pageImageUrl  0-based page → server raster URL
 */

/**
 * @typedef {object} ViewState  device-independent, so a phone can follow a tablet
 * @property {number} page   0-based
 * @property {number} zoom   relative to the fit scale
 * @property {number} cx     page point (PDF points) at the centre of the stage
 * @property {number} cy
 */

/** The largest backing size ≤ the caps for a canvas of cssW × cssH at dpr. */
export function capCanvas(cssW, cssH, dpr, maxPixels = MAX_CANVAS_PIXELS, maxSide = MAX_CANVAS_SIDE) {
  let ratio = dpr;
  ratio = Math.min(ratio, maxSide / Math.max(cssW, 1), maxSide / Math.max(cssH, 1));
  ratio = Math.min(ratio, Math.sqrt(maxPixels / Math.max(cssW * cssH, 1)));
  const width = Math.max(1, Math.floor(cssW * ratio));
  const height = Math.max(1, Math.floor(cssH * ratio));
  return { width, height, ratio, capped: ratio < dpr - 1e-6 };
}

/**
 * CSS pixels per PDF point at zoom 1 for a page of size {w, h} on a sw × sh stage. Tablets in
 * either orientation read at page width (a landscape tablet fitting the page's height showed
 * it 411 px wide); past READ_WIDTH_MAX the width stops growing, unless the whole page fits
 * larger than that (a landscape page on a wide screen).
 */
export function fitScale({ w, h }, sw, sh) {
  const width = sw / w;
  if (w * width <= READ_WIDTH_MAX) return width;
  return Math.max(READ_WIDTH_MAX / w, Math.min(width, sh / h));
}

let pdfjsPromise = null;

/** pdf.js, the modern build where the browser has what it needs, else the legacy build. */
export function loadPdfjs() {
  if (!pdfjsPromise) {
    const modern = typeof Map.prototype.getOrInsertComputed === "function"
      && typeof Promise.withResolvers === "function"
      && typeof Uint8Array.fromBase64 === "function";
    const base = modern ? "/vendor/pdfjs/build" : "/vendor/pdfjs/legacy/build";
    pdfjsPromise = import(`${base}/pdf.min.mjs`).then((lib) => {
      lib.GlobalWorkerOptions.workerSrc = `${base}/pdf.worker.min.mjs`;
      return lib;
    });
    pdfjsPromise.catch(() => { pdfjsPromise = null; });
  }
  return pdfjsPromise;
}

/** Abort a pdf.js loading task and free its document and worker; never throws. */
function destroyTask(task) {
  if (!task) return;
  try {
    task.destroy().catch(() => {});
  } catch (error) {
    console.warn("pdf.js task could not be destroyed", error);
  }
}

function releaseCanvas(canvas) {
  // Safari keeps a canvas' memory until its size is zeroed.
  canvas.width = 0;
  canvas.height = 0;
  canvas.remove();
}

export class PdfView {
  /** @param {HTMLElement} stage  the positioned element the page lives in */
  constructor(stage) {
    this.stage = stage;
    this.pageBox = document.createElement("div");
    this.pageBox.className = "page-box";
    stage.append(this.pageBox);
    /** @type {ViewDocument|null} */
    this.doc = null;
    this.page = 0;
    this.zoom = 1;
    this.cx = 0;
    this.cy = 0;
    this.pdf = null;
    this.rasterPages = new Set(); // pages pdf.js failed on: shown as server images
    this.renderToken = 0;
    this.renderTask = null;
    this.renderedScale = 0;
    this.renderTimer = 0;
    this.detailToken = 0;
    this.baseCapped = false;
    this.frame = 0;
    /** Who gets single-pointer input first (the annotation layer); see gestures.js. */
    this.delegate = null;
    /** @type {(view: PdfView) => void} every transform change (ink redraw, presenter broadcast) */
    this.onView = () => {};
    /** @type {(page: number) => void} */
    this.onPage = () => {};
    /** @type {(reason: string) => void} the user moved the view by hand */
    this.onUserNavigate = () => {};
    this.gestures = new Gestures(this);
    this.size = { w: stage.clientWidth, h: stage.clientHeight };
    new ResizeObserver(() => this.#resized()).observe(stage);
  }

  // --- opening --------------------------------------------------------------

  /** @param {ViewDocument} doc  @param {number} [page] */
  async open(doc, page = 0) {
    this.close();
    this.doc = doc;
    this.page = Math.min(Math.max(page, 0), doc.pageCount - 1);
    this.zoom = 1;
    this.#topOfPage();
    this.stage.dataset.page = String(this.page);
    delete this.stage.dataset.rendered;
    this.onPage(this.page);
    this.#applyTransform(true);
    if (doc.pdfUrl) {
      try {
        const pdfjs = await loadPdfjs();
        if (this.doc !== doc) return; // another document was opened meanwhile
        const task = pdfjs.getDocument({
          url: doc.pdfUrl, withCredentials: true,
          cMapUrl: "/vendor/pdfjs/cmaps/", standardFontDataUrl: "/vendor/pdfjs/standard_fonts/",
          wasmUrl: "/vendor/pdfjs/wasm/", iccUrl: "/vendor/pdfjs/iccs/",
        });
        this.loadingTask = task;
        const pdf = await task.promise;
        if (this.doc !== doc) { destroyTask(task); return; }
        this.pdf = pdf;
      } catch (error) {
        if (this.doc !== doc) return; // closed while loading: the task was destroyed
        console.warn("pdf.js could not open the document; using page images", error);
      }
    }
    if (this.doc === doc) this.#render();
  }

  close() {
    this.renderToken += 1;
    this.renderTask?.cancel();
    this.renderTask = null;
    // The loading task owns the document and its worker (pdf.js 6.5 has no
    // PDFDocumentProxy.destroy: docs/architecture.md, "pdf.js").
    destroyTask(this.loadingTask);
    this.loadingTask = null;
    this.pdf = null;
    this.doc = null;
    delete this.stage.dataset.renderedDocument;
    this.rasterPages.clear();
    this.renderedScale = 0;
    for (const child of [...this.pageBox.children]) {
      if (child instanceof HTMLCanvasElement) releaseCanvas(child); else child.remove();
    }
  }

  /** A page image that did not exist yet (still rendering on the server) may now. */
  pageBecameAvailable(page) {
    if (page === this.page && this.stage.dataset.rendered === "missing") this.#render();
  }

  // --- geometry ---------------------------------------------------------------

  pageSize(page = this.page) {
    const [w, h] = this.doc?.pageSizes[page] ?? [595, 842];
    return { w, h };
  }

  /** CSS pixels per PDF point at zoom 1. */
  fitScale(page = this.page, sw = this.stage.clientWidth || 1, sh = this.stage.clientHeight || 1) {
    return fitScale(this.pageSize(page), sw, sh);
  }

  scale() { return this.fitScale() * this.zoom; }

  /** Where the page's top-left corner sits in stage pixels, and the scale. */
  transform() {
    const s = this.scale();
    return {
      scale: s,
      x: this.stage.clientWidth / 2 - this.cx * s,
      y: this.stage.clientHeight / 2 - this.cy * s,
    };
  }

  /** Client (viewport) coordinates → page points. */
  clientToPage(clientX, clientY) {
    const r = this.stage.getBoundingClientRect();
    const t = this.transform();
    return { x: (clientX - r.left - t.x) / t.scale, y: (clientY - r.top - t.y) / t.scale };
  }

  /** Page points → stage pixels. */
  pageToStage(x, y) {
    const t = this.transform();
    return { x: t.x + x * t.scale, y: t.y + y * t.scale };
  }

  /** Turn to a view (from the presenter, or a search hit); user=true counts as manual. */
  setView(state, { user = false } = {}) {
    if (!this.doc) return;
    const page = Math.min(Math.max(state.page, 0), this.doc.pageCount - 1);
    const turned = page !== this.page;
    this.page = page;
    this.zoom = Math.min(Math.max(state.zoom ?? 1, MIN_ZOOM), MAX_ZOOM);
    if (state.cx !== undefined && state.cy !== undefined) {
      this.cx = state.cx;
      this.cy = state.cy;
    } else if (turned) {
      this.#topOfPage();
    }
    if (turned) this.#pageChanged();
    if (user) this.onUserNavigate("view");
    this.#applyTransform(true);
  }

  goTo(page, { user = false } = {}) {
    if (!this.doc || page < 0 || page >= this.doc.pageCount) return false;
    if (page === this.page) return true;
    this.page = page;
    this.zoom = 1;
    this.#topOfPage();
    this.#pageChanged();
    if (user) this.onUserNavigate("page");
    this.#applyTransform(true);
    return true;
  }

  next(user = true) { return this.goTo(this.page + 1, { user }); }
  previous(user = true) { return this.goTo(this.page - 1, { user }); }

  zoomBy(factor, focus = null, user = true) {
    const f = focus ?? { x: this.stage.clientWidth / 2, y: this.stage.clientHeight / 2 };
    const t = this.transform();
    const px = (f.x - t.x) / t.scale;
    const py = (f.y - t.y) / t.scale;
    this.zoom = Math.min(Math.max(this.zoom * factor, MIN_ZOOM), MAX_ZOOM);
    this.#keepPointAt(px, py, f);
    if (user) this.onUserNavigate("zoom");
    this.#applyTransform(true);
  }

  /** The page point under a stage point. */
  pagePointAt(screen) {
    const t = this.transform();
    return { x: (screen.x - t.x) / t.scale, y: (screen.y - t.y) / t.scale };
  }

  /** Move the page by screen pixels (a finger dragging it). */
  panBy(dx, dy, user = true) {
    const s = this.scale();
    this.cx -= dx / s;
    this.cy -= dy / s;
    if (user) this.onUserNavigate("pan");
    this.#applyTransform();
  }

  /** Zoom to `zoom` with the page point p under the stage point screen (pinch). */
  zoomAround(zoom, p, screen, user = true) {
    this.zoom = Math.min(Math.max(zoom, MIN_ZOOM), MAX_ZOOM);
    this.#keepPointAt(p.x, p.y, screen);
    if (user) this.onUserNavigate("zoom");
    this.#applyTransform();
  }

  /** Scroll by screen pixels; false when the page could not move that way (at its edge). */
  scrollBy(dx, dy, user = true) {
    const s = this.scale();
    const before = { x: this.cx, y: this.cy };
    this.cx += dx / s;
    this.cy += dy / s;
    this.#clamp();
    const moved = Math.abs(this.cx - before.x) > 0.01 || Math.abs(this.cy - before.y) > 0.01;
    if (moved && user) this.onUserNavigate("pan");
    this.#applyTransform();
    return moved;
  }

  /** The whole page width is on screen (a sideways swipe may turn the page). */
  fitsAcross() {
    return this.pageSize().w * this.scale() <= this.stage.clientWidth + 1;
  }

  /** Show the bottom of the page (turning back with the wheel). */
  toBottom() {
    this.cy = this.pageSize().h;
    this.#applyTransform(true);
  }

  fit(user = true) {
    this.zoom = 1;
    this.#topOfPage();
    if (user) this.onUserNavigate("zoom");
    this.#applyTransform(true);
  }

  #topOfPage() {
    const { w } = this.pageSize();
    const s = this.scale();
    this.cx = w / 2;
    this.cy = (this.stage.clientHeight || 1) / 2 / s;
  }

  #keepPointAt(px, py, screen) {
    const s = this.scale();
    this.cx = px + (this.stage.clientWidth / 2 - screen.x) / s;
    this.cy = py + (this.stage.clientHeight / 2 - screen.y) / s;
  }

  // A bar appearing above the stage, or the tablet turning, keeps the top-left of what the
  // reader was looking at in place (not the centre: the text would jump).
  #resized() {
    const before = this.size;
    this.size = { w: this.stage.clientWidth, h: this.stage.clientHeight };
    if (this.doc && before.w && before.h) {
      const oldScale = this.fitScale(this.page, before.w, before.h) * this.zoom;
      const left = this.cx - before.w / 2 / oldScale;
      const top = this.cy - before.h / 2 / oldScale;
      const s = this.scale();
      this.cx = left + this.size.w / 2 / s;
      this.cy = top + this.size.h / 2 / s;
    }
    this.#applyTransform(true);
  }

  #clamp() {
    const { w, h } = this.pageSize();
    const s = this.scale();
    const clampAxis = (c, size, view) => {
      const half = view / 2 / s;
      return size * s <= view ? size / 2 : Math.min(Math.max(c, half), size - half);
    };
    this.cx = clampAxis(this.cx, w, this.stage.clientWidth);
    this.cy = clampAxis(this.cy, h, this.stage.clientHeight);
  }

  #pageChanged() {
    this.stage.dataset.page = String(this.page);
    delete this.stage.dataset.rendered; // until this page's own layer is on screen
    this.renderToken += 1;
    this.renderTask?.cancel();
    this.renderedScale = 0;
    this.onPage(this.page);
    this.#render();
  }

  #applyTransform(immediate = false) {
    if (!this.doc) return;
    this.#clamp();
    if (this.frame && !immediate) return;
    cancelAnimationFrame(this.frame);
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.#paintTransform();
    });
    if (immediate) this.#paintTransform();
  }

  #paintTransform() {
    const t = this.transform();
    const { w, h } = this.pageSize();
    if (!this.renderedScale) this.#sizeBox(w, h, t.scale);
    const k = t.scale / this.renderedScale;
    this.pageBox.style.transform = `translate(${t.x}px, ${t.y}px) scale(${k})`;
    this.stage.dataset.zoom = this.zoom.toFixed(3);
    this.onView(this);
    clearTimeout(this.renderTimer);
    if (Math.abs(k - 1) > 0.01) this.renderTimer = setTimeout(() => this.#render(), RENDER_DELAY_MS);
    else if (this.baseCapped) this.renderTimer = setTimeout(() => this.#renderDetail(), RENDER_DELAY_MS);
  }

  #sizeBox(w, h, scale) {
    this.renderedScale = scale;
    this.pageBox.style.width = `${w * scale}px`;
    this.pageBox.style.height = `${h * scale}px`;
  }

  // --- rendering ----------------------------------------------------------------

  async #render() {
    if (!this.doc) return;
    const token = ++this.renderToken;
    const page = this.page;
    const scale = this.scale();
    const { w, h } = this.pageSize(page);
    if (!this.pdf || this.rasterPages.has(page)) {
      this.#showImage(page, token, scale);
      return;
    }
    const cap = capCanvas(w * scale, h * scale, window.devicePixelRatio || 1, PAGE_CANVAS_PIXELS);
    let canvas = null;
    try {
      const pdfPage = await this.pdf.getPage(page + 1);
      if (token !== this.renderToken) return;
      const viewport = pdfPage.getViewport({ scale: cap.ratio * scale });
      canvas = document.createElement("canvas");
      canvas.className = "page-layer";
      canvas.width = cap.width;
      canvas.height = cap.height;
      this.renderTask?.cancel();
      const task = pdfPage.render({
        canvasContext: canvas.getContext("2d", { alpha: false }), viewport,
        transform: [cap.width / viewport.width, 0, 0, cap.height / viewport.height, 0, 0],
      });
      this.renderTask = task;
      await task.promise;
      if (token !== this.renderToken) { releaseCanvas(canvas); return; }
      this.#swapLayer(canvas, w, h, scale, "pdf", cap.capped);
    } catch (error) {
      if (canvas) releaseCanvas(canvas);
      if (error?.name === "RenderingCancelledException" || token !== this.renderToken) return;
      console.warn(`pdf.js failed on page ${page + 1}; using the server image`, error);
      this.rasterPages.add(page);
      this.#showImage(page, token, scale);
    }
  }

  #showImage(page, token, scale) {
    const { w, h } = this.pageSize(page);
    const current = /** @type {HTMLImageElement|null} */ (this.pageBox.querySelector("img.page-layer"));
    if (current && current.dataset.page === String(page) && this.stage.dataset.rendered === "image") {
      this.#sizeBox(w, h, scale);
      this.#paintTransform();
      return; // the same image scales with CSS; the server raster has one resolution
    }
    const img = new Image();
    img.className = "page-layer";
    img.alt = "";
    img.decoding = "async";
    img.draggable = false;
    img.dataset.page = String(page);
    img.onload = () => {
      if (token === this.renderToken) this.#swapLayer(img, w, h, this.scale(), "image", false);
    };
    img.onerror = () => {
      if (token !== this.renderToken) return;
      const missing = document.createElement("div");
      missing.className = "page-layer page-missing";
      this.#swapLayer(missing, w, h, this.scale(), "missing", false);
    };
    img.src = this.doc.pageImageUrl(page);
  }

  #swapLayer(layer, w, h, scale, how, capped) {
    for (const old of [...this.pageBox.children]) {
      if (old instanceof HTMLCanvasElement) releaseCanvas(old); else old.remove();
    }
    this.pageBox.append(layer);
    this.#sizeBox(w, h, scale);
    this.baseCapped = capped;
    this.stage.dataset.rendered = how;
    // Which document (and version) is on screen, not just which one was asked for.
    this.stage.dataset.renderedDocument = `${this.doc.id}:${this.doc.version ?? ""}`;
    this.stage.dataset.capped = String(capped);
    this.stage.dataset.detail = "false";
    this.#paintTransform();
  }

  /**
   * Past the canvas cap the whole page is rendered below screen resolution; the visible
   * part is then rendered again, sharp, in a second canvas no larger than the screen.
   */
  async #renderDetail() {
    if (!this.pdf || !this.baseCapped) return;
    const token = this.renderToken;
    const detailToken = ++this.detailToken;
    const t = this.transform();
    const s = t.scale;
    const { w, h } = this.pageSize();
    const x0 = Math.max(0, -t.x / s);
    const y0 = Math.max(0, -t.y / s);
    const x1 = Math.min(w, (this.stage.clientWidth - t.x) / s);
    const y1 = Math.min(h, (this.stage.clientHeight - t.y) / s);
    if (x1 <= x0 || y1 <= y0) return;
    const dpr = window.devicePixelRatio || 1;
    const cap = capCanvas((x1 - x0) * s, (y1 - y0) * s, dpr);
    const canvas = document.createElement("canvas");
    canvas.className = "page-detail";
    canvas.width = cap.width;
    canvas.height = cap.height;
    try {
      const pdfPage = await this.pdf.getPage(this.page + 1);
      const px = cap.ratio * s; // canvas pixels per point
      this.detailTask?.cancel();
      this.detailTask = pdfPage.render({
        canvasContext: canvas.getContext("2d", { alpha: false }),
        viewport: pdfPage.getViewport({ scale: px }),
        transform: [1, 0, 0, 1, -x0 * px, -y0 * px],
      });
      await this.detailTask.promise;
    } catch {
      releaseCanvas(canvas);
      return; // cancelled, or failed: the capped page stays
    }
    if (token !== this.renderToken || detailToken !== this.detailToken) { releaseCanvas(canvas); return; }
    for (const old of this.pageBox.querySelectorAll(".page-detail")) releaseCanvas(old);
    const r = this.renderedScale; // the page box's own CSS scale
    Object.assign(canvas.style, {
      left: `${x0 * r}px`, top: `${y0 * r}px`, width: `${(x1 - x0) * r}px`, height: `${(y1 - y0) * r}px`,
    });
    this.pageBox.append(canvas);
    this.stage.dataset.detail = "true";
  }
}
