"""Votes: counting, eligibility, double and late ballots, changes, secrecy, site counts."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from rooms import agenda, attendance, ballot_box, meetings, votes
from rooms.ballot_seal import BallotKey
from rooms.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from rooms.models import Meeting, MeetingRole, MeetingStatus
from rooms.procedure_models import AttendanceStatus, VoteBase, VoteParticipation
from tests.rooms.conftest import Demo

DELEGATES = ("daibieu", "daibieu2", "daibieu3")
KEY = BallotKey.generate()
UNKNOWN = "7K3M-9QXR-2HDF-W8NB"  # a client-made receipt


async def item(demo: Demo, title: str = "Thông qua kế hoạch chuyển đổi số") -> int:
    async with demo.db.session() as s:
        added = await agenda.add_item(s, demo.meeting_id, agenda.ItemFields(title=title))
        assert added.id is not None
        return added.id


async def check_in(demo: Demo, *names: str) -> None:
    for name in names:
        async with demo.db.session() as s:
            await attendance.check_in(s, demo.meeting_id, demo.users[name],
                                      AttendanceStatus.in_person)


async def open_vote(demo: Demo, **kw: object) -> int:
    item_id = await item(demo)
    async with demo.db.session() as s:
        state = await demo.locked(s)
        spec = votes.NewVote(agenda_item_id=item_id, question="Tán thành kế hoạch?", **kw)  # type: ignore[arg-type]
        vote = await votes.open_vote(s, state, demo.users["chutri"], spec, KEY)
        assert vote.id is not None
        return vote.id


async def cast(demo: Demo, name: str, vote_id: int, option: int, seq: int = 1,
               receipt: str | None = None) -> ballot_box.CastResult:
    async with demo.db.session() as s:
        await demo.locked(s)
        access = await demo.access(s, name)
        vote = await votes.get_vote(s, demo.meeting_id, vote_id)
        return await ballot_box.cast(s, vote, access.user, access.role, option, seq, receipt,
                                     key=KEY)


async def close(demo: Demo, vote_id: int) -> dict[str, object]:
    async with demo.db.session() as s:
        await demo.locked(s)
        return await votes.close_vote(s, await votes.get_vote(s, demo.meeting_id, vote_id), KEY)


async def test_three_delegates_vote_and_the_result_is_frozen_at_close(demo: Demo) -> None:
    await check_in(demo, *DELEGATES)
    vote_id = await open_vote(demo, base=VoteBase.all_members)
    for name, option in zip(DELEGATES, (0, 0, 1)):
        assert (await cast(demo, name, vote_id, option)).receipt is None  # open vote
    result = await close(demo, vote_id)
    assert result["counts"] == [2, 1, 0] and result["totals"] == [2, 1, 0]
    assert result["cast"] == 3 and result["present_voters"] == 3 and result["not_voted"] == 0
    assert result["eligible"] == 4  # chair + three delegates
    assert result["adopted"] is False  # 2 of 4 is not more than half
    with pytest.raises(Conflict) as late:
        await cast(demo, "daibieu", vote_id, 2)
    assert late.value.code == "vote_closed"
    async with demo.db.session() as s:
        assert await votes.tally(s, await votes.get_vote(s, demo.meeting_id, vote_id)) == result


async def test_bad_ballots_are_refused_with_clear_errors(demo: Demo) -> None:
    await check_in(demo, "daibieu", "thuky")
    vote_id = await open_vote(demo)
    with pytest.raises(Conflict) as absent:
        await cast(demo, "daibieu2", vote_id, 0)  # never checked in
    assert absent.value.code == "not_checked_in"
    with pytest.raises(Forbidden):
        await cast(demo, "thuky", vote_id, 0)  # the secretary does not vote
    with pytest.raises(Invalid):
        await cast(demo, "daibieu", vote_id, 3)  # only options 0..2
    await cast(demo, "daibieu", vote_id, 0)
    with pytest.raises(Conflict) as twice:
        await cast(demo, "daibieu", vote_id, 1, seq=2)
    assert twice.value.code == "already_voted"
    with pytest.raises(Conflict) as second:
        await open_vote(demo)
    assert second.value.code == "vote_open"
    async with demo.db.session() as s:
        with pytest.raises(NotFound):
            await votes.get_vote(s, demo.meeting_id + 1000, vote_id)
    result = await close(demo, vote_id)
    assert result["totals"] == [1, 0, 0]
    with pytest.raises(Conflict):
        await close(demo, vote_id)


async def test_simultaneous_casts_by_one_person_count_once(demo: Demo) -> None:
    await check_in(demo, "daibieu")
    vote_id = await open_vote(demo)
    outcomes = await asyncio.gather(*(cast(demo, "daibieu", vote_id, i % 3) for i in range(6)),
                                    return_exceptions=True)
    assert sum(isinstance(o, ballot_box.CastResult) for o in outcomes) == 1
    assert all(isinstance(o, (ballot_box.CastResult, Conflict)) for o in outcomes), outcomes
    assert sum((await close(demo, vote_id))["totals"]) == 1  # type: ignore[arg-type]


async def test_the_database_itself_refuses_a_second_participation(demo: Demo) -> None:
    await check_in(demo, "daibieu")
    vote_id = await open_vote(demo)
    await cast(demo, "daibieu", vote_id, 0)
    with pytest.raises(IntegrityError):
        async with demo.db.session() as s:
            s.add(VoteParticipation(vote_id=vote_id, user_id=demo.users["daibieu"].id, option=1))
            await s.flush()


async def test_changes_apply_in_the_voters_own_order(demo: Demo) -> None:
    await check_in(demo, "daibieu")
    vote_id = await open_vote(demo, allow_change=True)
    await cast(demo, "daibieu", vote_id, 0, seq=1)
    assert (await cast(demo, "daibieu", vote_id, 1, seq=3)).changed
    with pytest.raises(Conflict) as stale:
        await cast(demo, "daibieu", vote_id, 2, seq=2)  # arrived late: must not undo seq 3
    assert stale.value.code == "stale"
    with pytest.raises(Conflict) as again:
        await cast(demo, "daibieu", vote_id, 2, seq=3)  # a resend of seq 3: stored already
    assert again.value.code == "stale"
    assert (await close(demo, vote_id))["totals"] == [0, 1, 0]


async def test_secret_vote_receipts_changes_and_no_link(demo: Demo) -> None:
    await check_in(demo, *DELEGATES)
    vote_id = await open_vote(demo, secret=True, allow_change=True)
    receipts = {name: (await cast(demo, name, vote_id, opt)).receipt
                for name, opt in zip(DELEGATES, (0, 1, 2))}
    assert all(r and len(r) == 19 for r in receipts.values())
    with pytest.raises(Invalid):
        await cast(demo, "daibieu3", vote_id, 0, seq=2)  # a secret change needs the receipt
    await cast(demo, "daibieu3", vote_id, 0, seq=2, receipt=receipts["daibieu3"])
    async with demo.db.session() as s:
        live = votes.vote_dict(await votes.get_vote(s, demo.meeting_id, vote_id),
                               await votes.tally(s, await votes.get_vote(s, demo.meeting_id,
                                                                         vote_id)))
    assert live["result"] is None and live["turnout"]["cast"] == 3  # secret: turnout only
    assert (await close(demo, vote_id))["totals"] == [2, 1, 0]
    async with demo.db.session() as s:
        check = await votes.check_receipt(s, demo.meeting_id, receipts["daibieu2"].lower(),  # type: ignore[union-attr]
                                          KEY)
        assert check["counted"] and check["option"] == 1 and check["option_label"] == "disagree"
        assert (await votes.check_receipt(s, demo.meeting_id, "AAAA-BBBB-CCCC-DDDD", KEY)) == {
            "counted": False}
        rows = (await s.exec(text("SELECT * FROM voteparticipation"))).all()  # type: ignore[call-overload]
        assert {r.option for r in rows} == {None}  # who voted, never how
        if demo.db.url.startswith("postgresql"):
            # Resealed at close: every ballot row was written by the closing transaction.
            ballots = (await s.exec(text("SELECT xmin::text AS x FROM voteballot"))).all()  # type: ignore[call-overload]
            taken = (await s.exec(text("SELECT xmin::text AS x FROM voteparticipation"))).all()  # type: ignore[call-overload]
            assert len({b.x for b in ballots}) == 1
            assert not {b.x for b in ballots} & {p.x for p in taken}
        else:
            with pytest.raises(Exception, match="rowid"):
                await s.exec(text("SELECT rowid FROM voteballot"))  # type: ignore[call-overload]


@pytest.mark.parametrize("allow_change", [False, True])
async def test_a_resent_secret_ballot_gets_its_receipt_again_and_counts_once(
        demo: Demo, allow_change: bool) -> None:
    """The ack of a stored ballot was lost: the client resends it (same seq, option and its
    own receipt) and is answered as before, not `stale`; its receipt checks out."""
    await check_in(demo, *DELEGATES)
    vote_id = await open_vote(demo, secret=True, allow_change=allow_change)
    first = await cast(demo, "daibieu", vote_id, 1, seq=5, receipt="7k3m 9qxr 2hdf w8nb")
    assert (first.receipt, first.changed, first.replayed) == (UNKNOWN, False, False)
    for sent in (UNKNOWN, "7K3M9QXR2HDFW8NB"):  # as first sent, or typed otherwise
        again = await cast(demo, "daibieu", vote_id, 1, seq=5, receipt=sent)
        assert (again.receipt, again.option, again.replayed) == (UNKNOWN, 1, True)
    with pytest.raises(Conflict, match="stale" if allow_change else "already voted"):
        await cast(demo, "daibieu", vote_id, 2, seq=5, receipt=UNKNOWN)  # not that ballot
    other = "QW4E-R7TY-8PAS-D3FG"
    await cast(demo, "daibieu2", vote_id, 0, seq=1, receipt=other)
    with pytest.raises(Conflict):  # another's receipt and option: not a resend of one's own
        await cast(demo, "daibieu", vote_id, 1, seq=5, receipt=other)
    if allow_change:
        changed = await cast(demo, "daibieu", vote_id, 2, seq=6, receipt=UNKNOWN)
        assert changed.changed and changed.receipt == UNKNOWN
        assert (await cast(demo, "daibieu", vote_id, 2, seq=6, receipt=UNKNOWN)).replayed
    result = await close(demo, vote_id)
    assert result["cast"] == 2 and result["totals"] == ([1, 0, 1] if allow_change else [1, 1, 0])
    async with demo.db.session() as s:
        check = await votes.check_receipt(s, demo.meeting_id, UNKNOWN, KEY)
        assert check["counted"] and check["option"] == (2 if allow_change else 1)


BAD_RECEIPTS = ("", "ABCD-EFGH", "7K3M-9QXR-2HDF-W8NB-X", "7K3M-9QXR-2HDF-W8NI",
                "7K3M-9QXR-2HDF-W8NL", "7K3M-9QXR-2HDF-W8NO", "7K3M-9QXR-2HDF-W8NU",
                "7K3M_9QXR_2HDF_W8NB", "7K3M-9QXR-2HDF-W8Nđ", "0000-0000-0000-0000",
                "ABAB-ABAB-ABAB-ABAB", "ABCD-EABC-DEAB-CDEA")


async def test_malformed_or_guessable_receipts_are_refused_and_change_nothing(
        demo: Demo) -> None:
    await check_in(demo, *DELEGATES)
    vote_id = await open_vote(demo, secret=True, allow_change=True)
    for bad in BAD_RECEIPTS:
        with pytest.raises(Invalid, match="receipt code is 16"):
            await cast(demo, "daibieu", vote_id, 0, seq=1, receipt=bad)
    assert not (await cast(demo, "daibieu", vote_id, 0, seq=1, receipt=UNKNOWN)).changed
    for bad in BAD_RECEIPTS:  # nor to change a ballot
        with pytest.raises(Invalid):
            await cast(demo, "daibieu", vote_id, 1, seq=2, receipt=bad)
    assert (await close(demo, vote_id))["totals"] == [1, 0, 0]


async def test_a_receipt_already_in_the_vote_is_refused_as_invalid_only(demo: Demo) -> None:
    await check_in(demo, *DELEGATES)
    vote_id = await open_vote(demo, secret=True)
    await cast(demo, "daibieu", vote_id, 0, receipt=UNKNOWN)
    for taken in (UNKNOWN, UNKNOWN.lower().replace("-", "")):
        with pytest.raises(Invalid) as refused:
            await cast(demo, "daibieu2", vote_id, 1, receipt=taken)
        assert str(refused.value) == "this receipt code cannot be used; make a new one"
    assert (await cast(demo, "daibieu2", vote_id, 1)).receipt  # an old client: server-made
    assert (await close(demo, vote_id))["totals"] == [1, 1, 0]
    later = await open_vote(demo, secret=True)  # receipts are unique across votes: a reused
    with pytest.raises(Invalid, match="cannot be used"):  # one would make the close fail
        await cast(demo, "daibieu3", later, 2, receipt=UNKNOWN)
    await cast(demo, "daibieu3", later, 2, receipt="QW4E-R7TY-8PAS-D3FG")
    assert (await close(demo, later))["totals"] == [0, 0, 1]


async def test_a_receipt_held_in_another_meetings_open_vote_is_refused(demo: Demo) -> None:
    """Receipt hashes are unique across votes: a code already sealed in a vote still open
    elsewhere would make the second close fail, so it is refused at cast."""
    async with demo.db.session() as s:
        host = await s.get(Meeting, demo.meeting_id)
        assert host is not None
        other = await meetings.create_meeting(s, demo.users["chutri"], title="Phiên thứ hai",
                                              unit_id=host.unit_id, starts_at=host.starts_at)
        await meetings.advance_status(s, other, MeetingStatus.open)
        await meetings.store_member(s, other.id, MeetingRole.delegate,  # type: ignore[arg-type]
                                    user_id=demo.users["daibieu"].id)
        await s.commit()
    second = dataclasses.replace(demo, meeting_id=other.id)
    await check_in(second, "daibieu")
    elsewhere = await open_vote(second, secret=True)
    await cast(second, "daibieu", elsewhere, 0, receipt=UNKNOWN)
    await check_in(demo, *DELEGATES)
    here = await open_vote(demo, secret=True)
    with pytest.raises(Invalid, match="cannot be used"):
        await cast(demo, "daibieu2", here, 1, receipt=UNKNOWN)
    await cast(demo, "daibieu2", here, 1, receipt="QW4E-R7TY-8PAS-D3FG")
    assert (await close(demo, here))["totals"] == [0, 1, 0]
    assert (await close(second, elsewhere))["totals"] == [1, 0, 0]


async def test_client_made_receipts_in_one_batch_are_each_used_once(demo: Demo) -> None:
    await check_in(demo, *DELEGATES)
    vote_id = await open_vote(demo, secret=True)
    async with demo.db.session() as s:
        vote = await votes.get_vote(s, demo.meeting_id, vote_id)
        ballots = [ballot_box.BallotIn(a.user, a.role, 0, 1, UNKNOWN) for a in
                   [await demo.access(s, n) for n in ("daibieu", "daibieu2", "daibieu")]]
        done = await ballot_box.cast_many(s, vote, ballots, KEY)
    assert isinstance(done[0], ballot_box.CastResult) and done[0].receipt == UNKNOWN
    assert isinstance(done[1], Invalid)  # someone else's code
    assert isinstance(done[2], ballot_box.CastResult) and done[2].replayed  # its own, resent
    assert (await close(demo, vote_id))["cast"] == 1


async def test_site_counts_are_bounded_by_the_roll_call(demo: Demo) -> None:
    """A site without tablets votes by show of hands for its member seats; the people its
    roll call counts beyond them (guests, staff) are attendance and do not vote."""
    await check_in(demo, "daibieu")
    vote_id = await open_vote(demo, base=VoteBase.all_members)
    operator = demo.users["kythuat"]
    site_id = operator.site_id
    assert site_id is not None
    async with demo.db.session() as s:
        access = await demo.access(s, "kythuat")
        vote = await votes.get_vote(s, demo.meeting_id, vote_id)
        with pytest.raises(Conflict):  # the site has not answered the roll call
            await votes.enter_site_counts(s, vote, operator, access.role, site_id, [3, 0, 0])
    async with demo.db.session() as s:
        state = await demo.locked(s)
        state.roll_call_open = True
        await attendance.answer_roll_call(s, state, operator, (await demo.access(s, "kythuat")).role,
                                          site_id, True, 7)
    async with demo.db.session() as s:
        access = await demo.access(s, "kythuat")
        vote = await votes.get_vote(s, demo.meeting_id, vote_id)
        with pytest.raises(Invalid):  # 7 people in the room, but no member seats: guests
            await votes.enter_site_counts(s, vote, operator, access.role, site_id, [1, 0, 0])
        await attendance.set_site_seats(s, demo.meeting_id, site_id, 5)
    async with demo.db.session() as s:
        access = await demo.access(s, "kythuat")
        vote = await votes.get_vote(s, demo.meeting_id, vote_id)
        with pytest.raises(Invalid):
            await votes.enter_site_counts(s, vote, operator, access.role, site_id, [4, 2, 0])
        with pytest.raises(Forbidden):  # another site's counts
            await votes.enter_site_counts(s, vote, operator, access.role, site_id + 1, [1, 0, 0])
        await votes.enter_site_counts(s, vote, operator, access.role, site_id, [4, 1, 0])
    await cast(demo, "daibieu", vote_id, 0)
    result = await close(demo, vote_id)
    assert result["counts"] == [1, 0, 0] and result["totals"] == [5, 1, 0]
    assert result["eligible"] == result["base"] == 9  # 4 voting members + the site's 5 seats
    assert result["percentages"] == [55.56, 11.11, 0.0]
    assert result["site_counts"][0]["entered_for_site"] is True  # type: ignore[index]
    assert result["adopted"] is True
    assert json.dumps(result)  # JSON all the way down


VOTERS = ("chutri", "daibieu", "daibieu2", "daibieu3", "thuky")  # daibieu3 absent, thuky no vote
RECEIPTS = ("none", "own", "other's", "unknown")
ballot_requests = st.lists(st.tuples(st.integers(0, len(VOTERS) - 1), st.integers(0, 3),
                                     st.integers(1, 3), st.sampled_from(RECEIPTS)),
                           min_size=1, max_size=12)


async def outcomes(demo: Demo, secret: bool, allow_change: bool, first: list[tuple[int, int]],
                   batch: list[tuple[int, int, int, str]], together: bool) -> tuple[Any, ...]:
    """One vote: `first` cast one by one, then `batch` cast one by one or as one batch."""
    async with demo.db.session() as s:  # a failed example may have left its vote open
        for left in await votes.votes_of(s, demo.meeting_id):
            if left.status == votes.VoteStatus.open:
                await votes.close_vote(s, left, KEY)
    vote_id = await open_vote(demo, secret=secret, allow_change=allow_change)
    receipts: dict[int, str | None] = {}
    fresh = ballot_box.new_receipt()  # never used before: receipts are unique across votes
    for who, option in first:
        receipts[who] = (await cast(demo, VOTERS[who], vote_id, option)).receipt
    async with demo.db.session() as s:
        vote = await votes.get_vote(s, demo.meeting_id, vote_id)
        ballots = []
        for who, option, seq, kind in batch:
            access = await meetings.require(s, demo.users[VOTERS[who]], demo.meeting_id)
            other = receipts.get((who + 1) % len(VOTERS)) or receipts.get((who + 2) % len(VOTERS))
            code = {"none": None, "own": receipts.get(who), "other's": other,
                    "unknown": fresh}[kind]  # a first ballot's own, or matching none
            ballots.append(ballot_box.BallotIn(access.user, access.role, option, seq, code))
        if together:
            done: list[Any] = await ballot_box.cast_many(s, vote, ballots, KEY)
        else:
            done = []
            for b in ballots:
                try:
                    done.append(await ballot_box.cast(s, vote, b.user, b.role, b.option,
                                                      b.client_seq, b.receipt, key=KEY))
                except DomainError as exc:
                    done.append(exc)
    result = await close(demo, vote_id)
    seen = tuple((o.code,) if isinstance(o, Exception) else (o.option, o.changed,
                                                               o.receipt is not None, o.replayed)
                 for o in done)
    return seen, result["counts"], result["cast"]


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(secret=st.booleans(), allow_change=st.booleans(),
       first=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), max_size=3,
                      unique_by=lambda t: t[0]),
       batch=ballot_requests)
async def test_a_batch_gives_each_ballot_the_outcome_it_would_have_alone(
        demo: Demo, secret: bool, allow_change: bool, first: list[tuple[int, int]],
        batch: list[tuple[int, int, int, str]]) -> None:
    if not hasattr(demo, "checked_in"):
        await check_in(demo, "chutri", "daibieu", "daibieu2")
        demo.checked_in = True  # type: ignore[attr-defined]
    alone = await outcomes(demo, secret, allow_change, first, batch, together=False)
    together = await outcomes(demo, secret, allow_change, first, batch, together=True)
    assert together == alone
