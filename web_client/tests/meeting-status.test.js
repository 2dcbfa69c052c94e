// The meeting screen's state bar model (meeting-status.js): what it says from the procedure's
// snapshot and pushed events, in order and out of order.
import { test } from "node:test";
import assert from "node:assert/strict";
import { MeetingState, clock } from "../static/js/meeting-status.js";

const T0 = Date.parse("2026-12-06T09:00:00Z");

function snapshot(extra = {}) {
  return {
    meeting_id: 7, seq: 10, status: "open", server_time: new Date(T0).toISOString(),
    agenda: { items: [{ id: 1, title: "Kế hoạch 2026", planned_minutes: 15 }],
              current: { item_id: 1, since: new Date(T0 - 65_000).toISOString(), spent_before_seconds: 0 } },
    floor: { holder: null, queue: [], totals: {} },
    votes: [],
    me: { user_id: 4, role: "delegate", actions: ["view", "request_floor"] },
    ...extra,
  };
}

test("the current item and its timer, corrected for the server's clock", () => {
  const m = new MeetingState(7, "open");
  m.load(snapshot());
  const s = m.summary(Date.now() + 1000); // one second later, whatever the local clock says
  assert.equal(s.item.title, "Kế hoạch 2026");
  assert.ok(Math.abs(s.item.elapsed - 66) < 0.5, String(s.item.elapsed));
  assert.equal(s.item.planned, 900);
  assert.equal(s.item.over, false);
  assert.equal(s.canRequest, true);
});

test("floor, my request, a vote; older events are ignored and another meeting's too", () => {
  const m = new MeetingState(7, "open");
  m.load(snapshot());
  const at = new Date(T0).toISOString();
  const mine = { id: 3, user_id: 4, name: "Lê Minh Tuấn", status: "queued" };
  assert.ok(m.floor({ meeting_id: 7, seq: 12, server_time: at, holder: null, queue: [mine], totals: {} }));
  assert.deepEqual(m.summary().myRequest, { id: 3, status: "queued", place: 1 });
  // An older floor event (seq 11) arrives late: ignored.
  assert.ok(!m.floor({ meeting_id: 7, seq: 11, server_time: at, holder: null, queue: [], totals: {} }));
  assert.equal(m.summary().myRequest?.id, 3);
  assert.ok(!m.floor({ meeting_id: 8, seq: 20, server_time: at, holder: null, queue: [], totals: {} }));
  const holder = { ...mine, status: "speaking", granted_at: at, limit_seconds: 60 };
  m.floor({ meeting_id: 7, seq: 13, server_time: at, holder, queue: [], totals: {} });
  assert.equal(m.summary().speaker.me, true);
  assert.equal(m.summary().myRequest.status, "speaking");
  m.vote({ meeting_id: 7, seq: 14, server_time: at, vote: { id: 9, question: "Thông qua?", status: "open" } });
  assert.deepEqual(m.summary().vote, { id: 9, question: "Thông qua?" });
  m.vote({ meeting_id: 7, seq: 15, server_time: at, vote: { id: 9, question: "Thông qua?", status: "closed", final: true } });
  assert.equal(m.summary().vote, null);
});

test("a closed meeting has ended: no vote, no request to speak", () => {
  const m = new MeetingState(7, "open");
  m.load(snapshot({ votes: [{ id: 9, question: "Q", status: "open" }] }));
  assert.ok(m.meeting({ id: 7, status: "closed" }));
  const s = m.summary();
  assert.equal(s.ended, true);
  assert.equal(s.vote, null);
  assert.equal(s.canRequest, false);
  assert.ok(!m.meeting({ id: 8, status: "open" }));
});

test("a paused meeting: the item's clock stands still and nobody is offered the floor", () => {
  const m = new MeetingState(7, "open");
  m.load(snapshot({ status: "paused", agenda: { items: [{ id: 1, title: "K", planned_minutes: 0 }],
                                                current: { item_id: 1, since: null, spent_before_seconds: 125 } } }));
  const s = m.summary();
  assert.equal(s.status, "paused");
  assert.equal(s.item.elapsed, 125);
  assert.equal(s.canRequest, false);
  assert.equal(s.ended, false);
});

test("the chair is not offered a request to speak", () => {
  const m = new MeetingState(7, "open");
  m.load(snapshot({ me: { user_id: 1, role: "chair", actions: ["view", "request_floor", "chair_media"] } }));
  assert.equal(m.summary().canRequest, false);
});

test("clock", () => {
  assert.equal(clock(65), "1:05");
  assert.equal(clock(3725), "1:02:05");
  assert.equal(clock(-30), "−0:30");
});

test("an event heard while the snapshot is on its way is applied after it, if newer", () => {
  const m = new MeetingState(7, "open");
  const at = new Date(T0).toISOString();
  const open = { id: 9, question: "Thông qua?", status: "open" };
  m.load(snapshot({ seq: 10, votes: [open] }));
  // Reconnected: a snapshot is asked for; the vote closes (seq 12) before its answer, which
  // was read before the close (seq 11, the vote still open).
  m.expect();
  assert.ok(!m.vote({ meeting_id: 7, seq: 12, server_time: at, vote: { ...open, status: "closed", final: true } }));
  assert.ok(!m.vote({ meeting_id: 8, seq: 13, server_time: at, vote: { ...open, id: 5 } }));
  m.load(snapshot({ seq: 11, votes: [open] }));
  assert.equal(m.summary().vote, null);
  // An event older than the snapshot, heard while waiting for it, changes nothing.
  m.expect();
  assert.ok(!m.vote({ meeting_id: 7, seq: 14, server_time: at, vote: { id: 10, question: "Q2", status: "open" } }));
  m.load(snapshot({ seq: 15, votes: [] }));
  assert.equal(m.summary().vote, null);
  // Before the first snapshot, too.
  const fresh = new MeetingState(7, "open");
  fresh.vote({ meeting_id: 7, seq: 12, server_time: at, vote: { ...open, status: "closed", final: true } });
  fresh.load(snapshot({ seq: 11, votes: [open] }));
  assert.equal(fresh.summary().vote, null);
  // A snapshot that never comes: the events heard are applied to what was known.
  m.expect();
  m.vote({ meeting_id: 7, seq: 16, server_time: at, vote: { id: 11, question: "Q3", status: "open" } });
  m.abandon();
  assert.deepEqual(m.summary().vote, { id: 11, question: "Q3" });
});
