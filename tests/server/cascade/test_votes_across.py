"""Votes across three in-process nodes (province <- city <- ward): a vote opened at the
province opens on the ward's mirror, ward delegates vote on their own node, the province's
tally counts them, the result reaches the ward's tablets; a secret vote carries only counts
across links; bad reports are refused with a reason and count nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlmodel import select

from rooms import ballot_box, procedure
from rooms.models import MeetingRole, User
from rooms.procedure_models import Vote
from rooms.remote_votes import RemoteVoteTally
from server.core import keys
from tests.conftest import Harness
from tests.server import ballot_linkage
from tests.server.cascade.tree import Tree, cascaded_meeting, state, tree, until
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
            async with t.province.server.app[keys.DB].session() as s:
                row = await s.get(RemoteVoteTally, (secret["id"], "ward"))
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
            async with t.province.server.app[keys.DB].session() as s:
                row = await s.get(RemoteVoteTally, (vote["id"], "ward"))
                return row is not None and row.cast == 1
        await until(counted, 10, "the ward's ballot counted at the province")
