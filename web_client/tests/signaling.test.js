// Both wire-protocol modules over a socket.io stand-in: what they emit, how acks become
// results or errors, and which pushed events reach which callback.
import assert from "node:assert/strict";
import { test } from "node:test";

import { MediaSignaling, MediaSignalingError } from "../static/js/media-signaling.js";
import { Signaling, SignalingError } from "../static/js/signaling.js";

/** The part of a socket.io client socket the modules use; the test plays the server. */
class FakeSocket {
  constructor(options) {
    this.options = options;
    this.connected = false;
    this.handlers = new Map();
    this.sent = [];
    /** @type {(event: string, payload: any) => any} the server's ack, or a thrown timeout */
    this.answer = () => ({ ok: true, result: null });
  }

  on(event, handler) { this.handlers.set(event, [...(this.handlers.get(event) ?? []), handler]); }

  timeout(ms) {
    return {
      emitWithAck: async (event, payload) => {
        this.sent.push({ event, payload, ms });
        return this.answer(event, payload);
      },
    };
  }

  /** The server pushes an event (or the connection changes). */
  push(event, payload) { for (const handler of this.handlers.get(event) ?? []) handler(payload); }

  disconnect() { this.connected = false; this.push("disconnect"); }
}

/** Each Signaling/MediaSignaling made from now on gets a FakeSocket; returns them, in order. */
function sockets() {
  const made = [];
  globalThis.io = (options) => { const s = new FakeSocket(options); made.push(s); return s; };
  return made;
}

test("a request sends its payload and resolves with the ack's result", async () => {
  const made = sockets();
  const sig = new Signaling();
  made[0].answer = (event, payload) => ({ ok: true, result: { event, payload } });
  const result = await sig.castVote(3, 11, "yes", 2, "R-1");
  assert.deepEqual(result, { event: "vote:cast",
                             payload: { meeting_id: 3, vote_id: 11, option: "yes", seq: 2, receipt: "R-1" } });
  assert.equal(made[0].sent[0].ms, 10000);
  await sig.castVote(3, 11, "no", 3);
  assert.equal("receipt" in made[0].sent[1].payload, false); // only a secret ballot's first has one
});

test("a refusal rejects with the server's code and message", async () => {
  const made = sockets();
  const sig = new Signaling();
  made[0].answer = () => ({ ok: false, error: { code: "forbidden", message: "not the chair" } });
  await assert.rejects(sig.endFloor(3), (error) => error instanceof SignalingError
    && error.code === "forbidden" && error.message === "not the chair");
  made[0].answer = () => undefined; // a malformed ack
  await assert.rejects(sig.endFloor(3), (error) => error.code === "unknown");
});

test("pushed procedure events and connection changes reach their callbacks", () => {
  const made = sockets();
  const sig = new Signaling();
  const seen = [];
  sig.onConnectionChange = (connected) => seen.push(["connection", connected]);
  sig.onVoteUpdated = (e) => seen.push(["vote", e.vote.id]);
  sig.onFloorChanged = (e) => seen.push(["floor", e.seq]);
  sig.onMeetingUpdated = (m) => seen.push(["meeting", m.status]);
  made[0].push("connect");
  made[0].push("vote:updated", { meeting_id: 3, seq: 4, vote: { id: 8 } });
  made[0].push("floor:changed", { meeting_id: 3, seq: 5, holder: null, queue: [], totals: {} });
  made[0].push("meeting:updated", { id: 3, status: "open" });
  made[0].push("disconnect");
  assert.deepEqual(seen, [["connection", true], ["vote", 8], ["floor", 5], ["meeting", "open"],
                          ["connection", false]]);
});

test("the media connection is its own socket, and every request names the meeting", async () => {
  const made = sockets();
  const media = new MediaSignaling(3);
  assert.equal(made[0].options.forceNew, true);
  made[0].answer = (event, payload) => ({ ok: true, result: { event, payload } });
  assert.deepEqual(await media.subscribe(["p1", "p2"]),
                   { event: "media:subscribe", payload: { meeting_id: 3, producer_ids: ["p1", "p2"] } });
  assert.deepEqual((await media.publish("v=0")).payload, { meeting_id: 3, sdp: "v=0" });
  assert.deepEqual((await media.chairMute({ site_id: 2 })).payload, { meeting_id: 3, site_id: 2, kind: "audio" });
});

test("a media request the server does not answer fails as a timeout", async () => {
  const made = sockets();
  const media = new MediaSignaling(3);
  made[0].answer = () => { throw new Error("operation has timed out"); };
  await assert.rejects(media.join(), (error) => error instanceof MediaSignalingError
    && error.code === "timeout" && error.message.startsWith("media:join"));
  made[0].answer = () => ({ ok: false, error: { code: "muted_by_chair", message: "wait" } });
  await assert.rejects(media.unmute("p1"), (error) => error.code === "muted_by_chair");
});

test("media pushes of another meeting are ignored", () => {
  const made = sockets();
  const media = new MediaSignaling(3);
  const seen = [];
  media.onPeerClosed = (e) => seen.push(e.peer_id);
  media.onOffer = (e) => seen.push(e.offer.sdp);
  made[0].push("media:peer-closed", { meeting_id: 4, peer_id: "other-meeting" });
  made[0].push("media:peer-closed", { meeting_id: 3, peer_id: "a" });
  made[0].push("media:offer", { meeting_id: 3, offer: { sdp: "v=0", consumers: [] } });
  made[0].push("media:offer", null);
  assert.deepEqual(seen, ["a", "v=0"]);
});
