"""A presenter's page turn reaches the tablets of every node without waiting for any node's
commit of it (issue 13's page turn target): the owner pushes it live before journaling it,
and each node applies what it received while it stores it. Here every commit of the owner's
and the city's journals stalls for SLOW_S (a disk that stalls, a writer holding the lock):
the city's and the ward's tablets still get the page at once, and once, and the journaled
copy is stored everywhere behind it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from rooms.db import Database
from tests.conftest import Client
from tests.server.cascade.test_documents_across import member, mirrored_doc
from tests.server.cascade.tree import Tree, cascaded_meeting, following, state, tree, until
from tests.server.documents_support import Listener, make_pdf, upload_ready

SLOW_S = 3.0  # a stalled commit, far longer than a hop in-process


class StallingCommits:
    """A node journal's database whose every commit first waits SLOW_S."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.db.session() as s:
            commit = s.commit

            async def stalled() -> None:
                await asyncio.sleep(SLOW_S)
                await commit()
            s.commit = stalled  # type: ignore[method-assign]
            yield s


async def presenting(t: Tree, tmp_path: Path
                     ) -> tuple[Listener, dict[str, Listener], dict[str, Any], str]:
    """The province chair presents a 5-page document; a delegate's tablet at the city and at
    the ward follow (page 0 seen at both)."""
    _, meeting_id, key, city_id, ward_id = await cascaded_meeting(t)
    doc = await upload_ready(t.province, meeting_id, make_pdf(tmp_path, pages=5),
                             title="Báo cáo")
    tablets = {}
    for unit, h, mirror_id in (("city", t.city, city_id), ("ward", t.ward, ward_id)):
        delegate = await member(h, mirror_id, "daibieu")

        async def there(d: Client = delegate, m: int = mirror_id) -> dict[str, Any] | None:
            return await mirrored_doc(d, m, "Báo cáo")
        await until(there, 20, f"the document at the {unit}")
        tablets[unit] = await Listener.open(h, delegate, mirror_id)
    chair = await Listener.open(t.province, await t.province.login("chutri"), meeting_id)
    view = {"document_id": doc["id"], "page": 0, "zoom": 1.0, "scroll_x": 0.0, "scroll_y": 0.0}
    assert (await chair.call("present:update", view))["ok"]
    for tablet in tablets.values():
        await tablet.wait_for("present:state", lambda s: s["page"] == 0, timeout=15)
    return chair, tablets, view, key


async def test_a_page_turn_reaches_every_node_without_waiting_for_a_journal_commit(
        tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        chair, tablets, view, key = await presenting(t, tmp_path)
        journals = [state(h).journal for h in (t.province, t.city)]
        for journal in journals:
            journal.db = StallingCommits(journal.db)  # type: ignore[assignment]
        try:
            started = time.monotonic()
            # (the chair's own acknowledgement comes once the owner has journaled the turn)
            turned = asyncio.ensure_future(chair.call("present:update", {**view, "page": 3}))
            for unit, tablet in tablets.items():
                await tablet.wait_for("present:state", lambda s: s["page"] == 3, timeout=30)
                took = time.monotonic() - started
                assert took < SLOW_S / 2, f"page 3 at the {unit} after {took:.2f} s"
            assert (await turned)["ok"]
            # The journaled copy follows, stored at each node, and is not shown twice.
            seq = await state(t.province).journal.last(key)
            await following(t.ward, key, seq)
            await asyncio.sleep(0.5)
            for unit, tablet in tablets.items():
                shown = [s for s in tablet.of("present:state") if s["page"] == 3]
                assert len(shown) == 1, (unit, shown)
        finally:
            for journal in journals:
                journal.db = journal.db.db  # type: ignore[attr-defined]
