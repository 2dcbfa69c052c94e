import assert from "node:assert/strict";
import { test } from "node:test";

import { newerDocs } from "../static/js/doc-list.js";

test("a list answered after a change keeps the page's newer copy of that document", () => {
  const switched = { id: 1, confidential: true, updated_at: "2026-12-07T00:41:37.500000+00:00" };
  const other = { id: 2, confidential: false, updated_at: "2026-12-07T00:40:00" };
  // The list was read before the switch (SQLite's timestamps come without their zone).
  const listed = [{ id: 1, confidential: false, updated_at: "2026-12-07T00:41:37.100000" },
                  { id: 2, confidential: true, updated_at: "2026-12-07T00:41:38" }];
  const docs = newerDocs(new Map([[1, switched], [2, other]]), listed);
  assert.equal(docs.get(1)?.confidential, true);   // the switch the page made stays
  assert.equal(docs.get(2)?.confidential, true);   // a change the page did not know arrives
});

test("the list decides which documents there are, and wins a tie", () => {
  const same = "2026-12-07T00:41:37+00:00";
  const docs = newerDocs(new Map([[1, { id: 1, title: "cũ", updated_at: same }],
                                  [3, { id: 3, title: "rút", updated_at: same }]]),
                         [{ id: 1, title: "mới", updated_at: "2026-12-07T00:41:37" }]);
  assert.deepEqual([...docs.keys()], [1]);
  assert.equal(docs.get(1)?.title, "mới");
});
