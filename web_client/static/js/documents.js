// The documents of a meeting: wires the list, the viewer, the offline queue and the live
// connection together. Everything it knows about the wire is in documents-api.js. Runs on
// its own page (/meetings/{id}/documents, offline-capable) and as the documents pane of the
// meeting screen (data-embedded="true": meeting-screen.js shows and hides it).

import { startMeetingPrompts } from "./ballot-prompt.js";
import { DocumentsClient } from "./documents-api.js";
import { DocList } from "./doc-list.js";
import { DocViewer } from "./doc-viewer.js";
import { ReaderVersions } from "./doc-reader-versions.js";
import { errorText, forgetInWorker } from "./doc-versions.js";
import { loadCatalog, t } from "./i18n.js";
import { OfflineIndicator, OpQueue } from "./offline.js";
import { RecordingBadge, followRecording } from "./recording-badge.js";
import { Signaling } from "./signaling.js";

await loadCatalog();
const root = document.getElementById("documents");
const embedded = root.dataset.embedded === "true";
if (!embedded) document.body.classList.add("docs-page");
const meetingId = Number.parseInt(root.dataset.meetingId, 10);
const drawerToggle = document.getElementById("drawer-toggle");
const toastBox = document.getElementById("toast");

let toastTimer = 0;
function toast(text) {
  toastBox.textContent = text;
  toastBox.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { toastBox.hidden = true; }, 5000);
}

const signaling = new Signaling();
// A vote opened or the floor given reaches a delegate reading here too (issue 14); on the
// meeting screen the procedure panel hosts these prompts.
if (!embedded) startMeetingPrompts(signaling.socket, meetingId);
// The standalone page shows the recording badge (on the meeting screen the state bar does).
const recBadgeEl = document.getElementById("docs-rec-badge");
const recBadge = recBadgeEl && !embedded ? new RecordingBadge(recBadgeEl, t) : null;
const recording = recBadge
  ? followRecording(signaling.socket, (e, p) => signaling.request(e, p), meetingId,
    (state) => recBadge.show(state)) : null;
const client = new DocumentsClient(signaling, meetingId);
client.userId = root.dataset.me;
const indicator = new OfflineIndicator(document.getElementById("net-state"), t);
const queue = new OpQueue(client, root.dataset.me);
const viewer = new DocViewer({ root, client, queue, t, toast });

// Narrow screens: the list is a drawer over the reader. Wide ones: a column beside it that
// the same button folds away (remembered), leaving the reader the whole width.
const wide = window.matchMedia("(min-width: 1100px)");
const LIST_KEY = "hopso.docs.listFolded";
function showToggle() {
  const open = wide.matches ? !root.classList.contains("list-folded") : root.classList.contains("drawer-open");
  drawerToggle.setAttribute("aria-expanded", String(open));
}
function setDrawer(open) {
  root.classList.toggle("drawer-open", open);
  showToggle();
}
function setListFolded(folded) {
  root.classList.toggle("list-folded", folded);
  try { localStorage.setItem(LIST_KEY, folded ? "1" : "0"); } catch { /* private mode */ }
  showToggle();
}
try { root.classList.toggle("list-folded", localStorage.getItem(LIST_KEY) === "1"); } catch { /* private mode */ }
wide.addEventListener("change", showToggle);
showToggle();
drawerToggle.addEventListener("click", () => {
  if (wide.matches) setListFolded(!root.classList.contains("list-folded"));
  else setDrawer(!root.classList.contains("drawer-open"));
});
// A tap on the scrim beside the open drawer closes it (the scrim is the viewer's ::after).
document.getElementById("viewer").addEventListener("click", (e) => {
  if (/** @type {HTMLElement} */ (e.target).id === "viewer" && root.classList.contains("drawer-open")) setDrawer(false);
});

async function openDocument(documentId, page = 0, user = true) {
  if (await viewer.open(documentId, page, { user })) setDrawer(false);
}
const list = new DocList({ root, client, t, toast, onOpen: openDocument });
viewer.onOpened = (doc) => list.setCurrent(doc?.id ?? null);
// New versions, confidentiality and flagged notes in the reader (after onOpened is set).
const versions = new ReaderVersions({ root, viewer, list, t, toast });

queue.onAck = (opId, result) => viewer.handleAck(opId, result);
// A refusal in the reader's language when its code is known (a stale version, view only...).
queue.onReject = (opId, /** @type {any} */ error) => viewer.handleReject(
  opId, Object.assign(new Error(errorText(t, error)), { code: error?.code }));
