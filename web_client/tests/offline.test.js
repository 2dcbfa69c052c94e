// The offline queue as it runs where IndexedDB is missing (its in-memory store): the order,
// the acknowledgement and the refusal rules are the same as with IndexedDB.
import assert from "node:assert/strict";
import { mock, test } from "node:test";

import { OpQueue } from "../static/js/offline.js";

mock.method(console, "warn", () => {}); // "IndexedDB unavailable": expected here

/** A server link that can drop, and refuses what the test tells it to. */
class FakeServer {
  constructor() {
    this.online = true;
    this.received = [];
    /** @type {Map<string, Error>} op_id -> the refusal to answer once */
    this.refuse = new Map();
  }

  isOnline() { return this.online; }

  async sendOp(record) {
    const refusal = this.refuse.get(record.op_id);
    if (refusal) { this.refuse.delete(record.op_id); throw refusal; }
    if (!this.online) throw new Error("disconnected");
    this.received.push(record.op.op_id);
    return { seq: this.received.length };
  }
}

const op = (id) => ({ op_id: id, type: "add", page: 0, annotation: { id: `a-${id}` } });

test("ops drawn offline wait, then reach the server in order after the reconnect", async () => {
  const server = new FakeServer();
  const queue = new OpQueue(server, 7);
  const sizes = [];
  queue.onSizeChange = (n) => sizes.push(n);
  server.online = false;
  for (const id of ["1", "2", "3", "4", "5"]) await queue.enqueue(12, 1, op(id));
  assert.deepEqual(server.received, []);
  assert.equal(queue.size, 5);
  assert.deepEqual((await queue.waiting(12, 1)).map((o) => o.op_id), ["1", "2", "3", "4", "5"]);

  server.online = true;
  const acked = [];
  queue.onAck = (opId) => acked.push(opId);
  await queue.flush();
  assert.deepEqual(server.received, ["1", "2", "3", "4", "5"]);
  assert.deepEqual(acked, ["1", "2", "3", "4", "5"]);
  assert.equal(queue.size, 0);
  assert.equal(sizes.at(-1), 0);
});

test("a link that drops mid-way keeps the rest, and resends from the first unacknowledged op", async () => {
  const server = new FakeServer();
  const queue = new OpQueue(server, 7);
  server.online = false;
  for (const id of ["a", "b", "c"]) await queue.enqueue(12, 1, op(id));
  server.online = true;
  server.refuse.set("b", new Error("socket closed")); // transient: no .permanent
  await queue.flush();
  assert.deepEqual(server.received, ["a"]);
  assert.deepEqual((await queue.waiting(12, 1)).map((o) => o.op_id), ["b", "c"]);
  await queue.flush(); // the reconnect (also what the retry timer does)
  assert.deepEqual(server.received, ["a", "b", "c"]);
  assert.equal(queue.size, 0);
});

test("an op queued twice is sent once", async () => {
  const server = new FakeServer();
  const queue = new OpQueue(server, 7);
  server.online = false;
  await queue.enqueue(12, 1, op("x"));
  await queue.enqueue(12, 1, op("x"));
  await queue.enqueue(12, 1, op("y"));
  server.online = true;
  await queue.flush();
  assert.deepEqual(server.received, ["x", "y"]);
});

test("an op refused for good is dropped and reported, the next ones still go", async () => {
  const server = new FakeServer();
  const queue = new OpQueue(server, 7);
  const rejected = [];
  queue.onReject = (opId, error) => rejected.push([opId, error.message]);
  server.online = false;
  for (const id of ["1", "2", "3"]) await queue.enqueue(12, 1, op(id));
  server.online = true;
  server.refuse.set("2", Object.assign(new Error("forbidden"), { permanent: true }));
  await queue.flush();
  assert.deepEqual(server.received, ["1", "3"]);
  assert.deepEqual(rejected, [["2", "forbidden"]]);
  assert.equal(queue.size, 0);
});

test("ops queued while a flush runs are sent by it, after the earlier ones", async () => {
  const server = new FakeServer();
  const queue = new OpQueue(server, 7);
  const first = queue.enqueue(12, 1, op("1"));
  const second = queue.enqueue(12, 1, op("2"));
  await Promise.all([first, second]);
  await queue.flush();
  assert.deepEqual(server.received, ["1", "2"]);
});

test("another user's unsent ops on the same tablet are not theirs to send", async () => {
  const server = new FakeServer();
  server.online = false;
  const first = new OpQueue(server, 7);
  await first.enqueue(12, 1, op("mine"));
  // The same storage, as after a log-out and a log-in on a shared tablet.
  const second = new OpQueue(server, 8);
  second.storage = first.storage;
  server.online = true;
  await second.flush();
  assert.deepEqual(server.received, []);
  assert.deepEqual(await second.waiting(12, 1), []);
  await first.flush();
  assert.deepEqual(server.received, ["mine"]);
});

test("waiting lists only the ops of that document version", async () => {
  const server = new FakeServer();
  server.online = false;
  const queue = new OpQueue(server, 7);
  await queue.enqueue(12, 1, op("v1"));
  await queue.enqueue(12, 2, op("v2"));
  await queue.enqueue(13, 1, op("other"));
  assert.deepEqual((await queue.waiting(12, 2)).map((o) => o.op_id), ["v2"]);
  assert.deepEqual((await queue.waiting("12", 1)).map((o) => o.op_id), ["v1"]);
});
