// The annotation layer over a PdfView: pen (pressure from PointerEvent.pressure),
// highlighter, eraser (hit-test → delete op), text notes, select (share/delete one), and
// the presenter's laser. Shapes are kept in page points (origin top-left), so they sit on
// the same spot at every zoom and on every screen. Undo/redo send ordinary ops.

import { newId } from "./annotation-store.js";
import { HIGHLIGHTER, NOTE, bounds, drawAnnotation, hitTest } from "./ink-shapes.js";

export const PEN_COLORS = ["#1a237e", "#000000", "#c62828", "#2e7d32"];
export const HIGHLIGHT_COLORS = ["#ffeb3b", "#76ff03", "#ff80ab", "#40c4ff"];
export const PEN_WIDTHS = [1.2, 2.5, 5];
const MAX_POINTS = 5000;           // the server's per-stroke limit
const ERASER_RADIUS_PX = 12;       // on screen, whatever the zoom
const TAP_SLOP_PX = 10;

const round = (v) => Math.round(v * 100) / 100;

function makeCanvas(className) {
  const canvas = document.createElement("canvas");
  canvas.className = className;
  return canvas;
}

export class InkLayer {
  /**
   * @param {import("./pdf-view.js").PdfView} view
   * @param {import("./annotation-store.js").AnnotationStore|null} store
   */
  constructor(view, store = null) {
    this.view = view;
    this.store = store;
    this.base = makeCanvas("ink-layer");
    this.live = makeCanvas("ink-layer ink-live");
    view.stage.append(this.base, this.live);
    this.tool = "hand";
    this.penColor = PEN_COLORS[0];
    this.penWidth = PEN_WIDTHS[1];
    this.highlightColor = HIGHLIGHT_COLORS[0];
    this.shareNew = false;
    this.penSeen = false;
    this.stroke = null;
    this.erasing = null;
    this.selected = null;
    this.history = new Map(); // page → {undo: [], redo: []}
    this.frame = 0;
    /** @type {(op: object) => void} an op to send (already shown locally) */
    this.onOp = () => {};
    /** @type {(point: {x:number,y:number}|null) => void} */
    this.onLaser = () => {};
    /** @type {(at: {x:number,y:number}, existing: object|null) => void} */
    this.onNoteRequest = () => {};
    /** @type {(annotation: object|null) => void} */
    this.onSelect = () => {};
    /** @type {() => void} undo/redo availability changed */
    this.onHistory = () => {};
    view.delegate = this;
    new ResizeObserver(() => this.redraw()).observe(view.stage);
  }

  setStore(store) {
    this.store = store;
    this.history.clear();
    this.select(null);
    this.redraw();
    this.onHistory();
  }

  setTool(tool) {
    if (this.stroke) this.cancel();
    this.tool = tool;
    this.view.stage.dataset.tool = tool;
    if (tool !== "select") this.select(null);
  }

  // --- rendering --------------------------------------------------------------

