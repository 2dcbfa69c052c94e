"""The arithmetic of a vote (rooms/vote_rules.py), rule by rule of shared/DOMAIN.md, and the
base a real tally uses: voting members only, never guests or people counted at a site."""

from __future__ import annotations

import pytest

from rooms import agenda, attendance, ballot_box, votes
from rooms.ballot_seal import BallotKey
from rooms.procedure_models import AttendanceStatus, RuleSet, Threshold, VoteBase, VoteKind
from rooms.vote_rules import VoteRule, default_rule, needed, outcome, percent
from tests.rooms.conftest import Demo

KEY = BallotKey.generate()


@pytest.mark.parametrize("threshold, base, votes_needed", [
    (Threshold.majority, 16, 9),  # "quá nửa": more than half, 8 is only half
    (Threshold.majority, 15, 8),
    (Threshold.majority, 1, 1),
    (Threshold.two_thirds, 15, 10),
    (Threshold.two_thirds, 16, 11),  # 10.67 rounds up
    (Threshold.majority, 0, 1),  # an empty base carries nothing
])
def test_needed(threshold: Threshold, base: int, votes_needed: int) -> None:
    assert needed(threshold, base) == votes_needed


def test_defaults_per_body() -> None:
    """Councils and committees decide over ALL members; other meetings among those present."""
    assert default_rule(RuleSet.council).base == VoteBase.all_members
    assert default_rule(RuleSet.committee).base == VoteBase.all_members
    assert default_rule(RuleSet.other).base == VoteBase.present
    assert default_rule(RuleSet.council, VoteKind.election).kind == VoteKind.election


def test_council_resolution_needs_more_than_half_of_all_delegates() -> None:
    """35 delegates, 20 present: 17 for is a majority of those present but not of all."""
    rule = default_rule(RuleSet.council)
    lost = outcome(rule, RuleSet.council, [17, 2, 1], False, members=35, present=20)
    assert (lost["base"], lost["needed"], lost["adopted"], lost["outcome"]) == \
        (35, 18, False, "not_adopted")
    assert lost["percentages"] == [48.57, 5.71, 2.86]
    won = outcome(rule, RuleSet.council, [18, 2, 0], False, members=35, present=20)
    assert won["adopted"] and won["outcome"] == "adopted" and won["percentages"][0] == 51.43


def test_two_thirds_decisions() -> None:
    rule = VoteRule(VoteKind.motion, VoteBase.all_members, Threshold.two_thirds)
    assert not outcome(rule, RuleSet.council, [23, 0, 0], False, 35, 35)["adopted"]
    assert outcome(rule, RuleSet.council, [24, 0, 0], False, 35, 35)["adopted"]


def test_committee_tie_goes_the_chairmans_way() -> None:
    """10 members: 5 for, 5 against is a tie; it carries only if the Chairman voted for."""
    rule = default_rule(RuleSet.committee)
    tie = outcome(rule, RuleSet.committee, [5, 5, 0], False, 10, 10, chair_option=0)
    assert tie["adopted"] and tie["tie_break"] and tie["outcome"] == "adopted"
    against = outcome(rule, RuleSet.committee, [5, 5, 0], False, 10, 10, chair_option=1)
    assert not against["adopted"] and not against["tie_break"]
    unknown = outcome(rule, RuleSet.committee, [5, 5, 0], False, 10, 10, chair_option=None)
    assert not unknown["adopted"]  # a secret vote: nobody knows the Chairman's choice
    council = outcome(rule, RuleSet.council, [5, 5, 0], False, 10, 10, chair_option=0)
    assert not council["adopted"]  # only a committee breaks ties that way


def test_other_meetings_count_opinions_among_those_present() -> None:
    rule = default_rule(RuleSet.other)
    result = outcome(rule, RuleSet.other, [3, 1, 0], False, members=10, present=4)
    assert (result["base"], result["percentages"], result["adopted"]) == (4, [75.0, 25.0, 0.0], True)


def test_an_election_names_the_elected() -> None:
    """A council elects a candidate with more than half of all delegates' votes."""
    rule = VoteRule(VoteKind.election, VoteBase.all_members, Threshold.majority)
    result = outcome(rule, RuleSet.council, [20, 12, 3], True, members=35, present=35)
    assert result["outcome"] == "elected" and result["elected"] == [0]
    assert result["percentages"] == [57.14, 34.29, 8.57]
    nobody = outcome(rule, RuleSet.council, [17, 15, 3], True, members=35, present=35)
    assert nobody["outcome"] == "none_elected" and nobody["elected"] == []


def test_percent() -> None:
    assert percent(2, 3) == 66.67 and percent(0, 0) == 0.0


