// The drawer: documents grouped by agenda item with their processing progress, the
// secretary's upload form (byte progress, then processing progress from the socket),
// publish/withdraw, confidential or not, a new version with what changed per page
// (doc-versions.js), and search across the meeting's documents.

import { errorText, setConfidential, summaryLines, uploadVersion, versionChanges } from "./doc-versions.js";

const STAGE_PERCENT = { validating: 4, converting: 12 };

/** 0–100 for a processing document (validating → converting → rendering pages). */
export function progressPercent(stage, done, total) {
  if (stage === "ready" || stage === "ready_with_warnings") return 100;
  if (stage === "rendering") return total ? Math.round(15 + 85 * done / total) : 15;
  return STAGE_PERCENT[stage] ?? 0;
}

/** A server timestamp (ISO, UTC; SQLite's come without the zone) in ms, 0 if absent. */
function stamp(iso) {
  if (!iso) return 0;
  return Date.parse(/(Z|[+-]\d\d:\d\d)$/.test(iso) ? iso : `${iso}Z`) || 0;
}

/**
 * The documents of a list answer, each replaced by the copy this page already holds when that
 * one is newer: a list asked for before a change and answered after it (a reconnection's
 * catch-up racing the secretary's own switch) must not undo what the page shows.
 * @template {{id: number, updated_at?: string}} D
 * @param {Map<number, D>} known  @param {D[]} listed  @returns {Map<number, D>}
 */
