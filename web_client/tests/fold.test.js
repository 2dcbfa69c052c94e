import assert from "node:assert/strict";
import { test } from "node:test";

import { fold, matchLevel } from "../static/js/fold.js";

test("fold drops Vietnamese diacritics, case and extra spaces", () => {
  assert.equal(fold("  Đồng   PHÚ "), "dong phu");
  assert.equal(fold("ĐỒNG PHÚ"), fold("dong phu"));
  assert.equal(fold("Nguyễn Thị Ánh"), "nguyen thi anh");
  assert.equal(fold(null), "");
});

test("a phrase starting at a word beats words found anywhere", () => {
  const haystack = fold("Phường Đồng Phú | Thị xã");
  assert.equal(matchLevel(haystack, "dong phu"), 2);
  assert.equal(matchLevel(haystack, "Đồng"), 2);
  assert.equal(matchLevel(haystack, "phu dong"), 1); // both words, not as a phrase
  assert.equal(matchLevel(haystack, "ong"), 1); // inside "dong": a word, not a word start
  assert.equal(matchLevel(haystack, "ha noi"), 0);
});

test("an empty query matches everything", () => {
  assert.equal(matchLevel("anything", ""), 2);
  assert.equal(matchLevel("anything", "   "), 2);
});