  redraw() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.#paintBase();
      this.#paintLive();
    });
  }

  #fit(canvas) {
    const dpr = window.devicePixelRatio || 1;
    const w = this.view.stage.clientWidth;
    const h = this.view.stage.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    return ctx;
  }

  visibleAnnotations() {
    if (!this.store || !this.view.doc) return [];
    const hidden = this.erasing ?? new Set();
    return this.store.visible(this.view.page).filter((a) => !hidden.has(a.id));
  }

  #paintBase() {
    const ctx = this.#fit(this.base);
    const t = this.view.transform();
    const shown = this.visibleAnnotations();
    for (const ann of shown) drawAnnotation(ctx, ann, t);
    // For tests and assistive tools: what is on this page, whose, and how shared.
    const stage = this.view.stage;
    stage.dataset.annotations = shown.map((a) => a.id).join(" ");
    stage.dataset.shared = shown.filter((a) => a.visibility !== "private").map((a) => a.id).join(" ");
  }

  #paintLive() {
    const ctx = this.#fit(this.live);
    const t = this.view.transform();
    if (this.stroke?.kind) drawAnnotation(ctx, this.stroke, t);
    if (this.selected) {
      const ann = this.store?.get(this.view.page, this.selected);
      if (!ann) { this.select(null); return; }
      const b = bounds(ann);
      ctx.setLineDash([6, 4]);
      ctx.strokeStyle = "#0b4f9c";
      ctx.lineWidth = 2;
      ctx.strokeRect(t.x + b.x0 * t.scale - 4, t.y + b.y0 * t.scale - 4,
                     (b.x1 - b.x0) * t.scale + 8, (b.y1 - b.y0) * t.scale + 8);
    }
    if (this.eraserAt) {
      ctx.strokeStyle = "#5f6b7a";
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.arc(this.eraserAt.x, this.eraserAt.y, ERASER_RADIUS_PX, 0, 2 * Math.PI);
      ctx.stroke();
    }
  }

  // --- pointer input (called by PdfView's gesture router) -------------------------

  /** Does this pointer draw (true) or pan/zoom the page (false)? */
  accepts(e) {
    if (!this.store || this.tool === "hand") return false;
    if (e.pointerType === "pen") this.penSeen = true;
    // Once a stylus has been used, fingers move the page: a resting palm never draws.
    if (e.pointerType === "touch" && this.penSeen && ["pen", "highlighter", "eraser"].includes(this.tool)) {
      return false;
    }
    return true;
  }

  busy() { return Boolean(this.stroke || this.erasing); }

  #point(e) {
    const p = this.view.clientToPage(e.clientX, e.clientY);
    const { w, h } = this.view.pageSize();
    return { x: round(Math.min(Math.max(p.x, 0), w)), y: round(Math.min(Math.max(p.y, 0), h)), raw: p };
  }

  #stagePoint(e) {
    const r = this.view.stage.getBoundingClientRect();
    return { x: e.clientX - r.left, y: e.clientY - r.top };
  }

  down(e) {
    const p = this.#point(e);
    this.tap = { ...this.#stagePoint(e), moved: false };
    if (this.tool === "pen" || this.tool === "highlighter") {
      this.stroke = this.#newStroke();
      this.#addPoint(e, p);
    } else if (this.tool === "eraser") {
      this.erasing = new Set();
      this.#erase(e);
    } else if (this.tool === "laser") {
      this.onLaser({ x: p.x, y: p.y });
    }
    this.#paintLive();
  }

  move(e) {
    const at = this.#stagePoint(e);
    if (this.tap && Math.hypot(at.x - this.tap.x, at.y - this.tap.y) > TAP_SLOP_PX) this.tap.moved = true;
    const events = e.getCoalescedEvents?.() ?? [];
    const samples = events.length ? events : [e];
    if (this.stroke) {
      for (const sample of samples) this.#addPoint(sample, this.#point(sample));
      this.#paintLive();
    } else if (this.erasing) {
      for (const sample of samples) this.#erase(sample);
    } else if (this.tool === "laser") {
      const p = this.#point(e);
      this.onLaser({ x: p.x, y: p.y });
    }
  }

  hover(e) {
    if (this.tool === "eraser") { this.eraserAt = this.#stagePoint(e); this.#paintLive(); }
  }

  up(e) {
    const tap = this.tap && !this.tap.moved;
    this.tap = null;
    if (this.stroke) {
      this.#commitStroke();
    } else if (this.erasing) {
      this.#commitErase();
    } else if (this.tool === "laser") {
      this.onLaser(null);
    } else if (tap && this.tool === "note") {
      const p = this.#point(e);
      const hit = this.#topmost(p.x, p.y, true, "note");
      this.onNoteRequest({ x: p.x, y: p.y }, hit);
    } else if (tap && this.tool === "select") {
      const p = this.#point(e);
      this.select(this.#topmost(p.x, p.y, false)?.id ?? null);
    }
    this.eraserAt = null;
    this.#paintLive();
  }

  cancel() {
    this.stroke = null;
    this.erasing = null;
    this.eraserAt = null;
    this.tap = null;
    if (this.tool === "laser") this.onLaser(null);
    this.redraw();
  }

  #newStroke() {
    if (this.tool === "highlighter") {
      return { id: newId(), kind: "highlighter", author_id: this.store.userId,
               data: { points: [], color: this.highlightColor, ...HIGHLIGHTER } };
    }
    return { id: newId(), kind: "ink", author_id: this.store.userId,
             data: { points: [], color: this.penColor, width: this.penWidth } };
  }

  #addPoint(e, p) {
    const pts = this.stroke.data.points;
    const last = pts[pts.length - 1];
    const minStep = 0.75 / this.view.scale(); // under a screen pixel adds nothing
    if (last && Math.hypot(p.x - last[0], p.y - last[1]) < minStep) return;
    const point = [p.x, p.y];
    if (this.stroke.kind === "ink" && e.pointerType === "pen" && e.pressure > 0) {
      point.push(round(Math.min(e.pressure, 1)));
    }
    pts.push(point);
    if (pts.length >= MAX_POINTS) {
      // The server takes at most 5000 points a stroke: carry on in a new one.
      this.#commitStroke();
      this.stroke = this.#newStroke();
      this.stroke.data.points.push(point);
    }
  }

  #commitStroke() {
    const stroke = this.stroke;
    this.stroke = null;
    if (!stroke || !stroke.data.points.length) return;
    const annotation = { id: stroke.id, kind: stroke.kind, data: stroke.data,
                         visibility: this.shareNew ? "meeting" : "private" };
    this.#record([{ type: "add", annotation }], [{ type: "delete", ids: [stroke.id] }]);
  }

  #erase(e) {
    const p = this.view.clientToPage(e.clientX, e.clientY);
    this.eraserAt = this.#stagePoint(e);
    const r = ERASER_RADIUS_PX / this.view.scale();
    let changed = false;
    for (const ann of this.visibleAnnotations()) {
      if (this.store.mine(ann) && hitTest(ann, p.x, p.y, r)) { this.erasing.add(ann.id); changed = true; }
    }
    if (changed) this.redraw(); else this.#paintLive();
  }

  #commitErase() {
    const ids = [...this.erasing];
    const page = this.view.page;
    const gone = ids.map((id) => this.store.get(page, id)).filter(Boolean);
    this.erasing = null;
    if (!gone.length) { this.redraw(); return; }
    this.#record([{ type: "delete", ids: gone.map((a) => a.id) }],
                 gone.map((a) => ({ type: "add", annotation: this.#payload(a) })));
  }

  #payload(ann) {
    return { id: ann.id, kind: ann.kind, data: ann.data, visibility: ann.visibility };
  }

  #topmost(x, y, mineOnly, kind = null) {
    const r = 6 / this.view.scale();
    const hits = this.visibleAnnotations().filter((a) => (!kind || a.kind === kind)
      && (!mineOnly || this.store.mine(a)) && hitTest(a, x, y, r));
    return hits[hits.length - 1] ?? null;
  }

  select(id) {
    if (this.selected === id) return;
    this.selected = id;
    this.onSelect(id ? this.store.get(this.view.page, id) : null);
    this.#paintLive();
  }

  // --- ops ------------------------------------------------------------------------

  #send(templates, page) {
    for (const template of templates) {
      const op = { op_id: newId(), page, ...structuredClone(template) };
      this.store.addPending(op);
      this.onOp(op);
    }
    this.redraw();
  }

  #stack(page) {
    let h = this.history.get(page);
    if (!h) { h = { undo: [], redo: [] }; this.history.set(page, h); }
    return h;
  }

  #record(forward, inverse) {
    const page = this.view.page;
    this.#send(forward, page);
    const h = this.#stack(page);
    h.undo.push({ forward, inverse });
    h.redo.length = 0;
    this.onHistory();
  }

  canUndo() { return (this.history.get(this.view.page)?.undo.length ?? 0) > 0; }
  canRedo() { return (this.history.get(this.view.page)?.redo.length ?? 0) > 0; }

  undo() {
    const h = this.#stack(this.view.page);
    const entry = h.undo.pop();
    if (!entry) return;
    this.#send(entry.inverse, this.view.page);
    h.redo.push(entry);
    this.onHistory();
  }

  redo() {
    const h = this.#stack(this.view.page);
    const entry = h.redo.pop();
    if (!entry) return;
    this.#send(entry.forward, this.view.page);
    h.undo.push(entry);
    this.onHistory();
  }

  addNote(at, text) {
    const { w } = this.view.pageSize();
    const boxWidth = Math.min(NOTE.boxWidth, w);
    const x = round(Math.min(at.x, w - boxWidth));
    const annotation = {
      id: newId(), kind: "note", visibility: this.shareNew ? "meeting" : "private",
      data: { x, y: at.y, text, color: "#000000", font_size: NOTE.fontSize, box_width: boxWidth },
    };
    this.#record([{ type: "add", annotation }], [{ type: "delete", ids: [annotation.id] }]);
  }

  updateNote(note, text) {
    const before = this.#payload(note);
    const after = { ...before, data: { ...note.data, text } };
    this.#record([{ type: "update", annotation: after }], [{ type: "update", annotation: before }]);
  }

  deleteAnnotations(annotations) {
    const own = annotations.filter((a) => this.store.mine(a));
    if (!own.length) return;
    this.#record([{ type: "delete", ids: own.map((a) => a.id) }],
                 own.map((a) => ({ type: "add", annotation: this.#payload(a) })));
    this.select(null);
  }

  /** Share or unshare some of my annotations (null: my whole layer on this page). */
  setVisibility(annotations, visibility) {
    const own = (annotations ?? this.visibleAnnotations()).filter((a) => this.store.mine(a));
    const changing = own.filter((a) => a.visibility !== visibility);
    if (!changing.length) return;
    const inverse = [];
    for (const previous of new Set(changing.map((a) => a.visibility))) {
      inverse.push({ type: "set_visibility", visibility: previous,
                     ids: changing.filter((a) => a.visibility === previous).map((a) => a.id) });
    }
    const forward = annotations
      ? [{ type: "set_visibility", visibility, ids: changing.map((a) => a.id) }]
      : [{ type: "set_visibility", visibility, ids: null }];
    this.#record(forward, inverse);
  }
}
