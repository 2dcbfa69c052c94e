"""At the meeting's owner: a node's `vote.tally` report, checked, then counted
(rooms/remote_votes.py) or refused with a reason that travels back to the node.

Checks, in order (docs/cascade.md, "Votes across nodes"): the vote is this meeting's; the
report came through a child the meeting invites, from that child or a node the meeting
invites (its subtree), and a node always through the same child; the figures add up
(present <= members <= the node's seats, the child's whole subtree within the child's
seats, ballots <= members, an open vote's named voters match its counts, a secret vote sends
no counts before its close); a revision newer than the one counted (`stale` otherwise).
A report for a closed vote is `late`: never counted, and the ballots it adds are recorded
(`RemoteVoteTally.late`, the audit chain, the minutes)."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import audit, meeting_nodes, procedure, votes
from rooms.procedure_models import Vote, VoteStatus
from rooms.remote_votes import RemoteVoteTally, part, rows_of
from server.cascade.schemas import NodeError, validate
from server.cascade.topic.vote_schemas import VoteTallyData
from server.cascade.topics import Report
from server.core import keys
from server.procedure.keys import LIVE
from server.procedure.views import vote_emit

log = logging.getLogger(__name__)
NODE_REPORTED = "node_reported"  # audit kind at the owner: what a node reported


async def check_origin(s: AsyncSession, meeting_id: int, via: str, origin: str,
                       members: int, vote_id: int) -> None:
    """The node speaks for its own people, within the seats the owner allotted it and its
    child's subtree (rooms/meeting_nodes.py)."""
    seats = await meeting_nodes.node_seats(s, meeting_id)
    if via not in seats:
        raise NodeError("forbidden", f"the meeting does not invite {via}")
    if origin != via and origin not in seats:
        raise NodeError("forbidden", f"{origin[:64]} is not among the meeting's nodes")
    if origin in seats and members > seats[origin]:
        raise NodeError("over_seats", f"{origin} reports {members} members; it has "
                        f"{seats[origin]} seats")
    others = sum(r.members for r in await rows_of(s, vote_id)
                 if r.via == via and r.origin != origin)
    if others + members > seats[via]:
        raise NodeError("over_seats", f"the subtree of {via} would report {others + members} "
                        f"members; it has {seats[via]} seats")


def check_figures(data: VoteTallyData, vote: Vote) -> None:
    n = len(votes.options_of(vote))
    if data.secret != vote.secret:
        raise NodeError("invalid", "secret does not match the vote")
    if not data.present <= data.members or data.cast > data.members \
            or data.not_voted > data.present:
        raise NodeError("invalid", "present <= members, cast <= members and not voted <= "
                        "present")
    if vote.secret:
        if data.voters is not None or data.pending is not None:
            raise NodeError("invalid", "a secret vote carries no names")
        if data.final != (data.counts is not None):
            raise NodeError("invalid", "a secret vote's counts come once, final, after close")
    elif data.final or data.counts is None or data.voters is None:
        raise NodeError("invalid", "an open vote carries its counts and voters")
    if data.counts is not None:
        if len(data.counts) != n or any(c < 0 for c in data.counts):
            raise NodeError("invalid", f"give {n} counts, each 0 or more")
        if sum(data.counts) > data.members:
            raise NodeError("over_seats", "more ballots than members")
        if vote.secret and sum(data.counts) < data.cast:
            raise NodeError("invalid", "fewer counted ballots than ballots cast")
    if data.voters is not None and data.counts is not None:
        if len(data.voters) != data.cast or len({v.user for v in data.voters}) != data.cast:
            raise NodeError("invalid", "one named voter per ballot cast, each once")
        for option in range(n):
            named = sum(1 for v in data.voters if v.option == option)
            if named > data.counts[option]:
                raise NodeError("invalid", f"more named voters than ballots for option {option}")
        if any(v.option >= n for v in data.voters):
            raise NodeError("invalid", f"options are 0 to {n - 1}")


