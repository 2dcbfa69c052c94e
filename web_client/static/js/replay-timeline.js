// The replay's timeline, without DOM (node tests): what was on screen at a moment of the
// recording, the places to jump to, and which track to show. Times are `offset_ms` on the
// recording's clock, the clock the media files are stamped on, so a video element's
// currentTime (seconds) is the same clock (docs/protocol.md, "Replay").

/**
 * @typedef {{id: number, kind: string, at: string, offset_ms: number, data: any}} Entry
 * @typedef {{file: string, kind: string, source: string, user_id: number|null, name: string|null,
 *            site: string|null, offset_ms: number}} Track
 * @typedef {{offset_ms: number, label: string, key: string, detail?: string}} Jump
 */

/**
 * What was current at `offsetMs`: the agenda item, the floor, the presented page, the votes
 * opened so far (with their result once closed).
 * @param {Entry[]} entries ordered by offset @param {number} offsetMs
 */
export function stateAt(entries, offsetMs) {
  /** @type {any} */ let agenda = null;
  /** @type {any} */ let floor = null;
  /** @type {any} */ let presented = null;
  /** @type {Map<number, {vote_id: number, question: string, open: boolean, result: any, options: string[]|null}>} */
  const votes = new Map();
  // The state noted at the start holds from 0 (it is written a few ms after the zero).
  const start = entries.find((e) => e.kind === "recording_started")?.offset_ms ?? 0;
  const until = Math.max(offsetMs, start);
  for (const e of entries) {
    if (e.offset_ms > until) break;
    if (e.kind === "agenda") agenda = e.data.item_id == null ? null : e.data;
    else if (e.kind === "floor") floor = e.data.user_id == null && !e.data.name ? null : e.data;
    else if (e.kind === "presented") presented = e.data.active ? e.data : null;
    else if (e.kind === "vote_opened") {
      votes.set(e.data.vote_id, { vote_id: e.data.vote_id, question: e.data.question, open: true,
                                  result: null, options: null });
    } else if (e.kind === "vote_closed") {
      votes.set(e.data.vote_id, { vote_id: e.data.vote_id, question: e.data.question, open: false,
                                  result: e.data.result, options: e.data.options ?? null });
    }
  }
  return { agenda, floor, presented, votes: [...votes.values()] };
}

/**
 * The places to jump to: each agenda item, each turn at the floor, each vote's opening and
 * result.
 * @param {Entry[]} entries @param {{id: number, position: number, title: string}[]} agenda
 */
export function jumps(entries, agenda = []) {
  const titles = new Map(agenda.map((i) => [i.id, i.title]));
  /** @type {Jump[]} */ const items = [];
  /** @type {Jump[]} */ const speakers = [];
  /** @type {Jump[]} */ const votes = [];
  for (const e of entries) {
    if (e.kind === "agenda" && e.data.item_id != null) {
      items.push({ offset_ms: e.offset_ms, key: `item-${e.data.item_id}`,
                   label: titles.get(e.data.item_id) ?? e.data.title ?? `#${e.data.item_id}` });
    } else if (e.kind === "floor" && (e.data.user_id != null || e.data.name)) {
      speakers.push({ offset_ms: e.offset_ms, key: `floor-${e.id}`,
                      label: e.data.site ? `${e.data.name} · ${e.data.site}` : String(e.data.name ?? "") });
    } else if (e.kind === "vote_opened" || e.kind === "vote_closed") {
      votes.push({ offset_ms: e.offset_ms, key: `${e.kind}-${e.data.vote_id}`, label: e.data.question,
                   detail: e.kind });
    }
  }
  return { items, speakers, votes };
}

/**
 * The video to show at `offsetMs`: the floor holder's camera (or screen) if they published one
 * by then, else the screen share, else the first camera begun by then; null if none.
 * @param {Track[]} tracks @param {number|null} floorUserId @param {number} offsetMs
 */
export function videoFor(tracks, floorUserId, offsetMs) {
  const begun = tracks.filter((t) => t.kind === "video" && t.offset_ms <= offsetMs + 500);
  const all = tracks.filter((t) => t.kind === "video");
  const pool = begun.length ? begun : all;
  const rank = (/** @type {Track} */ t) =>
    (floorUserId != null && t.user_id === floorUserId ? 0 : 2) + (t.source === "screen" ? 0 : 1);
  return [...pool].sort((a, b) => rank(a) - rank(b) || a.offset_ms - b.offset_ms)[0] ?? null;
}

/** "1:02:03" or "02:03". @param {number} ms */
export function clock(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const hh = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${mm}:${ss}` : `${mm}:${ss}`;
}

/**
 * The page image's URL: the documents' own page route, so access and a confidential
 * document's per-viewer watermark are the server's as everywhere else.
 * @param {{document_id: number, version: number|null, page: number}} presented @param {number} width
 */
export function pageUrl(presented, width = 1024) {
  const version = presented.version == null ? "" : `version=${presented.version}&`;
  return `/api/documents/${presented.document_id}/pages/${presented.page}?${version}width=${width}`;
}
