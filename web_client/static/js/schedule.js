// Dashboard: the "schedule a meeting" form (admin, chair, secretary). The date and time are
// read in the server's configured time zone and sent as ISO 8601 with that zone's offset;
// on success the browser goes to the new meeting's page.
import { api } from "./api.js";
import { loadCatalog, t } from "./i18n.js";

/**
 * Minutes east of UTC in `zone` at the instant `utcMillis` (Intl does the zone rules).
 * @param {string} zone IANA name, e.g. "Asia/Ho_Chi_Minh"
 * @param {number} utcMillis
 */
function zoneOffsetMinutes(zone, utcMillis) {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  }).formatToParts(new Date(utcMillis));
  const get = (type) => Number.parseInt(parts.find((p) => p.type === type).value, 10);
  const wall = Date.UTC(get("year"), get("month") - 1, get("day"), get("hour") % 24,
                        get("minute"), get("second"));
  return Math.round((wall - utcMillis) / 60000);
}

function formatOffset(minutes) {
  const sign = minutes < 0 ? "-" : "+";
  const abs = Math.abs(minutes);
  const pad = (n) => String(n).padStart(2, "0");
  return `${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

/**
 * "2026-12-05" + "08:00" as a wall-clock time in `zone` → "2026-12-05T08:00:00+07:00".
 * Without Intl time-zone support, `fallbackOffset` (the zone's offset now, from the server).
 * @param {string} date YYYY-MM-DD
 * @param {string} time HH:MM
 * @param {string} zone
 * @param {string} fallbackOffset e.g. "+07:00"
 */
export function zonedIso(date, time, zone, fallbackOffset) {
  const [y, m, d] = date.split("-").map(Number);
  const [hh, mm] = time.split(":").map(Number);
  let offset = fallbackOffset;
  try {
    const wall = Date.UTC(y, m - 1, d, hh, mm);
    const first = zoneOffsetMinutes(zone, wall);
    offset = formatOffset(zoneOffsetMinutes(zone, wall - first * 60000));
  } catch { /* an old browser: the offset the server gave */ }
  return `${date}T${time.slice(0, 5)}:00${offset}`;
}

const form = /** @type {HTMLFormElement} */ (document.getElementById("schedule-form"));
const errorBox = document.getElementById("schedule-error");
const submit = /** @type {HTMLButtonElement} */ (document.getElementById("schedule-submit"));

await loadCatalog();

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  errorBox.hidden = true;
  const data = new FormData(form);
  const title = String(data.get("title") ?? "").trim();
  if (!title) {
    errorBox.textContent = t("Please enter a title.");
    errorBox.hidden = false;
    return;
  }
  submit.disabled = true;
  try {
    const meeting = await api("POST", "/api/meetings", {
      title,
      unit_id: Number.parseInt(String(data.get("unit_id")), 10),
      starts_at: zonedIso(String(data.get("date")), String(data.get("time")),
                          form.dataset.timezone, form.dataset.utcOffset),
      description: String(data.get("description") ?? "").trim(),
      rule_set: String(data.get("rule_set") ?? "other"),
    });
    window.location.assign(`/meetings/${meeting.id}`);
  } catch (error) {
    errorBox.textContent = `${t("Could not schedule the meeting:")} ${error.message}`;
    errorBox.hidden = false;
    submit.disabled = false;
  }
});
