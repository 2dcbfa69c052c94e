// Meeting page, chair/secretary: the members panel. Lists the members (remove buttons, never
// for oneself), invites a person with a meeting role or a site (as its site operator), both
// picked from GET /api/directory with a diacritics-insensitive filter, and, on a cascade
// node, chooses which lower-level nodes carry the meeting (GET/PUT /api/meetings/{id}/nodes).
import { api } from "./api.js";
import { loadCatalog, t } from "./i18n.js";
import { fold, matchLevel } from "./fold.js";

const panel = document.getElementById("members-panel");
const meetingId = Number.parseInt(panel.dataset.meetingId, 10);
const myId = Number.parseInt(panel.dataset.userId, 10);
let mirrored = panel.dataset.mirrored === "true";
const base = `/api/meetings/${meetingId}`;

const errorBox = document.getElementById("members-error");
const statusBox = document.getElementById("members-status");
const tbody = panel.querySelector("#members-table tbody");
const personForm = document.getElementById("invite-person");
const personFilter = /** @type {HTMLInputElement} */ (document.getElementById("person-filter"));
const personSelect = /** @type {HTMLSelectElement} */ (document.getElementById("person-select"));
const personRole = /** @type {HTMLSelectElement} */ (document.getElementById("person-role"));
const siteForm = document.getElementById("invite-site");
const siteFilter = /** @type {HTMLInputElement} */ (document.getElementById("site-filter"));
const siteSelect = /** @type {HTMLSelectElement} */ (document.getElementById("site-select"));

/** @type {{units: any[], sites: any[], people: any[]}} */
let directory = { units: [], sites: [], people: [] };
let members = [];
const units = new Map();
const depths = new Map();
const sites = new Map();
const people = new Map();

function say(box, message) {
  box.textContent = message;
  box.hidden = !message;
}

function showError(message) {
  say(statusBox, "");
  say(errorBox, message);
}

function showStatus(message) {
  say(errorBox, "");
  say(statusBox, message);
}

function unitName(id) {
  return units.get(id)?.name ?? "";
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}

/** Where a member belongs: a site's unit, or a person's unit (and site, for operators). */
function placeOf(member) {
  if (member.site_id != null) {
    const site = sites.get(member.site_id);
    return unitName(site ? site.unit_id : member.unit_id);
  }
  const person = people.get(member.user_id);
  const parts = [unitName(person ? person.unit_id : member.unit_id)];
  if (person?.site_id != null && sites.has(person.site_id)) parts.push(sites.get(person.site_id).name);
  return parts.filter(Boolean).join(" · ");
}

function renderMembers() {
  const ordered = [...members.filter((m) => m.user_id != null),
                   ...members.filter((m) => m.user_id == null)];
  tbody.replaceChildren(...ordered.map((member) => {
    const tools = el("td", { className: "member-tools" });
    if (member.user_id !== myId) {
      const remove = el("button", { type: "button", className: "remove",
                                    textContent: t("Remove") });
      remove.setAttribute("aria-label", `${t("Remove")}: ${member.name}`);
      remove.dataset.memberId = String(member.id);
      remove.addEventListener("click", () => removeMember(member, remove));
      tools.append(remove);
    }
    const role = member.site_id != null ? t("Site") : t(member.role);
    const row = el("tr", {}, el("td", { textContent: member.name }), el("td", { textContent: role }),
                   el("td", { textContent: placeOf(member) || "—" }), tools);
    row.dataset.memberId = String(member.id);
    return row;
  }));
  renderChoices();
}

/**
 * Fill a list box with the items matching the query, grouped by unit in tree order.
 * @param {HTMLSelectElement} select
 * @param {{value: string, label: string, unitId: number|null, haystack: string,
 *          invited: boolean}[]} items
 * @param {string} query
 */
