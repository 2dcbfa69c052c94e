// The procedure panel's static forms, built once for the roles that use them: live updates
// redraw the lists around them but never wipe what someone is typing.
import { api } from "./api.js";
import { t } from "./i18n.js";
import { PromptDialog, fill, h, optionLabel, statusLabel, tf } from "./procedure-ui.js";

/** @param {import("./procedure.js").ProcedurePanel} panel */
export function buildForms(panel) {
  if (panel.can("edit_agenda")) buildAgendaForm(panel);
  if (panel.can("record_attendance") && ["chair", "secretary"].includes(panel.role)) {
    buildAttendanceForm(panel);
  }
  if (panel.can("record_attendance") && panel.role === "site_operator") buildRollCallForm(panel);
  if (panel.can("run_procedure")) buildVoteForm(panel);
  if (panel.can("manage")) buildMinutesTools(panel);
  if (panel.can("chair_media")) {
    panel.floorLimit = h("input", { type: "number", min: 0, max: 60, value: "3", id: "proc-floor-limit" });
    fill(panel.part["floor-tools"], h("label", {}, t("Time limit (minutes, 0 for none)"), panel.floorLimit));
  }
  buildReceiptForm(panel);
}

function buildAgendaForm(panel) {
  const title = h("input", { name: "title", required: true, maxlength: 300, id: "proc-item-title" });
  const minutes = h("input", { name: "planned_minutes", type: "number", min: 0, value: "10",
    id: "proc-item-minutes" });
  const presenter = h("input", { name: "presenter_name", maxlength: 200, id: "proc-item-presenter" });
  const form = h("form", { class: "proc-form", id: "proc-agenda-form" },
    h("label", {}, t("Item title"), title),
    h("div", { class: "proc-row" },
      h("label", {}, t("Planned minutes"), minutes),
      h("label", {}, t("Presenter"), presenter)),
    h("button", { type: "submit", class: "primary" }, t("Add to the agenda")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const ok = await panel.act(() => api("POST", `/api/meetings/${panel.meetingId}/agenda`, {
      title: title.value, planned_minutes: Number.parseInt(minutes.value || "0", 10),
      presenter_name: presenter.value,
    }), t("Saved."));
    if (ok) { title.value = ""; presenter.value = ""; }
  });
  fill(panel.part["agenda-tools"], form);
}

function buildAttendanceForm(panel) {
  const person = h("select", { id: "proc-att-person" });
  const status = h("select", { id: "proc-att-status" },
    ["absent", "in_person", "online"].map((s) => h("option", { value: s }, statusLabel(s))));
  const reason = h("input", { id: "proc-att-reason", maxlength: 500 });
  const form = h("form", { class: "proc-form", id: "proc-attendance-form" },
    h("div", { class: "proc-row" }, h("label", {}, t("Delegate"), person),
      h("label", {}, t("Attendance"), status)),
    h("label", {}, t("Reason for absence"), reason),
    h("button", { type: "submit" }, t("Record attendance")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const ok = await panel.act(() => panel.sig.recordAttendance(panel.meetingId,
      Number.parseInt(person.value, 10), status.value,
      status.value === "absent" ? reason.value : ""), t("Saved."));
    if (ok) reason.value = "";
  });
  panel.attendancePerson = person;
  fill(panel.part["attendance-tools"], form);
}

function buildRollCallForm(panel) {
  const present = h("input", { type: "checkbox", checked: true, id: "proc-rc-present" });
  const headcount = h("input", { type: "number", min: 0, value: "1", id: "proc-rc-headcount" });
  const form = h("form", { class: "proc-form", id: "proc-rollcall-form" },
    h("label", { class: "check" }, present, t("Our site is present")),
    h("label", {}, t("People in the room"), headcount),
    h("button", { type: "submit", class: "primary" }, t("Answer the roll call")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await panel.act(() => panel.sig.answerRollCall(panel.meetingId, panel.state.me.site_id,
      present.checked, Number.parseInt(headcount.value || "0", 10)), t("Saved."));
  });
  panel.rollCallForm = form;
  fill(panel.part["attendance-tools"], form);
}

