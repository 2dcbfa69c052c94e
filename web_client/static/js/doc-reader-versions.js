// The reader under changing rules (issue 17): it follows a new version live (same place:
// the page the reader was on, moved with its text, and the zoom; pending ink kept by the
// offline queue), re-renders when the document becomes confidential or stops being so, and
// shows the annotations a new version flagged (a mark on the page, the reason, and keep /
// move / delete for the author). Built on DocViewer's public parts, without changing it.

import { forgetInWorker, summaryLines, versionChanges } from "./doc-versions.js";

const REASONS = {
  page_text_changed: "This note was on a page that changed in the new version.",
  page_removed: "The page of this note was removed in the new version.",
  page_has_no_text: "This page has no text to compare; check this note.",
  out_of_page: "This note no longer fits the new page.",
};
const MARK = "#e65100";

/** The annotation's box in page points (its stroke, rectangles or note box). */
export function annotationBox(annotation) {
  const d = annotation.data ?? {};
  if (annotation.kind === "note") {
    const size = d.font_size ?? 14;
    return { x0: d.x, y0: d.y, x1: d.x + (d.box_width ?? 200), y1: d.y + size * 2.5 };
  }
  const xs = [], ys = [];
  for (const p of d.points ?? []) { xs.push(p[0]); ys.push(p[1]); }
  for (const r of d.rects ?? []) { xs.push(r[0], r[2]); ys.push(r[1], r[3]); }
  if (!xs.length) return null;
  const pad = (d.width ?? 2) / 2 + 4;
  return { x0: Math.min(...xs) - pad, y0: Math.min(...ys) - pad,
           x1: Math.max(...xs) + pad, y1: Math.max(...ys) + pad };
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export class ReaderVersions {
  /**
   * @param {object} o
   * @param {HTMLElement} o.root  the #documents section
   * @param {import("./doc-viewer.js").DocViewer} o.viewer
   * @param {import("./doc-list.js").DocList} o.list
   * @param {(msgid: string) => string} o.t
   * @param {(text: string) => void} o.toast
   */
  constructor({ root, viewer, list, t, toast }) {
    this.root = root;
    this.viewer = viewer;
    this.list = list;
    this.t = t;
    this.toast = toast;
    /** @type {WeakSet<object>} stores whose changes repaint the marks */
    this.hooked = new WeakSet();
    this.layer = el("div", "flag-layer");
    Object.assign(this.layer.style, { position: "absolute", inset: "0", pointerEvents: "none",
                                      zIndex: "4" });
    viewer.stage.append(this.layer);
    this.panel = el("div", "flag-panel");
    this.panel.setAttribute("role", "region");
    this.panel.setAttribute("aria-label", t("To review"));
    Object.assign(this.panel.style, { position: "absolute", left: "8px", bottom: "8px",
      zIndex: "6", maxWidth: "min(92%, 420px)", background: "#fff8e1", color: "#3e2723",
      border: `2px solid ${MARK}`, borderRadius: "8px", padding: "6px 8px", fontSize: "14px" });
    this.panel.hidden = true;
    (viewer.stage.parentElement ?? viewer.stage).append(this.panel);
    this.#hook();
  }

  #hook() {
    const { viewer } = this;
    const view = viewer.view;
    const onView = view.onView, onPage = view.onPage;
    view.onView = (...a) => { onView(...a); this.paint(); };
    view.onPage = (...a) => { onPage(...a); this.paint(); };
    const opened = viewer.onOpened;
    viewer.onOpened = (doc) => { opened(doc); this.#opened(); };
    const select = viewer.ink.onSelect;
    viewer.ink.onSelect = (/** @type {any} */ ann) => {
      select(ann);
      const text = this.root.querySelector("#selection-text");
      if (ann?.flagged && text) text.textContent += ` · ${this.t("To review")}: ${this.#reason(ann)}`;
    };
  }

  #opened() {
    const store = this.viewer.store;
    if (store && !this.hooked.has(store)) {
      const change = store.onChange;
      store.onChange = (p) => { change(p); this.paint(); };
      this.hooked.add(store);
    }
    this.paint();
  }

  #reason(annotation) {
    return this.t(REASONS[annotation.flag_reason] ?? REASONS.page_text_changed);
  }

  /** The flagged annotations this reader sees on the page shown. */
  flagged() {
    const { store, view } = this.viewer;
    if (!store || !this.viewer.doc) return [];
    return store.visible(view.page).filter((/** @type {any} */ a) => a.flagged);
  }

  /** Marks over the page and the review panel, for the page shown. */
  paint() {
    const flagged = this.flagged();
    const view = this.viewer.view;
    this.layer.replaceChildren(...flagged.map((a) => {
      const box = annotationBox(a);
      if (!box) return el("span");
      const p0 = view.pageToStage(box.x0, box.y0), p1 = view.pageToStage(box.x1, box.y1);
      const mark = el("div", "flag-mark");
      mark.dataset.annotationId = a.id;
      mark.title = this.#reason(a);
      Object.assign(mark.style, { position: "absolute", left: `${p0.x}px`, top: `${p0.y}px`,
        width: `${Math.max(8, p1.x - p0.x)}px`, height: `${Math.max(8, p1.y - p0.y)}px`,
        border: `3px dashed ${MARK}`, borderRadius: "6px", background: "rgba(230, 81, 0, 0.08)" });
      const badge = el("span", "flag-badge", "!");
      Object.assign(badge.style, { position: "absolute", right: "-12px", top: "-12px",
        width: "22px", height: "22px", borderRadius: "50%", background: MARK, color: "#fff",
        font: "bold 15px/22px sans-serif", textAlign: "center" });
      mark.append(badge);
      return mark;
    }));
    this.panel.hidden = !flagged.length;
    if (!flagged.length) { this.panel.replaceChildren(); return; }
    const title = el("strong", "flag-title", `${this.t("To review")} (${flagged.length})`);
    this.panel.replaceChildren(title, ...flagged.map((a) => this.#row(a)));
  }

  #row(annotation) {
    const store = this.viewer.store;
    const row = el("div", "flag-row");
    row.dataset.annotationId = annotation.id;
    row.append(el("p", "flag-reason", this.#reason(annotation)));
    if (!store?.mine(annotation) || this.root.dataset.canAnnotate !== "true") return row;
    const pages = this.viewer.doc.page_count;
    const button = (cls, label, handler) => {
      const b = el("button", `tool-wide ${cls}`, label);
      b.type = "button";
      b.addEventListener("click", handler);
      return b;
    };
    const target = /** @type {HTMLInputElement} */ (el("input", "flag-move-page"));
    target.type = "number";
    target.min = "1";
    target.max = String(pages);
    target.value = String(Math.min(pages, this.viewer.view.page + 2));
    target.setAttribute("aria-label", this.t("Page"));
    target.style.width = "4em";
    row.append(
      button("flag-keep", this.t("Keep"), () => this.keep(annotation)),
      button("flag-move", this.t("Move to page"),
             () => this.move(annotation, Number(target.value) - 1)),
      target,
      button("flag-delete", this.t("Delete"), () => this.remove(annotation)));
    return row;
  }

  #send(op) {
    const { store, ink } = this.viewer;
    if (!store) return;
    store.addPending(op);
    ink.onOp(op);
    ink.redraw();
    this.paint();
  }

  #payload(annotation, id = annotation.id) {
    return { id, kind: annotation.kind, data: structuredClone(annotation.data),
             visibility: annotation.visibility };
  }

  /** Keep it where it is: an update of the same annotation clears the flag on the server. */
  keep(annotation) {
    this.#send({ op_id: crypto.randomUUID(), type: "update", page: annotation.page,
                 annotation: this.#payload(annotation) });
  }

  /** Move it to another page (a new annotation there, this one deleted). */
  move(annotation, page) {
    if (!Number.isInteger(page) || page < 0 || page >= this.viewer.doc.page_count) return;
    if (page === annotation.page) { this.keep(annotation); return; }
    this.#send({ op_id: crypto.randomUUID(), type: "delete", page: annotation.page, ids: [annotation.id] });
    this.#send({ op_id: crypto.randomUUID(), type: "add", page,
                 annotation: this.#payload(annotation, crypto.randomUUID()) });
  }

  remove(annotation) {
    this.#send({ op_id: crypto.randomUUID(), type: "delete", page: annotation.page, ids: [annotation.id] });
  }

  // --- server events -------------------------------------------------------------------

  /** document:version: reopen on the new version at the same place. */
  async versionPublished(documentId, version) {
    const viewer = this.viewer;
    if (viewer.doc?.id !== Number(documentId) || viewer.doc.version >= version) return;
    const view = viewer.view;
    const place = { page: view.page, zoom: view.zoom, cx: view.cx, cy: view.cy };
    let page = place.page;
    let lines = [];
    try {
      const changes = await versionChanges(documentId, version);
      const here = changes.pages.find((p) => p.from_page === place.page
                                          && (p.change === "same" || p.change === "moved"));
      page = here ? here.page : Math.min(place.page, changes.pages.length - 1);
      lines = summaryLines(this.t, { ...changes, removed: [],
                                     pages: changes.pages.filter((p) => p.page === page) });
    } catch (error) {
      console.warn("version changes unavailable", error);
    }
    await this.#reopen(documentId, page, { version });
    if (page === place.page && viewer.doc?.id === Number(documentId)) view.setView(place);
    this.toast([this.t("A new version of the document was published."), ...lines].join(" "));
  }

  /** document:confidential: drop kept copies, and re-render an open document under the new rules. */
  async confidentialChanged(documentId, confidential) {
    forgetInWorker(documentId);
    this.list.setConfidentialFlag(Number(documentId), confidential);
    const viewer = this.viewer;
    if (viewer.doc?.id !== Number(documentId)) return;
    const view = viewer.view;
    const place = { page: view.page, zoom: view.zoom, cx: view.cx, cy: view.cy };
    await this.#reopen(documentId, place.page);
    if (viewer.doc?.id === Number(documentId)) view.setView(place);
    this.toast(confidential
      ? this.t("This document is now confidential: you see pages with your name on them.")
      : this.t("This document is no longer confidential."));
  }

  async #reopen(documentId, page, options = {}) {
    this.viewer.doc = null; // a fresh open: new details, rules, version and annotations
    await this.viewer.open(Number(documentId), page, options);
  }
}
