// The open document: PdfView + InkLayer + the annotation store kept in sync with the server,
// the pager and thumbnails, follow/present controls (annotation tools: annotate-controls.js).

import { AnnotationStore } from "./annotation-store.js";
import { Follow } from "./follow.js";
import { AnnotateControls } from "./annotate-controls.js";
import { InkLayer } from "./ink.js";
import { PdfView } from "./pdf-view.js";

const READY = new Set(["ready", "ready_with_warnings"]);

/** The server raster width for this screen: a multiple of 256 within 256–3072. */
function imageWidth(stage) {
  const px = stage.clientWidth * (window.devicePixelRatio || 1);
  return Math.min(3072, Math.max(256, Math.ceil(px / 256) * 256));
}

export class DocViewer {
  /**
   * @param {object} o
   * @param {HTMLElement} o.root  the #documents section
   * @param {import("./documents-api.js").DocumentsClient} o.client
   * @param {import("./offline.js").OpQueue} o.queue
   * @param {(msgid: string) => string} o.t
   * @param {(text: string) => void} o.toast
   */
  constructor({ root, client, queue, t, toast }) {
    this.root = root;
    this.client = client;
    this.queue = queue;
    this.t = t;
    this.toast = toast;
    this.canAnnotate = root.dataset.canAnnotate === "true";
    this.canPresent = root.dataset.canPresent === "true";
    /** @type {(id: string) => HTMLElement} */
    this.$ = (id) => root.querySelector(`#${id}`);
    this.stage = this.$("doc-stage");
    this.view = new PdfView(this.stage);
    this.ink = new InkLayer(this.view);
    this.controls = new AnnotateControls({ root, view: this.view, ink: this.ink, t });
    this.follow = new Follow({
      view: this.view, client, laserDot: this.$("laser-dot"),
      openDocument: (id, version) => this.open(id, 0, { version }),
    });
    /** @type {import("./documents-api.js").DocumentDetails|null} */
    this.doc = null;
    this.store = null;
    this.openToken = 0;
    /** @type {(doc: import("./documents-api.js").DocumentDetails|null) => void} */
    this.onOpened = () => {};
    this.#wire();
  }

  // --- opening -----------------------------------------------------------------------

  /**
   * Open a document (at a page); false if it cannot be shown yet. user: the reader chose it
   * (list, search), which leaves follow mode; the presenter's own turns pass user = false.
   */
  async open(documentId, page = 0, { version = null, user = false } = {}) {
    documentId = Number(documentId);
    if (user) this.follow.userNavigated();
    // Already on screen (fully opened): a page turn, which also supersedes an open of another
    // document still on its way (quick taps B, A, B end on B). A document whose own open was
    // superseded half-way (synced still false) is opened again in full.
    if (this.doc?.id === documentId && (version === null || version === this.doc.version)
        && this.stage.dataset.synced === "true") {
      this.openToken += 1;
      this.view.goTo(page, { user });
      return true;
    }
    const token = ++this.openToken;
    const previous = this.doc;
    let details;
    try {
      details = await this.client.subscribe(documentId);
    } catch (error) {
      // A stale link or list (a withdrawn document): said in the page's language (issue 14).
      this.toast(error?.code === "not_found" ? this.t("This document was withdrawn or is no longer available.")
        : `${this.t("Cannot open the document")}: ${error.message}`);
      return false;
    }
    if (token !== this.openToken) return false;
    if (previous && previous.id !== documentId) this.client.unsubscribe(previous.id).catch(() => {});
    if (!READY.has(details.status) || !details.page_count) {
      this.toast(this.t("The document is still being prepared."));
      return false;
    }
    this.doc = details;
    this.stage.dataset.synced = "false";
    const store = new AnnotationStore(details.id, details.version, details.me);
    this.store = store;
    store.onChange = (p) => {
      if (p !== this.view.page) return;
      this.ink.redraw();
      this.controls.storeChanged();
    };
    store.onGap = (p) => this.#resyncPage(store, p);
    this.controls.setStore(store);
    this.root.classList.remove("no-doc");
    this.$("doc-title").textContent = details.title;
    this.$("page-count").textContent = String(details.page_count);
    this.#pageInput().max = String(details.page_count);
    const exportLink = /** @type {HTMLAnchorElement} */ (this.$("export-link"));
    exportLink.href = this.client.exportUrl(details.id);
    exportLink.setAttribute("download", `${details.title}.pdf`);
    this.stage.dataset.documentId = String(details.id);
    this.#buildThumbs();
    await this.view.open({
      id: details.id, version: details.version, pageCount: details.page_count, pageSizes: details.page_sizes,
      pdfUrl: this.client.pdfUrl(details),
      pageImageUrl: (p) => this.client.pageImageUrl(details, p, imageWidth(this.stage)),
    }, page);
    if (token !== this.openToken) return false;
    for (const op of await this.queue.waiting(details.id, details.version)) {
      if (!store.hasPending(op.op_id)) store.addPending(op); // drawn offline before a reload
    }
    try {
      await this.#snapshotAll(store, details.page_count);
    } catch (error) {
      this.toast(`${this.t("Notes could not be loaded")}: ${error.message}`);
    }
    if (token !== this.openToken) return false;
    this.stage.dataset.synced = "true";
    this.onOpened(details);
    return true;
  }

