import assert from "node:assert/strict";
import { test } from "node:test";

import { clock, jumps, pageUrl, stateAt, videoFor } from "../static/js/replay-timeline.js";

const e = (id, offset_ms, kind, data) => ({ id, offset_ms, kind, at: "", data });
const entries = [
  e(1, 40, "recording_started", {}),
  e(2, 40, "agenda", { item_id: 7, title: "Báo cáo" }),
  e(3, 1500, "presented", { active: true, document_id: 4, version: 1, page: 1 }),
  e(4, 2000, "floor", { user_id: 11, name: "Lê Văn B", site: "Đồng Phú" }),
  e(5, 3000, "presented", { active: true, document_id: 4, version: 1, page: 2 }),
  e(6, 4000, "vote_opened", { vote_id: 9, question: "Thông qua?" }),
  e(7, 5000, "vote_closed", { vote_id: 9, question: "Thông qua?", options: ["agree"], result: { adopted: true, totals: [3] } }),
  e(8, 6000, "agenda", { item_id: null, title: null }),
  e(9, 6500, "presented", { active: false, document_id: null, version: null, page: null }),
];

test("the state at a moment is what the last entries before it said", () => {
  assert.equal(stateAt(entries, 0).agenda.item_id, 7); // the start's state holds from 0
  assert.equal(stateAt(entries, 1000).presented, null);
  assert.equal(stateAt(entries, 1000).agenda.item_id, 7);
  assert.equal(stateAt(entries, 2500).presented.page, 1);
  assert.equal(stateAt(entries, 3000).presented.page, 2);
  assert.equal(stateAt(entries, 2500).floor.name, "Lê Văn B");
  assert.deepEqual(stateAt(entries, 4500).votes.map((v) => v.open), [true]);
  assert.equal(stateAt(entries, 5500).votes[0].result.adopted, true);
  assert.equal(stateAt(entries, 6200).agenda, null);
  assert.equal(stateAt(entries, 7000).presented, null);
});

test("jumps list each agenda item, each turn at the floor and each vote's two moments", () => {
  const j = jumps(entries, [{ id: 7, position: 1, title: "1. Báo cáo" }]);
  assert.deepEqual(j.items.map((i) => [i.offset_ms, i.label]), [[40, "1. Báo cáo"]]);
  assert.deepEqual(j.speakers.map((i) => i.label), ["Lê Văn B · Đồng Phú"]);
  assert.deepEqual(j.votes.map((i) => [i.offset_ms, i.detail]), [[4000, "vote_opened"], [5000, "vote_closed"]]);
});

test("the floor holder's video is shown, else the first camera begun", () => {
  const tracks = [
    { file: "a.webm", kind: "video", source: "camera", user_id: 1, name: "A", site: null, offset_ms: 0 },
    { file: "b.webm", kind: "video", source: "camera", user_id: 11, name: "B", site: null, offset_ms: 3000 },
    { file: "b-mic.webm", kind: "audio", source: "microphone", user_id: 11, name: "B", site: null, offset_ms: 3000 },
  ];
  assert.equal(videoFor(tracks, 11, 1000).file, "a.webm"); // B's camera had not begun
  assert.equal(videoFor(tracks, 11, 4000).file, "b.webm");
  assert.equal(videoFor(tracks, null, 4000).file, "a.webm");
  assert.equal(videoFor([], null, 0), null);
});

test("clock and page URL", () => {
  assert.equal(clock(65_000), "01:05");
  assert.equal(clock(3_723_000), "1:02:03");
  assert.equal(pageUrl({ document_id: 4, version: 2, page: 3 }), "/api/documents/4/pages/3?version=2&width=1024");
});
