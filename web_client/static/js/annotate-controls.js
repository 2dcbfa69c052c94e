// The annotation controls around an InkLayer: tool buttons, colours and widths, undo/redo,
// the page's share toggle, the selection bar (share or delete one annotation) and the note
// dialog. Page-independent of the network: everything goes through the InkLayer's ops.

import { HIGHLIGHT_COLORS, PEN_COLORS, PEN_WIDTHS } from "./ink.js";

export class AnnotateControls {
  /**
   * @param {object} o
   * @param {HTMLElement} o.root  the #documents section
   * @param {import("./pdf-view.js").PdfView} o.view
   * @param {import("./ink.js").InkLayer} o.ink
   * @param {(msgid: string) => string} o.t
   */
  constructor({ root, view, ink, t }) {
    this.root = root;
    this.view = view;
    this.ink = ink;
    this.t = t;
    this.store = null;
    this.sharedPages = new Set();
    /** @type {(id: string) => HTMLElement} */
    this.$ = (id) => root.querySelector(`#${id}`);
    ink.onNoteRequest = (at, existing) => this.#noteDialog(at, existing);
    ink.onSelect = (ann) => this.#selectionChanged(ann);
    ink.onHistory = () => {
      const undo = /** @type {HTMLButtonElement|null} */ (this.$("undo"));
      const redo = /** @type {HTMLButtonElement|null} */ (this.$("redo"));
      if (undo) undo.disabled = !ink.canUndo();
      if (redo) redo.disabled = !ink.canRedo();
    };
    for (const button of /** @type {NodeListOf<HTMLElement>} */ (root.querySelectorAll("[data-tool]"))) {
      button.addEventListener("click", () => this.setTool(button.dataset.tool));
    }
    // The palette floats over the page: it opens with its tool (or a second tap on it) and
    // gets out of the way as soon as the pen touches the page.
    view.stage.addEventListener("pointerdown", () => {
      const colors = this.$("colors");
      if (colors) colors.hidden = true;
    });
    const click = (id, handler) => this.$(id)?.addEventListener("click", handler);
    click("undo", () => ink.undo());
    click("redo", () => ink.redo());
    click("share-page", () => this.#toggleSharePage());
    click("selection-share", () => {
      const ann = this.store?.get(view.page, ink.selected);
      if (ann) ink.setVisibility([ann], ann.visibility === "private" ? "meeting" : "private");
    });
    click("selection-delete", () => {
      const ann = this.store?.get(view.page, ink.selected);
      if (ann) ink.deleteAnnotations([ann]);
    });
    document.addEventListener("keydown", (e) => this.#key(e));
    this.#markTool("pen", ink.penColor);
    this.#markTool("highlighter", ink.highlightColor);
  }

  /** A document was opened (or closed: null). */
  setStore(store) {
    this.store = store;
    this.sharedPages.clear();
    this.ink.setStore(store);
  }

  pageChanged() {
    // A stroke under way belongs to the page it started on (the presenter may have turned it).
    if (this.ink.busy()) this.ink.cancel();
    this.ink.select(null);
    this.ink.onHistory();
    this.#updateShare();
  }

  /** The current page's annotations changed. */
  storeChanged() { this.#updateShare(); }

  setTool(tool) {
    const again = this.ink.tool === tool;
    this.ink.setTool(tool);
    for (const b of /** @type {NodeListOf<HTMLElement>} */ (this.root.querySelectorAll("[data-tool]"))) {
      b.setAttribute("aria-pressed", String(b.dataset.tool === tool));
    }
    const colors = this.$("colors");
    if (colors) {
      const hasPalette = ["pen", "highlighter"].includes(tool);
      colors.hidden = !hasPalette || (again && !colors.hidden);
      if (!colors.hidden) this.#buildSwatches(tool);
    }
  }

  #buildSwatches(tool) {
    const box = this.$("swatches");
    const widths = this.$("widths");
    if (!box) return;
    const ink = this.ink;
    const colors = tool === "highlighter" ? HIGHLIGHT_COLORS : PEN_COLORS;
    const current = tool === "highlighter" ? ink.highlightColor : ink.penColor;
    box.replaceChildren(...colors.map((color) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "swatch";
      b.style.background = color;
      b.setAttribute("aria-label", color);
      b.setAttribute("aria-pressed", String(color === current));
      b.addEventListener("click", () => {
        if (tool === "highlighter") ink.highlightColor = color; else ink.penColor = color;
        this.#buildSwatches(tool);
        this.#markTool(tool, color);
      });
      return b;
    }));
    widths.hidden = tool !== "pen";
    widths.replaceChildren(...PEN_WIDTHS.map((w) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "width";
      b.setAttribute("aria-label", `${w} pt`);
      b.setAttribute("aria-pressed", String(w === ink.penWidth));
      const dot = document.createElement("span");
      dot.style.width = dot.style.height = `${4 + w * 2.5}px`;
      b.append(dot);
      b.addEventListener("click", () => { ink.penWidth = w; this.#buildSwatches(tool); });
      return b;
    }));
  }

  /** A bar under the tool shows its colour, so the closed palette still tells it. */
  #markTool(tool, color) {
    /** @type {HTMLElement|null} */ (this.root.querySelector(`[data-tool="${tool}"]`))?.style.setProperty("--swatch", color);
  }

  // --- sharing ----------------------------------------------------------------------------

  #pageShared(page = this.view.page) {
    if (this.sharedPages.has(page)) return true;
    const own = (this.store?.visible(page) ?? []).filter((a) => this.store.mine(a));
    return own.length > 0 && own.every((a) => a.visibility === "meeting");
  }