async def test_site_headcounts_and_guests_are_not_in_the_base(demo: Demo) -> None:
    """Issue 14: 11 people counted at a site made the quorum "15/16 present" and the vote
    "Tán thành 2 / 16". They are attendance: the base is the 4 voting members."""
    kythuat = demo.users["kythuat"]
    async with demo.db.session() as s:
        for name in ("daibieu", "daibieu2"):
            await attendance.check_in(s, demo.meeting_id, demo.users[name],
                                      AttendanceStatus.in_person)
        state = await demo.locked(s)
        state.roll_call_open = True
        access = await demo.access(s, "kythuat")
        await attendance.answer_roll_call(s, state, kythuat, access.role, kythuat.site_id,  # type: ignore[arg-type]
                                          True, 11)
    async with demo.db.session() as s:
        state = await demo.locked(s)
        view = await attendance.attendance_view(s, state)
        q = view["quorum"]
        assert (q["members"], q["present"]) == (4, 2)
        site = next(x for x in view["sites"] if x["site_id"] == kythuat.site_id)
        assert view["in_room"] == 11 and (site["guests"], site["members_present"]) == (11, 0)
        item = await agenda.add_item(s, demo.meeting_id, agenda.ItemFields(title="Kế hoạch"))
        vote = await votes.open_vote(s, state, demo.users["chutri"], votes.NewVote(
            item.id, "Tán thành?", base=VoteBase.all_members), KEY)  # type: ignore[arg-type]
    async with demo.db.session() as s:
        await demo.locked(s)
        for name in ("daibieu", "daibieu2"):
            access = await demo.access(s, name)
            await ballot_box.cast(s, vote, access.user, access.role, 0, 1, key=KEY)
        result = await votes.close_vote(s, vote, KEY)
    assert (result["totals"], result["base"], result["percentages"]) == \
        ([2, 0, 0], 4, [50.0, 0.0, 0.0])
    assert result["adopted"] is False  # 2 of 4 is not more than half


async def test_an_election_in_the_demo_meeting(demo: Demo) -> None:
    async with demo.db.session() as s:
        for name in ("chutri", "daibieu", "daibieu2", "daibieu3"):
            await attendance.check_in(s, demo.meeting_id, demo.users[name],
                                      AttendanceStatus.online)
        state = await demo.locked(s)
        state.rule_set = RuleSet.council
        item = await agenda.add_item(s, demo.meeting_id, agenda.ItemFields(title="Bầu cử"))
        vote = await votes.open_vote(s, state, demo.users["chutri"], votes.NewVote(
            item.id, "Bầu Phó Chủ tịch", options=("Nguyễn Văn A", "Trần Thị B"),  # type: ignore[arg-type]
            kind=VoteKind.election), KEY)
        assert vote.base == VoteBase.all_members  # a council's rule
    async with demo.db.session() as s:
        await demo.locked(s)
        for name, option in (("chutri", 1), ("daibieu", 1), ("daibieu2", 1), ("daibieu3", 0)):
            access = await demo.access(s, name)
            await ballot_box.cast(s, vote, access.user, access.role, option, 1, key=KEY)
        result = await votes.close_vote(s, vote, KEY)
    assert result["outcome"] == "elected" and result["elected"] == [1]
    assert result["percentages"] == [25.0, 75.0]


def test_other_meetings_have_no_quorum_rule() -> None:
    """Briefings and consultations: no quorum; the count is still shown."""
    from rooms.attendance import Headcount, quorum
    from rooms.procedure_models import QuorumRule
    q = quorum([Headcount("local", 10, 1)], QuorumRule.none)
    assert (q.members, q.present, q.needed, q.reached) == (10, 1, 0, True)


async def test_a_headcount_fills_a_sites_seats_and_no_more(demo: Demo) -> None:
    """5 member seats at a site without tablets, 7 people counted there: 5 members present,
    2 guests; the seats count as members whether or not their holders came."""
    kythuat = demo.users["kythuat"]
    async with demo.db.session() as s:
        state = await demo.locked(s)
        state.roll_call_open = True
        await attendance.set_site_seats(s, demo.meeting_id, kythuat.site_id, 5)  # type: ignore[arg-type]
        access = await demo.access(s, "kythuat")
        await attendance.answer_roll_call(s, state, kythuat, access.role, kythuat.site_id,  # type: ignore[arg-type]
                                          True, 7)
        heads = await attendance.local_headcount(s, demo.meeting_id)
        assert (heads.members, heads.present) == (4 + 5, 0 + 5)
        await attendance.answer_roll_call(s, state, kythuat, access.role, kythuat.site_id,  # type: ignore[arg-type]
                                          True, 3)
        heads = await attendance.local_headcount(s, demo.meeting_id)
        assert (heads.members, heads.present) == (9, 3)
