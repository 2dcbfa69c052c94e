import assert from "node:assert/strict";
import { test } from "node:test";

import { Follow, fromPresent, toPresent } from "../static/js/follow.js";

/** Enough of PdfView for Follow: a page in a stage of a given size, fit to its width. */
class View {
  constructor(doc, width = 800, height = 600) {
    this.doc = doc;
    this.page = 0;
    this.zoom = 1;
    this.cx = 0;
    this.cy = 0;
    this.stage = { clientWidth: width, clientHeight: height, dataset: {} };
    this.setViews = [];
  }

  pageSize(page = this.page) { const [w, h] = this.doc.pageSizes[page]; return { w, h }; }
  fitScale(page = this.page) { return this.stage.clientWidth / this.doc.pageSizes[page][0]; }
  scale() { return this.fitScale() * this.zoom; }
  pageToStage(x, y) { return { x, y }; }
  setView(state, options) { Object.assign(this, state); this.setViews.push([state, options]); }
}

const DOC = { id: "4", version: 2, pageSizes: [[595, 842], [842, 595]] };
const wire = (p) => ({ page: p.page, zoom: p.zoom, scroll_x: p.scrollX, scroll_y: p.scrollY });

test("a view sent and received on a screen of the same size lands on the same spot", () => {
  const presenter = new View(DOC);
  Object.assign(presenter, { page: 1, zoom: 2.5, cx: 300, cy: 250 });
  const sent = toPresent(presenter);
  assert.equal(sent.documentId, 4);
  const got = fromPresent(new View(DOC), wire(sent));
  assert.equal(got.page, 1);
  assert.equal(got.zoom, 2.5);
  assert.ok(Math.abs(got.cx - 300) < 1e-9 && Math.abs(got.cy - 250) < 1e-9, JSON.stringify(got));
});

test("a page that fits is centred, and zoom stays within 1 to 6", () => {
  const small = fromPresent(new View(DOC), { page: 0, zoom: 0.2, scroll_x: 0.9, scroll_y: 0.9 });
  assert.equal(small.zoom, 1);
  assert.ok(Math.abs(small.cx - 595 / 2) < 1e-6, String(small.cx)); // fits the width: nothing to scroll
  assert.equal(fromPresent(new View(DOC), { page: 0, zoom: 40 }).zoom, 6);
});

test("a smaller follower keeps the presenter's scroll ratio", () => {
  const presenter = new View(DOC, 1200, 900);
  Object.assign(presenter, { page: 0, zoom: 3, cx: 400, cy: 600 });
  const sent = toPresent(presenter);
  const phone = new View(DOC, 400, 700);
  const got = fromPresent(phone, wire(sent));
  const back = toPresent(Object.assign(phone, got));
  assert.ok(Math.abs(back.scrollX - sent.scrollX) < 1e-9 && Math.abs(back.scrollY - sent.scrollY) < 1e-9);
});

function follower({ userId = "9", opened = true } = {}) {
  const view = new View(DOC);
  const opens = [];
  const client = { userId, presentGet: async () => null };
  const follow = new Follow({
    view, client, laserDot: { hidden: true, style: {} },
    openDocument: async (id, version) => { opens.push([id, version]); view.doc = { ...DOC, id: String(id), version }; return opened; },
  });
  return { follow, view, opens, client };
}

const presenting = (seq, extra = {}) => ({
  seq, active: true, presenter: { user_id: 3, name: "Chủ trì" }, document_id: 4, version: 2,
  page: 1, zoom: 1, scroll_x: 0, scroll_y: 0, ...extra,
});

test("a follower turns to the presenter's page, and ignores an older state arriving late", async () => {
  const { follow, view, opens } = follower();
  await follow.handleState(presenting(5, { page: 1 }));
  assert.equal(view.page, 1);
  assert.equal(view.stage.dataset.followedSeq, "5");
  assert.deepEqual(view.setViews.at(-1)[1], { user: false });
  assert.deepEqual(opens, []); // the document was open already
  await follow.handleState(presenting(4, { page: 0 }));
  assert.equal(view.page, 1);
  assert.equal(follow.lastSeq, 5);
});

test("a follower opens the presented document (or its new version) first", async () => {
  const { follow, view, opens } = follower();
  await follow.handleState(presenting(1, { document_id: 9, version: 1, page: 0 }));
  assert.deepEqual(opens, [[9, 1]]);
  assert.equal(view.stage.dataset.followedSeq, "1");
});

test("turning the page by hand leaves follow mode; one tap rejoins where the presenter is", async () => {
  const { follow, view } = follower();
  await follow.handleState(presenting(1, { page: 1 }));
  follow.userNavigated();
  assert.equal(follow.following, false);
  view.page = 0;
  await follow.handleState(presenting(2, { page: 1, zoom: 2 }));
  assert.equal(view.page, 0); // not followed meanwhile
  await follow.rejoin();
  assert.equal(follow.following, true);
  assert.equal(view.page, 1);
  assert.equal(view.zoom, 2);
});

test("moving by hand while nobody presents keeps follow mode on", async () => {
  const { follow } = follower();
  follow.userNavigated();
  assert.equal(follow.following, true);
});

test("taking over from another presenter asks first, and asks the server once", async () => {
  const { follow, client } = follower({ userId: "9" });
  const updates = [];
  client.presentUpdate = async (view, takeOver) => {
    updates.push(takeOver);
    return presenting(updates.length + 10, { presenter: { user_id: 9, name: "Tôi" } });
  };
  await follow.handleState(presenting(1));
  follow.confirmTakeOver = () => false;
  await follow.startPresenting();
  assert.equal(follow.presenting, false);
  assert.deepEqual(updates, []);

  const asked = [];
  follow.confirmTakeOver = (name) => { asked.push(name); return true; };
  await follow.startPresenting();
  assert.deepEqual(asked, ["Chủ trì"]);
  assert.equal(follow.presenting, true);
  assert.deepEqual(updates, [true]);
  assert.equal(follow.isMe(), true);
});

test("a presenter the server turns down (presenter_busy) stops presenting", async () => {
  const { follow, client } = follower();
  const errors = [];
  follow.onError = (error) => errors.push(error.code);
  client.presentUpdate = async () => { throw Object.assign(new Error("busy"), { code: "presenter_busy" }); };
  client.presentGet = async () => presenting(7);
  await follow.startPresenting();
  assert.equal(follow.presenting, false);
  assert.equal(follow.state.seq, 7);
  assert.deepEqual(errors, ["presenter_busy"]);
});
