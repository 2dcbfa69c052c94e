"""Minutes and the audit trail at the owner across three in-process nodes: the province's
minutes list the ward's people, the ward delegate who spoke and the ward's ballots; a ballot
cast at the ward while its link is cut is stored there (acknowledged), delivered when the
link returns, and, the vote having closed meanwhile, reported late: not counted, recorded in
the province's audit chain and said in its minutes."""

from __future__ import annotations

import json
from pathlib import Path

from sqlmodel import select

from rooms import minutes
from rooms.procedure_models import AuditEntry
from server.core import keys
from tests.server.cascade.test_votes_across import (
    mirrored_vote,
    open_vote,
    province_room,
    ward_delegates,
)
from tests.server.cascade.tree import (
    cascaded_meeting,
    cut_link,
    restore_link,
    state,
    tree,
    until,
    ward_tally,
)


async def test_the_provinces_minutes_list_the_wards_people_speakers_and_late_ballots(
        tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        _, meeting_id, key, _, ward_id = await cascaded_meeting(t)
        chair, d1, item = await province_room(t, meeting_id)
        ward = await ward_delegates(t.ward, ward_id)

        # A ward delegate speaks.
        await ward["daibieu"].ok("floor:request", {"meeting_id": ward_id})
        queued = await chair.wait_for("floor:changed", lambda e: any(
            q.get("origin") == "ward" for q in e["queue"]), 10)
        await chair.ok("floor:grant", {"meeting_id": meeting_id,
                                       "request_id": queued["queue"][0]["id"]})
        await ward["daibieu"].wait_for("floor:changed", lambda e: e["holder"] is not None, 10)
        await chair.ok("floor:end", {"meeting_id": meeting_id})

        # One ward ballot in time, one cast while the ward's link is cut.
        vote = await open_vote(chair, meeting_id, item, "Thông qua báo cáo?")
        mirrored = await mirrored_vote(ward["daibieu"], secret=False)
        await d1.ok("vote:cast", {"meeting_id": meeting_id, "vote_id": vote["id"],
                                  "option": 0, "seq": 1})
        await ward["daibieu"].ok("vote:cast", {"meeting_id": ward_id, "vote_id": mirrored["id"],
                                               "option": 0, "seq": 1})
        await chair.wait_for("vote:updated", lambda e: e["vote"]["id"] == vote["id"]
                             and (e["vote"]["result"] or {}).get("cast") == 2, 10)
        await cut_link(t.ward)
        stored = await ward["daibieu2"].ok("vote:cast", {
            "meeting_id": ward_id, "vote_id": mirrored["id"], "option": 1, "seq": 1})
        assert stored["vote_id"] == mirrored["id"]  # acknowledged: stored at the ward
        assert (await state(t.ward).reports.pending_counts()).get(key, 0) >= 1
        closed = await chair.ok("vote:close", {"meeting_id": meeting_id, "vote_id": vote["id"]})
        assert closed["result"]["totals"] == [2, 0, 0]

        restore_link(t.ward)

        async def late_recorded() -> bool:
            row = await ward_tally(t, vote["id"])
            return row is not None and row.late == 1
        await until(late_recorded, 10, "the late ballot recorded at the province")
        final = await ward["daibieu2"].wait_for("vote:updated", lambda e: e["vote"]["id"]
                                                == mirrored["id"] and e["vote"]["final"], 10)
        assert final["vote"]["result"]["totals"] == [2, 0, 0]  # the province's: late not counted

        async with t.province.server.app[keys.DB].session() as s:
            data = await minutes.gather(s, meeting_id, 1)
            entries = (await s.exec(select(AuditEntry).where(
                AuditEntry.meeting_id == meeting_id,
                AuditEntry.kind == "node_reported"))).all()
        people = {a.name: a for a in data.attendees}
        assert people["Phạm Thị Hoa"].present and people["Phạm Thị Hoa"].site == "ward"
        speakers = [sp.name for e in data.agenda for sp in e.speakers]
        assert any(name.startswith("Lê Minh Tuấn (") for name in speakers), speakers
        (result,) = data.votes
        assert "ward: 2 phiếu" not in result.nodes_note  # one counted, one late
        assert "ward: 1 phiếu" in result.nodes_note
        assert "không được tính: ward: 1 phiếu" in result.nodes_note
        said = [json.loads(e.data_json) for e in entries]
        assert any(d.get("origin") == "ward" and d.get("late") == 1 for d in said)
        assert any(d.get("topic") == "attendance.people" and d.get("origin") == "ward"
                   for d in said)
        async with t.ward.server.app[keys.DB].session() as s:  # the ward's chain: its ballots
            kinds = (await s.exec(select(AuditEntry.kind).where(
                AuditEntry.meeting_id == ward_id))).all()
        assert kinds.count("ballot_cast") == 2 and "vote_closed" in kinds


async def test_a_secret_ballot_late_at_a_ward_leaves_that_wards_counts_out_and_says_so(
        tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        _, meeting_id, _, _, ward_id = await cascaded_meeting(t)
        chair, d1, item = await province_room(t, meeting_id)
        ward = await ward_delegates(t.ward, ward_id)
        vote = await open_vote(chair, meeting_id, item, "Bầu thư ký?", secret=True)
        mirrored = await mirrored_vote(ward["daibieu"], secret=True)
        await d1.ok("vote:cast", {"meeting_id": meeting_id, "vote_id": vote["id"],
                                  "option": 0, "seq": 1, "receipt": "7K3M-9QRT-2XV8-HNPD"})
        await ward["daibieu"].ok("vote:cast", {"meeting_id": ward_id, "vote_id": mirrored["id"],
                                               "option": 0, "seq": 1,
                                               "receipt": "4TGB-ZW6E-8RJA-Y1CF"})

        async def turnout(n: int) -> bool:
            row = await ward_tally(t, vote["id"])
            return row is not None and row.cast == n
        await until(lambda: turnout(1), 10, "the ward's turnout at the province")
        await cut_link(t.ward)
        await ward["daibieu2"].ok("vote:cast", {"meeting_id": ward_id, "vote_id": mirrored["id"],
                                                "option": 1, "seq": 1,
                                                "receipt": "MP2Q-H7KD-5N3S-XB9V"})
        await chair.ok("vote:close", {"meeting_id": meeting_id, "vote_id": vote["id"]})
        restore_link(t.ward)

        async def left_out() -> bool:
            row = await ward_tally(t, vote["id"])
            return row is not None and row.final and row.late == 2
        await until(left_out, 10, "the ward's secret counts refused late as a whole")
        async with t.province.server.app[keys.DB].session() as s:
            data = await minutes.gather(s, meeting_id, 1)
        (result,) = data.votes
        assert [o.count for o in result.options] == [1, 0, 0]  # the province's own ballot
        assert result.cast == 1
        assert "không được tính: ward: 2 phiếu" in result.nodes_note
