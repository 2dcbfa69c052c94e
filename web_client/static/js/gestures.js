// Pointer input on a PdfView's stage. One finger (or the mouse) pans, unless the delegate (the
// annotation layer) takes it to draw; two fingers pinch-zoom and pan together; a quick sideways
// swipe turns the page when the page fits across; the wheel scrolls (ctrl+wheel zooms) and
// turns the page at its end; a double tap zooms in or back to fit.

const SWIPE_PX = 60;
const SWIPE_MS = 600;
const PAN_SLOP_PX = 4;

function distance(a, b) { return Math.hypot(a.x - b.x, a.y - b.y); }
function midpoint(a, b) { return { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 }; }

/**
 * @typedef {object} PointerDelegate  what the annotation layer implements
 * @property {(e: PointerEvent) => boolean} accepts  take this pointer (draw) rather than pan?
 * @property {(e: PointerEvent) => void} down
 * @property {(e: PointerEvent) => void} move
 * @property {(e: PointerEvent) => void} up
 * @property {() => void} cancel  a second finger arrived: it was a pinch, not a stroke
 * @property {(e: PointerEvent) => void} [hover]  mouse moving without a button
 * @property {() => boolean} [busy]
 */

export class Gestures {
  /** @param {import("./pdf-view.js").PdfView} view */
  constructor(view) {
    this.view = view;
    this.stage = view.stage;
    this.pointers = new Map();
    this.gesture = null;
    this.wheelTurned = false;
    const s = this.stage;
    s.addEventListener("pointerdown", (e) => this.#down(e));
    s.addEventListener("pointermove", (e) => this.#move(e));
    s.addEventListener("pointerup", (e) => this.#up(e, false));
    s.addEventListener("pointercancel", (e) => this.#up(e, true));
    s.addEventListener("wheel", (e) => this.#wheel(e), { passive: false });
    s.addEventListener("dblclick", (e) => this.#doubleTap(e));
  }

  get delegate() { return this.view.delegate; }

  #local(e) {
    const r = this.stage.getBoundingClientRect();
    return { x: e.clientX - r.left, y: e.clientY - r.top };
  }

  #down(e) {
    if (!this.view.doc) return;
    if (e.pointerType === "mouse" && e.button !== 0) return;
    this.pointers.set(e.pointerId, this.#local(e));
    try { this.stage.setPointerCapture(e.pointerId); } catch { /* synthetic events */ }
    const g = this.gesture;
    if (this.pointers.size === 1) {
      if (this.delegate?.accepts(e)) {
        this.gesture = { kind: "delegate", id: e.pointerId, type: e.pointerType };
        this.delegate.down(e);
      } else {
        this.#startPan(e.pointerId, this.#local(e), false);
      }
    } else if (this.pointers.size === 2 && e.pointerType === "touch") {
      if (g?.kind === "delegate") {
        if (g.type !== "touch") { this.pointers.delete(e.pointerId); return; } // palm under a pen
        this.delegate.cancel();
      }
      this.#startPinch();
    }
    e.preventDefault();
  }

  #startPan(id, p, moved) {
    this.gesture = { kind: "pan", id, last: p, start: p, t0: performance.now(), moved };
  }

  #startPinch() {
    const [a, b] = [...this.pointers.values()];
    const m = midpoint(a, b);
    this.gesture = { kind: "pinch", d0: Math.max(distance(a, b), 1), z0: this.view.zoom,
                     at: this.view.pagePointAt(m) };
  }

  #move(e) {
    if (!this.pointers.has(e.pointerId)) {
      if (e.pointerType === "mouse") this.delegate?.hover?.(e);
      return;
    }
    const p = this.#local(e);
    this.pointers.set(e.pointerId, p);
    const g = this.gesture;
    if (!g) return;
    if (g.kind === "delegate" && g.id === e.pointerId) {
      this.delegate.move(e);
    } else if (g.kind === "pan" && g.id === e.pointerId) {
      const dx = p.x - g.last.x;
      const dy = p.y - g.last.y;
      g.last = p;
      if (!g.moved && distance(p, g.start) < PAN_SLOP_PX) return;
      g.moved = true;
      this.view.panBy(dx, dy);
    } else if (g.kind === "pinch" && this.pointers.size >= 2) {
      const [a, b] = [...this.pointers.values()];
      this.view.zoomAround(g.z0 * distance(a, b) / g.d0, g.at, midpoint(a, b));
    }
  }

  #up(e, cancelled) {
    if (!this.pointers.has(e.pointerId)) return;
    this.pointers.delete(e.pointerId);
    const g = this.gesture;
    if (!g) return;
    if (g.kind === "delegate" && g.id === e.pointerId) {
      if (cancelled) this.delegate.cancel(); else this.delegate.up(e);
      this.gesture = null;
    } else if (g.kind === "pan" && g.id === e.pointerId) {
      this.gesture = null;
      this.#maybeSwipe(g, this.#local(e));
    } else if (g.kind === "pinch") {
      // One finger left on the glass carries on panning.
      const rest = [...this.pointers.entries()];
      this.gesture = null;
      if (rest.length === 1) this.#startPan(rest[0][0], rest[0][1], true);
    }
    if (this.pointers.size === 0) this.gesture = null;
  }

  #maybeSwipe(g, end) {
    const dx = end.x - g.start.x;
    const dy = end.y - g.start.y;
    const fast = performance.now() - g.t0 < SWIPE_MS;
    if (fast && this.view.fitsAcross() && Math.abs(dx) > SWIPE_PX && Math.abs(dx) > 2 * Math.abs(dy)) {
      if (dx < 0) this.view.next(true); else this.view.previous(true);
    }
  }

  #wheel(e) {
    if (!this.view.doc) return;
    e.preventDefault();
    if (e.ctrlKey) {
      this.view.zoomBy(Math.exp(-e.deltaY / 200), this.#local(e));
      return;
    }
    if (this.view.scrollBy(e.deltaX, e.deltaY) || Math.abs(e.deltaY) < 30 || this.wheelTurned) return;
    // At the end of the page, a further wheel turn goes to the next one.
    this.wheelTurned = true;
    setTimeout(() => { this.wheelTurned = false; }, 400);
    if (e.deltaY > 0) {
      this.view.next(true);
    } else if (this.view.previous(true)) {
      this.view.toBottom();
    }
  }

  #doubleTap(e) {
    if (!this.view.doc || this.delegate?.busy?.()) return;
    if (this.view.zoom > 1.01) this.view.fit(); else this.view.zoomBy(2.5, this.#local(e));
  }
}
