// Small DOM and formatting helpers for the procedure panel (no framework, no innerHTML).
import { t } from "./i18n.js";

/**
 * Build an element: h("button", {class: "primary", onclick: fn}, "Text", child…).
 * Props starting with "on" become listeners; "dataset" is an object; others are attributes.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "value") el.value = value;
    else if (key === "checked") el.checked = Boolean(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  for (const child of children.flat()) if (child) el.append(child);
}

/** 75 → "01:15"; 3700 → "1:01:40"; negative values keep their sign. */
export function clock(seconds) {
  const sign = seconds < 0 ? "−" : "";
  let s = Math.abs(Math.round(seconds));
  const hours = Math.floor(s / 3600);
  s -= hours * 3600;
  const mm = String(Math.floor(s / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return hours ? `${sign}${hours}:${mm}:${ss}` : `${sign}${mm}:${ss}`;
}

const STANDARD_OPTIONS = { agree: "Agree", disagree: "Disagree", abstain: "Abstain" };

/** The label of option i of a vote, in the page's language. */
export function optionLabel(vote, i) {
  const raw = vote.options[i];
  return vote.custom_options ? raw : t(STANDARD_OPTIONS[raw] ?? raw);
}

const STATUSES = { in_person: "Present in the room", online: "Present online", absent: "Absent" };

/** An attendance status (in_person | online | absent | null) in the page's language. */
export function statusLabel(status) {
  return status ? t(STATUSES[status] ?? status) : t("Not checked in");
}

const ERRORS = {
  not_checked_in: "Check in first.",
  already_voted: "You have already voted.",
  vote_closed: "The vote is closed.",
  vote_open: "Another vote is still open.",
  rate_limited: "Too many requests; wait a moment.",
  forbidden: "You are not allowed to do that.",
  meeting_not_open: "The meeting has not been opened yet.",
  meeting_closed: "The meeting has ended.",
  meeting_paused: "The meeting is paused.",
  already_requested: "You are already in the queue.",
  roll_call_closed: "The roll call is not open.",
  stale: "An older change arrived late and was ignored.",
};

/** A user-facing message for an API or socket error. */
export function errorText(error) {
  const msgid = ERRORS[error?.code];
  return msgid ? t(msgid) : (error?.message || t("Something went wrong."));
}

/** The seq of the voter's next ballot for a vote: increasing across reloads of the page. */
export function nextBallotSeq(voteId) {
  const key = `hopso.ballot-seq.${voteId}`;
  const stored = Number.parseInt(localStorage.getItem(key) ?? "0", 10) || 0;
  const tenths = Math.floor((Date.now() - Date.UTC(2025, 0, 1)) / 100);
  const seq = Math.min(Math.max(stored + 1, tenths), 2 ** 31 - 1);
  localStorage.setItem(key, String(seq));
  return seq;
}

export function saveReceipt(voteId, receipt) {
  localStorage.setItem(`hopso.receipt.${voteId}`, receipt);
}

export function forgetReceipt(voteId) {
  localStorage.removeItem(`hopso.receipt.${voteId}`);
}

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** A secret ballot's receipt, made here (80 random bits, 16 Crockford base-32 characters)
 * and kept before the ballot is sent: a resend after a lost ack carries the same code, so
 * the voter keeps it whatever happened to the ack. Codes with fewer than 6 distinct
 * characters are refused by the server as guessable (p < 1e-7): make another. */
export function receiptFor(voteId) {
  const kept = loadReceipt(voteId);
  if (kept) return kept;
  let raw = "";
  while (new Set(raw).size < 6) {
    const bytes = crypto.getRandomValues(new Uint8Array(10));
    let bits = 0n;
    for (const b of bytes) bits = (bits << 8n) | BigInt(b);
    raw = Array.from({ length: 16 }, (_, i) => CROCKFORD[Number((bits >> BigInt(75 - 5 * i)) & 31n)]).join("");
  }
  const code = raw.match(/.{4}/g).join("-");
  saveReceipt(voteId, code);
  return code;
}

export function loadReceipt(voteId) {
  return localStorage.getItem(`hopso.receipt.${voteId}`);
}

/** Translate, then fill {placeholders}: tf("{n} of {total}", {n: 1, total: 3}). */
export function tf(msgid, vars) {
  return t(msgid).replace(/\{(\w+)\}/g, (_, key) => String(vars?.[key] ?? ""));
}

// --- prompts (ballot-prompt.js, floor-notice.js) -----------------------------------------

/** The stylesheet of the prompts, once per page (style-src 'self': a file, not inline). */
function ensureStyles() {
  if (document.querySelector('link[data-prompts-css]')) return;
  document.head.append(h("link", { rel: "stylesheet", href: "/static/css/prompts.css", "data-prompts-css": "" }));
}

/** A short two-note tone; silent where the browser allows no audio before a gesture. */
export function chime() {
  try {
    const Ctx = globalThis.AudioContext ?? globalThis.webkitAudioContext;
    if (!Ctx) return;
    const ctx = new Ctx();
    const at = ctx.currentTime;
    for (const [i, freq] of [[0, 880], [1, 1320]]) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, at + i * 0.18);
      gain.gain.exponentialRampToValueAtTime(0.2, at + i * 0.18 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + i * 0.18 + 0.16);
      osc.connect(gain).connect(ctx.destination);
      osc.start(at + i * 0.18);
      osc.stop(at + i * 0.18 + 0.17);
    }
    setTimeout(() => ctx.close(), 800);
  } catch {
    // no audio: the pulse and the focus still announce it
  }
}

/** A modal dialog for a prompt: focus moves into it, Escape or its button closes it. */
export class PromptDialog {
  /** @param {string} id @param {string} className */
  constructor(id, className) {
    ensureStyles();
    /** @type {HTMLDialogElement} */
    this.el = /** @type {HTMLDialogElement} */ (h("dialog", { id, class: `prompt ${className}`,
      "aria-labelledby": `${id}-title`, "aria-describedby": `${id}-body` }));
    document.body.append(this.el);
    this.el.addEventListener("close", () => this.onClose());
    this.onClose = () => {};
  }

  get isOpen() { return this.el.open; }

  /** Fill and show (modal); `focus` is the element to focus, else the first button. */
  show(children, focus = null) {
    fill(this.el, children);
    if (!this.el.open) {
      this.el.showModal();
      this.el.classList.remove("pulse");
      void this.el.offsetWidth; // restart the animation
      this.el.classList.add("pulse");
      chime();
    }
    (focus ?? this.el.querySelector("button"))?.focus();
  }

  /** Replace the content of an open dialog without announcing it again. */
  update(children, focus = null) {
    if (!this.el.open) return;
    const had = this.el.contains(document.activeElement);
    fill(this.el, children);
    if (had || focus) (focus ?? this.el.querySelector("button"))?.focus();
  }

  close() { if (this.el.open) this.el.close(); }
}
