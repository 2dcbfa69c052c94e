"""Votes (biểu quyết): open or secret, cast once (or changed until close when allowed).

Counting: an open vote counts `VoteParticipation.option` (the named record); a secret vote
counts `VoteBallot` rows, which hold no user id and no time. On PostgreSQL a secret vote's
ballots are re-written in a random order by the closing transaction ("resealed"), so
neither their physical order nor their per-row transaction ids (xmin) match them to the
transaction that recorded a voter's participation; on SQLite the table is WITHOUT ROWID,
ordered by its random key, with no such stamps. Each secret voter gets a receipt
code; only its sha256 is stored, with the ballot, so the voter can check it was counted.

Every change runs under `rooms.procedure.lock`, so open/close/cast of one meeting apply one
at a time; the unique (vote_id, user_id) constraint is the last guard against a double count.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import agenda, attendance
from rooms.errors import Conflict, Forbidden, Invalid, NotFound
from rooms.models import MeetingRole, Site, User, utcnow
from rooms.procedure import dialect
from rooms.procedure_models import (
    Attendance,
    ProcedureState,
    SiteVoteCount,
    Vote,
    VoteBallot,
    VoteParticipation,
    VoteStatus,
)

STANDARD_OPTIONS = ("agree", "disagree", "abstain")
STANDARD_LABELS_VI = {"agree": "Tán thành", "disagree": "Không tán thành",
                      "abstain": "Không biểu quyết"}
MAX_OPTIONS = 12
_RECEIPT_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U


@dataclass(frozen=True)
class NewVote:
    agenda_item_id: int
    question: str
    secret: bool = False
    allow_change: bool = False
    options: tuple[str, ...] | None = None  # None: agree / disagree / abstain


@dataclass(frozen=True)
class CastResult:
    vote_id: int
    option: int
    changed: bool
    receipt: str | None  # secret votes only; shown to the voter once, never stored


def options_of(vote: Vote) -> list[str]:
    return list(json.loads(vote.options_json))


def option_labels_vi(vote: Vote) -> list[str]:
    opts = options_of(vote)
    return opts if vote.custom_options else [STANDARD_LABELS_VI.get(o, o) for o in opts]


def new_receipt() -> str:
    raw = "".join(secrets.choice(_RECEIPT_ALPHABET) for _ in range(16))  # 80 bits
    return "-".join(raw[i:i + 4] for i in range(0, 16, 4))


def receipt_hash(code: str) -> str:
    normal = "".join(code.split()).replace("-", "").upper()
    return hashlib.sha256(f"hopso-receipt:{normal}".encode()).hexdigest()


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


async def open_vote(session: AsyncSession, state: ProcedureState, by: User, spec: NewVote) -> Vote:
    await agenda.get_item(session, state.meeting_id, spec.agenda_item_id)
    question = " ".join(spec.question.split())
    if not 1 <= len(question) <= 500:
        raise Invalid("question must be 1 to 500 characters")
    options, custom = _clean_options(spec.options)
    running = await session.exec(select(Vote.id).where(Vote.meeting_id == state.meeting_id,
                                                       Vote.status == VoteStatus.open))
    if running.first() is not None:
        raise Conflict("another vote is still open; close it first", code="vote_open")
    vote = Vote(meeting_id=state.meeting_id, agenda_item_id=spec.agenda_item_id,
                question=question, options_json=json.dumps(options, ensure_ascii=False),
                custom_options=custom, secret=spec.secret, allow_change=spec.allow_change,
                status=VoteStatus.open, opened_by=by.id)
    session.add(vote)
    await session.flush()
    return vote


async def _may_vote(session: AsyncSession, meeting_id: int, user: User, role: MeetingRole) -> None:
    if role not in attendance.VOTING_ROLES:
        raise Forbidden("only delegates and the chair vote")
    if not await attendance.is_present(session, meeting_id, user.id):  # type: ignore[arg-type]
        raise Conflict("check in before voting; absent members do not vote",
                       code="not_checked_in")


async def cast(session: AsyncSession, vote: Vote, user: User, role: MeetingRole, option: int,
               client_seq: int, receipt: str | None = None) -> CastResult:
    """Cast (or, if the vote allows it, change) one's ballot. Call under the meeting lock."""
    if vote.status != VoteStatus.open:
        raise Conflict(f"vote {vote.id} is {vote.status.value}; ballots are no longer accepted",
                       code="vote_closed")
    if not 0 <= option < len(options_of(vote)):
        raise Invalid(f"option must be 0 to {len(options_of(vote)) - 1}")
    await _may_vote(session, vote.meeting_id, user, role)
    rows = await session.exec(select(VoteParticipation).where(
        VoteParticipation.vote_id == vote.id, VoteParticipation.user_id == user.id))
    mine = rows.first()
    if mine is not None:
        return await _change(session, vote, mine, option, client_seq, receipt)
    assert vote.id is not None and user.id is not None
    code = new_receipt() if vote.secret else None
    session.add(VoteParticipation(vote_id=vote.id, user_id=user.id, client_seq=client_seq,
                                  option=None if vote.secret else option))
    if code is not None:
        session.add(VoteBallot(vote_id=vote.id, option=option, receipt_hash=receipt_hash(code)))
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict("you have already voted", code="already_voted") from None
    return CastResult(vote.id, option, False, code)