function fillSelect(select, items, query) {
  const previous = select.value;
  const levels = items.map((item) => matchLevel(item.haystack, query));
  const best = Math.max(0, ...levels);  // phrase matches hide the looser word matches
  const shown = best ? items.filter((_, i) => levels[i] === best) : [];
  const groups = new Map();
  for (const item of shown) {
    if (!groups.has(item.unitId)) groups.set(item.unitId, []);
    groups.get(item.unitId).push(item);
  }
  const order = [...directory.units.map((u) => u.id).filter((id) => groups.has(id)),
                 ...[...groups.keys()].filter((id) => !units.has(id))];
  const nodes = order.map((unitId) => {
    const label = units.has(unitId)
      ? `${"· ".repeat(depths.get(unitId) ?? 0)}${unitName(unitId)}` : t("No unit");
    const group = el("optgroup", { label });
    group.append(...groups.get(unitId).map((item) => el("option", {
      value: item.value,
      textContent: item.invited ? `${item.label} ✓ ${t("invited")}` : item.label,
    })));
    return group;
  });
  if (!nodes.length) nodes.push(el("option", { disabled: true, textContent: t("No match") }));
  select.replaceChildren(...nodes);
  if (shown.some((item) => item.value === previous)) select.value = previous;
  else if (shown.length === 1) select.value = shown[0].value;
  else select.selectedIndex = -1;
}

function renderChoices() {
  const invitedPeople = new Set(members.filter((m) => m.user_id != null).map((m) => m.user_id));
  const invitedSites = new Set(members.filter((m) => m.site_id != null).map((m) => m.site_id));
  fillSelect(personSelect, directory.people.map((p) => ({
    value: String(p.id),
    label: `${p.full_name} · ${t(p.role)}`,
    unitId: p.unit_id,
    haystack: fold([p.full_name, unitName(p.unit_id), sites.get(p.site_id)?.name ?? ""].join(" | ")),
    invited: invitedPeople.has(p.id),
  })), personFilter.value);
  fillSelect(siteSelect, directory.sites.map((s) => ({
    value: String(s.id),
    label: s.name,
    unitId: s.unit_id,
    haystack: fold(`${s.name} | ${unitName(s.unit_id)}`),  // "|": no phrase across the two
    invited: invitedSites.has(s.id),
  })), siteFilter.value);
}

async function loadMembers() {
  members = (await api("GET", `${base}/members`)).members;
  renderMembers();
}

async function loadDirectory() {
  try {
    directory = await api("GET", "/api/directory");
  } catch (error) {
    // A meeting's chair or secretary whose own account may not schedule meetings: they can
    // still remove members, but have nobody to pick from.
    personForm.hidden = true;
    siteForm.hidden = true;
    showError(`${t("Cannot load the people and sites to invite:")} ${error.message}`);
    return;
  }
  units.clear(); sites.clear(); people.clear(); depths.clear();
  for (const unit of directory.units) {
    units.set(unit.id, unit);
    depths.set(unit.id, unit.parent_id != null && depths.has(unit.parent_id)
      ? depths.get(unit.parent_id) + 1 : 0);
  }
  for (const site of directory.sites) sites.set(site.id, site);
  for (const person of directory.people) people.set(person.id, person);
}

async function removeMember(member, button) {
  button.disabled = true;
  try {
    await api("DELETE", `${base}/members/${member.id}`);
    await loadMembers();
    showStatus(`${t("Removed:")} ${member.name}`);
  } catch (error) {
    button.disabled = false;
    showError(error.message);
  }
}

async function invite(form, body, name) {
  const submit = form.querySelector("button[type=submit]");
  submit.disabled = true;
  try {
    await api("POST", `${base}/members`, body);
    await loadMembers();
    showStatus(`${t("Invited:")} ${name}`);
  } catch (error) {
    showError(error.message);
  } finally {
    submit.disabled = false;
  }
}

personForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const id = Number.parseInt(personSelect.value, 10);
  if (!people.has(id)) { showError(t("Choose a person first.")); return; }
  invite(personForm, { role: personRole.value, user_id: id }, people.get(id).full_name);
});

siteForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const id = Number.parseInt(siteSelect.value, 10);
  if (!sites.has(id)) { showError(t("Choose a site first.")); return; }
  invite(siteForm, { role: "site_operator", site_id: id }, sites.get(id).name);
});

personFilter.addEventListener("input", renderChoices);
siteFilter.addEventListener("input", renderChoices);

// --- Cascade nodes: which lower-level servers carry this meeting -------------------------

const nodesBlock = document.getElementById("nodes-block");
const nodesList = document.getElementById("nodes-list");
const nodesSave = /** @type {HTMLButtonElement} */ (document.getElementById("nodes-save"));
const nodesStatus = document.getElementById("nodes-status");
const nodesMirrored = document.getElementById("nodes-mirrored");
const nodesHelp = document.getElementById("nodes-help");

// Each node with its seats: how many voting members its subtree may report for the quorum
// (docs/cascade.md, "Headcounts and seats").
function renderNodes(invited, children, seats = {}) {
  const all = [...children, ...invited.filter((unit) => !children.includes(unit))];
  nodesMirrored.hidden = !mirrored;
  nodesHelp.hidden = mirrored;
  nodesSave.hidden = mirrored || all.length === 0;
  if (!all.length) {
    nodesList.replaceChildren(el("p", { className: "muted", textContent: t("This server has no lower-level nodes.") }));
    return;
  }
  nodesList.replaceChildren(...all.map((unit) => {
    const box = el("input", { type: "checkbox", value: unit, checked: invited.includes(unit),
                              disabled: mirrored });
    const count = el("input", { type: "number", min: 0, max: 10000, step: 1, inputMode: "numeric",
                                value: String(seats[unit] ?? 0), disabled: mirrored,
                                className: "seats" });
    count.dataset.unit = unit;
    count.setAttribute("aria-label", `${t("Voting seats")}: ${unit}`);
    return el("div", { className: "node-row" },
              el("label", { className: "check" }, box, ` ${unit}`),
              el("label", { className: "seats" }, `${t("Voting seats")} `, count));
  }));
}

async function loadNodes() {
  let data;
  try {
    data = await api("GET", `${base}/nodes`);
  } catch {
    nodesBlock.hidden = true;  // not a node, or a server without this route yet
    return;
  }
  if (!data?.configured) { nodesBlock.hidden = true; return; }
  if (data.mirrored === true) mirrored = true;
  renderNodes(data.nodes ?? [], data.children ?? [], data.seats ?? {});
  nodesBlock.hidden = false;
}

nodesSave.addEventListener("click", async () => {
  const chosen = [.../** @type {NodeListOf<HTMLInputElement>} */ (nodesList.querySelectorAll("input[type=checkbox]:checked"))].map((b) => b.value);
  const seats = {};
  for (const input of /** @type {NodeListOf<HTMLInputElement>} */ (nodesList.querySelectorAll("input.seats"))) {
    const count = Number.parseInt(input.value, 10);
    if (chosen.includes(input.dataset.unit)) seats[input.dataset.unit] = Number.isFinite(count) ? count : 0;
  }
  nodesSave.disabled = true;
  nodesStatus.className = "muted";
  nodesStatus.textContent = "";
  try {
    const data = await api("PUT", `${base}/nodes`, { nodes: chosen, seats });
    if (Array.isArray(data?.nodes) && Array.isArray(data?.children)) renderNodes(data.nodes, data.children, data.seats ?? {});
    nodesStatus.textContent = t("Saved");
  } catch (error) {
    if (error.code === "mirrored") {
      mirrored = true;
      await loadNodes();
    } else {
      nodesStatus.className = "error";
      nodesStatus.textContent = error.message;
    }
  } finally {
    nodesSave.disabled = false;
  }
});

await loadCatalog();
await loadDirectory();
try {
  await loadMembers();
} catch (error) {
  showError(error.message);
}
await loadNodes();
