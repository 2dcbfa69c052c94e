// The documents page offline (docs/architecture.md (Documents)): a tablet that opened a
// meeting's documents page online can reload it without a network, open the documents it
// already read and keep annotating (offline.js queues the ops and sends them on reconnect).
//
// Served at /sw.js?v=<build> (server/app.py): <build> names this deploy's browser files.
// What is kept, and how:
//   - /static and /vendor files of documents pages: cache-first, in "hopso-static-<build>";
//   - the documents page of a meeting (/meetings/{id}/documents, kept without its query):
//     network-first, in "hopso-pages-<build>" (the page names the files of its deploy);
//   - the meeting's document list and agenda, a document's details, the UI strings and each
//     sanitised PDF already fetched: network-first, in "hopso-data-1" (kept across deploys).
// Nothing else is ever stored: page images and thumbnails (confidential ones are watermarked
// for their viewer), exports, search, socket.io, login/logout and admin pages, any other
// route, any request that is not a GET, any answer that is not a plain 200 (or says
// no-store, or carries a confidential document: Hopso-Confidential). Old caches go when a new
// build activates; every cache goes at login and logout.
// Confidentiality follows the document: a document's kept PDFs are dropped when an answer
// says it is confidential now (its details, the meeting's list, a 403/404 for the PDF) and
// when the page says so (message "forget-document", sent on document:confidential and
// document:withdrawn). The PDF is always revalidated with the server (its reads are logged).

/** The worker's own scope, typed as the service worker it is (skipWaiting, clients, registration). */
const sw = /** @type {ServiceWorkerGlobalScope} */ (/** @type {unknown} */ (self));
const BUILD = new URL(self.location.href).searchParams.get("v") || "dev";
const STATIC = `hopso-static-${BUILD}`;
const PAGES = `hopso-pages-${BUILD}`;
const DATA = "hopso-data-1";
const CURRENT = new Set([STATIC, PAGES, DATA]);

const PAGE = /^\/meetings\/\d+\/documents$/;
const MEETING_DATA = /^\/api\/meetings\/\d+\/(documents|agenda)$/;
const DETAILS = /^\/api\/documents\/(\d+)$/;
const PDF = /^\/api\/documents\/(\d+)\/pdf$/;
const I18N = /^\/i18n\/[\w-]+\.json$/;
/** Requests that change who is logged in: every cache is emptied before they leave. */
const SESSION = new Set(["/login", "/logout", "/api/login", "/api/logout"]);

// Bumped when the caches are emptied: an answer that was on its way then is not stored.
let generation = 0;
// Set when the network serves a page of another deploy: its files are fetched, not cached.
let outdated = false;
// The last PDF read for range requests answered from the cache (pdf.js asks many).
let lastBody = { key: "", body: null };

self.addEventListener("install", () => { sw.skipWaiting(); });

self.addEventListener("activate", (/** @type {ExtendableEvent} */ event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith("hopso-") && !CURRENT.has(name)) await caches.delete(name);
    }
    await sw.clients.claim();
  })());
});

self.addEventListener("fetch", (/** @type {FetchEvent} */ event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.method !== "GET") {
    if (SESSION.has(url.pathname)) {
      event.respondWith(clearCaches().catch(() => {}).then(() => fetch(request)));
    }
    return; // the network, untouched
  }
  const handle = handlerFor(url, request.mode === "navigate");
  if (!handle) return;
  const keep = (p) => event.waitUntil(p);
  if (handle !== staticFile) {
    event.respondWith(handle(request, url, keep));
    return;
  }
  // Files come from the cache for documents pages (and pdf.js's worker) only: every other
  // page keeps loading them from the network, as if there were no worker.
  event.respondWith((async () => {
    const client = event.clientId ? await sw.clients.get(event.clientId) : null;
    if (client?.type === "window" && !PAGE.test(new URL(client.url).pathname)) {
      return fetch(request);
    }
    return staticFile(request, url, keep);
  })());
});

// The page (documents.js) names what it fetched before this worker controlled it.
self.addEventListener("message", (/** @type {ExtendableMessageEvent} */ event) => {
  if (event.data?.type === "warm" && Array.isArray(event.data.urls)) {
    event.waitUntil(warm(event.data.urls));
  } else if (event.data?.type === "forget-document" && Number.isInteger(event.data.document_id)) {
    event.waitUntil(forgetDocument(event.data.document_id));
  }
});

/**
 * The strategy for a request, null for what is never kept (the network answers it alone).
 * @returns {((request: Request, url: URL, keep: (p: Promise<unknown>) => void)
 *   => Promise<Response>) | null}
 */
