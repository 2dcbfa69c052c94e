// Annotation ops survive a dropped Wi-Fi and a closed tab: each op is written to IndexedDB
// (keyed by op_id, so the same op is never queued twice) before it is sent, sent in order
// once the connection is back, and removed only after the server acknowledged it. The
// server deduplicates by op_id too, so an op resent after a lost ack is harmless.

const DB_NAME = "hopso-offline";
const STORE = "ops";
const RETRY_MS = 5000;

/**
 * @typedef {object} QueuedOp
 * @property {string} op_id
 * @property {string} user_id  who drew it (the logged-in user at the time)
 * @property {string} document_id
 * @property {number} version
 * @property {import("./annotation-store.js").Op} op
 * @property {number} queued_at
 * @property {number} order
 */

/**
 * @typedef {object} OpSender  how ops reach the server (documents-api.js implements it)
 * @property {() => boolean} isOnline
 * @property {(record: QueuedOp) => Promise<object>} sendOp  resolves with the ack's result;
 *   rejects with an Error whose .permanent is true when resending cannot help
 */

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** IndexedDB where it works, memory where it does not (private browsing on old Safari). */
class Storage {
  constructor() {
    this.memory = new Map();
    this.db = null;
    this.ready = this.#open().catch((error) => {
      console.warn("IndexedDB unavailable; unsent ops live in memory only", error);
    });
  }

  async #open() {
    if (!globalThis.indexedDB) throw new Error("no IndexedDB");
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => {
      const store = req.result.createObjectStore(STORE, { keyPath: "op_id" });
      store.createIndex("document_id", "document_id");
    };
    this.db = await request(req);
  }

  async #tx(mode, work) {
    await this.ready;
    const tx = this.db.transaction(STORE, mode);
    const result = await request(work(tx.objectStore(STORE)));
    await new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
    return result;
  }

  async put(record) {
    await this.ready;
    if (!this.db) { if (!this.memory.has(record.op_id)) this.memory.set(record.op_id, record); return; }
    // add(), not put(): a second enqueue of the same op_id must not reorder or replace it.
    try {
      await this.#tx("readwrite", (s) => s.add(record));
    } catch (error) {
      if (error?.name !== "ConstraintError") throw error;
    }
  }

  async delete(opId) {
    await this.ready;
    if (!this.db) { this.memory.delete(opId); return; }
    await this.#tx("readwrite", (s) => s.delete(opId));
  }

  /** @returns {Promise<QueuedOp[]>} oldest first */
  async all(documentId = null) {
    await this.ready;
    let rows;
    if (!this.db) {
      rows = [...this.memory.values()];
    } else if (documentId) {
      rows = await this.#tx("readonly", (s) => s.index("document_id").getAll(documentId));
    } else {
      rows = await this.#tx("readonly", (s) => s.getAll());
    }
    if (documentId) rows = rows.filter((r) => r.document_id === documentId);
    return rows.sort((a, b) => a.order - b.order);
  }
}

export class OpQueue {
  /**
   * @param {OpSender} sender
   * @param {string} userId  ops are kept per user: on a shared tablet, one delegate's unsent
   *   notes are never sent under the next delegate's login
   */
  constructor(sender, userId) {
    this.sender = sender;
    this.userId = String(userId);
    this.storage = new Storage();
    this.flushing = null;
    this.retryTimer = 0;
    this.counter = 0;
    this.size = 0;
    this.writing = 0; // ops being written to IndexedDB right now
    /** @type {(opId: string, result: object) => void} */
    this.onAck = () => {};
    /** @type {(opId: string, error: Error, record: QueuedOp) => void} */
    this.onReject = () => {};
    /** @type {(waiting: number) => void} */
    this.onSizeChange = () => {};
    this.storage.ready.then(() => this.#recount());
  }

  async #mine(documentId = null) {
    return (await this.storage.all(documentId)).filter((r) => r.user_id === this.userId);
  }

  async #recount() {
    const rows = await this.#mine();
    this.size = rows.length + this.writing;
    this.onSizeChange(this.size);
    return rows;
  }

  /** Ops of one document version still waiting (to show them after a reload). */
  async waiting(documentId, version) {
    const rows = await this.#mine(String(documentId));
    return rows.filter((r) => r.version === version).map((r) => r.op);
  }

  /** Keep the op, then try to send everything that waits. */
  async enqueue(documentId, version, op) {
    this.counter += 1;
    // Counted at once (the write below is asynchronous): "saved" must never show early.
    this.writing += 1;
    this.size += 1;
    this.onSizeChange(this.size);
    try {
      await this.storage.put({ op_id: op.op_id, user_id: this.userId, document_id: String(documentId),
                               version, op,
                               queued_at: Date.now(), order: Date.now() * 1000 + (this.counter % 1000) });
    } finally {
      this.writing -= 1;
    }
    await this.#recount();
    return this.flush();
  }

  /** Send queued ops in order; stops at the first one that cannot be delivered now. */
  flush() {
    if (this.flushing) { this.again = true; return this.flushing; }
    this.flushing = (async () => {
      do { this.again = false; await this.#flush(); } while (this.again);
    })().finally(() => { this.flushing = null; });
    return this.flushing;
  }

  async #flush() {
    clearTimeout(this.retryTimer);
    let rows = await this.#mine();
    while (rows.length && this.sender.isOnline()) {
      const record = rows.shift();
      try {
        const result = await this.sender.sendOp(record);
        await this.storage.delete(record.op_id);
        this.onAck(record.op_id, result);
      } catch (error) {
        if (!error?.permanent) {
          this.retryTimer = setTimeout(() => this.flush(), RETRY_MS);
          break;
        }
        // Refused for good (invalid, no longer allowed): resending would fail forever.
        await this.storage.delete(record.op_id);
        this.onReject(record.op_id, error, record);
      }
      if (!rows.length) rows = await this.#mine(); // ops queued meanwhile
    }
    await this.#recount();
  }
}

/** The little "offline / n changes waiting / saved" badge. */
export class OfflineIndicator {
  /** @param {HTMLElement} element  @param {(msgid: string) => string} t */
  constructor(element, t) {
    this.element = element;
    this.t = t;
    this.online = navigator.onLine;
    this.waiting = 0;
    this.render();
  }

  setOnline(online) { this.online = online; this.render(); }
  setWaiting(n) { this.waiting = n; this.render(); }

  render() {
    const el = this.element;
    el.dataset.state = !this.online ? "offline" : this.waiting ? "sending" : "saved";
    el.dataset.waiting = String(this.waiting);
    if (!this.online) {
      el.textContent = this.waiting
        ? `${this.t("Offline")} · ${this.waiting} ${this.t("changes waiting")}`
        : this.t("Offline");
    } else {
      el.textContent = this.waiting ? `${this.t("Sending")} ${this.waiting}…` : this.t("Saved");
    }
  }
}
