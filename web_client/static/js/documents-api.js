// The one module that knows the documents protocol (docs/protocol.md (Documents)): REST route
// paths, socket.io event names and payload shapes. Pages call methods and set callbacks.

import { api, csrfToken } from "./api.js";
import { t } from "./i18n.js";
import { SignalingError } from "./signaling.js";

/** Ack errors worth retrying later; any other refusal is final (the op is dropped). */
const TRANSIENT = new Set(["not_authenticated", "internal_error", "internal", "unavailable",
                           "rate_limited", "busy", "timeout"]);

async function getJson(url) { return api("GET", url); }

/**
 * @typedef {{code: string, message_en: string, message_vi: string}} Rejection
 * @typedef {{stage: string, done: number, total: number}} Progress
 */

/**
 * @typedef {object} DocumentInfo  a document as docs/protocol.md ("Document") describes it
 * @property {number} id
 * @property {number|null} agenda_item_id
 * @property {string} title
 * @property {boolean} confidential
 * @property {boolean} published
 * @property {"processing"|"ready"|"ready_with_warnings"|"rejected"} status
 * @property {number} version
 * @property {number|null} page_count
 * @property {Array<[number, number]>|null} page_sizes
 * @property {Rejection|null} rejection
 * @property {Progress|null} progress
 */

/**
 * @typedef {DocumentInfo & {can_annotate: boolean, can_present: boolean, can_manage: boolean,
 *   me: string}} DocumentDetails
 */

/**
 * @typedef {object} UploadFields
 * @property {string} [title]
 * @property {number|null} [agendaItemId]
 * @property {boolean} [confidential]
 */

export class DocumentsClient {
  /** @param {import("./signaling.js").Signaling} signaling  @param {number} meetingId */
  constructor(signaling, meetingId) {
    this.signaling = signaling;
    this.socket = signaling.socket;
    this.meetingId = meetingId;
    this.userId = null;
    /**
     * @type {(ev: {documentId: number, version: number, stage: string, done: number,
     *   total: number, page: number|null, rejection: Rejection|null, warnings: object[]}) => void}
     */
    this.onProgress = () => {};
    /** @type {(doc: DocumentInfo) => void} */
    this.onDocumentUpdated = () => {};
    /** @type {(documentId: number) => void} */
    this.onDocumentWithdrawn = () => {};
    /** @type {(documentId: number, version: number) => void} */
    this.onDocumentVersion = () => {};
    /** @type {(documentId: number, version: number, event: object) => void} */
    this.onAnnotationEvent = () => {};
    /** @type {(state: object) => void} */
    this.onPresentState = () => {};
    /** @type {(pointer: {documentId:number, page:number, x:number|null, y:number|null}) => void} */
    this.onPointer = () => {};
    const on = (name, handler) => this.socket.on(name, handler);
    on("document:progress", (m) => this.onProgress({
      documentId: m.document_id, version: m.version, stage: m.stage, done: m.done ?? 0,
      total: m.total ?? 0, page: m.page ?? null, rejection: m.rejection ?? null,
      warnings: m.warnings ?? [],
    }));
    on("document:updated", (doc) => this.onDocumentUpdated(doc));
    on("document:withdrawn", (m) => this.onDocumentWithdrawn(m.document_id));
    on("document:version", (m) => this.onDocumentVersion(m.document_id, m.version));
    on("annotation:event", (m) => {
      // My own ops reach me as own: true (or in the ack); the projected copy is for others.
      if (this.userId !== null && String(m.actor_id) === this.userId && !m.own) return;
      this.onAnnotationEvent(m.document_id, m.version, m.event);
    });
    on("present:state", (s) => this.onPresentState(s));
    on("present:pointer", (p) => this.onPointer(
      { documentId: p.document_id, page: p.page, x: p.x, y: p.y }));
  }

  /** Connected to the server right now (the browser's own idea of the network included). */
  isOnline() { return navigator.onLine && this.socket.connected; }

  // --- REST -----------------------------------------------------------------------

  /** @returns {Promise<Array<{agenda_item_id:number|null, documents:DocumentInfo[]}>>} */
  async list() {
    return (await getJson(`/api/meetings/${this.meetingId}/documents`)).groups;
  }

  /** Agenda item titles by id (empty when the agenda is not available). */
  async agendaTitles() {
    try {
      const agenda = await getJson(`/api/meetings/${this.meetingId}/agenda`);
      return new Map((agenda.items ?? []).map((i) => [i.id, { title: i.title, position: i.position }]));
    } catch {
      return new Map();
    }
  }

  search(query) {
    return getJson(`/api/meetings/${this.meetingId}/documents/search?q=${encodeURIComponent(query)}`);
  }

  publish(documentId, published) {
    return api("POST", `/api/documents/${documentId}/publish`, { published });
  }

  pdfUrl(doc) { return doc.has_pdf ? `/api/documents/${doc.id}/pdf?version=${doc.version}` : null; }