function buildVoteForm(panel) {
  const item = h("select", { id: "proc-vote-item" });
  const question = h("input", { id: "proc-vote-question", maxlength: 500, required: true });
  const secret = h("input", { type: "checkbox", id: "proc-vote-secret" });
  const change = h("input", { type: "checkbox", id: "proc-vote-change" });
  const options = h("textarea", { id: "proc-vote-options", rows: 3,
    placeholder: t("One option per line; empty for agree / disagree / abstain") });
  const election = h("input", { type: "checkbox", id: "proc-vote-election" });
  const limit = h("input", { type: "number", id: "proc-vote-limit", min: 10, max: 10800, step: 1,
    placeholder: t("none") });
  const form = h("form", { class: "proc-form", id: "proc-vote-form" },
    h("label", {}, t("Agenda item"), item), h("label", {}, t("Question"), question),
    h("div", { class: "proc-row" },
      h("label", { class: "check" }, secret, t("Secret ballot")),
      h("label", { class: "check" }, change, t("Votes may be changed until close"))),
    h("label", {}, t("Custom options"), options),
    h("div", { class: "proc-row" },
      h("label", { class: "check" }, election, t("Election: the options are candidates")),
      h("label", {}, t("Time limit (seconds)"), limit)),
    h("button", { type: "submit", class: "primary", id: "proc-vote-open" }, t("Open the vote")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const custom = options.value.split("\n").map((s) => s.trim()).filter(Boolean);
    const ok = await panel.act(() => panel.sig.openVote(panel.meetingId, {
      agenda_item_id: Number.parseInt(item.value, 10), question: question.value,
      secret: secret.checked, allow_change: change.checked,
      options: custom.length ? custom : null,
      kind: election.checked ? "election" : "motion",
      time_limit_seconds: limit.value ? Number.parseInt(limit.value, 10) : null,
    }), t("The vote is open."));
    if (ok) { question.value = ""; options.value = ""; election.checked = false; }
  });
  panel.voteItem = item;
  fill(panel.part["vote-tools"], form);
}

function buildMinutesTools(panel) {
  const text = h("textarea", { id: "proc-conclusions", rows: 5, maxlength: 20000 });
  text.value = panel.state.conclusions;
  const save = h("button", { type: "button", id: "proc-save-conclusions", onclick: () =>
    panel.act(() => api("PUT", `/api/meetings/${panel.meetingId}/conclusions`,
      { text: text.value }), t("Saved.")) }, t("Save conclusions"));
  const generate = h("button", { type: "button", class: "primary", id: "proc-generate-minutes",
    onclick: () => panel.act(() => api("POST", `/api/meetings/${panel.meetingId}/minutes`),
      t("The minutes were generated.")) }, t("Generate the minutes (PDF)"));
  panel.conclusionsBox = text;
  fill(panel.part["minutes-tools"], h("label", {}, t("Conclusions"), text),
    h("div", { class: "toolbar" }, save, generate));
}

function buildReceiptForm(panel) {
  const code = h("input", { id: "proc-receipt", maxlength: 64, placeholder: "XXXX-XXXX-XXXX-XXXX" });
  const out = h("p", { id: "proc-receipt-result", class: "muted" });
  const form = h("form", { class: "proc-form proc-row", id: "proc-receipt-form" },
    h("label", {}, t("Check a ballot receipt"), code),
    h("button", { type: "submit" }, t("Check")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = await panel.act(() => api("POST",
      `/api/meetings/${panel.meetingId}/receipts/check`, { receipt: code.value.trim() }));
    if (!result) return;
    out.textContent = result.counted
      ? tf("Counted, for: {option}", { option: optionLabel(
        { options: [result.option_label], custom_options: result.custom_options }, 0) })
      : t("No counted ballot has this receipt.");
  });
  fill(panel.part["receipt-tools"], form, out);
}

/**
 * The meeting's state controls for those who manage it: pause, resume, reopen (the panel
 * shows them above its sections; open and close stay in the page's toolbar).
 * @param {import("./procedure.js").ProcedurePanel} panel
 */
