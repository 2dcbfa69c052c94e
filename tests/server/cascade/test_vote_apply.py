"""A mirror applies the owner's vote opened and closed (server/cascade/topic/votes.py) at
every node of the tree: each in one commit that also stores the journal entry and marks it
applied, and the close's result reaches the node's tablets before this node's last report
of its ballots is made (statements counted, tests/sql_statements.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlmodel import select

from rooms.cascade_models import CascadeEntry
from rooms.remote_floor import ref_get
from server.cascade.state import MeetingState
from server.cascade.topic import votes as cascade_votes
from server.cascade.topic.votes import CLOSED, OPENED, snapshot
from server.core import keys
from testkit.province import until
from tests.conftest import Harness
from tests.server.cascade.mirror import tallies, ward_mirror
from tests.server.core.test_realtime import demo_meeting_id
from tests.sql_statements import COMMIT, Statements, statements

KEY = "province/1"
OPEN = {"vote": 7, "item": 3, "item_title": "Kế hoạch năm 2026", "question": "Thông qua?",
        "options": ["agree", "disagree", "abstain"], "custom_options": False, "secret": False,
        "allow_change": False, "kind": "motion", "base": "present",
        "threshold": "majority", "opened_at": "2026-12-07T04:00:00+00:00",
        "time_limit_s": None}
RESULT = {"totals": [3, 1, 0], "cast": 4, "adopted": True, "outcome": "adopted"}


async def _mirror(h: Harness) -> tuple[MeetingState, int]:
    """The demo meeting, opened, as the ward's mirror of the province's meeting KEY, with
    the vote topics as a cascade node installs them."""
    meeting_id = await demo_meeting_id(h)
    app = h.server.app
    chair = await h.login("chutri")
    assert (await chair.call("POST", f"/api/meetings/{meeting_id}/open"))[0] == 200
    state = await ward_mirror(app, meeting_id, KEY)
    cascade_votes.register(app, state)
    return state, meeting_id


async def _ingest(state: MeetingState, seq: int, topic: str, data: dict[str, Any]) -> None:
    await state.journal.ingest(KEY, [{"seq": seq, "topic": topic, "data": data}])
    await until(lambda: asyncio.sleep(0, state.journal.applied(KEY) >= seq), 10,
                f"entry {seq} applied")
    await asyncio.sleep(0.3)  # what follows it (its marks, the node's report) done too


def _journal_writes(seen: Statements) -> list[str]:
    return [q for q in seen if "cascadeentry" in q.split("WHERE")[0]
            and not q.lstrip().upper().startswith("SELECT")]


def _apply(seen: Statements) -> list[str]:
    """The apply's own transaction: from its first read (of the vote's mark) to the commit
    after procedure.lock's UPDATE."""
    first = next(i for i, q in enumerate(seen) if "cascaderef" in q)
    out = []
    for q in seen[first:]:
        out.append(q)
        if q == COMMIT and any(p.startswith("UPDATE procedurestate") for p in out):
            return out
    raise AssertionError(seen)


async def test_a_mirror_opens_and_closes_the_owners_vote_each_in_one_commit(
        hopso_sqlite: Harness) -> None:
    """The entry stored and marked applied in the apply's own commit: no other write of the
    journal (before: stored with the push, then marked: two more commits per entry). The
    close reads the vote through its mark once and sends the node's last snapshot up only
    after its commit, from the close's own count: 15 statements up to the result's commit
    (before: 30, counting the vote and the node's headcount again first)."""
    state, _ = await _mirror(hopso_sqlite)
    db = hopso_sqlite.server.app[keys.DB]
    with statements(db) as opening:
        await _ingest(state, 1, OPENED, OPEN)
    with statements(db) as closing:
        await _ingest(state, 2, CLOSED, {"vote": 7, "result": RESULT, "revision": 1})
    for seen in (opening, closing):
        writes = _journal_writes(seen)
        assert len(writes) == 1 and writes[0].startswith("INSERT INTO cascadeentry"), writes
        applied = _apply(seen)
        assert applied[-2].startswith("INSERT INTO cascadeentry"), applied  # then COMMIT
    result = [q for q in _apply(closing) if q != COMMIT]
    assert len(result) <= 15, result
    async with db.session() as s:
        stored = (await s.exec(select(CascadeEntry).where(CascadeEntry.key == KEY))).all()
    assert [(e.seq, e.applied) for e in stored] == [(1, True), (2, True)]