export function newerDocs(known, listed) {
  return new Map(listed.map((d) => {
    const held = known.get(d.id);
    return [d.id, held && stamp(held.updated_at) > stamp(d.updated_at) ? held : d];
  }));
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export class DocList {
  /**
   * @param {object} o
   * @param {HTMLElement} o.root  the #documents section
   * @param {import("./documents-api.js").DocumentsClient} o.client
   * @param {(msgid: string) => string} o.t
   * @param {(documentId: number, page?: number) => void} o.onOpen
   * @param {(text: string) => void} o.toast
   */
  constructor({ root, client, t, onOpen, toast }) {
    this.root = root;
    this.client = client;
    this.t = t;
    this.onOpen = onOpen;
    this.toast = toast;
    this.canManage = root.dataset.canUpload === "true";
    this.meetingId = Number(root.dataset.meetingId);
    /** @type {Map<number, {version: number, lines: string[]}>} what changed in the last new version */
    this.changes = new Map();
    /** @type {Map<number, string>} the effect of the secretary's last change, per document */
    this.notes = new Map();
    this.lang = document.body.dataset.lang || "vi";
    this.box = root.querySelector("#doc-list");
    /** @type {Map<number, import("./documents-api.js").DocumentInfo>} */
    this.docs = new Map();
    this.progress = new Map(); // documentId → {stage, done, total}
    this.agenda = new Map();
    this.current = null;
    this.#wireSearch();
    this.#wireUpload();
  }

  async load() {
    try {
      const [agenda, groups] = await Promise.all([this.client.agendaTitles(), this.client.list()]);
      this.agenda = agenda;
      this.docs = newerDocs(this.docs, groups.flatMap((g) => g.documents));
      this.#fillAgendaSelect();
      this.render();
    } catch (error) {
      this.box.replaceChildren(el("p", "error", error.message));
    }
    this.box.setAttribute("aria-busy", "false");
  }

  setCurrent(documentId) {
    this.current = documentId;
    for (const item of /** @type {NodeListOf<HTMLElement>} */ (this.box.querySelectorAll(".doc-item"))) {
      item.classList.toggle("current", Number(item.dataset.documentId) === documentId);
    }
  }

  upsert(doc) {
    const before = this.docs.get(doc.id);
    this.docs.set(doc.id, { ...before, ...doc });
    if (doc.status !== "processing") {
      this.progress.delete(doc.id);
      // "Uploaded; the pages are being prepared." holds only while they are (issue 14): once
      // processing ends (ready or rejected) that note and the upload form's line clear.
      const preparing = this.t("Uploaded; the pages are being prepared.");
      if (this.notes.get(doc.id) === preparing) this.notes.delete(doc.id);
      const status = document.getElementById("upload-status");
      const busy = [...this.docs.values()].some((d) => d.status === "processing");
      if (status && status.textContent === preparing && !busy) status.textContent = "";
    }
    if (this.canManage && before && doc.version > before.version) this.#loadChanges(doc.id, doc.version);
    this.render();
  }

  /** A document:confidential event: the list says so at once. */
  setConfidentialFlag(documentId, confidential) {
    const doc = this.docs.get(documentId);
    if (!doc) return;
    doc.confidential = confidential;
    this.#paintItem(this.box.querySelector(`[data-document-id="${documentId}"]`), doc);
  }

  async #loadChanges(documentId, version) {
    try {
      const changes = await versionChanges(documentId, version);
      this.changes.set(documentId, { version, lines: summaryLines(this.t, changes) });
    } catch (error) {
      this.changes.set(documentId, { version, lines: [errorText(this.t, error)] });
    }
    this.#paintItem(this.box.querySelector(`[data-document-id="${documentId}"]`), this.docs.get(documentId));
  }

  remove(documentId) {
    if (this.canManage) return; // managers keep seeing unpublished documents
    this.docs.delete(documentId);
    this.render();
  }

  /** A document:progress event. */
  handleProgress(ev) {
    this.progress.set(ev.documentId, ev);
    const doc = this.docs.get(ev.documentId);
    if (doc) {
      if (["ready", "ready_with_warnings", "rejected"].includes(ev.stage)) {
        doc.status = ev.stage;
        if (ev.rejection) doc.rejection = ev.rejection;
        if (ev.total) doc.page_count = ev.total;
      }
      this.#paintItem(this.box.querySelector(`[data-document-id="${ev.documentId}"]`), doc);
    }
  }

  // --- rendering -----------------------------------------------------------------------------

  render() {
    const groups = new Map();
    for (const doc of this.docs.values()) {
      const key = doc.agenda_item_id ?? null;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(doc);
    }
    const order = (k) => (k === null ? Infinity : this.agenda.get(k)?.position ?? k);
    const keys = [...groups.keys()].sort((a, b) => order(a) - order(b));
    if (!keys.length) {
      this.box.replaceChildren(el("p", "muted", this.t("No documents yet.")));
      return;
    }
    this.box.replaceChildren(...keys.map((key) => {
      const section = el("section", "doc-group");
      const item = key === null ? null : this.agenda.get(key);
      const heading = key === null ? this.t("Other documents")
        : item ? `${item.position ?? ""}. ${item.title}` : `${this.t("Agenda item")} ${key}`;
      section.append(el("h2", "doc-group-title", heading));
      const list = el("ul", "doc-items");
      const docs = groups.get(key).sort((a, b) => String(a.created_at).localeCompare(String(b.created_at)));
      for (const doc of docs) list.append(this.#item(doc));
      section.append(list);
      return section;
    }));
  }

  #item(doc) {
    const li = el("li", "doc-item");
    li.dataset.documentId = String(doc.id);
    const open = el("button", "doc-open");
    open.type = "button";
    open.append(el("span", "doc-name"), el("span", "doc-meta"));
    open.addEventListener("click", () => this.onOpen(doc.id));
    const status = el("div", "doc-status");
    const bar = el("div", "bar");
    bar.append(el("div", "bar-fill"));
    status.append(bar, el("span", "doc-status-text"));
    li.append(open, status);
    if (this.canManage) {
      const publish = el("button", "doc-publish tool-wide");
      publish.type = "button";
      publish.addEventListener("click", () => this.#togglePublish(doc.id, publish));
      const secret = el("button", "doc-confidential tool-wide");
      secret.type = "button";
      secret.title = this.t("Confidential: delegates see watermarked pages only, no download; open viewers switch at once.");
      secret.addEventListener("click", () => this.#toggleConfidential(doc.id, secret));
      const version = el("button", "doc-version tool-wide", this.t("New version"));
      version.type = "button";
      const file = /** @type {HTMLInputElement} */ (el("input", "doc-version-file"));
      file.type = "file";
      file.accept = ".pdf,.doc,.docx,.odt,.xls,.xlsx,.ods,.ppt,.pptx,.odp,application/pdf";
      file.hidden = true;
      file.addEventListener("change", () => this.#uploadVersion(doc.id, file));
      version.addEventListener("click", () => file.click());
      const note = el("p", "doc-note muted");
      note.setAttribute("role", "status");
      li.append(publish, secret, version, file, note, el("ul", "doc-changes"));
    }
    this.#paintItem(li, doc);
    return li;
  }

  #paintItem(li, doc) {
    if (!li) return;
    const t = this.t;
    li.dataset.status = doc.status;
    li.classList.toggle("current", doc.id === this.current);
    li.querySelector(".doc-name").textContent = doc.title;
    const meta = [];
    if (doc.page_count) meta.push(`${doc.page_count} ${t("pages")}`);
    if (doc.confidential) meta.push(t("Confidential"));
    if (!doc.published) meta.push(t("Not published"));
    if (doc.version > 1) meta.push(`${t("version")} ${doc.version}`);
    li.querySelector(".doc-meta").textContent = meta.join(" · ");
    const ready = doc.status === "ready" || doc.status === "ready_with_warnings";
    li.querySelector(".doc-open").disabled = !ready;
    const p = this.progress.get(doc.id) ?? doc.progress ?? null;
    const percent = ready ? 100 : p ? progressPercent(p.stage, p.done, p.total) : 0;
    const statusBox = li.querySelector(".doc-status");
    // The bar stays for managers (they watch uploads finish); delegates only see ready ones.
    statusBox.hidden = ready && !this.canManage;
    const bar = li.querySelector(".bar");
    bar.dataset.percent = String(percent);
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-valuenow", String(percent));
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    bar.classList.toggle("rejected", doc.status === "rejected");
    li.querySelector(".bar-fill").style.width = `${doc.status === "rejected" ? 100 : percent}%`;
    li.querySelector(".doc-status-text").textContent = this.#statusText(doc, p);
    const publish = li.querySelector(".doc-publish");
    if (publish) {
      publish.textContent = doc.published ? t("Withdraw") : t("Publish");
      publish.disabled = doc.status === "rejected";
    }
    const secret = li.querySelector(".doc-confidential");
    if (secret) {
      secret.textContent = doc.confidential ? t("Confidential: on") : t("Confidential: off");
      secret.setAttribute("aria-pressed", String(Boolean(doc.confidential)));
    }
    const note = li.querySelector(".doc-note");
    if (note) {
      note.textContent = this.notes.get(doc.id) ?? "";
      note.hidden = !note.textContent;
    }
    const changes = li.querySelector(".doc-changes");
    if (changes) {
      const known = this.changes.get(doc.id);
      changes.replaceChildren(...(known?.version === doc.version ? known.lines : [])
        .map((line) => el("li", null, line)));
      if (known?.version === doc.version) {
        changes.prepend(el("li", "doc-changes-title", `${t("Version")} ${doc.version}:`));
      }
    }
  }

  async #toggleConfidential(documentId, button) {
    const doc = this.docs.get(documentId);
    button.disabled = true;
    try {
      const updated = await setConfidential(doc, !doc.confidential);
      this.notes.set(documentId, updated.confidential
        ? this.t("Now confidential: open viewers switched to watermarked pages; no download.")
        : this.t("No longer confidential: viewers see the document without a watermark and can download it."));
      this.upsert(updated);
    } catch (error) {
      this.notes.set(documentId, errorText(this.t, error));
      this.#paintItem(this.box.querySelector(`[data-document-id="${documentId}"]`), doc);
    } finally {
      button.disabled = false;
    }
  }

  async #uploadVersion(documentId, input) {
    const file = input.files?.[0];
    const doc = this.docs.get(documentId);
    if (!file || !doc) return;
    const show = (text) => {
      this.notes.set(documentId, text);
      this.#paintItem(this.box.querySelector(`[data-document-id="${documentId}"]`), this.docs.get(documentId));
    };
    try {
      show(`${this.t("Uploading")} 0%`);
      const updated = await uploadVersion(this.meetingId, doc, file, (sent, total) =>
        show(`${this.t("Uploading")} ${total ? Math.round(100 * sent / total) : 0}%`));
      this.notes.set(documentId, this.t("Uploaded; the pages are being prepared."));
      this.upsert(updated);
    } catch (error) {
      show(errorText(this.t, error));
    } finally {
      input.value = "";
    }
  }

  #statusText(doc, p) {
    const t = this.t;
    if (doc.status === "ready") return t("Ready");
    if (doc.status === "ready_with_warnings") return t("Ready (with warnings)");
    if (doc.status === "rejected") {
      const r = doc.rejection ?? p?.rejection;
      return `${t("Rejected")}: ${(this.lang === "vi" ? r?.message_vi : r?.message_en) ?? ""}`;
    }
    if (!p || p.stage === "validating") return t("Checking the file…");
    if (p.stage === "converting") return t("Converting to PDF…");
    return `${t("Preparing pages")} ${p.done}/${p.total}`;
  }

  async #togglePublish(documentId, button) {
    const doc = this.docs.get(documentId);
    button.disabled = true;
    try {
      this.upsert(await this.client.publish(documentId, !doc.published));
    } catch (error) {
      this.toast(error.message);
      button.disabled = false;
    }
  }

  // --- upload -----------------------------------------------------------------------------------

  #fillAgendaSelect() {
    const select = /** @type {HTMLSelectElement|null} */ (this.root.querySelector("#upload-agenda"));
    if (!select) return;
    const items = [...this.agenda.entries()].sort((a, b) => a[1].position - b[1].position);
    select.replaceChildren(select.options[0], ...items.map(([id, item]) => {
      const option = el("option", null, `${item.position}. ${item.title}`);
      option.value = String(id);
      return option;
    }));
  }

  #wireUpload() {
    const form = /** @type {HTMLFormElement|null} */ (this.root.querySelector("#upload-form"));
    if (!form) return;
    /** @param {string} selector */
    const input = (selector) => /** @type {HTMLInputElement} */ (form.querySelector(selector));
    const bar = /** @type {HTMLElement} */ (form.querySelector("#upload-bar"));
    const status = form.querySelector("#upload-status");
    const submit = /** @type {HTMLButtonElement} */ (form.querySelector("#upload-submit"));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const file = input("#upload-file").files[0];
      if (!file) return;
      const agenda = /** @type {HTMLSelectElement} */ (form.querySelector("#upload-agenda")).value;
      const publish = input("#upload-publish").checked;
      submit.disabled = true;
      bar.hidden = false;
      bar.classList.remove("rejected");
      const fill = /** @type {HTMLElement} */ (bar.querySelector(".bar-fill"));
      const show = (sent, total) => {
        const percent = total ? Math.round(100 * sent / total) : 0;
        fill.style.width = `${percent}%`;
        bar.dataset.percent = String(percent);
        status.textContent = `${this.t("Uploading")} ${percent}%`;
      };
      show(0, file.size);
      try {
        const doc = await this.client.upload(file, {
          title: input("#upload-title").value.trim(),
          agendaItemId: agenda ? Number(agenda) : null,
          confidential: input("#upload-confidential").checked,
        }, show);
        show(file.size, file.size);
        status.textContent = this.t("Uploaded; the pages are being prepared.");
        this.upsert(doc);
        if (publish) this.upsert(await this.client.publish(doc.id, true));
        form.reset();
        bar.hidden = true;
      } catch (error) {
        bar.classList.add("rejected");
        status.textContent = error.message;
        if (error.code === "duplicate" && error.documentId) {
          status.textContent = `${this.t("This file was already uploaded.")}`;
        }
      } finally {
        submit.disabled = false;
      }
    });
  }

  // --- search -----------------------------------------------------------------------------------

  #wireSearch() {
    const form = this.root.querySelector("#search-form");
    const input = /** @type {HTMLInputElement} */ (this.root.querySelector("#search-input"));
    const results = /** @type {HTMLElement} */ (this.root.querySelector("#search-results"));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const q = input.value.trim();
      if (!q) { results.hidden = true; return; }
      results.hidden = false;
      results.replaceChildren(el("p", "muted", this.t("Searching…")));
      try {
        const answer = await this.client.search(q);
        results.replaceChildren(...this.#hits(answer.hits));
      } catch (error) {
        results.replaceChildren(el("p", "error", error.message));
      }
    });
    input.addEventListener("search", () => { if (!input.value) results.hidden = true; });
  }

  #hits(hits) {
    if (!hits.length) return [el("p", "muted", this.t("Nothing found."))];
    const list = el("ul", "hits");
    for (const hit of hits) {
      const li = el("li");
      const b = el("button", "hit");
      b.type = "button";
      b.dataset.documentId = String(hit.document_id);
      b.dataset.page = String(hit.page);
      b.append(el("span", "hit-where", `${hit.title} · ${this.t("page")} ${hit.page + 1}`));
      const snippet = el("span", "hit-snippet");
      const s = hit.snippet ?? "";
      const mark = el("mark", null, s.slice(hit.start, hit.end));
      snippet.append(s.slice(0, hit.start), mark, s.slice(hit.end));
      b.append(snippet);
      b.addEventListener("click", () => this.onOpen(hit.document_id, hit.page));
      li.append(b);
      list.append(li);
    }
    return [list];
  }
}
