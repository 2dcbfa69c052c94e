// The procedure panel's static forms, built once for the roles that use them: live updates
// redraw the lists around them but never wipe what someone is typing.
import { api } from "./api.js";
import { t } from "./i18n.js";
import { fill, h, optionLabel, statusLabel, tf } from "./procedure-ui.js";

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
  const form = h("form", { class: "proc-form", id: "proc-vote-form" },
    h("label", {}, t("Agenda item"), item), h("label", {}, t("Question"), question),
    h("div", { class: "proc-row" },
      h("label", { class: "check" }, secret, t("Secret ballot")),
      h("label", { class: "check" }, change, t("Votes may be changed until close"))),
    h("label", {}, t("Custom options"), options),
    h("button", { type: "submit", class: "primary", id: "proc-vote-open" }, t("Open the vote")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const custom = options.value.split("\n").map((s) => s.trim()).filter(Boolean);
    const ok = await panel.act(() => panel.sig.openVote(panel.meetingId, {
      agenda_item_id: Number.parseInt(item.value, 10), question: question.value,
      secret: secret.checked, allow_change: change.checked,
      options: custom.length ? custom : null,
    }), t("The vote is open."));
    if (ok) { question.value = ""; options.value = ""; }
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
