// Meeting page: join the live channel, show its state, chair/secretary buttons; composes the
// meeting screen (meeting-screen.js: the meeting and documents panes, the speaker over the
// reader, raise hand) and the state bar above every pane (meeting-status.js).
import { api } from "./api.js";
import { loadCatalog, t } from "./i18n.js";
import { MeetingBar, MeetingState } from "./meeting-status.js";
import { MeetingScreen } from "./meeting-screen.js";
import { Signaling } from "./signaling.js";
import { ProcedurePanel } from "./procedure.js";
import { RecordingBadge, followRecording, recordingButton } from "./recording-badge.js";

const root = document.getElementById("meeting");
const meetingId = Number.parseInt(root.dataset.meetingId, 10);
const liveState = document.getElementById("live-state");
const statusBadge = document.getElementById("meeting-status");

await loadCatalog();
const signaling = new Signaling();
const procedureRoot = document.getElementById("procedure");
const procedure = procedureRoot ? new ProcedurePanel(procedureRoot, signaling, meetingId) : null;

// The state bar hears the same events as the procedure panel: each of Signaling's callbacks
// holds one handler, so the panel's (set above) is kept and the bar's added after it.
const model = new MeetingState(meetingId, root.dataset.status ?? "");
const barRoot = document.getElementById("meeting-bar");
const bar = barRoot ? new MeetingBar(barRoot, model, t) : null;
const screen = new MeetingScreen({ root, signaling, meetingId, t });
if (bar) bar.onPaint = (summary) => screen.update(summary);
const paint = () => (bar ? bar.paint() : screen.update(model.summary()));
/** @param {"onAgendaChanged"|"onFloorChanged"|"onVoteUpdated"} name @param {(e: any) => boolean} take */
function also(name, take) {
  const first = signaling[name];
  signaling[name] = (e) => { first(e); if (take(e)) paint(); };
}
also("onAgendaChanged", (e) => model.agenda(e));
also("onFloorChanged", (e) => model.floor(e));
also("onVoteUpdated", (e) => model.vote(e));

async function resyncBar() {
  model.expect(); // events heard until the snapshot arrives are applied after it
  try {
    model.load(await signaling.procedureState(meetingId));
  } catch (error) {
    model.abandon();
    console.warn("meeting state:", error);
  }
  paint();
}

// Recording (issue 16): the badge in the state bar (both panes), the chair's button.
const recBadge = new RecordingBadge(/** @type {HTMLElement} */ (document.getElementById("rec-badge")), t);
const recToggle = document.getElementById("rec-toggle");
const request = (/** @type {string} */ e, /** @type {object} */ p) => signaling.request(e, p);
const recButton = recToggle ? recordingButton(/** @type {HTMLButtonElement} */ (recToggle), request,
  meetingId, t, (text) => { liveState.textContent = text; }) : null;
const recording = followRecording(signaling.socket, request, meetingId, (state) => {
  recBadge.show(state);
  recButton?.show(state);
});

signaling.onConnectionChange = async (connected) => {
  if (!connected) { liveState.textContent = t("Reconnecting…"); return; }
  try {
    await signaling.joinMeeting(meetingId);
    liveState.textContent = t("Live");
    await recording.refresh();
    await procedure?.resync();
    await resyncBar();
  } catch (error) {
    liveState.textContent = error.message;
  }
};

signaling.onMeetingUpdated = (meeting) => {
  if (meeting.id !== meetingId) return;
  statusBadge.textContent = t(meeting.status);
  statusBadge.className = `status status-${meeting.status}`;
  root.dataset.status = meeting.status;
  if (model.meeting(meeting)) paint();
  procedure?.resync();
  resyncBar();
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
