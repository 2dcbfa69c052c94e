"""A meeting reopened at its owner reopens at every node (issue 13; issue 14 added reopen):
the city's and the ward's mirrors, closed with the province's meeting, open again, audited
with the owner's key, their people told, and they follow the owner's journal again (a vote
opened after the reopen opens at the ward). Closed and reopened twice: twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from rooms.models import Meeting, MeetingStatus
from rooms.procedure_models import AuditEntry, Vote
from server.core import keys
from tests.conftest import Harness
from tests.server.cascade.test_votes_across import open_vote, province_room
from tests.server.cascade.tree import cascaded_meeting, tree, until
from tests.server.procedure_helpers import join


async def status_of(h: Harness, meeting_id: int) -> MeetingStatus:
    async with h.server.app[keys.DB].session() as s:
        meeting = await s.get(Meeting, meeting_id)
        assert meeting is not None
        return meeting.status


async def reopened_entries(h: Harness, meeting_id: int) -> list[dict[str, Any]]:
    async with h.server.app[keys.DB].session() as s:
        rows = await s.exec(select(AuditEntry.data_json).where(
            AuditEntry.meeting_id == meeting_id, AuditEntry.kind == "meeting_reopened")
            .order_by(col(AuditEntry.seq)))
        return [json.loads(r) for r in rows.all()]


async def test_a_reopen_at_the_province_reopens_the_city_and_the_ward(tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        chair, meeting_id, key, city_id, ward_id = await cascaded_meeting(t)
        secretary = await join(t.ward, "thuky", ward_id)  # a ward tablet, in the meeting
        updates: list[dict[str, Any]] = []

        def heard(payload: dict[str, Any]) -> None:
            updates.append(payload)
            secretary.changed.set()
        secretary.sio.on("meeting:updated", heard)
        mirrors = ((t.city, city_id), (t.ward, ward_id))

        for round_ in (1, 2):
            assert (await chair.call("POST", f"/api/meetings/{meeting_id}/close"))[0] == 200
            for h, mid in mirrors:
                async def closed(h: Harness = h, mid: int = mid) -> bool:
                    return await status_of(h, mid) == MeetingStatus.closed
                await until(closed, 10, f"mirror {mid} closed (round {round_})")
            status, body = await chair.call("POST", f"/api/meetings/{meeting_id}/reopen")
            assert status == 200 and body["status"] == "open", body
            for h, mid in mirrors:
                async def opened(h: Harness = h, mid: int = mid) -> bool:
                    return await status_of(h, mid) == MeetingStatus.open
                await until(opened, 10, f"mirror {mid} reopened (round {round_})")
                entries = await reopened_entries(h, mid)
                assert [(e["from"], e["reopened"]) for e in entries] == \
                    [(key, n) for n in range(1, round_ + 1)], entries
                assert entries[-1]["closed_at"] is not None

            async def told(round_: int = round_) -> bool:
                return sum(u.get("status") == "open" for u in updates) >= round_
            await until(told, 10, "the ward's tablet told the meeting is open again")

        # The ward follows the province's journal again.
        chair_member, _, item = await province_room(t, meeting_id)
        await open_vote(chair_member, meeting_id, item, "Thông qua sau khi họp lại?")

        async def mirrored() -> bool:
            async with t.ward.server.app[keys.DB].session() as s:
                rows = await s.exec(select(Vote.question).where(Vote.meeting_id == ward_id))
                return "Thông qua sau khi họp lại?" in rows.all()
        await until(mirrored, 10, "the vote opened after the reopen, at the ward")
