// Versions and confidentiality of a meeting's documents (issue 17): the secretary's new
// version upload and confidential switch (doc-list.js), what changed page by page, the
// refusals in the reader's language, and telling the service worker to drop what it kept of
// a document that became confidential or was withdrawn (sw.js).

import { api, csrfToken } from "./api.js";

/** Refusal codes → the sentence shown (msgids of web_client/locale). */
const ERRORS = {
  stale_version: "This page shows an older version of the document. Reload the page and try again.",
  wrong_meeting: "This document belongs to another meeting.",
  withdrawn: "The document was withdrawn. Publish it again before uploading a new version.",
  processing: "A newer version is still being prepared. Wait until it is ready.",
  forbidden: "You are not allowed to do this.",
  duplicate: "This file was already uploaded.",
  view_only: "This document is confidential: view only.",
};

/**
 * The refusal in the reader's language (a known code), else the server's own message.
 * @param {(msgid: string) => string} t
 * @param {{code?: string, message?: string}} error
 */
export function errorText(t, error) {
  const msgid = error?.code ? ERRORS[error.code] : undefined;
  return msgid ? t(msgid) : (error?.message ?? String(error));
}

/**
 * Upload a new version of `doc` from this meeting's page, naming the meeting and the version
 * the page shows (the server refuses a stale page or another meeting's document).
 * @param {number} meetingId
 * @param {{id: number, version: number}} doc
 * @param {File} file
 * @param {(sent: number, total: number) => void} onProgress
 * @returns {Promise<any>}
 */
export function uploadVersion(meetingId, doc, file, onProgress) {
  const form = new FormData();
  form.append("meeting_id", String(meetingId));
  form.append("base_version", String(doc.version));
  form.append("file", file, file.name);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/documents/${doc.id}/versions`);
    xhr.setRequestHeader("X-CSRF-Token", csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onload = () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) { resolve(body); return; }
      const vi = document.body.dataset.lang === "vi" && body?.error?.message_vi;
      reject(Object.assign(new Error(vi || body?.error?.message || xhr.statusText),
                           { code: body?.error?.code ?? String(xhr.status) }));
    };
    xhr.onerror = () => reject(Object.assign(new Error("network error"), { code: "network" }));
    xhr.send(form);
  });
}

/**
 * Mark a document confidential or not, for the version this page shows.
 * @param {{id: number, version: number}} doc
 * @param {boolean} confidential
 */
export function setConfidential(doc, confidential) {
  return api("PATCH", `/api/documents/${doc.id}`, { confidential, version: doc.version });
}

/**
 * What changed in `version` against the version before it.
 * @returns {Promise<{version: number, previous_version: number, removed: number[],
 *   pages: {page: number, change: string, from_page: number|null, flagged: number}[]}>}
 */
export async function versionChanges(documentId, version) {
  const response = await fetch(`/api/documents/${documentId}/versions/${version}/changes`,
                               { credentials: "same-origin", headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw Object.assign(new Error(body?.error?.message ?? response.statusText),
                        { code: body?.error?.code ?? String(response.status) });
  }
  return body;
}

/**
 * One line per page that is not the same: "Page 2: changed (2 notes to review)".
 * @param {(msgid: string) => string} t
 * @param {Awaited<ReturnType<typeof versionChanges>>} changes
 * @returns {string[]}
 */
export function summaryLines(t, changes) {
  const lines = [];
  for (const p of changes.pages) {
    let what;
    if (p.change === "changed") what = t("changed");
    else if (p.change === "added") what = t("new page");
    else if (p.change === "moved") what = `${t("moved from page")} ${p.from_page + 1}`;
    else if (p.change === "unknown") what = t("no text to compare");
    else if (!p.flagged) continue;
    else what = t("unchanged");
    const review = p.flagged ? ` (${p.flagged} ${t("notes to review")})` : "";
    lines.push(`${t("Page")} ${p.page + 1}: ${what}${review}`);
  }
  for (const page of changes.removed) lines.push(`${t("Page")} ${page + 1}: ${t("page removed")}`);
  if (!lines.length) lines.push(t("No page changed."));
  return lines;
}

/** Tell the service worker to drop every copy it kept of a document. */
export function forgetInWorker(documentId) {
  navigator.serviceWorker?.controller?.postMessage({ type: "forget-document",
                                                     document_id: Number(documentId) });
}
