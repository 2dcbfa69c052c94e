// The review and signatures of the newest minutes version (docs/protocol.md, "Signed
// minutes"): its stage, who signed and when, whether the signed file is intact (verified by
// the server on every load), and the step this person may take: the secretary submits and
// signs first, the chair approves and signs second. Fed by minutes:review pushes.
import { api } from "./api.js";
import { t } from "./i18n.js";
import { errorText, fill, h } from "./procedure-ui.js";

const STAGES = {
  none: "Not yet submitted for review",
  draft: "Draft: awaiting the chair's approval",
  reviewed: "Approved: awaiting the secretary's signature",
  signing: "Signed by the secretary: awaiting the chair's signature",
  signed: "Signed by the secretary and the chair",
};
const ROLES = { secretary: "Secretary", chair: "Chair" };
const REFUSALS = {
  certificate_expired: "The certificate has expired.",
  certificate_untrusted: "The certificate is not issued by a trusted authority.",
  bad_key: "Wrong password or PIN, or not a PKCS#12 file.",
  wrong_stage: "This step is not due yet.",
  superseded: "A newer version of the minutes exists.",
};

/** @param {File} file */
export async function base64Of(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

export class MinutesReview {
  /**
   * @param {HTMLElement} root where it is drawn
   * @param {{on: (event: string, handler: (e: any) => void) => void}} socket
   * @param {number} meetingId
   */
  constructor(root, socket, meetingId) {
    this.root = root;
    this.meetingId = meetingId;
    this.version = 0;
    this.role = "";
    this.info = null;
    this.message = "";
    socket.on("minutes:review", (e) => {
      if (e.meeting_id === this.meetingId && e.review?.version === this.version) this.load();
    });
  }

  /** Show the newest version (after the versions list was loaded or changed). */
  show(versions, role) {
    this.role = role ?? "";
    const newest = versions.length ? versions[versions.length - 1].version : 0;
    if (newest !== this.version) this.message = "";
    this.version = newest;
    return this.load();
  }

  async load() {
    if (!this.version) {
      fill(this.root);
      return;
    }
    try {
      this.info = await api("GET", `/api/meetings/${this.meetingId}/minutes/${this.version}/signatures`);
    } catch (error) {
      this.message = errorText(error);
    }
    this.render();
  }

  async #step(action, body) {
    try {
      await api("POST", `/api/meetings/${this.meetingId}/minutes/${this.version}/${action}`, body);
      this.message = "";
    } catch (error) {
      this.message = t(REFUSALS[error.code] ?? "") || errorText(error);
      if (error.message && REFUSALS[error.code]) this.message += ` (${error.message})`;
    }
    await this.load();
  }

  render() {
    const info = this.info;
    if (!info) return;
    const stage = info.stage ?? "none";
    const parts = [
      h("h3", {}, t("Review and signatures"), ` · ${t("version")} ${info.version}`),
      h("p", { id: "minutes-stage", dataset: { stage } }, t(STAGES[stage] ?? stage)),
    ];
    if (info.signatures.length) {
      parts.push(h("p", { id: "minutes-integrity", class: info.intact ? "ok" : "error",
        dataset: { intact: String(Boolean(info.intact)) } },
      info.intact ? t("The signed file is intact: every signature verifies.")
        : t("The signed file is NOT intact: it changed after signing, or a signature does not verify.")));
      parts.push(h("ul", { class: "proc-minutes", id: "minutes-signatures" }, info.signatures.map((s) =>
        h("li", { dataset: { role: s.role, intact: String(Boolean(s.intact)) } },
          h("strong", {}, t(ROLES[s.role] ?? s.role)), ": ",
          h("span", { class: "signer" }, s.signer),
          s.user_name && s.user_name !== s.signer ? ` (${t("account")} ${s.user_name})` : "",
          " · ", h("time", { datetime: s.signed_at }, new Date(s.signed_at).toLocaleString()),
          " · ", h("span", { class: s.intact ? "sig-status ok" : "sig-status error" },
            s.intact ? t("intact") : t("not intact"))))));
      parts.push(h("a", { href: info.url, download: "", id: "minutes-signed-pdf" },
        t("Download the signed minutes (PDF)")));
    }
    const action = this.#action(stage);
    if (action) parts.push(action);
    if (this.message) parts.push(h("p", { class: "proc-message error", id: "minutes-review-message" }, this.message));
    fill(this.root, ...parts);
  }

  #action(stage) {
    const latest = this.info.latest === this.info.version;
    if (!latest) return null;
    if (this.role === "secretary" && stage === "none") {
      return h("button", { type: "button", class: "primary", id: "minutes-submit",
        onclick: () => this.#step("submit") }, t("Submit for the chair's review"));
    }
    if (this.role === "chair" && stage === "draft") {
      return h("button", { type: "button", class: "primary", id: "minutes-approve",
        onclick: () => this.#step("approve") }, t("Approve the minutes"));
    }
    if ((this.role === "secretary" && stage === "reviewed") || (this.role === "chair" && stage === "signing")) {
      return this.#signForm();
    }
    return null;
  }

  #signForm() {
    return keyForm("minutes", t("Sign the minutes"), async (body) => {
      if (!body) {
        this.message = t("Choose the certificate file.");
        this.render();
        return;
      }
      await this.#step("sign", body);
    });
  }
}

/**
 * The key fields of a sign request: a PKCS#12 file and its password, or the server's token
 * and its PIN. `submit` gets the request body (null: no file chosen); the secret is cleared.
 * @param {string} prefix element ids start with it ("minutes" → #minutes-key-file …)
 * @param {string} label the submit button's text
 * @param {(body: object|null) => Promise<void>} submit
 */
export function keyForm(prefix, label, submit) {
  const kind = h("select", { id: `${prefix}-key-kind` },
    h("option", { value: "pkcs12" }, t("Certificate file (PKCS#12: .p12, .pfx)")),
    h("option", { value: "pkcs11" }, t("Token on the server (PKCS#11)")));
  const file = /** @type {HTMLInputElement} */ (h("input", { type: "file", id: `${prefix}-key-file`,
    accept: ".p12,.pfx" }));
  const secret = /** @type {HTMLInputElement} */ (h("input", { type: "password",
    id: `${prefix}-key-secret`, autocomplete: "off", maxlength: 200 }));
  const form = h("form", { class: "proc-form", id: `${prefix}-sign-form` },
    h("label", {}, t("Key"), kind), h("label", {}, t("File"), file),
    h("label", {}, t("Password or PIN"), secret),
    h("button", { type: "submit", class: "primary", id: `${prefix}-sign` }, label));
  kind.addEventListener("change", () => { file.disabled = kind.value !== "pkcs12"; });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let body = null;
    if (kind.value === "pkcs11") body = { key: "pkcs11", pin: secret.value };
    else if (file.files?.[0]) {
      body = { key: "pkcs12", pkcs12: await base64Of(file.files[0]), password: secret.value };
    }
    secret.value = "";
    await submit(body);
  });
  return form;
}
