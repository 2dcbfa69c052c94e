// The meeting archive page (/meetings/{id}/archive, chair and secretary): make the archive or
// the composite video (a job on the server), follow its progress (GET /api/archive/jobs/{id}
// every half second), list the files made, with their download links.
import { api } from "./api.js";
import { loadCatalog, t } from "./i18n.js";

const POLL_MS = 500;
const $ = (id) => document.getElementById(id);
const meetingId = Number($("archive").dataset.meetingId);
const status = $("archive-status");
const bar = /** @type {HTMLProgressElement} */ ($("archive-progress"));
const buttons = [$("make-archive"), $("make-composite")].map((b) => /** @type {HTMLButtonElement} */ (b));

await loadCatalog();

function megabytes(bytes) {
  return `${(bytes / 1048576).toFixed(1)} MB`;
}

async function listFiles() {
  const { files } = await api("GET", `/api/meetings/${meetingId}/archives`);
  const list = $("archive-files");
  list.replaceChildren(...files.map((f) => {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = f.url;
    a.textContent = f.file;
    a.setAttribute("download", f.file);
    li.append(a, ` (${t(f.kind === "archive" ? "archive" : "video")}, ${megabytes(f.size)})`);
    return li;
  }));
  $("archive-none").hidden = files.length > 0;
}

async function follow(job) {
  bar.hidden = false;
  while (job.state === "queued" || job.state === "running") {
    bar.value = job.progress;
    status.textContent = `${t("Working…")} ${Math.round(job.progress * 100)} %`;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    job = await api("GET", `/api/archive/jobs/${job.id}`);
  }
  bar.hidden = true;
  if (job.state === "done") {
    const notes = job.notes.length ? ` (${job.notes.join("; ")})` : "";
    status.textContent = `${t("Done")}: ${job.file}${notes}`;
    status.classList.remove("error");
  } else {
    status.textContent = `${t("Failed")}: ${job.message}`;
    status.classList.add("error");
  }
  await listFiles();
}

async function start(kind) {
  for (const b of buttons) b.disabled = true;
  try {
    await follow(await api("POST", `/api/meetings/${meetingId}/${kind}`));
  } catch (error) {
    status.textContent = `${t("Failed")}: ${error.message}`;
    status.classList.add("error");
  } finally {
    for (const b of buttons) b.disabled = false;
  }
}

buttons[0].addEventListener("click", () => { start("archive"); });
buttons[1].addEventListener("click", () => { start("composite"); });
await listFiles();