  /**
   * Every page's annotations at once. Live events that arrive while the snapshot travels
   * are held and replayed on top of it (idempotent by seq), so none slips between the two.
   */
  async #snapshotAll(store, pageCount) {
    for (let p = 0; p < pageCount; p += 1) store.beginResync(p);
    const pages = await this.client.snapshot(Number(store.documentId), store.version);
    if (store !== this.store) return;
    const byPage = new Map(pages.map((p) => [p.page, p]));
    for (let p = 0; p < pageCount; p += 1) {
      store.loadSnapshot(p, byPage.get(p)?.annotations ?? [], byPage.get(p)?.seq ?? 0);
    }
  }

  async #resyncPage(store, page) {
    try {
      const [p] = await this.client.snapshot(Number(store.documentId), store.version, [page]);
      if (store === this.store) store.loadSnapshot(page, p?.annotations ?? [], p?.seq ?? 0);
    } catch (error) {
      console.warn("resync failed", error);
    }
  }

  /** The socket came back: re-subscribe and take a fresh look at everything. */
  async reconnected() {
    if (!this.doc) return;
    const store = this.store;
    try {
      await this.client.subscribe(this.doc.id);
      await this.#snapshotAll(store, this.doc.page_count);
    } catch (error) {
      console.warn("re-subscribe failed", error);
    }
  }

  // --- server events ------------------------------------------------------------------

  handleAnnotationEvent(documentId, version, event) {
    if (this.store && Number(documentId) === this.doc.id && version === this.doc.version) {
      this.store.applyEvent(event);
    }
  }

  handleAck(opId, result) {
    if (this.store && Number(result?.document_id) === this.doc?.id) {
      this.store.acknowledge(opId, result.version === this.doc.version ? result.event : null);
    }
  }

  handleReject(opId, error) {
    this.store?.reject(opId);
    this.toast(`${this.t("A change was not saved")}: ${error.message}`);
  }

  async handleVersion(documentId, version) {
    if (this.doc?.id !== Number(documentId) || this.doc.version === version) return;
    const page = this.view.page;
    this.doc = null; // force a fresh open
    await this.open(documentId, page, { version });
    this.toast(this.t("A new version of the document was published."));
  }

  handleProgress(ev) {
    if (this.doc && ev.documentId === this.doc.id && ev.page !== null) {
      this.view.pageBecameAvailable(ev.page);
    }
  }

  handleWithdrawn(documentId) {
    if (this.doc?.id !== Number(documentId)) return;
    this.close();
    this.toast(this.t("The document was withdrawn."));
  }

  close() {
    if (this.doc) this.client.unsubscribe(this.doc.id).catch(() => {});
    this.doc = null;
    this.store = null;
    this.controls.setStore(null);
    this.view.close();
    this.root.classList.add("no-doc");
    this.$("doc-title").textContent = this.t("Documents");
    this.onOpened(null);
  }

  // --- toolbar, pager, thumbnails ------------------------------------------------------------

  #wire() {
    const { view, ink, follow } = this;
    view.onView = () => { ink.redraw(); follow.viewChanged(); };
    view.onPage = (page) => this.#pageChanged(page);
    view.onUserNavigate = () => follow.userNavigated();
    ink.onOp = (op) => {
      if (!this.doc) return;
      this.queue.enqueue(this.doc.id, this.doc.version, op).catch((e) => this.toast(e.message));
    };
    ink.onLaser = (point) => follow.laser(point);
    follow.onChange = () => this.#updateFollow();
    follow.onError = (error) => this.toast(error.message);
    follow.confirmTakeOver = (name) =>
      window.confirm(`${name} — ${this.t("is presenting. Take over the presentation?")}`);

    const click = (id, handler) => this.$(id)?.addEventListener("click", handler);
    click("page-prev", () => view.previous(true));
    click("page-next", () => view.next(true));
    click("zoom-in", () => view.zoomBy(1.4));
    click("zoom-out", () => view.zoomBy(1 / 1.4));
    click("zoom-fit", () => view.fit());
    click("thumbs-toggle", () => this.#toggleThumbs());
    click("follow-rejoin", () => follow.rejoin());
    click("present-toggle", () => (follow.presenting ? follow.stopPresenting() : follow.startPresenting()));
    const pageInput = this.#pageInput();
    pageInput.addEventListener("change", () => {
      const page = Number.parseInt(pageInput.value, 10) - 1;
      if (!view.goTo(page, { user: true })) pageInput.value = String(view.page + 1);
    });
    this.$("export-link").addEventListener("click", (e) => { if (!this.doc) e.preventDefault(); });
    document.addEventListener("keydown", (e) => this.#key(e));
  }

  /** The page number box of the toolbar. */
  #pageInput() { return /** @type {HTMLInputElement} */ (this.$("page-input")); }

  #pageChanged(page) {
    this.#pageInput().value = String(page + 1);
    /** @type {HTMLButtonElement} */ (this.$("page-prev")).disabled = page <= 0;
    /** @type {HTMLButtonElement} */ (this.$("page-next")).disabled = !this.doc || page >= this.doc.page_count - 1;
    this.controls.pageChanged();
    for (const thumb of /** @type {HTMLCollectionOf<HTMLElement>} */ (this.$("thumbs").children)) {
      const current = Number(thumb.dataset.page) === page;
      thumb.classList.toggle("current", current);
      if (current && !this.$("thumbs").hidden) {
        thumb.scrollIntoView({ block: "nearest", inline: "nearest" });
      }
    }
    const url = new URL(window.location.href);
    if (this.doc) {
      url.searchParams.set("doc", String(this.doc.id));
      url.searchParams.set("page", String(page + 1));
      history.replaceState(null, "", url);
    }
  }

  #buildThumbs() {
    const strip = this.$("thumbs");
    const doc = this.doc;
    strip.replaceChildren(...Array.from({ length: doc.page_count }, (_, page) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "thumb";
      b.dataset.page = String(page);
      const img = document.createElement("img");
      img.loading = "lazy";
      img.alt = "";
      img.src = this.client.thumbUrl(doc, page);
      const [w, h] = doc.page_sizes[page] ?? [595, 842];
      img.width = 72;
      img.height = Math.round(72 * h / w);
      const n = document.createElement("span");
      n.textContent = String(page + 1);
      b.append(img, n);
      b.addEventListener("click", () => this.view.goTo(page, { user: true }));
      return b;
    }));
  }

  #toggleThumbs() {
    const strip = this.$("thumbs");
    strip.hidden = !strip.hidden;
    this.$("thumbs-toggle").setAttribute("aria-pressed", String(!strip.hidden));
    strip.querySelector(".current")?.scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  // --- follow / present ---------------------------------------------------------------------

  #updateFollow() {
    const f = this.follow;
    const chip = this.$("follow-chip");
    const text = this.$("follow-text");
    const rejoin = this.$("follow-rejoin");
    chip.hidden = !f.active;
    this.root.dataset.following = String(f.following && f.active && !f.presenting);
    this.root.dataset.presenting = String(f.presenting);
    this.root.dataset.presenterPage = f.active ? String(f.state.page) : "";
    if (f.presenting) {
      text.textContent = this.t("You are presenting");
      rejoin.hidden = true;
    } else if (f.following) {
      text.textContent = `${this.t("Following")} ${f.presenterName}`;
      rejoin.hidden = true;
    } else {
      text.textContent = `${f.presenterName} ${this.t("is presenting")}`;
      rejoin.hidden = false;
    }
    const toggle = this.$("present-toggle");
    if (toggle) toggle.setAttribute("aria-pressed", String(f.presenting));
    const laser = /** @type {HTMLElement|null} */ (this.root.querySelector('[data-tool="laser"]'));
    if (laser) {
      laser.hidden = !f.presenting;
      if (!f.presenting && this.ink.tool === "laser") this.controls.setTool("hand");
    }
  }

  #key(e) {
    if (!this.doc || e.ctrlKey || e.metaKey) return;
    if (!this.root.checkVisibility()) return; // a hidden pane of the meeting screen
    if (e.target.closest?.("input, textarea, select, dialog[open]")) return;
    if (["ArrowRight", "PageDown"].includes(e.key)) { e.preventDefault(); this.view.next(true); }
    else if (["ArrowLeft", "PageUp"].includes(e.key)) { e.preventDefault(); this.view.previous(true); }
  }
}