async def _change(session: AsyncSession, vote: Vote, mine: VoteParticipation, option: int,
                  client_seq: int, receipt: str | None) -> CastResult:
    assert vote.id is not None
    if not vote.allow_change:
        raise Conflict("you have already voted", code="already_voted")
    if client_seq <= mine.client_seq:
        raise Conflict(f"stale ballot (seq {client_seq} after {mine.client_seq})", code="stale")
    if vote.secret:  # every check before any change
        if not receipt:
            raise Invalid("send your receipt code to change a secret ballot")
        rows = await session.exec(select(VoteBallot).where(
            VoteBallot.vote_id == vote.id, VoteBallot.receipt_hash == receipt_hash(receipt)))
        ballot = rows.first()
        if ballot is None:
            raise Invalid("that receipt does not match a ballot of this vote")
        ballot.option = option
        session.add(ballot)
    else:
        mine.option = option
    mine.client_seq = client_seq
    session.add(mine)
    await session.flush()
    return CastResult(vote.id, option, True, receipt if vote.secret else None)


async def enter_site_counts(session: AsyncSession, vote: Vote, by: User, role: MeetingRole,
                            site_id: int, counts: list[int]) -> SiteVoteCount:
    """A site without tablets reports its show of hands; bounded by its roll-call headcount."""
    if vote.status != VoteStatus.open:
        raise Conflict(f"vote {vote.id} is {vote.status.value}", code="vote_closed")
    await attendance.require_invited_site(session, vote.meeting_id, site_id)
    attendance.may_answer_for(by, role, site_id)
    if len(counts) != len(options_of(vote)) or any(c < 0 for c in counts):
        raise Invalid(f"give {len(options_of(vote))} counts, each 0 or more")
    row = (await attendance.site_rows(session, vote.meeting_id)).get(site_id)
    if row is None or not row.present:
        raise Conflict("the site has not answered the roll call as present",
                       code="site_not_present")
    if sum(counts) > row.headcount:
        raise Invalid(f"the counts add up to {sum(counts)}, more than the site's headcount "
                      f"of {row.headcount}")
    rows = await session.exec(select(SiteVoteCount).where(SiteVoteCount.vote_id == vote.id,
                                                          SiteVoteCount.site_id == site_id))
    entry = rows.first() or SiteVoteCount(vote_id=vote.id, site_id=site_id,  # type: ignore[arg-type]
                                          counts_json="[]", entered_by=by.id)  # type: ignore[arg-type]
    entry.counts_json, entry.entered_by = json.dumps(counts), by.id  # type: ignore[assignment]
    session.add(entry)
    await session.flush()
    return entry