function handlerFor(url, navigate) {
  const path = url.pathname;
  if (PAGE.test(path)) return navigate ? page : null;
  if (path.startsWith("/static/") || path.startsWith("/vendor/")) return staticFile;
  if (MEETING_DATA.test(path) || DETAILS.test(path) || I18N.test(path)) return data;
  if (PDF.test(path)) return pdf;
  return null;
}

// --- strategies ---------------------------------------------------------------------------

async function page(request, url, keep) {
  const key = url.origin + url.pathname;
  const started = generation;
  let response;
  try {
    response = await fetch(request);
  } catch {
    return (await fromCache(PAGES, key)) ?? Response.error();
  }
  if (response.status >= 500) return (await fromCache(PAGES, key)) ?? response;
  if (storable(response)) {
    const text = await response.clone().text();
    const build = /data-build="([^"]*)"/.exec(text)?.[1];
    outdated = Boolean(build) && build !== BUILD;
    if (!outdated) keep(store(PAGES, key, response.clone(), started));
  }
  return response;
}

async function staticFile(request, url, keep) {
  if (!outdated) {
    const hit = await fromCache(STATIC, request);
    if (hit) return hit;
  }
  const started = generation;
  let response;
  try {
    response = await fetch(request);
  } catch {
    return (await fromCache(STATIC, request)) ?? Response.error();
  }
  if (!outdated && storable(response)) keep(store(STATIC, request, response.clone(), started));
  return response;
}

async function data(request, url, keep) {
  const started = generation;
  let response;
  try {
    response = await fetch(request);
  } catch {
    return (await fromCache(DATA, request.url)) ?? Response.error();
  }
  if (response.status >= 500) return (await fromCache(DATA, request.url)) ?? response;
  const details = DETAILS.exec(url.pathname);
  if (details && confidential(response)) keep(forgetDocument(Number(details[1])));
  if (MEETING_DATA.test(url.pathname) && response.ok) keep(forgetConfidential(response.clone()));
  if (storable(response)) keep(store(DATA, request.url, response.clone(), started));
  else if (response.status === 403 || response.status === 404) keep(forget(request.url));
  return response;
}

/**
 * A sanitised PDF (?version= names its bytes). pdf.js reads the whole file and asks byte
 * ranges of it meanwhile: the whole file is kept (fetched without the page's abort signal, so
 * it completes even when pdf.js stops reading), ranges pass through, and offline both are
 * answered from the kept copy. With it, the document's details are kept (opening it offline
 * needs them; documents-api.js asks them over HTTP when there is no connection).
 */
async function pdf(request, url, keep) {
  const range = request.headers.get("Range");
  const started = generation;
  // A caller that asked for no stored copy (cache: "no-store" / "reload") gets none from here.
  const cacheless = request.cache === "no-store" || request.cache === "reload";
  let response;
  try {
    // Always revalidated (the server answers 304 when unchanged): the browser's HTTP cache
    // must not answer for a document that became confidential, and every read is logged.
    response = await fetch(new Request(request.url, {
      headers: request.headers, credentials: "same-origin", mode: "same-origin",
      cache: request.cache === "no-store" ? "no-store" : "no-cache" }));
  } catch {
    return (cacheless ? null : await pdfFromCache(request.url, range)) ?? Response.error();
  }
  if (response.status >= 500) {
    return (cacheless ? null : await pdfFromCache(request.url, range)) ?? response;
  }
  const documentId = PDF.exec(url.pathname)[1];
  if (!range && storable(response)) {
    keep(store(DATA, request.url, response.clone(), started)
      .then(() => refresh(`${url.origin}/api/documents/${documentId}`, started)));
  } else if (response.status === 403 || response.status === 404) {
    keep(forgetDocument(Number(documentId))
      .then(() => forget(`${url.origin}/api/documents/${documentId}`)));
  }
  return response;
}

async function pdfFromCache(key, range) {
  const cached = await fromCache(DATA, key);
  if (!cached) return null;
  if (!range) {
    // Without Accept-Ranges pdf.js simply reads the whole kept file.
    const headers = new Headers(cached.headers);
    headers.delete("Accept-Ranges");
    return new Response(cached.body, { status: 200, headers });
  }
  if (lastBody.key !== key) lastBody = { key, body: await cached.arrayBuffer() };
  const body = lastBody.body;
  const size = body.byteLength;
  const m = /^bytes=(\d+)-(\d*)$/.exec(range.trim());
  const start = m ? Number(m[1]) : size;
  const end = m && m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
  if (start >= size || end < start) {
    return new Response(null, { status: 416, headers: { "Content-Range": `bytes */${size}` } });
  }
  return new Response(body.slice(start, end + 1), { status: 206, headers: {
    "Content-Type": cached.headers.get("Content-Type") || "application/pdf",
    "Content-Range": `bytes ${start}-${end}/${size}`, "Content-Length": String(end - start + 1),
  } });
}

