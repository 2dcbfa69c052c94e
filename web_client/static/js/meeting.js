// Meeting page: join the live channel, show its state, chair/secretary buttons.
import { api } from "./api.js";
import { loadCatalog, t } from "./i18n.js";
import { Signaling } from "./signaling.js";
import { ProcedurePanel } from "./procedure.js";

const root = document.getElementById("meeting");
const meetingId = Number.parseInt(root.dataset.meetingId, 10);
const liveState = document.getElementById("live-state");
const statusBadge = document.getElementById("meeting-status");

await loadCatalog();
const signaling = new Signaling();
const procedureRoot = document.getElementById("procedure");
const procedure = procedureRoot ? new ProcedurePanel(procedureRoot, signaling, meetingId) : null;

signaling.onConnectionChange = async (connected) => {
  if (!connected) { liveState.textContent = t("Reconnecting…"); return; }
  try {
    await signaling.joinMeeting(meetingId);
    liveState.textContent = t("Live");
    await procedure?.resync();
  } catch (error) {
    liveState.textContent = error.message;
  }
};

signaling.onMeetingUpdated = (meeting) => {
  if (meeting.id !== meetingId) return;
  statusBadge.textContent = t(meeting.status);
  statusBadge.className = `status status-${meeting.status}`;
  procedure?.resync();
};

for (const button of /** @type {NodeListOf<HTMLButtonElement>} */ (root.querySelectorAll("button[data-action]"))) {
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await api("POST", button.dataset.action);
      window.location.reload();
    } catch (error) {
      liveState.textContent = error.message;
      button.disabled = false;
    }
  });
}
