"""Group commit of ballots: a batch commits together; one bad change never takes the
others down, even when it fails half-way through writing."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms.errors import Conflict, Invalid
from rooms.meetings import MeetingAccess
from rooms.permissions import Action
from rooms.procedure_models import ProcedureState
from rooms.users import find_user
from server import keys
from server.procedure_live import Emit, run_batched
from tests.conftest import Harness
from tests.server.test_realtime import demo_meeting_id


async def test_a_failing_change_is_rolled_back_alone(hopso_sqlite: Harness) -> None:
    app = hopso_sqlite.server.app
    m = await demo_meeting_id(hopso_sqlite)
    chair = await hopso_sqlite.login("chutri")
    assert (await chair.call("POST", f"/api/meetings/{m}/open"))[0] == 200
    async with app[keys.DB].session() as s:
        await s.exec(text("CREATE TABLE probe (n INTEGER PRIMARY KEY)"))  # type: ignore[call-overload]
        user = await find_user(s, "chutri")
    assert user is not None

    def write(n: int, then: str = "") -> Any:
        async def change(s: AsyncSession, a: MeetingAccess, st: ProcedureState
                         ) -> tuple[int, list[Emit]]:
            if then == "refuse":
                raise Invalid("refused before writing")
            await s.exec(text("INSERT INTO probe VALUES (:n)").bindparams(n=n))  # type: ignore[call-overload]
            if then == "duplicate":  # fails after a first write: the batch must redo carefully
                await s.exec(text("INSERT INTO probe VALUES (:n)").bindparams(n=n))  # type: ignore[call-overload]
            return n, []
        return change

    outcomes = await asyncio.gather(
        run_batched(app, user, m, Action.vote, write(1)),
        run_batched(app, user, m, Action.vote, write(2, "duplicate")),
        run_batched(app, user, m, Action.vote, write(3, "refuse")),
        run_batched(app, user, m, Action.vote, write(4)),
        return_exceptions=True)
    assert [o[0] if isinstance(o, tuple) else type(o) for o in outcomes] == [1, Conflict, Invalid, 4]
    async with app[keys.DB].session() as s:
        rows = (await s.exec(text("SELECT n FROM probe ORDER BY n"))).all()  # type: ignore[call-overload]
    assert [r.n for r in rows] == [1, 4]
    outsider = await find_user_async(hopso_sqlite, "quantri")
    refused = await asyncio.gather(run_batched(app, outsider, m, Action.vote, write(5)),
                                   return_exceptions=True)
    assert getattr(refused[0], "code", None) == "not_found"  # access is checked per change


async def find_user_async(h: Harness, name: str) -> Any:
    async with h.server.app[keys.DB].session() as s:
        return await find_user(s, name)