  #updateShare() {
    const shared = this.#pageShared();
    this.ink.shareNew = shared;
    const button = this.$("share-page");
    if (!button) return;
    button.setAttribute("aria-pressed", String(shared));
    this.$("share-page-label").textContent = shared ? this.t("Shared") : this.t("Private");
    button.title = shared ? this.t("Stop sharing my notes on this page")
      : this.t("Share my notes on this page");
    if (this.ink.selected) this.#selectionChanged(this.store?.get(this.view.page, this.ink.selected));
  }

  #toggleSharePage() {
    if (!this.store) return;
    const page = this.view.page;
    if (this.#pageShared(page)) {
      this.sharedPages.delete(page);
      this.ink.setVisibility(null, "private");
    } else {
      this.sharedPages.add(page);
      this.ink.setVisibility(null, "meeting");
    }
    this.#updateShare();
  }

  #selectionChanged(ann) {
    const bar = this.$("selection-bar");
    if (!bar) return;
    bar.hidden = !ann;
    if (!ann) return;
    const mine = this.store.mine(ann);
    const kind = { ink: this.t("Pen stroke"), highlighter: this.t("Highlight"),
                   note: this.t("Note") }[ann.kind];
    const whose = mine ? "" : ` · ${this.t("someone else's")}`;
    const how = ann.visibility === "private" ? this.t("Private") : this.t("Shared");
    this.$("selection-text").textContent = `${kind}${whose} · ${how}`;
    /** @type {HTMLButtonElement} */ (this.$("selection-share")).disabled = !mine;
    /** @type {HTMLButtonElement} */ (this.$("selection-delete")).disabled = !mine;
    this.$("selection-share-label").textContent =
      ann.visibility === "private" ? this.t("Share") : this.t("Stop sharing");
  }

  // --- notes ------------------------------------------------------------------------------

  #noteDialog(at, existing) {
    const dialog = /** @type {HTMLDialogElement} */ (this.$("note-dialog"));
    const text = /** @type {HTMLTextAreaElement} */ (this.$("note-text"));
    const remove = this.$("note-delete");
    text.value = existing?.data.text ?? "";
    remove.hidden = !existing;
    const done = (action) => {
      dialog.close();
      const value = text.value.trim();
      if (action === "save" && value) {
        if (existing) this.ink.updateNote(existing, value); else this.ink.addNote(at, value);
      } else if (action === "delete" && existing) {
        this.ink.deleteAnnotations([existing]);
      }
    };
    this.$("note-form").onsubmit = (e) => { e.preventDefault(); done("save"); };
    this.$("note-cancel").onclick = () => done("cancel");
    remove.onclick = () => done("delete");
    dialog.showModal();
    text.focus();
  }

  #key(e) {
    if (!this.store || e.target.closest?.("input, textarea, select, dialog[open]")) return;
    const ctrl = e.ctrlKey || e.metaKey;
    if (!ctrl || !["z", "y"].includes(e.key.toLowerCase())) return;
    e.preventDefault();
    if (e.key.toLowerCase() === "y" || e.shiftKey) this.ink.redo(); else this.ink.undo();
  }
}