async def _individual_counts(session: AsyncSession, vote: Vote) -> list[int]:
    counts = [0] * len(options_of(vote))
    q: Any
    if vote.secret:
        q = select(VoteBallot.option, func.count()).where(VoteBallot.vote_id == vote.id) \
            .group_by(col(VoteBallot.option))
    else:
        q = select(VoteParticipation.option, func.count()) \
            .where(VoteParticipation.vote_id == vote.id).group_by(col(VoteParticipation.option))
    for opt, n in (await session.exec(q)).all():  # type: ignore[call-overload]
        if opt is not None and 0 <= opt < len(counts):
            counts[opt] = n
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


async def tally(session: AsyncSession, vote: Vote) -> dict[str, Any]:
    """The live count: individual ballots plus site counts; a closed vote's frozen result.
    Counted with SQL aggregates, so a 500-member meeting costs a handful of small queries."""
    if vote.result_json is not None:
        return dict(json.loads(vote.result_json))
    individual = await _individual_counts(session, vote)
    sites = await _site_counts(session, vote)
    totals = list(individual)
    for s in sites:
        totals = [a + b for a, b in zip(totals, s["counts"])]
    eligible = (await attendance.local_headcount(session, vote.meeting_id)).members
    present = attendance.present_voter_ids(vote.meeting_id)
    present_count = await attendance.count(session, present)
    not_voted = await attendance.count(session, present.where(
        col(Attendance.user_id).not_in(_voted(vote))))
    top = totals[0] if not vote.custom_options else max(totals, default=0)
    return {"counts": individual, "site_counts": sites, "totals": totals,
            "cast": await attendance.count(session, _voted(vote)),
            "present_voters": present_count, "not_voted": not_voted,
            "eligible": eligible, "adopted": eligible > 0 and top * 2 > eligible}


async def close_vote(session: AsyncSession, vote: Vote) -> dict[str, Any]:
    """Freeze the result; reseal a secret vote's ballots. Call under the meeting lock."""
    if vote.status != VoteStatus.open:
        raise Conflict(f"vote {vote.id} is already {vote.status.value}", code="vote_closed")
    result = await tally(session, vote)
    if vote.secret and dialect(session) == "postgresql":
        # PostgreSQL stamps each row with its writer's transaction id (xmin) and keeps rows
        # in insertion order; a SQLite WITHOUT ROWID table is ordered by the random key and
        # has neither, so there is nothing to reseal there.
        await _reseal(session, vote)
    vote.status, vote.closed_at = VoteStatus.closed, utcnow()
    vote.result_json = json.dumps(result, ensure_ascii=False)
    session.add(vote)
    await session.flush()
    return result


async def _reseal(session: AsyncSession, vote: Vote) -> None:
    rows = await session.exec(select(VoteBallot.option, VoteBallot.receipt_hash)
                              .where(VoteBallot.vote_id == vote.id))
    ballots = [(opt, h) for opt, h in rows.all()]
    secrets.SystemRandom().shuffle(ballots)
    await session.exec(delete(VoteBallot).where(col(VoteBallot.vote_id) == vote.id))  # type: ignore[call-overload]
    if ballots:  # one prepared statement, executed per row (no giant multi-VALUES compile)
        await session.exec(insert(VoteBallot.__table__),  # type: ignore[call-overload,attr-defined]
                           params=[{"id": uuid.uuid4().hex, "vote_id": vote.id, "option": opt,
                                    "receipt_hash": h} for opt, h in ballots])


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


async def check_receipt(session: AsyncSession, meeting_id: int, code: str) -> dict[str, Any]:
    """Was the ballot with this receipt counted, and for which option?"""
    if not 4 <= len(code) <= 64:
        raise Invalid("a receipt code is 4 to 64 characters")
    rows = await session.exec(select(VoteBallot, Vote)
                              .join(Vote, col(Vote.id) == col(VoteBallot.vote_id))
                              .where(VoteBallot.receipt_hash == receipt_hash(code),
                                     Vote.meeting_id == meeting_id))
    found = rows.first()
    if found is None:
        return {"counted": False}
    ballot, vote = found
    return {"counted": True, "vote_id": vote.id, "question": vote.question,
            "option": ballot.option, "option_label": options_of(vote)[ballot.option],
            "custom_options": vote.custom_options, "vote_status": vote.status.value}