export function buildStateControls(panel) {
  if (!panel.can("manage")) return null;
  const box = h("div", { class: "proc-state toolbar", id: "proc-state" });
  panel.root.prepend(box);
  const step = (path, done) => panel.act(async () => {
    const result = await api("POST", `/api/meetings/${panel.meetingId}/${path}`);
    await panel.resync();
    return result;
  }, done);
  const rules = h("select", { id: "proc-rule-set", onchange: () => panel.act(async () => {
    await api("PUT", `/api/meetings/${panel.meetingId}/procedure/settings`, { rule_set: rules.value });
    await panel.resync();
  }, t("Saved.")) }, Object.entries(RULE_SETS).map(([value, label]) => h("option", { value }, t(label))));
  return {
    render() {
      const status = panel.status;
      rules.value = panel.state.rule_set ?? "other";
      const said = { closed: t("The meeting has ended."), paused: t("The meeting is paused.") }[status];
      fill(box,
        said ? h("strong", { class: "proc-state-text", id: "proc-state-text", role: "status" }, said) : null,
        status !== "closed" ? h("label", { class: "proc-rules" }, t("Working rules"), rules) : null,
        status === "open" ? h("button", { type: "button", id: "proc-pause", onclick: () =>
          step("pause", t("The meeting is paused.")) }, t("Pause the meeting")) : null,
        status === "paused" ? h("button", { type: "button", class: "primary", id: "proc-resume",
          onclick: () => step("resume", t("The meeting continues.")) }, t("Resume the meeting")) : null,
        status === "closed" ? h("button", { type: "button", id: "proc-reopen", onclick: () =>
          confirmThen(t("Reopen the meeting?"), t("The meeting becomes open again: people can check in, speak and vote. The reopening is recorded in the audit log."),
            t("Reopen"), async () => {
              // The page's own open/close toolbar is drawn by the server: show it anew.
              if (await step("reopen", t("The meeting was reopened."))) window.location.reload();
            }) }, t("Reopen the meeting")) : null);
      box.hidden = !box.childElementCount;
    },
  };
}

// Whose rules votes and the quorum follow (shared/DOMAIN.md; docs/protocol.md, settings).
const RULE_SETS = {
  council: "People's Council session (more than half of all delegates)",
  committee: "People's Committee meeting (more than half of all members; a tie goes the chair's way)",
  other: "Other meeting (opinions of those present)",
};

let confirmDialog = null;

/** Ask before an action that cannot be taken back lightly; `then` runs on "yes". */
export function confirmThen(title, text, yes, then) {
  confirmDialog ??= new PromptDialog("confirm-dialog", "confirm-dialog");
  const no = h("button", { type: "button", id: "confirm-no", onclick: () => confirmDialog.close() }, t("Cancel"));
  confirmDialog.show([
    h("h2", { id: "confirm-dialog-title" }, title),
    h("p", { id: "confirm-dialog-body" }, text),
    h("div", { class: "prompt-buttons" }, no,
      h("button", { type: "button", class: "primary", id: "confirm-yes", onclick: () => {
        confirmDialog.close();
        then();
      } }, yes))], no);
}

/** Ending a meeting asks first and says what it does: the page's "close" buttons
 * (`data-action` ending in /close) go through this confirmation before their own handler. */
export function guardMeetingEnd() {
  document.addEventListener("click", (event) => {
    const button = /** @type {HTMLElement|null} */ (/** @type {HTMLElement} */ (event.target)
      .closest?.('button[data-action$="/close"]'));
    if (!button) return;
    if (button.dataset.confirmed === "1") { delete button.dataset.confirmed; return; }
    event.preventDefault();
    event.stopImmediatePropagation();
    confirmThen(t("End the meeting for everyone?"),
      t("Ending the meeting closes it for every participant: the call ends, the current item's clock stops, the speaker's turn ends and a vote still open is closed and counted. It can be reopened later."),
      t("End the meeting"), () => { button.dataset.confirmed = "1"; button.click(); });
  }, true);
}
