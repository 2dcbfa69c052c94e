// Signed files beside the minutes (docs/protocol.md, "Signed minutes"): anyone in the
// meeting checks a signed PDF they were given (its signatures, and whether the meeting's
// audit chain recorded exactly those bytes); the chair signs a closed vote's result.
import { csrfToken } from "./api.js";
import { t } from "./i18n.js";
import { keyForm } from "./minutes-review.js";
import { errorText, fill, h } from "./procedure-ui.js";

/**
 * POST a body, answering the Response; refusals become Errors with .code, as api() does.
 * @param {string} url
 * @param {BodyInit} body
 * @param {string} type
 */
async function post(url, body, type) {
  const response = await fetch(url, { method: "POST", credentials: "same-origin", body,
    headers: { "Content-Type": type, "X-CSRF-Token": csrfToken() } });
  if (!response.ok) {
    const data = await response.json().catch(() => ({}));
    throw Object.assign(new Error(data?.error?.message ?? response.statusText),
                        { code: data?.error?.code ?? String(response.status) });
  }
  return response;
}

export class SignedFiles {
  /**
   * @param {HTMLElement} root
   * @param {number} meetingId
   */
  constructor(root, meetingId) {
    this.root = root;
    this.meetingId = meetingId;
    this.key = ""; // what was drawn last: redraw only when the closed votes or role change
    this.check = h("div", { id: "signed-check-result" });
    this.signed = h("div", { id: "vote-result-signed" });
  }

  /** @param {string} role @param {Array<{id: number, question: string, status: string}>} votes */
  show(role, votes) {
    const closed = (votes ?? []).filter((v) => v.status === "closed");
    const key = `${role}|${closed.map((v) => v.id).join(",")}`;
    if (key === this.key) return;
    this.key = key;
    const parts = [h("h3", {}, t("Check a signed file")), this.#checkForm(), this.check];
    if (role === "chair" && closed.length) parts.push(...this.#voteResults(closed));
    fill(this.root, ...parts);
  }

  #checkForm() {
    const file = /** @type {HTMLInputElement} */ (h("input", { type: "file", id: "signed-check-file",
      "aria-label": t("Check a signed file"), accept: ".pdf,application/pdf" }));
    const form = h("form", { class: "proc-form proc-row", id: "signed-check-form" },
      file, h("button", { type: "submit", id: "signed-check" }, t("Check")));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const chosen = file.files?.[0];
      if (!chosen) return;
      try {
        const response = await post(`/api/meetings/${this.meetingId}/signatures/verify`,
          chosen, "application/pdf");
        this.#showCheck(await response.json());
      } catch (error) {
        fill(this.check, h("p", { class: "proc-message error" }, errorText(error)));
      }
    });
    return form;
  }

  #showCheck(report) {
    const ok = report.intact;
    fill(this.check,
      h("p", { class: ok ? "ok" : "error", id: "signed-check-verdict", dataset: { intact: String(Boolean(ok)) } },
        ok ? t("The signed file is intact: every signature verifies.")
          : t("The signed file is NOT intact: it changed after signing, or a signature does not verify.")),
      h("ul", { class: "proc-minutes" }, report.signatures.map((s) => h("li", {},
        h("span", { class: "signer" }, s.signer), " · ",
        s.signed_at ? new Date(s.signed_at).toLocaleString() : "", " · ",
        h("span", { class: s.ok ? "sig-status ok" : "sig-status error" }, s.ok ? t("intact") : t("not intact"))))),
      h("p", { class: "muted", id: "signed-check-audited" }, report.audited.length
        ? t("Recorded in this meeting's audit log.") : t("Not recorded in this meeting's audit log.")));
  }

  #voteResults(closed) {
    const pick = h("select", { id: "vote-result-pick" },
      closed.map((v) => h("option", { value: String(v.id) }, v.question)));
    const form = keyForm("vote-result", t("Sign the vote result"), async (body) => {
      if (!body) {
        fill(this.signed, h("p", { class: "proc-message error" }, t("Choose the certificate file.")));
        return;
      }
      const url = `/api/meetings/${this.meetingId}/votes/${pick.value}/result/sign`;
      try {
        const blob = await (await post(url, JSON.stringify(body), "application/json")).blob();
        fill(this.signed, h("a", { href: URL.createObjectURL(blob), id: "vote-result-download",
          download: `ket-qua-bieu-quyet-${pick.value}-da-ky.pdf` }, t("Download the signed vote result (PDF)")));
      } catch (error) {
        fill(this.signed, h("p", { class: "proc-message error" }, errorText(error)));
      }
    });
    return [h("h3", {}, t("Sign a vote result")), h("label", {}, t("Vote"), pick),
      h("a", { href: `/api/meetings/${this.meetingId}/votes/${closed[0].id}/result.pdf`, id: "vote-result-pdf",
        onclick: (e) => { /** @type {HTMLAnchorElement} */ (e.currentTarget).href =
          `/api/meetings/${this.meetingId}/votes/${pick.value}/result.pdf`; } },
      t("The result as PDF")), form, this.signed];
  }
}
