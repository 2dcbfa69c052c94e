import assert from "node:assert/strict";
import { test } from "node:test";

import { AnnotationStore, newId } from "../static/js/annotation-store.js";

// Times on the wire: ISO 8601 UTC, as the server writes them (docs/protocol.md, Conventions).
const at = (second) => `2026-12-06T08:00:0${second}.250000+00:00`;
const ink = (id, extra = {}) => ({ id, page: 0, author_id: "7", kind: "ink", visibility: "private",
                                   data: {}, created_at: at(1), ...extra });
const event = (seq, prevSeq, { upserts = [], removed = [], opId = `op-${seq}`, page = 0 } = {}) =>
  ({ seq, prev_seq: prevSeq, op_id: opId, page, upserts, removed });
const ids = (store, page = 0) => store.visible(page).map((a) => a.id);

test("an event applied twice changes the page once", () => {
  const store = new AnnotationStore("5", 1, "7");
  store.loadSnapshot(0, [], 10);
  assert.equal(store.applyEvent(event(11, 10, { upserts: [ink("a")] })), true);
  assert.equal(store.applyEvent(event(12, 11, { removed: ["a"] })), true);
  // The ack of op 11 arrives after the live event 12 removed its annotation: no resurrection.
  assert.equal(store.applyEvent(event(11, 10, { upserts: [ink("a")] })), true);
  assert.deepEqual(ids(store), []);
  assert.equal(store.pages.get(0).seq, 12);
});

test("events at or below the snapshot are ignored", () => {
  const store = new AnnotationStore("5", 1, "7");
  store.loadSnapshot(0, [ink("a")], 10);
  store.applyEvent(event(9, 8, { removed: ["a"] }));
  assert.deepEqual(ids(store), ["a"]);
});

test("a missing event asks for a snapshot and holds later events until it lands", () => {
  const store = new AnnotationStore("5", 1, "7");
  const gaps = [];
  store.onGap = (page) => gaps.push(page);
  store.loadSnapshot(0, [], 10);
  assert.equal(store.applyEvent(event(12, 11, { upserts: [ink("b")] })), false); // 11 never came
  assert.deepEqual(gaps, [0]);
  store.applyEvent(event(13, 12, { upserts: [ink("c", { created_at: at(3) })] })); // held meanwhile
  assert.deepEqual(ids(store), []);
  // The snapshot knows up to 12; the held 13 is applied on top, the held 12 is not repeated.
  store.loadSnapshot(0, [ink("a"), ink("b", { created_at: at(2) })], 12);
  assert.deepEqual(ids(store), ["a", "b", "c"]);
  assert.deepEqual(gaps, [0]);
});

test("events of a page whose snapshot has not come are left to the snapshot", () => {
  const store = new AnnotationStore("5", 1, "7");
  assert.equal(store.applyEvent(event(3, 2, { upserts: [ink("a")] })), true);
  assert.deepEqual(ids(store), []);
});

test("a local op shows at once and gives way to the server's event", () => {
  const store = new AnnotationStore("5", 1, "7");
  store.loadSnapshot(0, [], 0);
  const changed = [];
  store.onChange = (page) => changed.push(page);
  const op = { op_id: newId(), type: "add", page: 0, annotation: { id: "n", kind: "note", data: { text: "x" } } };
  store.addPending(op);
  assert.deepEqual(store.visible(0).map((a) => [a.id, a.author_id, a.visibility]), [["n", "7", "private"]]);
  store.acknowledge(op.op_id, event(1, 0, { opId: op.op_id, upserts: [ink("n", { kind: "note" })] }));
  assert.equal(store.hasPending(op.op_id), false);
  assert.deepEqual(ids(store), ["n"]);
  assert.ok(changed.length >= 2);
});

test("a refused op disappears; an unknown one changes nothing", () => {
  const store = new AnnotationStore("5", 1, "7");
  store.loadSnapshot(0, [ink("a")], 4);
  const op = { op_id: "del", type: "delete", page: 0, ids: ["a"] };
  store.addPending(op);
  assert.deepEqual(ids(store), []);
  store.reject("del");
  assert.deepEqual(ids(store), ["a"]);
  store.reject("never-sent");
  assert.deepEqual(ids(store), ["a"]);
});

test("set_visibility changes only my own annotations", () => {
  const store = new AnnotationStore("5", 1, "7");
  store.loadSnapshot(0, [ink("mine"), ink("theirs", { author_id: "8", created_at: at(2) })], 1);
  store.addPending({ op_id: "v", type: "set_visibility", page: 0, ids: null, visibility: "meeting" });
  assert.deepEqual(store.visible(0).map((a) => [a.id, a.visibility]),
                   [["mine", "meeting"], ["theirs", "private"]]);
});

test("newId makes distinct version-4 UUIDs", () => {
  const a = newId();
  assert.match(a, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.notEqual(a, newId());
});
