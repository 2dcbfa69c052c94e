import assert from "node:assert/strict";
import { test } from "node:test";

import { errorText, summaryLines } from "../static/js/doc-versions.js";
import { annotationBox } from "../static/js/doc-reader-versions.js";

const vi = {
  Page: "Trang", changed: "đã sửa", "new page": "trang mới", "moved from page": "chuyển từ trang",
  "notes to review": "ghi chú cần xem lại", "page removed": "trang đã bị bỏ",
  "No page changed.": "Không trang nào thay đổi.",
  "This page shows an older version of the document. Reload the page and try again.":
    "Trang này đang hiển thị phiên bản cũ của tài liệu. Hãy tải lại trang rồi thử lại.",
};
const t = (msgid) => vi[msgid] ?? msgid;

test("the summary names each page that is not the same, and the notes to review", () => {
  const lines = summaryLines(t, {
    version: 2, previous_version: 1, removed: [4],
    pages: [
      { page: 0, change: "same", from_page: 0, flagged: 0 },
      { page: 1, change: "changed", from_page: 1, flagged: 2 },
      { page: 2, change: "moved", from_page: 3, flagged: 0 },
      { page: 3, change: "added", from_page: null, flagged: 0 },
    ],
  });
  assert.deepEqual(lines, ["Trang 2: đã sửa (2 ghi chú cần xem lại)", "Trang 3: chuyển từ trang 4",
                           "Trang 4: trang mới", "Trang 5: trang đã bị bỏ"]);
  assert.deepEqual(summaryLines(t, { version: 2, previous_version: 1, removed: [],
    pages: [{ page: 0, change: "same", from_page: 0, flagged: 0 }] }), ["Không trang nào thay đổi."]);
});

test("a refusal is told by its code, else by the server's message", () => {
  assert.match(errorText(t, { code: "stale_version", message: "version 1 is not current" }),
               /phiên bản cũ/);
  assert.equal(errorText(t, { code: "something_new", message: "as the server said" }),
               "as the server said");
});

test("a flag mark frames the stroke, the rectangles or the note", () => {
  const ink = annotationBox({ kind: "ink", data: { points: [[10, 20], [30, 5]], width: 2 } });
  assert.deepEqual(ink, { x0: 5, y0: 0, x1: 35, y1: 25 });
  const rects = annotationBox({ kind: "highlighter", data: { rects: [[0, 0, 100, 12]], width: 0 } });
  assert.deepEqual(rects, { x0: -4, y0: -4, x1: 104, y1: 16 });
  const note = annotationBox({ kind: "note", data: { x: 50, y: 60, box_width: 120, font_size: 10 } });
  assert.deepEqual(note, { x0: 50, y0: 60, x1: 170, y1: 85 });
  assert.equal(annotationBox({ kind: "ink", data: { points: [] } }), null);
});
