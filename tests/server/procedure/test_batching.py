"""Group commit of ballots: a batch commits together (one seq step); one ballot failing
half-way through writing never takes the others down."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from rooms import procedure
from rooms.errors import Conflict
from rooms.users import find_user
from server.core import keys
from server.procedure.keys import LIVE
from server.procedure.live import cast_ballot
from tests.conftest import Harness
from tests.server.procedure_helpers import add_item, close_all, open_demo

VOTERS = ("daibieu", "daibieu2", "daibieu3")


async def test_a_ballot_failing_after_writing_is_refused_alone(hopso_sqlite: Harness) -> None:
    h = hopso_sqlite
    app = h.server.app
    m, people = await open_demo(h, "thuky", *VOTERS)
    item = await add_item(people["thuky"], m, "Mục một")
    for name in VOTERS:
        await people[name].ok("attendance:check_in", {"meeting_id": m, "mode": "online"})
    vote = await people["chutri"].ok("vote:open", {"meeting_id": m, "agenda_item_id": item["id"],
                                                   "question": "Tán thành?", "secret": True})
    async with app[keys.DB].session() as s:
        users = [await find_user(s, name) for name in VOTERS]
        # As if another process stored daibieu2's ballot between our read and our write.
        await s.exec(text(  # type: ignore[call-overload]
            "CREATE TRIGGER race BEFORE INSERT ON voteparticipation "
            f"WHEN NEW.user_id = {users[1].id} "  # type: ignore[union-attr]
            "BEGIN SELECT RAISE(ABORT, 'stored meanwhile'); END"))
        before = (await procedure.read_state(s, m)).seq
    async with app[LIVE].lock(m):  # hold the meeting so that all three wait for one batch
        casts = [asyncio.create_task(cast_ballot(app, u, m, vote["id"], n, 1))  # type: ignore[arg-type]
                 for n, u in enumerate(users)]
        await asyncio.sleep(0.3)
    outcomes = await asyncio.gather(*casts, return_exceptions=True)
    assert isinstance(outcomes[1], Conflict) and outcomes[1].code == "already_voted"
    done = [o for o in outcomes if isinstance(o, tuple)]
    assert [r.option for r, _ in done] == [0, 2] and all(r.receipt for r, _ in done)
    assert {seq for _, seq in done} == {before + 1}  # one transaction for the batch
    async with app[keys.DB].session() as s:
        assert (await s.exec(text("SELECT count(*) FROM voteparticipation"))).scalar_one() == 2  # type: ignore[call-overload]
        assert (await s.exec(text("SELECT count(*) FROM sealedballot"))).scalar_one() == 2  # type: ignore[call-overload]
    closed = await people["chutri"].ok("vote:close", {"meeting_id": m, "vote_id": vote["id"]})
    assert closed["result"]["totals"] == [1, 0, 1]
    await close_all(people)