// --- the caches ---------------------------------------------------------------------------

/** A plain, complete 200 of this site that does not forbid storing. */
function storable(response) {
  return response.status === 200 && response.type === "basic" && !response.redirected
    && !/no-store/i.test(response.headers.get("Cache-Control") || "") && !confidential(response);
}

/** The answer carries (or is about) a confidential document: never kept. */
function confidential(response) {
  return response.headers.get("Hopso-Confidential") === "1";
}

/** Every kept PDF of a document (any version), and the range body read from one. */
async function forgetDocument(documentId) {
  lastBody = { key: "", body: null };
  const cache = await caches.open(DATA);
  for (const request of await cache.keys()) {
    const match = PDF.exec(new URL(request.url).pathname);
    if (match && Number(match[1]) === documentId) await cache.delete(request);
  }
}

/** The meeting's document list: drop what was kept of the documents now confidential. */
async function forgetConfidential(response) {
  try {
    const body = await response.json();
    for (const group of body?.groups ?? []) {
      for (const doc of group.documents ?? []) {
        if (doc.confidential) await forgetDocument(doc.id);
      }
    }
  } catch {
    // not the list (the agenda), or not JSON: nothing to drop
  }
}

// A lookup never creates a cache (caches.open would): this worker may already be replaced
// by a new build, whose activation deleted this build's caches.
async function fromCache(name, key) {
  return (await caches.match(key, { cacheName: name, ignoreVary: true })) ?? null;
}

/** True once a worker of another build is installing, waiting or active: its activation
 * deletes this build's caches, so keep none. Not only once it is active: a store begun just
 * before that activation re-created this build's cache after the sweep, and Chromium ended
 * this replaced worker before the store could see it and delete the cache again (CI, once). */
function replaced() {
  const { installing, waiting, active } = sw.registration;
  return [installing, waiting, active].some((w) => Boolean(w) && w.scriptURL !== self.location.href);
}

async function store(name, key, response, started) {
  if (started !== generation || replaced()) return;
  const cache = await caches.open(name);
  if (started !== generation) return;
  await cache.put(key, response);
  // Emptied meanwhile, or a new build activated (and deleted this build's caches) meanwhile.
  if (started !== generation || (name !== DATA && replaced())) await caches.delete(name);
}

async function forget(key) {
  await (await caches.open(DATA)).delete(key);
}

async function refresh(url, started) {
  try {
    const response = await fetch(url, { credentials: "same-origin",
                                        headers: { Accept: "application/json" } });
    if (storable(response)) await store(DATA, url, response, started);
  } catch {
    // offline again: the copy kept before (if any) stays
  }
}

async function clearCaches() {
  generation += 1;
  lastBody = { key: "", body: null };
  for (const name of await caches.keys()) {
    if (name.startsWith("hopso-")) await caches.delete(name);
  }
}

/** Keep what a page fetched before this worker controlled it (its first visit, a hard reload). */
async function warm(urls) {
  const seen = new Set();
  for (const raw of urls) {
    let url;
    try {
      url = new URL(raw, self.location.origin);
    } catch {
      continue;
    }
    if (url.origin !== self.location.origin || seen.has(url.href)) continue;
    seen.add(url.href);
    const navigate = PAGE.test(url.pathname);
    const handle = handlerFor(url, navigate);
    if (!handle) continue;
    const cacheName = handle === staticFile ? STATIC : handle === page ? PAGES : DATA;
    const key = navigate ? url.origin + url.pathname : url.href;
    // Static files and PDFs do not change under their URL: keep the copy there is.
    if ((handle === staticFile || handle === pdf) && await fromCache(cacheName, key)) continue;
    const request = new Request(url.href, { credentials: "same-origin",
                                            headers: navigate ? { Accept: "text/html" } : {} });
    const pending = [];
    try {
      const response = await handle(request, url, (p) => pending.push(p));
      await response.body?.cancel(); // the kept copy is read on its own
      await Promise.all(pending);
    } catch (error) {
      console.warn("service worker: could not keep", url.href, error);
    }
  }
}