async def test_a_mirrors_share_of_an_open_vote_is_read_in_thirteen_statements(
        hopso_sqlite: Harness) -> None:
    """Made at each ballot and each tally push at every mirror: the vote with the owner's
    id in one read, the procedure state read once, the node's headcount once (from the
    tally), the tally's counts, the voters and who has not voted (18 before: the owner's id
    and the vote apart, the state and the node's headcount twice)."""
    state, meeting_id = await _mirror(hopso_sqlite)
    db = hopso_sqlite.server.app[keys.DB]
    await _ingest(state, 1, OPENED, OPEN)
    async with db.session() as s:
        local = await ref_get(s, meeting_id, "vote:7")
        assert local is not None
        with statements(db) as seen:
            share = await snapshot(s, meeting_id, local)
    assert share is not None and share["vote"] == 7 and share["counts"] == [0, 0, 0]
    assert len([q for q in seen if q != COMMIT]) <= 13, seen


async def test_a_close_sends_no_last_snapshot_when_the_outbox_has_every_ballot(
        hopso_sqlite: Harness) -> None:
    """An open vote closed at a mirror whose last snapshot in the outbox has every ballot
    the close counted (the same number cast, the same counts): no last snapshot is made
    (it told the owner nothing; before, each mirror read its voters and pending people
    again after the close, beside the result on its way to the other nodes' tablets, to
    find it the same). Not known (after a restart): made and sent, as before."""
    meeting_id = await demo_meeting_id(hopso_sqlite)
    app = hopso_sqlite.server.app
    chair = await hopso_sqlite.login("chutri")
    assert (await chair.call("POST", f"/api/meetings/{meeting_id}/open"))[0] == 200
    state = await ward_mirror(app, meeting_id, KEY)
    mirror = cascade_votes.register(app, state)
    await _ingest(state, 1, OPENED, OPEN)
    await until(lambda: tallies(hopso_sqlite.server.app), 5, "the opening's snapshot")
    opened = await tallies(hopso_sqlite.server.app)
    assert [t["cast"] for t in opened] == [0], opened
    with statements(app[keys.DB]) as closing:
        await _ingest(state, 2, CLOSED, {"vote": 7, "result": RESULT, "revision": 1})
    after = closing[len(_apply(closing)):]
    assert not Statements(after).reading("voteparticipation"), after  # (the voters: before)
    assert await tallies(hopso_sqlite.server.app) == opened
    # Not known to this process (a restart): the close's count goes up.
    await _ingest(state, 3, OPENED, {**OPEN, "vote": 8})
    await until(lambda: asyncio.sleep(0, len(mirror._last) == 2), 5, "vote 8's snapshot")
    mirror._last.clear()
    await _ingest(state, 4, CLOSED, {"vote": 8, "result": RESULT, "revision": 1})
    sent = await tallies(hopso_sqlite.server.app)
    assert [(t["vote"], t["cast"]) for t in sent] == [(7, 0), (8, 0), (8, 0)], sent


async def test_a_mirror_counts_a_vote_it_opens_once_for_its_tablets_and_its_first_report(
        hopso_sqlite: Harness) -> None:
    """The opening's count makes both the tablets' view and the node's first snapshot
    (the procedure still at the opening's seq: no ballot since), so the vote is counted
    once (before: again for the report, on the opening's own VoteUpdated)."""
    state, _ = await _mirror(hopso_sqlite)
    with statements(hopso_sqlite.server.app[keys.DB]) as seen:
        await _ingest(state, 1, OPENED, OPEN)
        await until(lambda: tallies(hopso_sqlite.server.app), 5, "the opening's snapshot")
    turnouts = [q for q in seen if q.count("count(*)") >= 3]  # rooms.votes._turnout's
    assert len(turnouts) == 1, turnouts
    sent = await tallies(hopso_sqlite.server.app)
    assert [(t["vote"], t["cast"], t["counts"], t["voters"]) for t in sent] == [
        (7, 0, [0, 0, 0], [])], sent
