"""Votes (biểu quyết): opened, counted and closed here; ballots are cast into them by the
ballot box (rooms/ballot_box.py), open or secret, once (or changed until close when allowed).

Counting: an open vote counts `VoteParticipation.option` (the named record). A secret vote's
participation holds no option; its ballots are sealed (`SealedBallot`, rooms/ballot_seal.py)
while the vote is open, so the database alone never says who chose what, and at close they
are unsealed, counted, and written as `VoteBallot` rows in the order of their receipt hashes
by the closing transaction, while the sealed rows are erased. Nothing stored then keeps the
order ballots were cast in; `scrub_after_close` clears what the database engine may still
hold of earlier states (docs/security.md, "Secret ballots"). Each secret voter gets a receipt
code; only its sha256 is kept after close, so the voter can check it was counted.

Every change runs under `rooms.procedure.lock`, so open/close/cast of one meeting apply one
at a time.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import agenda, attendance, remote_votes, vote_rules
from rooms.ballot_seal import BallotKey, Unsealed, receipt_hash
from rooms.db import SQLITE_BUSY_TIMEOUT_MS, Database
from rooms.errors import Conflict, Invalid, NotFound
from rooms.models import MeetingMember, MeetingRole, Site, User, utcnow
from rooms.procedure_models import (
    Attendance,
    ProcedureState,
    RuleSet,
    SealedBallot,
    SiteVoteCount,
    Threshold,
    Vote,
    VoteBallot,
    VoteBase,
    VoteKind,
    VoteParticipation,
    VoteStatus,
)

STANDARD_OPTIONS = ("agree", "disagree", "abstain")
STANDARD_LABELS_VI = {"agree": "Tán thành", "disagree": "Không tán thành",
                      "abstain": "Không biểu quyết"}
MAX_OPTIONS = 12
MIN_TIME_LIMIT_S, MAX_TIME_LIMIT_S = 10, 3 * 3600


@dataclass(frozen=True)
class NewVote:
    agenda_item_id: int
    question: str
    secret: bool = False
    allow_change: bool = False
    options: tuple[str, ...] | None = None  # None: agree / disagree / abstain
    kind: VoteKind = VoteKind.motion
    base: VoteBase | None = None  # None: the meeting's rule set says (vote_rules.default_rule)
    threshold: Threshold | None = None
    time_limit_seconds: int | None = None  # the server closes the vote when it runs out


def options_of(vote: Vote) -> list[str]:
    return list(json.loads(vote.options_json))


def option_labels_vi(vote: Vote) -> list[str]:
    opts = options_of(vote)
    return opts if vote.custom_options else [STANDARD_LABELS_VI.get(o, o) for o in opts]


async def get_vote(session: AsyncSession, meeting_id: int, vote_id: int) -> Vote:
    vote = await session.get(Vote, vote_id)
    if vote is None or vote.meeting_id != meeting_id:
        raise NotFound(f"vote {vote_id} not found in this meeting")
    return vote


def _clean_options(options: tuple[str, ...] | None) -> tuple[list[str], bool]:
    if options is None:
        return list(STANDARD_OPTIONS), False
    cleaned = [" ".join(o.split()) for o in options]
    if not 2 <= len(cleaned) <= MAX_OPTIONS:
        raise Invalid(f"a vote has 2 to {MAX_OPTIONS} options")
    if any(not 1 <= len(o) <= 200 for o in cleaned) or len(set(cleaned)) != len(cleaned):
        raise Invalid("options must be distinct and 1 to 200 characters")
    return cleaned, True


async def open_vote(session: AsyncSession, state: ProcedureState, by: User, spec: NewVote,
                    key: BallotKey | None = None, min_time_limit_s: int = MIN_TIME_LIMIT_S
                    ) -> Vote:
    """Open a vote; a secret one records which ballot key seals it (`key` is then needed).
    A time limit is `min_time_limit_s` (Settings.vote_time_limit_min_s) to 3 h."""
    await agenda.get_item(session, state.meeting_id, spec.agenda_item_id)
    question = " ".join(spec.question.split())
    if not 1 <= len(question) <= 500:
        raise Invalid("question must be 1 to 500 characters")
    options, custom = _clean_options(spec.options)
    if spec.kind == VoteKind.election and not custom:
        raise Invalid("an election's options are its candidates: give their names")
    limit = spec.time_limit_seconds
    if limit is not None and not min_time_limit_s <= limit <= MAX_TIME_LIMIT_S:
        raise Invalid(f"a time limit is {min_time_limit_s} to {MAX_TIME_LIMIT_S} seconds")
    rule = vote_rules.default_rule(state.rule_set, spec.kind)
    if spec.secret and key is None:
        raise ValueError("a secret vote needs the ballot key")
    running = await session.exec(select(Vote.id).where(Vote.meeting_id == state.meeting_id,
                                                       Vote.status == VoteStatus.open))
    if running.first() is not None:
        raise Conflict("another vote is still open; close it first", code="vote_open")
    vote = Vote(meeting_id=state.meeting_id, agenda_item_id=spec.agenda_item_id,
                question=question, options_json=json.dumps(options, ensure_ascii=False),
                custom_options=custom, secret=spec.secret, allow_change=spec.allow_change,
                status=VoteStatus.open, opened_by=by.id,
                seal_key_id=key.key_id if spec.secret and key is not None else None,
                kind=spec.kind, base=spec.base or rule.base,
                threshold=spec.threshold or rule.threshold)
    if limit is not None:
        vote.closes_at = vote.opened_at + timedelta(seconds=limit)
    session.add(vote)
    await session.flush()
    return vote


async def enter_site_counts(session: AsyncSession, vote: Vote, by: User, role: MeetingRole,
                            site_id: int, counts: list[int]) -> SiteVoteCount:
    """A site without tablets reports its members' show of hands: bounded by the members
    present there (its seats, filled by its roll-call headcount; guests do not vote)."""
    if vote.status != VoteStatus.open or expired(vote):
        raise Conflict(f"vote {vote.id} is {vote.status.value}", code="vote_closed")
    await attendance.require_invited_site(session, vote.meeting_id, site_id)
    attendance.may_answer_for(by, role, site_id)
    if len(counts) != len(options_of(vote)) or any(c < 0 for c in counts):
        raise Invalid(f"give {len(options_of(vote))} counts, each 0 or more")
    row = (await attendance.site_rows(session, vote.meeting_id)).get(site_id)
    if row is None or not row.present:
        raise Conflict("the site has not answered the roll call as present",
                       code="site_not_present")
    members_here = attendance.site_present_members(row)
    if sum(counts) > members_here:
        raise Invalid(f"the counts add up to {sum(counts)}, more than the {members_here} "
                      f"members present at the site (its seats, filled by its headcount)")
    rows = await session.exec(select(SiteVoteCount).where(SiteVoteCount.vote_id == vote.id,
                                                          SiteVoteCount.site_id == site_id))
    entry = rows.first() or SiteVoteCount(vote_id=vote.id, site_id=site_id,  # type: ignore[arg-type]
                                          counts_json="[]", entered_by=by.id)  # type: ignore[arg-type]
    entry.counts_json, entry.entered_by = json.dumps(counts), by.id  # type: ignore[assignment]
    session.add(entry)
    await session.flush()
    return entry


async def _individual_counts(session: AsyncSession, vote: Vote,
                             ballots: list[Unsealed] | None) -> list[int]:
    counts = [0] * len(options_of(vote))
    if vote.secret:  # counted once, at close, from the unsealed ballots; never while open
        for opt, n in Counter(b.option for b in ballots or []).items():
            if 0 <= opt < len(counts):
                counts[opt] = n
        return counts
    q: Any = select(VoteParticipation.option, func.count()) \
        .where(VoteParticipation.vote_id == vote.id).group_by(col(VoteParticipation.option))
    for option, n in (await session.exec(q)).all():
        if option is not None and 0 <= option < len(counts):
            counts[option] = n
    return counts


async def _site_counts(session: AsyncSession, vote: Vote) -> list[dict[str, Any]]:
    rows = await session.exec(select(SiteVoteCount, Site, User)
                              .join(Site, col(Site.id) == col(SiteVoteCount.site_id))
                              .join(User, col(User.id) == col(SiteVoteCount.entered_by))
                              .where(SiteVoteCount.vote_id == vote.id)
                              .order_by(col(SiteVoteCount.site_id)))
    return [{"site_id": site.id, "site": site.name, "counts": json.loads(c.counts_json),
             "entered_by": user.full_name, "entered_for_site": True}
            for c, site, user in rows.all()]


async def participants(session: AsyncSession, vote: Vote) -> set[int]:
    rows = await session.exec(select(VoteParticipation.user_id)
                              .where(VoteParticipation.vote_id == vote.id))
    return set(rows.all())


async def votes_cast_by(session: AsyncSession, meeting_id: int, user_id: int) -> list[int]:
    rows = await session.exec(select(VoteParticipation.vote_id)
                              .join(Vote, col(Vote.id) == col(VoteParticipation.vote_id))
                              .where(Vote.meeting_id == meeting_id,
                                     VoteParticipation.user_id == user_id))
    return sorted(rows.all())


def _voted(vote: Vote) -> Any:
    return select(VoteParticipation.user_id).where(VoteParticipation.vote_id == vote.id)


async def tally(session: AsyncSession, vote: Vote,
                ballots: list[Unsealed] | None = None) -> dict[str, Any]:
    """The live count: individual ballots plus site counts; a closed vote's frozen result.
    Counted with SQL aggregates, so a 500-member meeting costs a handful of small queries.
    An open secret vote's individual counts are zeros (its ballots are sealed; only the
    turnout is shown); at close they come from its unsealed `ballots`."""
    if vote.result_json is not None:
        return dict(json.loads(vote.result_json))
    individual = await _individual_counts(session, vote, ballots)
    sites = await _site_counts(session, vote)
    totals = list(individual)
    for s in sites:
        totals = [a + b for a, b in zip(totals, s["counts"])]
    # Cascade: at the owner, the other nodes' ballots and members (rooms/remote_votes.py).
    remote = await remote_votes.part(session, vote, len(totals))
    totals = [a + b for a, b in zip(totals, remote.counts)]
    heads = remote.heads(await attendance.local_headcount(session, vote.meeting_id))
    cast, present_count, not_voted = remote.turnout(await _turnout(session, vote))
    state = await session.get(ProcedureState, vote.meeting_id)
    rule_set = state.rule_set if state is not None else RuleSet.other
    rule = vote_rules.VoteRule(vote.kind, vote.base, vote.threshold)
    decided = vote_rules.outcome(rule, rule_set, totals, vote.custom_options, heads.members,
                                 heads.present, await _chair_option(session, vote, rule_set))
    return {"counts": individual, "site_counts": sites, "totals": totals,
            "cast": cast, "present_voters": present_count, "not_voted": not_voted, **decided,
            **({"nodes": remote.nodes} if remote.nodes else {})}


async def _chair_option(session: AsyncSession, vote: Vote, rule_set: RuleSet) -> int | None:
    """What the Chairman chose, where it can decide a tie: an open vote of a committee."""
    if rule_set != RuleSet.committee or vote.secret:
        return None
    rows = await session.exec(select(VoteParticipation.option)
                              .join(MeetingMember, col(MeetingMember.user_id)
                                    == col(VoteParticipation.user_id))
                              .where(VoteParticipation.vote_id == vote.id,
                                     MeetingMember.meeting_id == vote.meeting_id,
                                     MeetingMember.role == MeetingRole.chair)
                              .order_by(col(MeetingMember.id)))
    return rows.first()


def expired(vote: Vote, now: datetime | None = None) -> bool:
    """An open vote whose time limit ran out: it takes no more ballots, and closes."""
    return vote.closes_at is not None and (now or utcnow()) >= vote.closes_at


async def _turnout(session: AsyncSession, vote: Vote) -> tuple[int, int, int]:
    """(ballots cast, voters present, present voters who have not voted): one query, as it
    runs in the close's transaction, between the chair's click and the result."""
    present = attendance.present_voter_ids(vote.meeting_id)

    def counted(q: Any) -> Any:
        return select(func.count()).select_from(q.subquery()).scalar_subquery()
    row = (await session.exec(select(  # type: ignore[call-overload]
        counted(_voted(vote)), counted(present),
        counted(present.where(col(Attendance.user_id).not_in(_voted(vote))))))).one()
    return int(row[0]), int(row[1]), int(row[2])


async def close_vote(session: AsyncSession, vote: Vote,
                     key: BallotKey | None = None) -> dict[str, Any]:
    """Freeze the result. A secret vote's ballots are unsealed, counted, and stored in the
    order of their receipt hashes by this transaction, and the sealed rows are erased: what
    is stored after close keeps nothing of the order they were cast in (on PostgreSQL that
    includes the rows' physical order and their transaction ids, xmin). Call under the
    meeting lock, and `scrub_after_close` once committed."""
    if vote.status != VoteStatus.open:
        raise Conflict(f"vote {vote.id} is already {vote.status.value}", code="vote_closed")
    ballots = await _unseal(session, vote, key) if vote.secret else None
    result = await tally(session, vote, ballots)
    if ballots is not None:
        await _store_unsealed(session, vote, ballots)
    vote.status, vote.closed_at = VoteStatus.closed, utcnow()
    vote.result_json = json.dumps(result, ensure_ascii=False)
    session.add(vote)
    await session.flush()
    return result


async def _unseal(session: AsyncSession, vote: Vote, key: BallotKey | None) -> list[Unsealed]:
    assert vote.id is not None
    if key is None:
        raise ValueError("closing a secret vote needs the ballot key")
    seal = key.for_vote(vote.id, vote.seal_key_id)
    rows = await session.exec(select(SealedBallot.lookup, SealedBallot.sealed)
                              .where(SealedBallot.vote_id == vote.id))
    ballots = [seal.unseal(lookup, sealed) for lookup, sealed in rows.all()]
    plain = await session.exec(select(VoteBallot.option, VoteBallot.receipt_hash)  # pre-0010
                               .where(VoteBallot.vote_id == vote.id))
    return ballots + [Unsealed(opt, h) for opt, h in plain.all()]


async def _store_unsealed(session: AsyncSession, vote: Vote, ballots: list[Unsealed]) -> None:
    await session.exec(delete(SealedBallot).where(col(SealedBallot.vote_id) == vote.id))  # type: ignore[call-overload]
    await session.exec(delete(VoteBallot).where(col(VoteBallot.vote_id) == vote.id))  # type: ignore[call-overload]
    if ballots:  # one prepared statement, executed per row, in receipt-hash order
        await session.exec(insert(VoteBallot.__table__),  # type: ignore[call-overload,attr-defined]
                           params=[{"vote_id": vote.id, "receipt_hash": b.receipt_hash,
                                    "option": b.option}
                                   for b in sorted(ballots, key=lambda b: b.receipt_hash)])


# The engine's upkeep, on a connection of its own, in the background: statement counts of
# a block under test leave it out (tests/sql_statements.py).
UPKEEP = {"hopso_upkeep": True}


async def scrub_after_close(db: Database) -> bool:
    """Once a secret vote's close has committed: have the database engine let go of the
    states it may still hold from while the vote was open. True when done; False when a
    reader held the SQLite WAL (try again later).

    SQLite (which runs with secure_delete, so erased rows and freed pages are zeroed in the
    file): checkpoint the WAL into the file and truncate it to zero bytes, so no earlier
    version of a page survives in it. Without waiting: a TRUNCATE checkpoint that waits
    (busy_timeout) holds the write lock all the while, stalling every ballot and close
    behind it; so the frames are first copied without any lock (PASSIVE), then TRUNCATE
    runs with busy_timeout 0 and says busy at once if a reader or writer is in the way.
    PostgreSQL: VACUUM the ballot tables, so the erased sealed rows' dead versions are gone
    from the heap."""
    if db.is_sqlite:
        async with db.engine.connect() as conn:
            await conn.execution_options(**UPKEEP)
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            await conn.exec_driver_sql("PRAGMA busy_timeout=0")
            try:
                row = (await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")).one()
            finally:  # the connection goes back to the pool: as every other one
                await conn.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        return bool(row[0] == 0)
    async with db.engine.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT", **UPKEEP)
        await auto.exec_driver_sql("VACUUM sealedballot, voteballot")
    return True


async def pending_voters(session: AsyncSession, vote: Vote) -> dict[str, Any]:
    """Who is present and eligible but has not voted: names for open votes, a count for
    secret ones."""
    missing = attendance.present_voter_ids(vote.meeting_id).where(
        col(Attendance.user_id).not_in(_voted(vote)))
    out: dict[str, Any] = {"vote_id": vote.id, "count": await attendance.count(session, missing),
                           "names": None}
    if not vote.secret:
        rows = await session.exec(select(User.id, User.full_name)
                                  .where(col(User.id).in_(missing)).order_by(col(User.id)))
        out["names"] = [{"user_id": uid, "name": name} for uid, name in rows.all()]
    nodes = [remote_votes.node_dict(r, vote.secret)  # cascade: as each node last reported
             for r in await remote_votes.rows_of(session, vote.id or 0)]
    if nodes:
        out["count"] += sum(n["not_voted"] for n in nodes)
        out["nodes"] = [{"node": n["node"], "count": n["not_voted"],
                         "names": n.get("pending")} for n in nodes]
    return out


def vote_dict(vote: Vote, counts: dict[str, Any] | None) -> dict[str, Any]:
    """A vote as members see it. A secret vote shows only its turnout until it closes."""
    data: dict[str, Any] = {
        "id": vote.id, "agenda_item_id": vote.agenda_item_id, "question": vote.question,
        "options": options_of(vote), "custom_options": vote.custom_options,
        "secret": vote.secret, "allow_change": vote.allow_change, "status": vote.status.value,
        "opened_at": vote.opened_at.isoformat(),
        "closed_at": vote.closed_at.isoformat() if vote.closed_at else None,
        "final": vote.status == VoteStatus.closed, "result": None, "turnout": None,
        "kind": vote.kind.value, "base": vote.base.value, "threshold": vote.threshold.value,
        "closes_at": vote.closes_at.isoformat() if vote.closes_at else None,
    }
    if counts is not None:
        data["turnout"] = {k: counts[k] for k in ("cast", "present_voters", "not_voted",
                                                  "eligible") if k in counts}
        if not vote.secret or vote.status == VoteStatus.closed:
            data["result"] = counts
    return data


async def votes_of(session: AsyncSession, meeting_id: int) -> list[Vote]:
    rows = await session.exec(select(Vote).where(Vote.meeting_id == meeting_id)
                              .order_by(col(Vote.id)))
    return list(rows.all())


async def check_receipt(session: AsyncSession, meeting_id: int, code: str,
                        key: BallotKey | None = None) -> dict[str, Any]:
    """Was the ballot with this receipt counted (or, while its vote is open, stored), and
    for which option?"""
    if not 4 <= len(code) <= 64:
        raise Invalid("a receipt code is 4 to 64 characters")
    rows = await session.exec(select(VoteBallot.option, Vote)
                              .join(Vote, col(Vote.id) == col(VoteBallot.vote_id))
                              .where(VoteBallot.receipt_hash == receipt_hash(code),
                                     Vote.meeting_id == meeting_id))
    found = rows.first()
    if found is None and key is not None:
        found = await _sealed_receipt(session, meeting_id, code, key)
    if found is None:
        return {"counted": False}
    option, vote = found
    return {"counted": True, "vote_id": vote.id, "question": vote.question,
            "option": option, "option_label": options_of(vote)[option],
            "custom_options": vote.custom_options, "vote_status": vote.status.value}


async def _sealed_receipt(session: AsyncSession, meeting_id: int, code: str,
                          key: BallotKey) -> tuple[int, Vote] | None:
    rows = await session.exec(select(Vote).where(Vote.meeting_id == meeting_id,
                                                 Vote.status == VoteStatus.open,
                                                 col(Vote.secret).is_(True)))
    for vote in rows.all():
        assert vote.id is not None
        seal = key.for_vote(vote.id, vote.seal_key_id)
        lookup = seal.lookup(code)
        sealed = await session.exec(select(SealedBallot.sealed).where(
            SealedBallot.vote_id == vote.id, SealedBallot.lookup == lookup))
        blob = sealed.first()
        if blob is not None:
            return seal.unseal(lookup, blob).option, vote
    return None
