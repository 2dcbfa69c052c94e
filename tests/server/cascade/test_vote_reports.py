"""A mirror's reports of its own ballots (server/cascade/topic/votes.py, `vote.tally` up):
one snapshot into the outbox per change of what the owner should count, however many
ballots of one batch ask for it at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rooms import ballot_box, procedure
from rooms.models import MeetingRole, User
from rooms.procedure_models import Vote
from rooms.remote_floor import ref_get
from server.cascade.topic.votes import OPENED
from server.core import keys
from server.procedure.events import BallotsCast
from testkit.province import until
from tests.conftest import Harness
from tests.server.cascade.mirror import tallies
from tests.server.cascade.test_vote_apply import OPEN, _ingest, _mirror
from tests.server.procedure_helpers import join


async def test_ballots_of_one_batch_report_the_mirrors_share_once(
        hopso_sqlite: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch of ballots publishes one BallotsCast per ballot, each awaiting its snapshot
    in the outbox before its voter's ack. The same snapshot is stored once: the rehearsal's
    wards sent each batch's two or three times, the owner refusing the copies as 'stale:
    revision N after N' (a WARNING at the city and the province each). The outbox's store
    is slowed as on a loaded node, so the askers overlap."""
    h = hopso_sqlite
    state, meeting_id = await _mirror(h)
    app = h.server.app
    delegate = await join(h, "daibieu", meeting_id)
    await delegate.ok("attendance:check_in", {"meeting_id": meeting_id, "mode": "in_person"})
    await _ingest(state, 1, OPENED, OPEN)
    await until(lambda: tallies(h.server.app), 10, "the opened vote's first report")
    async with app[keys.DB].session() as s:
        local = await ref_get(s, meeting_id, "vote:7")
        assert local is not None
        await procedure.lock(s, meeting_id)
        vote, user = await s.get(Vote, local), await s.get(User, delegate.http.user["id"])
        assert vote is not None and user is not None
        await ballot_box.cast(s, vote, user, MeetingRole.delegate, 0, 1, key=None)
        await s.commit()
    before = len(await tallies(h.server.app))
    store = state.reports.store

    async def slow_store(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.3)
        return await store(*args, **kwargs)
    monkeypatch.setattr(state.reports, "store", slow_store)
    await asyncio.gather(*(app[keys.BUS].publish(BallotsCast(meeting_id, local))
                           for _ in range(3)))
    sent = (await tallies(h.server.app))[before:]
    assert [r["cast"] for r in sent] == [1], sent
    await delegate.sio.disconnect()
