// The reader's fit rule (issue 14): page width on tablets in both orientations, bounded on
// wide screens.
import { test } from "node:test";
import assert from "node:assert/strict";
import { fitScale, READ_WIDTH_MAX } from "../static/js/pdf-view.js";

const A4 = { w: 595, h: 842 };
const near = (a, b) => assert.ok(Math.abs(a - b) < 1e-6, `${a} ≠ ${b}`);
const A4_LANDSCAPE = { w: 842, h: 595 };

test("a landscape tablet reads an A4 page at the stage's width, not its height", () => {
  const stage = { w: 1280 - 340, h: 800 - 160 };
  near(fitScale(A4, stage.w, stage.h) * A4.w, stage.w);
  const full = { w: 1280, h: 640 };
  near(fitScale(A4, full.w, full.h) * A4.w, full.w);
});

test("a portrait tablet and a phone read at page width", () => {
  near(fitScale(A4, 800, 1100) * A4.w, 800);
  near(fitScale(A4, 390, 700) * A4.w, 390);
});

test("a wide desktop stops at a readable width; a landscape page shows whole when larger", () => {
  near(fitScale(A4, 1600, 900) * A4.w, READ_WIDTH_MAX);
  const scale = fitScale(A4_LANDSCAPE, 1900, 1000);
  assert.ok(A4_LANDSCAPE.w * scale > READ_WIDTH_MAX);
  assert.ok(A4_LANDSCAPE.h * scale <= 1000 + 1e-9 && A4_LANDSCAPE.w * scale <= 1900 + 1e-9);
});