  pageImageUrl(doc, page, width = 1536) {
    return `/api/documents/${doc.id}/pages/${page}?version=${doc.version}&width=${width}`;
  }

  thumbUrl(doc, page) { return `/api/documents/${doc.id}/thumbs/${page}?version=${doc.version}`; }

  exportUrl(documentId, flatten = false) {
    return `/api/documents/${documentId}/export${flatten ? "?flatten=1" : ""}`;
  }

  /**
   * Upload with byte progress (fetch cannot report upload progress; XHR can).
   * @param {File} file
   * @param {UploadFields} fields
   * @param {(sent: number, total: number) => void} onProgress
   * @param {number|null} [replaceDocumentId]  upload a new version of this document instead
   */
  upload(file, fields, onProgress, replaceDocumentId = null) {
    const form = new FormData();
    if (fields.title) form.append("title", fields.title);
    if (fields.agendaItemId !== null && fields.agendaItemId !== undefined && !replaceDocumentId) {
      form.append("agenda_item_id", String(fields.agendaItemId));
    }
    if (!replaceDocumentId) form.append("confidential", fields.confidential ? "1" : "0");
    form.append("file", file, file.name);
    const url = replaceDocumentId
      ? `/api/documents/${replaceDocumentId}/versions`
      : `/api/meetings/${this.meetingId}/documents`;
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.setRequestHeader("X-CSRF-Token", csrfToken());
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
      xhr.onload = () => {
        let body = {};
        try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
        if (xhr.status >= 200 && xhr.status < 300) { resolve(body); return; }
        const error = Object.assign(new Error(body?.error?.message_vi && document.body.dataset.lang === "vi"
          ? body.error.message_vi : body?.error?.message ?? xhr.statusText), {
          code: body?.error?.code ?? String(xhr.status),
          documentId: body?.error?.document_id ?? null,
        });
        reject(error);
      };
      xhr.onerror = () => reject(Object.assign(new Error("network error"), { code: "network" }));
      xhr.send(form);
    });
  }

  // --- socket: documents and annotations ------------------------------------------------

  /**
   * Join the document's live channel and get its DocumentDetails. Without a connection (the
   * page was reloaded offline) the details come over HTTP instead, which the service worker
   * answers from its copy (sw.js); the page subscribes again when the connection is back.
   */
  async subscribe(documentId) {
    let details;
    if (!navigator.onLine) {
      details = await this.details(documentId);
    } else {
      try {
        details = await this.signaling.request("document:subscribe", { document_id: documentId });
      } catch (error) {
        if (this.socket.connected) throw error;
        details = await this.details(documentId);
      }
    }
    this.userId = String(details.me);
    return details;
  }

  /** @returns {Promise<DocumentDetails>} without subscribing */
  details(documentId) { return getJson(`/api/documents/${documentId}`); }

  unsubscribe(documentId) {
    return this.signaling.request("document:unsubscribe", { document_id: documentId });
  }

  /** @returns {Promise<Array<{page:number, seq:number, annotations:object[]}>>} */
  async snapshot(documentId, version, pages = null) {
    // Offline, fail now rather than after the request's timeout: the page opens without them.
    if (!navigator.onLine && !this.socket.connected) throw new Error(t("Offline"));
    const payload = { document_id: documentId, version };
    if (pages) payload.pages = pages;
    return (await this.signaling.request("annotation:snapshot", payload)).pages;
  }

  /**
   * Send one queued op (offline.js's OpSender). Resolves with {seq, replayed, event};
   * rejects with .permanent = true when the server refused it for good.
   * @param {{document_id: string, version: number, op: object}} record
   */
  async sendOp(record) {
    if (!this.isOnline()) throw Object.assign(new Error("offline"), { permanent: false });
    const op = { ...record.op };
    if (op.type === "set_visibility" && !op.ids) delete op.ids; // no ids: my whole layer
    try {
      return await this.signaling.request("annotation:op",
        { document_id: Number(record.document_id), version: record.version, op });
    } catch (error) {
      const code = error instanceof SignalingError ? error.code : "timeout";
      throw Object.assign(error instanceof Error ? error : new Error(String(error)),
                          { code, permanent: !TRANSIENT.has(code) });
    }
  }

  // --- socket: presenting -----------------------------------------------------------------

  /** @param {{documentId:number, page:number, zoom:number, scrollX:number, scrollY:number}} s */
  presentUpdate(s, takeOver = false) {
    return this.signaling.request("present:update", {
      document_id: s.documentId, page: s.page, zoom: s.zoom, scroll_x: s.scrollX, scroll_y: s.scrollY,
      ...(takeOver ? { take_over: true } : {}),
    });
  }

  presentPointer(documentId, page, point) {
    return this.signaling.request("present:pointer", {
      document_id: documentId, page, x: point ? point.x : null, y: point ? point.y : null,
    });
  }

  presentStop() { return this.signaling.request("present:stop", { meeting_id: this.meetingId }); }
  presentGet() { return this.signaling.request("present:get", { meeting_id: this.meetingId }); }
}
