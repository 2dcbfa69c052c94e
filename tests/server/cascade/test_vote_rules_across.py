"""A vote's rules cross the tree with it (issue 13, item 4): a vote opened at the province
opens on the ward's mirror with the same kind, base, threshold and time limit, so the ward's
tablets show the same question form, countdown and result wording; a rule set the ward
cannot check opens nothing there, with a logged reason."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from rooms.procedure_models import Vote
from server.core import keys
from server.procedure.keys import VOTE_TIMERS
from tests.server.cascade.test_votes_across import (
    WARD_PEOPLE,
    province_room,
    ward_delegates,
)
from tests.server.cascade.tree import cascaded_meeting, following, state, tree

RULES = ("kind", "base", "threshold", "closes_at", "options", "custom_options", "secret",
         "question")
CANDIDATES = ["Nguyễn Văn An", "Trần Thị Bình", "Lê Văn Cường"]


async def test_a_vote_opens_on_the_ward_with_the_province_rules(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with tree(tmp_path) as t:
        _, meeting_id, key, _, ward_id = await cascaded_meeting(t)
        chair, d1, item = await province_room(t, meeting_id)
        ward = await ward_delegates(t.ward, ward_id)

        # An election by two thirds of those present, 10 minutes to vote: none of it the
        # ward's own defaults.
        opened = await chair.ok("vote:open", {
            "meeting_id": meeting_id, "agenda_item_id": item, "question": "Bầu Trưởng ban",
            "options": CANDIDATES, "kind": "election", "base": "present",
            "threshold": "two_thirds", "time_limit_seconds": 600})
        assert opened["closes_at"] is not None
        event = await ward["daibieu"].wait_for(
            "vote:updated", lambda e: e["vote"]["status"] == "open", timeout=10)
        mirrored: dict[str, Any] = event["vote"]
        assert {k: mirrored[k] for k in RULES} == {k: opened[k] for k in RULES}
        # The province closes it when its time runs out; the ward arms no timer of its own,
        # not at a restart either (its close comes down the journal).
        timers = t.ward.server.app[VOTE_TIMERS]
        await timers.start()  # as at a restart
        assert mirrored["id"] not in timers._tasks
        assert opened["id"] in t.province.server.app[VOTE_TIMERS]._tasks

        await d1.ok("vote:cast", {"meeting_id": meeting_id, "vote_id": opened["id"],
                                  "option": 0, "seq": 1})
        for name, option in zip(WARD_PEOPLE, (0, 1)):
            await ward[name].ok("vote:cast", {"meeting_id": ward_id, "vote_id": mirrored["id"],
                                              "option": option, "seq": 1})
        await chair.wait_for("vote:updated", lambda e: e["vote"]["id"] == opened["id"]
                             and (e["vote"]["result"] or {}).get("cast") == 3, 10)
        closed = await chair.ok("vote:close", {"meeting_id": meeting_id,
                                               "vote_id": opened["id"]})
        final = await ward["daibieu"].wait_for(
            "vote:updated", lambda e: e["vote"]["id"] == mirrored["id"] and e["vote"]["final"],
            10)
        shown = final["vote"]
        assert {k: shown[k] for k in RULES if k != "closes_at"} == \
            {k: opened[k] for k in RULES if k != "closes_at"}
        # The result's wording and figures are the province's: who was elected, of which base.
        decided = ("kind", "base_rule", "threshold", "base", "needed", "percentages",
                   "elected", "outcome", "totals")
        assert {k: shown["result"][k] for k in decided} == \
            {k: closed["result"][k] for k in decided}
        assert shown["result"]["outcome"] == closed["result"]["outcome"]

        # A parent's rule set the ward cannot check opens nothing, with a logged reason.
        good = {"vote": 900, "item": item, "item_title": "Bầu cử", "question": "Bầu?",
                "options": CANDIDATES, "custom_options": True, "secret": False,
                "allow_change": False, "kind": "election", "base": "present",
                "threshold": "majority", "opened_at": "2026-12-07T04:00:00+00:00",
                "time_limit_s": 60}
        bad = [
            {**good, "options": ["agree", "disagree", "abstain"], "custom_options": False},
            {**good, "kind": "referendum"},
            {**good, "base": "everyone"},
            {**good, "threshold": "three_quarters"},
            {**good, "time_limit_s": 5},
            {**good, "opened_at": "2026-12-07T04:00:00"},  # no time zone
            {k: v for k, v in good.items() if k != "threshold"},
            {**good, "options": ["Nguyễn Văn An", "Nguyễn Văn An"]},
            {**good, "custom_options": False, "kind": "motion"},  # candidates, not standard
        ]
        journal = state(t.ward).journal
        last = await journal.last(key)
        caplog.set_level(logging.WARNING, logger="server.cascade.journal")
        for n, data in enumerate(bad, start=1):
            assert await journal.ingest(key, [{"seq": last + n, "topic": "vote.opened",
                                               "data": {**data, "vote": 900 + n}}])
        await following(t.ward, key, last + len(bad))
        refused = [r for r in caplog.records if "vote.opened" in r.getMessage()
                   and "not applied" in r.getMessage()]
        assert len(refused) == len(bad), [r.getMessage() for r in caplog.records]
        async with t.ward.server.app[keys.DB].session() as s:
            ward_votes = (await s.exec(select(Vote).where(Vote.meeting_id == ward_id))).all()
        assert [v.id for v in ward_votes] == [mirrored["id"]]  # nothing else opened