queue.onSizeChange = (n) => {
  indicator.setWaiting(n);
  root.dataset.unsent = String(n);
};

client.onProgress = (ev) => { list.handleProgress(ev); viewer.handleProgress(ev); };
client.onDocumentUpdated = (doc) => list.upsert(doc);
client.onDocumentWithdrawn = (id) => {
  forgetInWorker(id);
  list.remove(id);
  if (root.dataset.canUpload !== "true") viewer.handleWithdrawn(id);
};
client.onDocumentVersion = (id, version) => versions.versionPublished(id, version);
client.socket.on("document:confidential",
                 (m) => versions.confidentialChanged(m.document_id, m.confidential));
client.onAnnotationEvent = (id, version, ev) => viewer.handleAnnotationEvent(id, version, ev);
client.onPresentState = (state) => viewer.follow.handleState(state);
client.onPointer = (p) => viewer.follow.showPointer(p);

function showNetwork() {
  const online = navigator.onLine && signaling.socket.connected;
  indicator.setOnline(online);
  root.dataset.online = String(online);
}

let everConnected = false;
signaling.onConnectionChange = async (connected) => {
  showNetwork();
  if (!connected) return;
  // A page that finished loading without a connection (from the service worker's copies)
  // catches up at its first connection like at any reconnection: list, live document, notes.
  const catchUp = everConnected || root.dataset.ready === "true";
  try {
    await signaling.joinMeeting(meetingId);
  } catch (error) {
    toast(error.message);
    return;
  }
  recording?.refresh();
  if (catchUp) {
    await viewer.reconnected();
    list.load();
  }
  everConnected = true;
  await viewer.follow.refresh();
  queue.flush();
};

// A tablet that lost Wi-Fi knows at once; do not wait for socket.io's heartbeat to notice.
window.addEventListener("offline", () => {
  signaling.socket.disconnect();
  showNetwork();
});
window.addEventListener("online", () => {
  if (!signaling.socket.connected) signaling.socket.connect();
  showNetwork();
});
// Should an "online" event never come (it is not reliable everywhere), try again anyway.
setInterval(() => {
  if (navigator.onLine && !signaling.socket.connected && !signaling.socket.active) {
    signaling.socket.connect();
  }
}, 5000);

/**
 * The service worker (/sw.js, docs/architecture.md (Documents)) keeps this page, its files,
 * the list and the PDFs read so that a reload without a network still works. It sees what
 * this page fetches once it controls the page; what was fetched before (the first visit, a
 * new deploy, a hard reload) is named to it here so that it keeps that too.
 */
async function keepForOffline() {
  const sw = navigator.serviceWorker;
  if (!sw || !root.dataset.build) return;
  const script = new URL(`/sw.js?v=${encodeURIComponent(root.dataset.build)}`,
                         window.location.href);
  if (sw.controller?.scriptURL === script.href) return; // everything went through it
  let registration;
  try {
    registration = await sw.register(script.href, { scope: "/" });
  } catch (error) {
    console.warn("no service worker: this page will not open offline", error);
    return;
  }
  // This build's worker (not an older one still active while it installs), once active.
  const worker = registration.installing ?? registration.waiting ?? registration.active;
  if (!worker) return;
  if (worker.state !== "activated") {
    await new Promise((/** @type {(value?: unknown) => void} */ resolve) => worker.addEventListener("statechange", () => {
      if (worker.state === "activated" || worker.state === "redundant") resolve();
    }));
  }
  if (worker.state !== "activated") return;
  const send = (urls) => { if (urls.length) worker.postMessage({ type: "warm", urls }); };
  send([window.location.href,
        ...performance.getEntriesByType("resource").map((entry) => entry.name)]);
  // Fetched later without it (workerStart 0: no service worker saw them).
  new PerformanceObserver((entries) => send(entries.getEntries()
    .filter((entry) => /** @type {PerformanceResourceTiming} */ (entry).workerStart === 0).map((entry) => entry.name)))
    .observe({ type: "resource" });
}
if (!embedded) keepForOffline(); // the offline copy is of the documents page itself

await list.load();
const params = new URLSearchParams(window.location.search);
if (params.has("doc")) {
  await openDocument(Number(params.get("doc")), Math.max(0, Number(params.get("page") ?? 1) - 1), false);
} else if (!wide.matches && !embedded) {
  setDrawer(true);
}
root.dataset.ready = "true";
