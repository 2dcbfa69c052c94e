// What one viewer knows about a document's annotations, page by page: the server's
// confirmed state (snapshots + seq-numbered events, with gap detection) and, on top, the
// local ops not yet confirmed (optimistic, so a stroke never blinks while it travels).
// Pure state: no network, no DOM. The model is documents/annotations.py.

/**
 * @typedef {object} Annotation
 * @property {string} id
 * @property {number} page
 * @property {string} author_id
 * @property {"ink"|"highlighter"|"note"} kind
 * @property {"private"|"meeting"|"presenter"} visibility
 * @property {object} data
 * @property {string} [created_at]  ISO 8601 (docs/protocol.md, Conventions); none while pending
 */

/**
 * @typedef {object} Op  an annotation op as documents/annotation_ops.py accepts it
 * @property {string} op_id
 * @property {"add"|"update"|"delete"|"set_visibility"} type
 * @property {number} page
 * @property {object} [annotation]
 * @property {string[]|null} [ids]
 * @property {string} [visibility]
 */

/**
 * @typedef {object} AnnotationEvent  one op as this viewer may see it
 * @property {number} seq
 * @property {number} prev_seq
 * @property {string} op_id
 * @property {number} page
 * @property {Annotation[]} upserts
 * @property {string[]} removed
 */

export function newId() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  // crypto.randomUUID needs a secure context; plain-HTTP LAN servers are not one.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

class PageState {
  constructor() {
    this.loaded = false;
    this.snapshotSeq = 0;
    this.seq = 0;            // highest seq applied
    this.applied = new Set(); // seqs applied since the snapshot
    this.resyncing = false;
    this.buffer = [];         // events that arrived while a snapshot was on its way
    /** @type {Map<string, Annotation>} */
    this.confirmed = new Map();
  }
}

export class AnnotationStore {
  /**
   * @param {string} documentId  @param {number} version
   * @param {string} userId  the viewer (author of local ops), as the server spells author_id
   */
  constructor(documentId, version, userId) {
    this.documentId = String(documentId);
    this.version = version;
    this.userId = String(userId);
    /** @type {Map<number, PageState>} */
    this.pages = new Map();
    /** @type {Map<string, Op>} local ops not yet acknowledged, in order */
    this.pending = new Map();
    /** @type {(page: number) => void} */
    this.onChange = () => {};
    /** @type {(page: number) => void} events were missed: take a fresh snapshot of the page */
    this.onGap = () => {};
  }

  #page(page) {
    let state = this.pages.get(page);
    if (!state) { state = new PageState(); this.pages.set(page, state); }
    return state;
  }

  /** A page is being re-read: hold its live events until the snapshot lands. */
  beginResync(page) { this.#page(page).resyncing = true; }

  /** A full picture of one page (replaces what was known). */
  loadSnapshot(page, annotations, seq) {
    const state = this.#page(page);
    state.confirmed = new Map(annotations.map((a) => [a.id, a]));
    state.snapshotSeq = seq;
    state.seq = seq;
    state.applied = new Set();
    state.loaded = true;
    state.resyncing = false;
    const held = state.buffer;
    state.buffer = [];
    for (const ev of held) this.applyEvent(ev, false);
    this.onChange(page);
  }

  /**
   * A live event (or the one an ack carried). Events are idempotent by seq; prev_seq above
   * the snapshot and never applied means one went missing: onGap asks for a new snapshot.
   */
  applyEvent(ev, notify = true) {
    const state = this.pages.get(ev.page);
    if (!state?.loaded && !state?.resyncing) return true; // its snapshot is still to come
    if (state.resyncing) { state.buffer.push(ev); return true; }
    this.pending.delete(ev.op_id);
    if (ev.seq <= state.snapshotSeq || state.applied.has(ev.seq)) {
      if (notify) this.onChange(ev.page);
      return true;
    }
    if (ev.prev_seq > state.snapshotSeq && !state.applied.has(ev.prev_seq)) {
      state.resyncing = true;
      state.buffer.push(ev);
      this.onGap(ev.page);
      return false;
    }
    for (const a of ev.upserts) state.confirmed.set(a.id, a);
    for (const id of ev.removed) state.confirmed.delete(id);
    state.applied.add(ev.seq);
    state.seq = Math.max(state.seq, ev.seq);
    if (notify) this.onChange(ev.page);
    return true;
  }

  /** A local op: shown at once, until the server acknowledges it. */
  addPending(op) {
    this.pending.set(op.op_id, op);
    this.onChange(op.page);
  }

  /** The server accepted the op; its ack may carry the event as this viewer sees it. */
  acknowledge(opId, event = null) {
    const op = this.pending.get(opId);
    if (event) this.applyEvent(event);
    if (this.pending.delete(opId) && op) this.onChange(op.page);
  }

  /** The server refused the op for good: undo its optimistic effect. */
  reject(opId) {
    const op = this.pending.get(opId);
    if (!op) return;
    this.pending.delete(opId);
    this.onChange(op.page);
  }

  hasPending(opId) { return this.pending.has(opId); }

  /** @returns {Annotation[]} what this viewer sees on page: confirmed + pending, oldest first. */
  visible(page) {
    const view = new Map(this.pages.get(page)?.confirmed ?? []);
    for (const op of this.pending.values()) {
      if (op.page === page) this.#applyLocal(view, op);
    }
    const key = (a) => (a.created_at ? Date.parse(a.created_at) : Infinity);  // pending last
    return [...view.values()].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  }

  get(page, id) { return this.visible(page).find((a) => a.id === id) ?? null; }

  mine(annotation) { return String(annotation.author_id) === this.userId; }

  #applyLocal(view, op) {
    if (op.type === "add" || op.type === "update") {
      const before = view.get(op.annotation.id);
      view.set(op.annotation.id, {
        ...before, ...op.annotation, page: op.page, author_id: this.userId,
        document_id: this.documentId,
        visibility: op.annotation.visibility ?? before?.visibility ?? "private",
        created_at: before?.created_at,
      });
    } else if (op.type === "delete") {
      for (const id of op.ids) view.delete(id);
    } else if (op.type === "set_visibility") {
      for (const a of [...view.values()]) {
        const targeted = op.ids ? op.ids.includes(a.id) : this.mine(a);
        if (targeted && this.mine(a)) view.set(a.id, { ...a, visibility: op.visibility });
      }
    }
  }
}
