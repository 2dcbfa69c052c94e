// Admin page /admin/nodes: this node, its parent link and child links, refreshed every 2 s
// from GET /api/admin/nodes; per child a form to rotate or revoke its credential.
// Child cards are updated in place, so a secret being typed survives the refreshes.
import { api } from "./api.js";
import { lang, loadCatalog, t } from "./i18n.js";

const REFRESH_MS = 2000;
const NUMBER = new Intl.NumberFormat(lang === "vi" ? "vi-VN" : "en-GB", { maximumFractionDigits: 1 });
const $ = (id) => document.getElementById(id);
const cards = new Map(); // unit -> child card

await loadCatalog();

function dash(value, format = String) {
  return value === null || value === undefined ? "—" : format(value);
}

function bitrate(bps) {
  if (bps >= 1e6) return `${NUMBER.format(bps / 1e6)} Mbit/s`;
  if (bps >= 1e3) return `${NUMBER.format(bps / 1e3)} kbit/s`;
  return `${NUMBER.format(bps)} bit/s`;
}

function stateText(state) {
  const [word, ...detail] = String(state).split(":");
  const label = t(word.trim());
  return detail.length ? `${label} (${detail.join(":").trim()})` : label;
}

const FORMAT = {
  state: stateText,
  rtt_ms: (ms) => `${NUMBER.format(ms)} ms`,
  bitrate_in_bps: bitrate,
  bitrate_out_bps: bitrate,
  meetings: (list) => (list.length ? `${list.length}: ${list.join(", ")}` : "0"),
  // One WebRTC connection carries every meeting both ways; more would mean a stale one.
  media_transports: (n) => (n === 1 ? t("1 (both directions, every meeting)") : String(n)),
};

/** Fill every [data-field] under root from a link's fields. */
function fill(root, link) {
  for (const el of root.querySelectorAll("[data-field]")) {
    const name = el.dataset.field;
    el.textContent = dash(link[name], FORMAT[name]);
  }
  const badge = root.querySelector(".status[data-field=state]");
  if (badge) badge.classList.toggle("status-open", link.state === "connected");
}

/** t() with the {unit} placeholder filled in. */
function tu(msgid, unit) {
  return t(msgid).replaceAll("{unit}", unit);
}

/** A form's own message line (next to the buttons, where a finger just was). */
function say(form, message, isError = false) {
  const line = form.querySelector(".form-message");
  line.textContent = message;
  line.classList.toggle("error", isError);
  line.hidden = !message;
}

function randomSecret() {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_");
}

const credentialUrl = (unit) => `/api/admin/nodes/children/${encodeURIComponent(unit)}/credential`;

/** Saves a new secret; once saved, the form is emptied. */
async function rotate(form, unit, secret) {
  say(form, "");
  try {
    await api("POST", credentialUrl(unit), { secret });
  } catch (error) {
    say(form, error.message, true);
    return;
  }
  // The secret leaves the page as the confirmation appears, not after the refresh.
  form.reset();
  say(form, tu("Credential of {unit} saved: the child node must reconnect with the new secret.", unit));
  await refresh();
}

async function revoke(form, unit) {
  if (!window.confirm(tu("Revoke the credential of {unit}? Its link is cut at once.", unit))) {
    return;
  }
  say(form, "");
  try {
    await api("DELETE", credentialUrl(unit));
  } catch (error) {
    say(form, error.message, true);
    return;
  }
  // The card goes away with the credential: tell it on the "add" form, where it can be undone.
  say($("add-child-form"), tu("Credential of {unit} revoked.", unit));
  await refresh();
}

function wireForm(form, unitOf) {
  const secret = form.querySelector("input[name=secret]");
  form.querySelector("[data-action=generate]").addEventListener("click", () => {
    secret.value = randomSecret();
    secret.select();
  });
  form.querySelector("[data-action=revoke]")?.addEventListener("click", () => revoke(form, unitOf()));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await rotate(form, unitOf(), secret.value);
  });
}

function childCard(unit) {
  let card = cards.get(unit);
  if (!card) {
    card = /** @type {HTMLElement} */ (/** @type {HTMLTemplateElement} */ ($("child-template")).content.firstElementChild.cloneNode(true));
    card.dataset.unit = unit;
    wireForm(card.querySelector("form"), () => unit);
    cards.set(unit, card);
  }
  return card;
}

function renderChildren(children) {
  const list = $("child-list");
  const sorted = [...children].sort((a, b) => a.unit.localeCompare(b.unit));
  const wanted = new Set(sorted.map((c) => c.unit));
  for (const [unit, card] of cards) {
    if (!wanted.has(unit)) {
      card.remove();
      cards.delete(unit);
    }
  }
  const ordered = sorted.map((child) => {
    const card = childCard(child.unit);
    fill(card, child);
    return card;
  });
  // Re-append only when the order changed: moving a card would blur a field being typed in.
  if (ordered.some((card, i) => list.children[i] !== card) || list.children.length !== ordered.length) {
    list.replaceChildren(...ordered);
  }
  $("children-none").hidden = sorted.length > 0;
}

function render(view) {
  $("node-unit").textContent = view.unit;
  $("node-path").textContent = view.path.join(" → ");
  const parent = view.parent;
  $("parent-none").hidden = Boolean(parent);
  $("parent-table").hidden = !parent;
  if (parent) fill($("parent-table"), parent);
  renderChildren(view.children);
  $("revoked-line").hidden = view.revoked.length === 0;
  $("revoked-list").textContent = view.revoked.join(", ");
  const refusals = [...view.refusals].reverse(); // newest first
  $("refusal-list").replaceChildren(...refusals.map((text) => {
    const li = document.createElement("li");
    li.textContent = text;
    return li;
  }));
  $("refusals-none").hidden = refusals.length > 0;
}

async function refresh() {
  const line = $("nodes-updated");
  try {
    const view = await api("GET", "/api/admin/nodes");
    if (!view.configured) {
      line.textContent = t("This server is not part of a cascade (HOPSO_NODE_UNIT is not set)");
      return;
    }
    render(view);
    line.classList.remove("error");
    line.textContent = `${t("Updated")} ${new Date().toLocaleTimeString(lang === "vi" ? "vi-VN" : "en-GB")}`;
  } catch (error) {
    line.classList.add("error");
    line.textContent = `${t("Cannot refresh:")} ${error.message}`;
  }
}

async function loop() {
  if (!document.hidden) await refresh();
  setTimeout(loop, REFRESH_MS);
}

const addForm = $("add-child-form");
wireForm(addForm, () => /** @type {HTMLInputElement} */ (addForm.querySelector("input[name=unit]")).value.trim());
loop();
