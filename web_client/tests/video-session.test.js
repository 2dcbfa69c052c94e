// The video session without a browser: a stand-in media signaling connection (the test plays
// the SFU) and stand-in peer connections that record what they were given.
import assert from "node:assert/strict";
import { mock, test } from "node:test";

import { layerWant } from "../static/js/simulcast.js";
import { ChairLockError, VideoSession, peopleOf } from "../static/js/video-session.js";

const settle = () => new Promise((resolve) => setImmediate(resolve));
const settleAll = async () => { for (let i = 0; i < 20; i += 1) await settle(); };

class FakePc {
  constructor() {
    this.remote = [];
    this.local = 0;
    this.closed = false;
    this.transceivers = [];
    this.localDescription = null;
    this.iceConnectionState = "new";
  }

  addEventListener() {}
  close() { this.closed = true; }
  async setRemoteDescription(description) { this.remote.push(description); }
  async setLocalDescription() { this.local += 1; this.localDescription = { sdp: `local-${this.local}` }; }
  addTransceiver(track, init) { const t = { track, init, mid: String(this.transceivers.length) }; this.transceivers.push(t); return t; }
}

/** The server side of media-signaling.js: answers from `answers`, records every call. */
class FakeSfu {
  constructor(joined) {
    this.joined = joined;
    this.connected = true;
    this.calls = [];
    this.onConnectionChange = () => {};
    this.answers = { subscribe: () => ({ consumers: [], offer: null }), answer: () => ({ offer: null }) };
  }

