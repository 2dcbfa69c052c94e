"""Votes across three in-process nodes (province <- city <- ward): a vote opened at the
province opens on the ward's mirror, ward delegates vote on their own node, the province's
tally counts them, the result reaches the ward's tablets; a secret vote carries only counts
across links; bad reports are refused with a reason and count nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import select

from rooms import ballot_box, procedure
from rooms.cascade_models import CascadeReport
from rooms.models import Meeting, MeetingRole, MeetingStatus, User
from rooms.procedure_models import Vote
from rooms.remote_votes import RemoteVoteTally
from server.cascade.topic import votes as votes_topic
from server.cascade.topic.votes import OPENED
from server.cascade.topics import Entry
from server.core import keys
from tests.conftest import Harness
from tests.server import ballot_linkage
from tests.server.cascade.tree import (
    Tree,
    cascaded_meeting,
    cut_link,
    node,
    restore_link,
    state,
    tree,
    until,
    ward_tally,
)
from tests.server.procedure_helpers import Member, join
from tests.server.sqlite_file import DatabaseFiles

WARD_PEOPLE = ("daibieu", "daibieu2")


async def ward_delegates(h: Harness, meeting_id: int) -> dict[str, Member]:
    """The ward secretary invites two local delegates, who join and check in."""
    secretary, admin = await h.login("thuky"), await h.login("quantri")
    _, users = await admin.call("GET", "/api/users")
    people = {}
    for name in WARD_PEOPLE:
        user = next(u for u in users["users"] if u["username"] == name)
        status, body = await secretary.call("POST", f"/api/meetings/{meeting_id}/members",
                                            {"role": "delegate", "user_id": user["id"]})
        assert status == 201, body
        people[name] = await join(h, name, meeting_id)
        await people[name].ok("attendance:check_in", {"meeting_id": meeting_id,
                                                      "mode": "online"})
    return people


async def province_room(t: Tree, meeting_id: int) -> tuple[Member, Member, int]:
    """The province chair and one province delegate (checked in), and the agenda item."""
    chair = await join(t.province, "chutri", meeting_id)
    d1 = await join(t.province, "daibieu", meeting_id)
    for m in (chair, d1):
        await m.ok("attendance:check_in", {"meeting_id": meeting_id, "mode": "in_person"})
    status, item = await chair.http.call("POST", f"/api/meetings/{meeting_id}/agenda",
                                         {"title": "Kế hoạch chuyển đổi số năm 2026"})
    assert status == 201, item
    await chair.ok("agenda:set_current", {"meeting_id": meeting_id, "item_id": item["id"]})
    return chair, d1, item["id"]


async def mirrored_vote(member: Member, secret: bool) -> dict[str, Any]:
    event = await member.wait_for("vote:updated", lambda e: e["vote"]["status"] == "open"
                                  and e["vote"]["secret"] == secret, timeout=10)
    return dict(event["vote"])


async def open_vote(chair: Member, meeting_id: int, item: int, question: str,
                    secret: bool = False) -> dict[str, Any]:
    return dict(await chair.ok("vote:open", {"meeting_id": meeting_id, "agenda_item_id": item,
                                             "question": question, "secret": secret}))


async def test_an_open_and_a_secret_vote_count_the_wards_ballots_at_the_province(
        tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        _, meeting_id, key, _, ward_id = await cascaded_meeting(t)
        chair, d1, item = await province_room(t, meeting_id)
        ward = await ward_delegates(t.ward, ward_id)

        # Open vote: names travel up with the ballots.
        vote = await open_vote(chair, meeting_id, item, "Thông qua kế hoạch?")
        mirrored = await mirrored_vote(ward["daibieu"], secret=False)
        assert mirrored["question"] == "Thông qua kế hoạch?"

        async def ward_pending() -> list[dict[str, Any]]:  # the chair's pending list
            listed = await chair.ok("vote:pending", {"meeting_id": meeting_id,
                                                     "vote_id": vote["id"]})
            return [n for n in listed.get("nodes", []) if n["node"] == "ward"
                    and n["count"] == 2]
        (waiting,) = await until(ward_pending, 10, "the ward's pending voters at the province")
        assert sorted(p["name"] for p in waiting["names"]) == ["Lê Minh Tuấn", "Phạm Thị Hoa"]
        await d1.ok("vote:cast", {"meeting_id": meeting_id, "vote_id": vote["id"],
                                  "option": 0, "seq": 1})
        for name, option in zip(WARD_PEOPLE, (0, 1)):
            await ward[name].ok("vote:cast", {"meeting_id": ward_id, "vote_id": mirrored["id"],
                                              "option": option, "seq": 1})
        live = await chair.wait_for("vote:updated", lambda e: e["vote"]["id"] == vote["id"]
                                    and (e["vote"]["result"] or {}).get("cast") == 3, 10)
        assert live["vote"]["result"]["totals"] == [2, 1, 0]
        nodes = {n["node"]: n for n in live["vote"]["result"]["nodes"]}
        ward_node = nodes["ward"]  # the city reports its own (no ballots): 0
        assert ward_node["via"] == "city" and nodes["city"]["cast"] == 0
        assert sorted((v["name"], v["option"]) for v in ward_node["voters"]) == [
            ("Lê Minh Tuấn", 0), ("Phạm Thị Hoa", 1)]
        started = time.monotonic()
        closed = await chair.ok("vote:close", {"meeting_id": meeting_id, "vote_id": vote["id"]})
        assert closed["result"]["totals"] == [2, 1, 0] and closed["result"]["cast"] == 3
        for member in ward.values():  # the province's result on the ward's tablets
            final = await member.wait_for("vote:updated", lambda e: e["vote"]["final"], 10)
            assert final["vote"]["result"]["totals"] == [2, 1, 0]
            assert final["vote"]["result"]["local"]["totals"] == [1, 1, 0]
        print(f"open vote: close -> result on the ward's tablets: "
              f"{(time.monotonic() - started) * 1000:.0f} ms")

        # Secret vote: turnout only while open, counts once after the ward closed its part.
        secret = await open_vote(chair, meeting_id, item, "Bầu trưởng ban?", secret=True)
        mirrored = await mirrored_vote(ward["daibieu"], secret=True)
        await d1.ok("vote:cast", {"meeting_id": meeting_id, "vote_id": secret["id"],
                                  "option": 1, "seq": 1, "receipt": "7K3M-9QRT-2XV8-HNPD"})
        for name, receipt in zip(WARD_PEOPLE, ("4TGB-ZW6E-8RJA-Y1CF", "MP2Q-H7KD-5N3S-XB9V")):
            await ward[name].ok("vote:cast", {"meeting_id": ward_id, "vote_id": mirrored["id"],
                                              "option": 1, "seq": 1, "receipt": receipt})

        async def turnout() -> bool:
            row = await ward_tally(t, secret["id"])
            return row is not None and row.cast == 2
        await until(turnout, 10, "the ward's turnout at the province")
        for h, vote_id in ((t.ward, mirrored["id"]), (t.city, None), (t.province, secret["id"])):
            # While open, no node's database files hold a readable ballot of it, old frames
            # included (tests/server/ballot_linkage.py), whatever crossed the links.
            files = DatabaseFiles.read(h.settings.data_dir / "hopso.sqlite3")
            seen = [p for c in files.commits() for p in c] + files.pages()
            for vid in {vote_id or secret["id"], mirrored["id"], secret["id"]}:
                assert ballot_linkage.ballots(seen, vid, 3) == [], h.settings.node
        async with t.province.server.app[keys.DB].session() as s:
            row = await s.get(RemoteVoteTally, (secret["id"], "ward"))
            assert row is not None and json.loads(row.counts_json) == []  # no counts yet
        started = time.monotonic()
        await chair.ok("vote:close", {"meeting_id": meeting_id, "vote_id": secret["id"]})
        final = await chair.wait_for("vote:updated", lambda e: e["vote"]["id"] == secret["id"]
                                     and e["vote"]["final"]
                                     and sum(e["vote"]["result"]["totals"]) == 3, 10)
        assert final["vote"]["result"]["totals"] == [0, 3, 0]
        for member in ward.values():
            await member.wait_for("vote:updated", lambda e: e["vote"]["id"] == mirrored["id"]
                                  and e["vote"]["final"]
                                  and e["vote"]["result"]["totals"] == [0, 3, 0], 10)
        print(f"secret vote: close -> complete result on the ward's tablets: "
              f"{(time.monotonic() - started) * 1000:.0f} ms")
        await no_ballot_to_person_link_left_the_ward(t, key, secret["id"])


async def no_ballot_to_person_link_left_the_ward(t: Tree, key: str, owner_vote: int) -> None:
    """What crossed the links for the secret vote (the ward's and the city's outboxes, the
    province's received reports, its remote tallies and audit chain) names nobody, and
    carries counts only in the one final report."""
    names = {"Lê Minh Tuấn", "Phạm Thị Hoa"}
    for h in t.nodes:
        async with h.server.app[keys.DB].session() as s:
            for table in ("cascadereport", "cascadereceived", "cascadeentry", "remotevotetally",
                          "auditentry"):
                rows = (await s.exec(text(f"SELECT * FROM {table}"))).all()  # type: ignore[call-overload]
                for row in rows:
                    blob = " ".join(str(v) for v in row)
                    if f'"vote": {owner_vote}' not in blob and f'"vote":{owner_vote}' not in \
                            blob and f'"vote_id": {owner_vote}' not in blob:
                        continue
                    if h is t.ward and table == "auditentry":
                        continue  # the ward's own chain: what happened there
                    assert not any(n in blob for n in names), (table, blob)
                    assert '"voters"' not in blob and '"user"' not in blob, (table, blob)
        reports = await _reports(h, key, owner_vote)
        with_counts = [(origin, r) for origin, r in reports if r.get("counts") is not None]
        assert all(r.get("final") for _, r in with_counts), with_counts
        origins = [origin for origin, _ in with_counts]
        assert len(origins) == len(set(origins))  # one final report per node, no more


async def _reports(h: Harness, key: str, owner_vote: int) -> list[tuple[str, dict[str, Any]]]:
    async with h.server.app[keys.DB].session() as s:
        rows = (await s.exec(text(  # type: ignore[call-overload]
            "SELECT origin, data FROM cascadereport WHERE key = :k AND topic = 'vote.tally'"),
            params={"k": key})).all()
    found = [(r[0], json.loads(r[1])) for r in rows]
    return [(o, d) for o, d in found if d.get("vote") == owner_vote]


async def test_bad_tally_reports_are_refused_and_count_nothing(tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        _, meeting_id, key, _, _ = await cascaded_meeting(t, {"city": 5, "ward": 2})
        chair, _, item = await province_room(t, meeting_id)
        vote = await open_vote(chair, meeting_id, item, "Thông qua?")
        owner = state(t.province).reports
        good = {"vote": vote["id"], "revision": 1005, "secret": False, "members": 2,
                "present": 2, "cast": 1, "not_voted": 1, "counts": [1, 0, 0],
                "voters": [{"user": 7, "name": "A", "option": 0}], "pending": []}
        n = 0

        async def send(data: dict[str, Any], origin: str = "ward", via: str = "city"
                       ) -> dict[str, Any]:
            nonlocal n
            n += 1
            return dict(await owner.receive(via, {"id": f"{n:032x}", "meeting": key,
                                                  "origin": origin, "topic": "vote.tally",
                                                  "data": data}))
        cases = {
            "over the ward's seats": {**good, "members": 3, "present": 3},
            "more ballots than members": {**good, "members": 1, "present": 1, "cast": 1,
                                          "counts": [2, 0, 0]},
            "names do not match the ballots": {**good, "voters": []},
            "the same person twice": {**good, "cast": 2, "counts": [2, 0, 0], "voters": [
                {"user": 7, "name": "A", "option": 0}, {"user": 7, "name": "A", "option": 0}]},
            "an unknown vote": {**good, "vote": 999},
            "secret flag wrong": {**good, "secret": True},
        }
        for what, data in cases.items():
            outcome = await send(data)
            assert outcome["state"] == "refused", (what, outcome)
        assert (await send(good, origin="ward:khac"))["state"] == "refused"  # not invited
        assert (await send(good))["state"] == "applied"
        assert (await send({**good, "revision": 1004}))["state"] == "refused"  # reordered
        stale = await send({**good, "revision": 1005, "cast": 0, "counts": [0, 0, 0],
                            "voters": []})
        assert stale["state"] == "refused"  # the same revision again
        async with t.province.server.app[keys.DB].session() as s:
            rows = (await s.exec(select(RemoteVoteTally).where(
                RemoteVoteTally.origin == "ward"))).all()
            assert [(r.origin, r.revision, r.cast) for r in rows] == [("ward", 1005, 1)]
        await chair.ok("vote:close", {"meeting_id": meeting_id, "vote_id": vote["id"]})
        late = await send({**good, "revision": 2009, "cast": 2, "counts": [2, 0, 0], "voters": [
            {"user": 7, "name": "A", "option": 0}, {"user": 8, "name": "B", "option": 0}]})
        assert late["state"] == "refused" and "late" in json.dumps(late)
        async with t.province.server.app[keys.DB].session() as s:
            row = await s.get(RemoteVoteTally, (vote["id"], "ward"))
            assert row is not None and (row.cast, row.late) == (1, 1)
            closed = await s.get(Vote, vote["id"])
            assert closed is not None and json.loads(closed.result_json or "{}")["cast"] == 1


async def test_a_ballot_stored_without_its_report_still_reaches_the_province(
        tmp_path: Path) -> None:
    """As after a crash between a ballot's commit and its report: the ward's sweep reports
    the open vote's snapshot again."""
    async with tree(tmp_path) as t:
        _, meeting_id, _, _, ward_id = await cascaded_meeting(t)
        chair, _, item = await province_room(t, meeting_id)
        ward = await ward_delegates(t.ward, ward_id)
        vote = await open_vote(chair, meeting_id, item, "Thông qua?")
        mirrored = await mirrored_vote(ward["daibieu"], secret=False)
        app = t.ward.server.app
        async with app[keys.DB].session() as s:  # the ballot box alone: no bus event
            state_ = await procedure.lock(s, ward_id)
            user = await s.get(User, ward["daibieu2"].http.user["id"])
            local = await s.get(Vote, mirrored["id"])
            assert user is not None and local is not None and state_ is not None
            await ballot_box.cast(s, local, user, MeetingRole.delegate, 2, 1, key=None)
            await s.commit()

        async def counted() -> bool:
            row = await ward_tally(t, vote["id"])
            return row is not None and row.cast == 1
        await until(counted, 10, "the ward's ballot counted at the province")


async def test_a_wards_ballot_reaching_the_city_before_it_opened_the_vote_is_counted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The city passes the owner's vote.opened on to the ward before applying it itself, so
    the ward's reports (its share at the open, a ballot cast at once) may reach the city
    while the vote is not open there yet: they wait for the city's applier instead of being
    refused ('not open here', seen in the rehearsal's runs): the ward does not send the same
    snapshot again, so a refused ballot was never counted at the province."""
    await ballot_counted_with_the_citys_applier_late(tmp_path, monkeypatch, 2.0, 10)


async def test_a_wards_ballot_the_city_refuses_as_not_open_yet_is_sent_again_and_counted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The city's applier of the owner's vote.opened held longer than the city waits for it
    (APPLY_WAIT_S, 5 s; 1 s here, the applier 4 s, so that the report carrying the ballot is
    refused too and the test is short): the city refuses the ward's reports as not open
    here, a refusal that does not hold later, so the ward keeps them and sends them again
    (before: settled as refused, the ward's snapshot unchanged since, the ballot never
    counted at the province)."""
    monkeypatch.setattr(votes_topic, "APPLY_WAIT_S", 1.0)
    await ballot_counted_with_the_citys_applier_late(tmp_path, monkeypatch, 4.0, 15)


async def ballot_counted_with_the_citys_applier_late(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, late_s: float,
        within_s: float) -> None:
    """A vote opened at the province, the city's applier of vote.opened `late_s` behind, a
    ward delegate casting at once: the ballot is counted at the province within `within_s`."""
    async with tree(tmp_path) as t:
        _, meeting_id, _, _, ward_id = await cascaded_meeting(t)
        chair, _, item = await province_room(t, meeting_id)
        ward = await ward_delegates(t.ward, ward_id)
        topics = state(t.city).topics
        topic = topics.get(OPENED, "down")
        assert topic.apply is not None
        apply = topic.apply

        async def slow_apply(meeting: int, entry: Entry) -> None:
            await asyncio.sleep(late_s)  # the city's applier, behind other work
            await apply(meeting, entry)
        monkeypatch.setitem(topics._topics, topic.name,  # the slow step, in its place
                            dataclasses.replace(topic, apply=slow_apply))
        vote = await open_vote(chair, meeting_id, item, "Thông qua?")
        mirrored = await mirrored_vote(ward["daibieu"], secret=False)
        await ward["daibieu"].ok("vote:cast", {"meeting_id": ward_id, "vote_id": mirrored["id"],
                                               "option": 0, "seq": 1})

        async def counted() -> bool:
            row = await ward_tally(t, vote["id"])
            return row is not None and row.cast == 1
        await until(counted, within_s, "the ward's ballot counted at the province")


async def test_a_wards_ballots_for_a_vote_the_city_never_opens_are_counted_or_late(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The city's applier of the owner's vote.opened fails: the city never opens the vote,
    the ward (which the city passed the entry on to first) does. The city's journal says the
    owner opened it, so the ward's reports go on to the province: a ballot cast while the vote
    is open is counted there, one that arrives after the close is recorded late and the
    ward's report of it refused `late`. Before, the city refused them 'not open here' for
    now, and the ward sent them again every 30 s for ever, neither counted nor refused."""
    async with tree(tmp_path) as t:
        _, meeting_id, key, city_id, ward_id = await cascaded_meeting(t)
        chair, _, item = await province_room(t, meeting_id)
        ward = await ward_delegates(t.ward, ward_id)
        topics = state(t.city).topics
        topic = topics.get(OPENED, "down")

        async def failing_apply(meeting: int, entry: Entry) -> None:
            raise RuntimeError("the city could not open the vote")  # its applier, failing
        monkeypatch.setitem(topics._topics, topic.name,  # in its place
                            dataclasses.replace(topic, apply=failing_apply))
        vote = await open_vote(chair, meeting_id, item, "Thông qua?")
        mirrored = await mirrored_vote(ward["daibieu"], secret=False)
        await ward["daibieu"].ok("vote:cast", {"meeting_id": ward_id, "vote_id": mirrored["id"],
                                               "option": 0, "seq": 1})

        async def counted() -> bool:
            row = await ward_tally(t, vote["id"])
            return row is not None and row.cast == 1
        await until(counted, 10, "the ward's ballot counted at the province")
        async with t.city.server.app[keys.DB].session() as s:
            assert (await s.exec(select(Vote).where(Vote.meeting_id == city_id))).all() == []

        await cut_link(t.ward)
        await ward["daibieu2"].ok("vote:cast", {"meeting_id": ward_id,  # stored at the ward
                                                "vote_id": mirrored["id"], "option": 1,
                                                "seq": 1})
        closed = await chair.ok("vote:close", {"meeting_id": meeting_id, "vote_id": vote["id"]})
        assert closed["result"]["totals"] == [1, 0, 0]
        restore_link(t.ward)

        async def late() -> bool:
            row = await ward_tally(t, vote["id"])
            return row is not None and (row.cast, row.late) == (1, 1)
        await until(late, 10, "the ballot after the close recorded late at the province")

        async def refused_late_at_the_ward() -> bool:
            async with t.ward.server.app[keys.DB].session() as s:
                reasons = (await s.exec(select(CascadeReport.reason).where(
                    CascadeReport.key == key, CascadeReport.topic == "vote.tally",
                    CascadeReport.state == "refused"))).all()
            return any((r or "").startswith("late: ") for r in reasons)
        await until(refused_late_at_the_ward, 10, "the ward's late report refused there")
        secretary = await t.ward.login("thuky")  # what the ward's secretary sees of it
        status, sites = await secretary.call("GET", f"/api/meetings/{ward_id}/sites")
        assert status == 200 and sites["held_reports"] == 0, sites
        assert sites["refused_reports"] >= 1, sites


async def test_a_wards_ballot_reaching_the_city_after_the_meeting_ended_is_recorded_late(
        tmp_path: Path) -> None:
    """A ballot cast at the ward while its link is cut, the vote closed and the meeting
    ended meanwhile: when the link returns the city no longer offers the meeting, yet the
    ballot reaches the province, which records it late, and the ward's report is refused
    `late` there. Before, the city refused it `not_found` (final): neither recorded at the
    province nor told to the ward as late."""
    async with tree(tmp_path) as t:
        chair_, meeting_id, key, city_id, ward_id = await cascaded_meeting(t)
        chair, _, item = await province_room(t, meeting_id)
        ward = await ward_delegates(t.ward, ward_id)
        vote = await open_vote(chair, meeting_id, item, "Thông qua?")
        mirrored = await mirrored_vote(ward["daibieu"], secret=False)
        await cut_link(t.ward)
        await ward["daibieu"].ok("vote:cast", {"meeting_id": ward_id, "vote_id": mirrored["id"],
                                               "option": 0, "seq": 1})  # stored at the ward
        await chair.ok("vote:close", {"meeting_id": meeting_id, "vote_id": vote["id"]})
        assert (await chair_.call("POST", f"/api/meetings/{meeting_id}/close"))[0] == 200

        async def city_closed() -> bool:
            async with t.city.server.app[keys.DB].session() as s:
                meeting = await s.get(Meeting, city_id)
                return meeting is not None and meeting.status is MeetingStatus.closed
        await until(city_closed, 10, "the city's mirror closed with the province's meeting")
        restore_link(t.ward)

        async def late() -> bool:
            row = await ward_tally(t, vote["id"])
            return row is not None and row.late == 1
        await until(late, 15, "the ballot recorded late at the province")

        async def refused_at_the_ward() -> str | None:
            async with t.ward.server.app[keys.DB].session() as s:
                rows = (await s.exec(select(CascadeReport.state, CascadeReport.reason).where(
                    CascadeReport.key == key, CascadeReport.topic == "vote.tally"))).all()
            return next((reason for state_, reason in rows if state_ == "refused"), None)
        await until(refused_at_the_ward, 15, "the ward's report refused")
        assert (await refused_at_the_ward() or "").startswith("late: ")

        city = node(t.city)  # a meeting that never was is still not found, not let through
        sid = next(sid for sid, link in city.children.items() if link.unit == "ward")
        reply = await city.dispatcher.dispatch("report", sid, {"reports": [{
            "id": "0" * 32, "meeting": f"province/{meeting_id + 1000}", "origin": "ward",
            "topic": "vote.tally", "data": {}}]})
        assert reply["error"]["code"] == "not_found", reply