async def receive_tally(app: web.Application, meeting_id: int, via: str,
                        report: Report) -> dict[str, Any]:
    data = validate(VoteTallyData, report.data)
    late: int | None = None
    async with app[LIVE].lock(meeting_id), app[keys.DB].session() as s:
        state = await procedure.lock(s, meeting_id)  # serialised with the close
        vote = await s.get(Vote, data.vote)
        if vote is None or vote.meeting_id != meeting_id:
            raise NodeError("not_found", f"vote {data.vote} not found in this meeting")
        check_figures(data, vote)
        await check_origin(s, meeting_id, via, report.origin, data.members, data.vote)
        row = await s.get(RemoteVoteTally, (vote.id, report.origin))
        if row is not None and row.via != via:
            raise NodeError("forbidden", f"{report.origin} reports through {row.via}")
        if row is not None and data.revision <= row.revision and not data.final:
            raise NodeError("stale", f"revision {data.revision} after {row.revision}")
        if vote.status != VoteStatus.open:
            if data.final and row is not None and not row.final and data.cast == row.cast:
                await _final(s, vote, row, data, report.origin)
                await s.commit()
                await app[LIVE].emit(meeting_id, state.seq, [await vote_emit(s, data.vote)])
                return {"vote": data.vote, "final": True}
            late = await _late(s, vote, row, data, report.origin, via)
            await s.commit()
        else:
            if data.final:
                raise NodeError("invalid", "final counts before the vote closed")
            row = row or RemoteVoteTally(vote_id=data.vote, origin=report.origin, via=via)
            row.revision, row.members, row.present = data.revision, data.members, data.present
            row.cast, row.not_voted = data.cast, data.not_voted
            row.counts_json = json.dumps(data.counts or [])
            row.names_json = json.dumps(None if vote.secret else {
                "voters": [v.model_dump() for v in data.voters or []],
                "pending": [p.model_dump() for p in data.pending or []]}, ensure_ascii=False)
            s.add(row)
            # What the node said; a secret vote's turnout only (never counts while open).
            await audit.record(s, meeting_id, None, NODE_REPORTED, {
                "topic": report.topic, "report": report.id, "origin": report.origin,
                "via": via, "vote_id": vote.id, "revision": data.revision,
                "members": data.members, "present": data.present, "cast": data.cast,
                **({} if vote.secret else {"counts": data.counts})})
            await s.commit()
    if late is not None:
        log.warning("cascade: %s reported %d ballot(s) for vote %s after it closed: late, "
                    "not counted", report.origin, late, data.vote)
        raise NodeError("late", f"vote {data.vote} closed before this report arrived; "
                        f"{late} ballot(s) not counted")
    app[LIVE].schedule_tally(meeting_id, data.vote)
    return {"vote": data.vote, "revision": data.revision}


async def _late(s: AsyncSession, vote: Vote, row: RemoteVoteTally | None, data: VoteTallyData,
                origin: str, via: str) -> int:
    """Record what a late report adds (ballots after the close), counting nothing. A
    secret vote's final counts that include a late ballot are late as a whole: which of the
    node's ballots came late cannot be told (that is the point of a secret ballot), so none of
    them is counted, and the frozen result no longer counts the node's turnout either."""
    counted = row.cast if row is not None else 0
    late = max(0, data.cast - counted)
    if row is None:
        row = RemoteVoteTally(vote_id=data.vote, origin=origin, via=via, revision=data.revision,
                              members=data.members)
    if vote.secret and data.final and not row.final:
        late, counted = data.cast, 0
        if vote.result_json is not None and row.cast:
            result = json.loads(vote.result_json)
            result["cast"] = max(0, int(result.get("cast", 0)) - row.cast)
            vote.result_json = json.dumps(result, ensure_ascii=False)
            s.add(vote)
        row.cast, row.final = 0, True
    row.late = max(row.late, late)
    s.add(row)
    await audit.record(s, vote.meeting_id, None, NODE_REPORTED, {
        "topic": "vote.tally", "origin": origin, "via": via, "vote_id": vote.id,
        "revision": data.revision, "late": late, "counted": counted})
    return late


async def _final(s: AsyncSession, vote: Vote, row: RemoteVoteTally, data: VoteTallyData,
                 origin: str) -> None:
    """A secret vote's counts from a node, after the close: added to the frozen result."""
    assert data.counts is not None and vote.result_json is not None
    row.counts_json, row.final, row.revision = json.dumps(data.counts), True, data.revision
    s.add(row)
    await s.flush()
    result = json.loads(vote.result_json)
    totals = [a + b for a, b in zip(result.get("totals", []), data.counts)]
    result["totals"] = totals
    result["nodes"] = [{k: v for k, v in n.items() if k != "counts"}
                       for n in (await part(s, vote, len(totals))).nodes]
    result.update(decide(vote, result, totals))
    vote.result_json = json.dumps(result, ensure_ascii=False)
    s.add(vote)
    await audit.record(s, vote.meeting_id, None, NODE_REPORTED, {
        "topic": "vote.tally", "origin": origin, "vote_id": vote.id, "final": True,
        "cast": data.cast, "counts": data.counts})


def decide(vote: Vote, result: dict[str, Any], totals: list[int]) -> dict[str, Any]:
    """The outcome again over new totals, by the vote's own rule (rooms/vote_rules.py)."""
    try:
        from rooms import vote_rules
        from rooms.procedure_models import RuleSet
    except ImportError:  # a tree without vote rules: more than half of the base, agree first
        base = int(result.get("eligible", 0))
        top = totals[0] if not vote.custom_options else max(totals, default=0)
        return {"adopted": base > 0 and top * 2 > base}
    rule = vote_rules.VoteRule(vote.kind, vote.base, vote.threshold)
    rule_set = RuleSet(result.get("rule_set", RuleSet.other.value))
    return vote_rules.outcome(rule, rule_set, totals, vote.custom_options,
                              int(result.get("members", 0)), int(result.get("present", 0)))