  #call(name, ...args) {
    this.calls.push([name, ...args]);
    const answer = this.answers[name];
    return Promise.resolve().then(() => (answer ? answer(...args) : {}));
  }

  join() { return this.#call("join").then(() => structuredClone(this.joined)); }
  leave() { return this.#call("leave"); }
  subscribe(ids) { return this.#call("subscribe", ids); }
  answer(sdp) { return this.#call("answer", sdp); }
  publish(sdp, sources) { return this.#call("publish", sdp, sources); }
  mute(id) { return this.#call("mute", id); }
  unmute(id) { return this.#call("unmute", id); }
  layers(id, want) { return this.#call("layers", id, want); }
  producers() { return this.#call("producers"); }
  named(name) { return this.calls.filter((c) => c[0] === name).map((c) => c.slice(1)); }
}

const ME = { peer_id: "me", user_id: 1, name: "Chủ trì" };
const producer = (id, peer = "p2", source = "camera") =>
  ({ id, peer_id: peer, user_id: 2, name: "Đại biểu", kind: source === "mic" ? "audio" : "video", source });

function session(joined = {}) {
  const sfu = new FakeSfu({ peer_id: ME.peer_id, me: ME, peers: [], producers: [], locks: [], floor: null,
                            active_speaker: null, rtc_configuration: {}, can_publish: false, can_chair: false,
                            ...joined });
  const pcs = [];
  const s = new VideoSession(3, { connect: () => sfu, newPeerConnection: () => { const pc = new FakePc(); pcs.push(pc); return pc; } });
  const seen = { notices: [], ended: [], closedProducers: [], errors: [] };
  s.onNotice = (n) => seen.notices.push(n);
  s.onEnded = (reason) => seen.ended.push(reason);
  s.onProducerClosed = (id) => seen.closedProducers.push(id);
  s.onError = (error) => seen.errors.push(error);
  return { s, sfu, pcs, seen };
}

test("producers announced together are subscribed together, 64 at most per request", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const many = Array.from({ length: 70 }, (_, i) => producer(`c${i}`));
    const { s, sfu, seen } = session({ producers: many });
    await s.join();
    assert.deepEqual(sfu.named("subscribe"), []); // waits a moment for more
    assert.deepEqual(seen.notices, ["receive-only"]);
    mock.timers.tick(60);
    await settleAll();
    const batches = sfu.named("subscribe").map(([ids]) => ids.length);
    assert.deepEqual(batches, [64, 6]);
    assert.deepEqual(sfu.named("subscribe").flatMap(([ids]) => ids), many.map((p) => p.id));
  } finally {
    mock.timers.reset();
  }
});

test("a refused subscription is retried; too_many is told only when it persists", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const { s, sfu, seen } = session({ producers: [producer("c1")] });
    let refusals = 3;
    sfu.answers.subscribe = () => {
      if (refusals-- > 0) throw Object.assign(new Error("too many"), { code: "too_many" });
      return { consumers: [{ mid: "0", producer_id: "c1", producer_peer_id: "p2", source: "camera" }], offer: null };
    };
    await s.join();
    mock.timers.tick(60);
    await settleAll();
    mock.timers.tick(3000);
    await settleAll();
    assert.deepEqual(seen.notices, ["receive-only"]); // two refusals: still quiet
    mock.timers.tick(3000);
    await settleAll();
    assert.deepEqual(seen.notices, ["receive-only", "too-many"]);
    mock.timers.tick(3000);
    await settleAll();
    assert.equal(sfu.named("subscribe").length, 4);
    assert.equal(s.consumers.get("0")?.producer_id, "c1");
    assert.equal(s.tooMany, 0);
  } finally {
    mock.timers.reset();
  }
});

test("an offer that piled up while answering is applied next, in order", async () => {
  const { s, sfu, pcs } = session();
  await s.join();
  const recv = pcs[0];
  const second = { sdp: "offer-2", consumers: [{ mid: "1", producer_id: "c2", producer_peer_id: "p2", source: "camera" }] };
  let answered = 0;
  sfu.answers.answer = () => ({ offer: answered++ === 0 ? second : null });
  await s.applyOffer({ sdp: "offer-1", consumers: [{ mid: "0", producer_id: "c1", producer_peer_id: "p2", source: "camera" }] });
  assert.deepEqual(recv.remote.map((d) => [d.type, d.sdp]), [["offer", "offer-1"], ["offer", "offer-2"]]);
  assert.deepEqual(sfu.named("answer"), [["local-1"], ["local-2"]]);
  assert.deepEqual([...s.consumers.keys()], ["1"]); // the last offer lists every live consumer
});

test("a lost transport rejoins by itself; a removal ends the session", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const { s, sfu, pcs, seen } = session();
    await s.join();
    sfu.onClosed({ peer_id: "me", reason: "ice-timeout" });
    assert.equal(pcs[0].closed, true);
    assert.equal(s.joined, null);
    assert.deepEqual(seen.notices.at(-1), "rejoining");
    mock.timers.tick(1000);
    await settleAll();
    assert.equal(sfu.named("join").length, 2);
    assert.equal(s.joined?.peer_id, "me");

    sfu.onClosed({ peer_id: "someone-else", reason: "removed" }); // not mine: ignored
    assert.ok(s.joined);
    sfu.onClosed({ peer_id: "me", reason: "removed" });
    assert.deepEqual(seen.ended, ["removed"]);
    assert.equal(s.wanted, false);
    mock.timers.tick(5000);
    await settleAll();
    assert.equal(sfu.named("join").length, 2);
  } finally {
    mock.timers.reset();
  }
});

test("a microphone the chair locked starts muted and is not unmuted", async () => {
  const track = { kind: "audio", enabled: true, stop() {} };
  const { s, sfu } = session({ can_publish: true, locks: [{ user_id: 1, kinds: ["audio"] }] });
  s.local = /** @type {any} */ ({ getTracks: () => [track], getAudioTracks: () => [track], getVideoTracks: () => [] });
  sfu.answers.publish = () => ({ sdp: "answer", added: [producer("m1", "me", "mic")], removed: [] });
  await s.join();
  assert.equal(s.mine.mic, "m1");
  assert.deepEqual(sfu.named("mute"), [["m1"]]);
  assert.equal(track.enabled, false);
  assert.equal(s.isOn("mic"), false);
  await assert.rejects(s.setMine("mic", true), (error) => error instanceof ChairLockError && error.kind === "audio");
  assert.deepEqual(sfu.named("unmute"), []);

  sfu.onLock({ user_id: 1, kind: "audio", locked: false }); // the chair allows it again
  await s.setMine("mic", true);
  assert.deepEqual(sfu.named("unmute"), [["m1"]]);
  assert.equal(track.enabled, true);
  assert.equal(s.isOn("mic"), true);
});

test("a peer that leaves takes its producers with it", async () => {
  const { s, sfu, seen } = session({ peers: [{ peer_id: "p2", user_id: 2, name: "Đại biểu" }],
                                     producers: [producer("c1"), producer("a1", "p2", "mic"), producer("x", "p3")] });
  await s.join();
  sfu.onPeerClosed({ peer_id: "p2" });
  assert.deepEqual(seen.closedProducers, ["c1", "a1"]);
  assert.deepEqual([...s.producers.keys()], ["x"]);
  assert.equal(s.peers.has("p2"), false);
  await s.leave();
});

test("people group a person's devices and sort by site, then name", () => {
  const people = peopleOf([
    { peer_id: "a", user_id: 5, name: "Trần B", site: "Xã Tân Lập" },
    { peer_id: "b", user_id: 4, name: "Lê A", site: "Phường 1" },
    { peer_id: "c", user_id: 5, name: "Trần B", site: "Xã Tân Lập" },
    { peer_id: "r", user_id: 5, name: "Ward room", site: "Phường 1", remote: true },
  ]);
  assert.deepEqual(people.map((p) => [p.name, p.peers]), [["Lê A", ["b"]], ["Ward room", ["r"]], ["Trần B", ["a", "c"]]]);
});

test("the camera is published as simulcast layers, low to high, as many as its height allows", async () => {
  for (const [height, layers] of [[720, [["r0", 4], ["r1", 2], ["r2", 1]]], [360, [["r0", 2], ["r1", 1]]], [240, null]]) {
    const mic = { kind: "audio", enabled: true, stop() {} };
    const camera = { kind: "video", enabled: true, stop() {}, getSettings: () => ({ height }) };
    const { s, sfu, pcs } = session({ can_publish: true });
    s.local = /** @type {any} */ ({ getTracks: () => [mic, camera], getAudioTracks: () => [mic], getVideoTracks: () => [camera] });
    sfu.answers.publish = () => ({ sdp: "answer", added: [producer("m1", "me", "mic"), producer("c1", "me", "camera")], removed: [] });
    await s.join();
    const [audio, video] = pcs.find((pc) => pc.transceivers.length > 0).transceivers;
    assert.equal(audio.init.sendEncodings, undefined); // the microphone: one stream
    const encodings = video.init.sendEncodings;
    assert.deepEqual(encodings?.map((e) => [e.rid, e.scaleResolutionDownBy]) ?? null, layers, `height ${height}`);
    assert.ok((encodings ?? []).every((e, i, all) => i === 0 || e.maxBitrate > all[i - 1].maxBitrate));
  }
});

test("tiles ask for their layer once per change, and a failed ask is asked again", async () => {
  const { s, sfu } = session();
  await s.join();
  s.wantLayers(new Map([["cam1", "high"], ["cam2", "low"]]));
  s.wantLayers(new Map([["cam1", "high"], ["cam2", "low"]]));  // unchanged: nothing sent
  await settleAll();
  assert.deepEqual(sfu.named("layers"), [["cam1", "high"], ["cam2", "low"]]);
  sfu.answers.layers = () => { throw new Error("not_found"); };
  s.wantLayers(new Map([["cam1", "off"]]));  // cam2's tile is gone: forgotten
  await settleAll();
  sfu.answers.layers = undefined;
  s.wantLayers(new Map([["cam1", "off"], ["cam2", "low"]]));
  await settleAll();
  assert.deepEqual(sfu.named("layers").slice(2), [["cam1", "off"], ["cam1", "off"], ["cam2", "low"]]);
});

test("a downlink below the server's floor is told as audio only, and its recovery", async () => {
  const { s, sfu, seen } = session();
  await s.join();
  sfu.onDownlink({ video_off: true, estimate_bps: 40000 });
  assert.equal(s.videoOff, true);
  sfu.onDownlink({ video_off: false, estimate_bps: 900000 });
  assert.equal(s.videoOff, false);
  assert.deepEqual(seen.notices.slice(-2), ["audio-only", "video-back"]);
});

test("video on when it never went off is not told: no notice hides another message", async () => {
  const { s, sfu, seen } = session();
  await s.join();
  const before = seen.notices.length;
  sfu.onDownlink({ video_off: false, estimate_bps: 900000 });
  sfu.onDownlink({ video_off: true, estimate_bps: 40000 });
  sfu.onDownlink({ video_off: true, estimate_bps: 30000 });
  assert.deepEqual(seen.notices.slice(before), ["audio-only"]);
});

test("the speaker view's main tile is high, its thumbnails low", () => {
  assert.equal(layerWant({ layout: "speaker", main: true, tiles: 9, shown: true }), "high");
  assert.equal(layerWant({ layout: "speaker", main: false, tiles: 9, shown: true }), "low");
});

test("a small grid is high, a big one low, a tile not shown off", () => {
  assert.equal(layerWant({ layout: "grid", main: false, tiles: 4, shown: true }), "high");
  assert.equal(layerWant({ layout: "grid", main: false, tiles: 5, shown: true }), "low");
  assert.equal(layerWant({ layout: "speaker", main: true, tiles: 2, shown: false }), "off");
});
