"""The ballot box: casting ballots into an open vote (rooms/votes.py opens, counts and closes
it), once each, or changed until close when the vote allows it.

An open vote records the option on the voter's `VoteParticipation`. A secret vote's
participation holds no option: its ballot is sealed (`SealedBallot`, rooms/ballot_seal.py)
under a receipt code the voter's client makes (`clean_receipt` refuses guessable ones), found
again by the code's lookup to change it or to answer a resend whose ack was lost.

Ballots are cast in batches (`cast_many`: a handful of queries for the whole batch); a
batch gives each ballot the outcome it would have had alone, in order. Call under
`rooms.procedure.lock`, so open/close/cast of one meeting apply one at a time; the unique
(vote_id, user_id) constraint is the last guard against a double count.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import and_, col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import attendance, audit
from rooms.audit import AuditKind
from rooms.ballot_seal import BallotKey, VoteSeal, normal_receipt, receipt_hash
from rooms.errors import Conflict, DomainError, Forbidden, Invalid
from rooms.models import MeetingRole, User
from rooms.procedure_models import (
    Attendance,
    SealedBallot,
    Vote,
    VoteBallot,
    VoteParticipation,
    VoteStatus,
)
from rooms.votes import expired, options_of

_RECEIPT_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
_RECEIPT_MIN_DISTINCT = 6  # web_client/static/js/procedure-ui.js makes codes that pass


@dataclass(frozen=True)
class CastResult:
    vote_id: int
    option: int
    changed: bool
    receipt: str | None  # secret votes only; shown to the voter once, never stored
    replayed: bool = False  # a resend of the ballot already stored (its ack was lost)


def new_receipt() -> str:
    """A server-made receipt, for clients that send none with their first secret ballot
    (deprecated: a client makes its own, so a resend after a lost ack carries it)."""
    raw = "".join(secrets.choice(_RECEIPT_ALPHABET) for _ in range(16))  # 80 bits
    return _dashed(raw)


def _dashed(raw: str) -> str:
    return "-".join(raw[i:i + 4] for i in range(0, 16, 4))


def clean_receipt(code: str) -> str:
    """A receipt sent with a ballot, in its shown form; Invalid unless it is 16 Crockford
    base-32 characters (dashes, spaces and case ignored) with at least 6 distinct ones:
    a client picks 80 random bits, and a guessable code (`0000…`, `ABAB…`) would let anyone
    check or change that ballot. A random code is refused with probability < 1e-7."""
    raw = normal_receipt(code)
    if (len(raw) != 16 or not all(c in _RECEIPT_ALPHABET for c in raw)
            or len(set(raw)) < _RECEIPT_MIN_DISTINCT):
        raise Invalid("a receipt code is 16 random Crockford base-32 characters "
                      "(0-9, A-Z without I, L, O, U)")
    return _dashed(raw)


@dataclass(frozen=True)
class BallotIn:
    """One ballot as it arrives: who (already through the meeting's access check), what."""

    user: User
    role: MeetingRole
    option: int
    client_seq: int
    receipt: str | None = None


@dataclass
class _Mine:
    """A voter's participation as the batch sees it: stored (`id`) or added by this batch."""

    id: int | None  # None: added by this batch
    client_seq: int
    option: int | None = None  # open votes only
    dirty: bool = False  # to be written


async def cast(session: AsyncSession, vote: Vote, user: User, role: MeetingRole, option: int,
               client_seq: int, receipt: str | None = None, *,
               key: BallotKey | None) -> CastResult:
    """Cast (or, if the vote allows it, change) one's ballot. Call under the meeting lock."""
    try:
        (outcome,) = await cast_many(session, vote,
                                     [BallotIn(user, role, option, client_seq, receipt)], key)
    except IntegrityError:  # another process stored this person's ballot meanwhile
        raise Conflict("you have already voted", code="already_voted") from None
    if isinstance(outcome, DomainError):
        raise outcome
    return outcome


async def cast_many(session: AsyncSession, vote: Vote, ballots: Sequence[BallotIn],
                    key: BallotKey | None) -> list[CastResult | DomainError]:
    """Cast several ballots of one vote: each gets the outcome it would have had alone, in
    order, for a handful of queries in all. Call under the meeting lock.

    A DomainError in the result changed nothing. Anything raised (an IntegrityError: another
    process stored one of these voters' ballots meanwhile) may have written: roll back."""
    assert vote.id is not None
    if vote.status != VoteStatus.open:
        return [Conflict(f"vote {vote.id} is {vote.status.value}; ballots are no longer "
                         f"accepted", code="vote_closed") for _ in ballots]
    if expired(vote):  # its time ran out; the server is closing it
        return [Conflict(f"vote {vote.id}'s time is up; ballots are no longer accepted",
                         code="vote_closed") for _ in ballots]
    n_options = len(options_of(vote))
    seal: VoteSeal | None = None
    if vote.secret:
        if key is None:
            raise ValueError("a secret vote needs the ballot key")
        seal = key.for_vote(vote.id, vote.seal_key_id)
    user_ids = {b.user.id for b in ballots if b.user.id is not None}
    present, mine = await _present_and_voted(session, vote, user_ids)
    lookups = {b.receipt: seal.lookup(b.receipt) for b in ballots if seal and b.receipt}
    stored = await _sealed_rows(session, vote.id, set(lookups.values()))
    sealing: dict[str, tuple[int, str]] = {}  # lookup -> (option, receipt hash): to write
    added: set[str] = set()  # of those, the lookups of ballots new in this batch
    unsealing: set[str] = set()  # plain ballots of a vote opened before sealing existed
    out: list[CastResult | DomainError] = []
    for b in ballots:
        try:
            uid = b.user.id
            assert uid is not None
            if not 0 <= b.option < n_options:
                raise Invalid(f"option must be 0 to {n_options - 1}")
            if b.role not in attendance.VOTING_ROLES:
                raise Forbidden("only delegates and the chair vote")
            if uid not in present:
                raise Conflict("check in before voting; absent members do not vote",
                               code="not_checked_in")
            shown = clean_receipt(b.receipt) if seal and b.receipt is not None else None
            had = mine.get(uid)
            if had is None:
                code = shown or (new_receipt() if seal else None)
                if seal and code:
                    lookup = lookups.get(b.receipt or "") or seal.lookup(code)
                    # Someone else's code (or, at 2^-80, a collision): refused, and `invalid`
                    # is all it says, whoever holds it.
                    if lookup in stored or lookup in sealing or (shown and await _taken(
                            session, vote, key, code)):
                        raise Invalid("this receipt code cannot be used; make a new one")
                    sealing[lookup] = (b.option, receipt_hash(code))
                    added.add(lookup)
                mine[uid] = _Mine(None, b.client_seq, None if seal else b.option, dirty=True)
                out.append(CastResult(vote.id, b.option, False, code))
                continue
            if seal and shown and b.client_seq == had.client_seq and \
                    _same_ballot(seal, lookups[b.receipt or ""], stored, sealing, b.option):
                # The ack of this very ballot was lost: answer again, write nothing.
                out.append(CastResult(vote.id, b.option, False, shown, replayed=True))
                continue
            if not vote.allow_change:
                raise Conflict("you have already voted", code="already_voted")
            if b.client_seq <= had.client_seq:
                raise Conflict(f"stale ballot (seq {b.client_seq} after {had.client_seq})",
                               code="stale")
            if seal:  # every check before any change
                if not b.receipt or not shown:
                    raise Invalid("send your receipt code to change a secret ballot")
                lookup = lookups[b.receipt]
                if lookup not in stored and lookup not in sealing:
                    if not await _plain_ballot(session, vote.id, receipt_hash(b.receipt)):
                        raise Invalid("that receipt does not match a ballot of this vote")
                    unsealing.add(receipt_hash(b.receipt))
                sealing[lookup] = (b.option, receipt_hash(b.receipt))
            had.client_seq, had.option, had.dirty = b.client_seq, None if seal else b.option, True
            out.append(CastResult(vote.id, b.option, True, shown))
        except DomainError as exc:
            out.append(exc)
    if seal and sealing and vote.seal_key_id is None and key is not None:
        vote.seal_key_id = key.key_id  # opened before sealing existed: sealed from now on
        session.add(vote)
    await _write(session, vote, seal, mine, sealing, added, unsealing)
    if not vote.secret:  # a secret vote's participation is recorded at close, as a set
        for b, outcome in zip(ballots, out):
            if isinstance(outcome, CastResult):
                await audit.record(session, vote.meeting_id, b.user.id,
                                   AuditKind.ballot_changed if outcome.changed
                                   else AuditKind.ballot_cast,
                                   {"vote_id": vote.id, "option": outcome.option})
    return out


async def _present_and_voted(session: AsyncSession, vote: Vote, user_ids: set[int]
                             ) -> tuple[set[int], dict[int, _Mine]]:
    """Who of them is checked in, and the participation of those who already voted (only
    theirs matters: the others are refused first). One query for the whole batch."""
    rows = await session.exec(
        select(Attendance.user_id, VoteParticipation.id, VoteParticipation.client_seq)
        .outerjoin(VoteParticipation, and_(col(VoteParticipation.vote_id) == vote.id,
                                           col(VoteParticipation.user_id)
                                           == col(Attendance.user_id)))
        .where(Attendance.meeting_id == vote.meeting_id, col(Attendance.user_id).in_(user_ids),
               col(Attendance.status).in_(list(attendance.PRESENT))))
    present: set[int] = set()
    mine: dict[int, _Mine] = {}
    for uid, pid, seq in rows.all():
        present.add(uid)
        if pid is not None:
            mine[uid] = _Mine(pid, seq)
    return present, mine


async def _sealed_rows(session: AsyncSession, vote_id: int, lookups: set[str]
                       ) -> dict[str, bytes]:
    if not lookups:
        return {}
    rows = await session.exec(select(SealedBallot.lookup, SealedBallot.sealed).where(
        SealedBallot.vote_id == vote_id, col(SealedBallot.lookup).in_(lookups)))
    return dict(rows.all())


def _same_ballot(seal: VoteSeal, lookup: str, stored: dict[str, bytes],
                 sealing: dict[str, tuple[int, str]], option: int) -> bool:
    """Does the ballot under this receipt hold `option`? Opened in memory only, to tell a
    resend from a new ballot; nothing of it is written or logged."""
    if lookup in sealing:
        return sealing[lookup][0] == option
    if lookup in stored:
        return seal.unseal(lookup, stored[lookup]).option == option
    return False


async def _taken(session: AsyncSession, vote: Vote, key: BallotKey | None, code: str) -> bool:
    """Is this client-made receipt held by a ballot of another vote, open or closed, in any
    meeting (or a plain one of this vote)? Receipt hashes are unique across votes (a receipt
    check finds one ballot), so a reused code would make that vote's close fail. A query
    per first ballot that brings its own code; open votes are a handful at any time."""
    hashed = receipt_hash(code)
    if (await session.exec(select(VoteBallot.vote_id).where(
            VoteBallot.receipt_hash == hashed))).first() is not None:
        return True
    if key is None:
        return False
    others = await session.exec(select(Vote.id, Vote.seal_key_id).where(
        Vote.status == VoteStatus.open, col(Vote.secret).is_(True), Vote.id != vote.id,
        col(Vote.seal_key_id).is_not(None)))
    pairs = [and_(col(SealedBallot.vote_id) == vid,
                  col(SealedBallot.lookup) == key.for_vote(vid, None).lookup(code))
             for vid, key_id in others.all() if vid is not None and key_id == key.key_id]
    if not pairs:
        return False
    return (await session.exec(select(SealedBallot.vote_id).where(or_(*pairs)))).first() \
        is not None


async def _plain_ballot(session: AsyncSession, vote_id: int, hashed: str) -> bool:
    """A ballot stored in clear by a server from before sealing (migration 0010)."""
    rows = await session.exec(select(VoteBallot.option).where(
        VoteBallot.vote_id == vote_id, VoteBallot.receipt_hash == hashed))
    return rows.first() is not None


async def _write(session: AsyncSession, vote: Vote, seal: VoteSeal | None,
                 mine: dict[int, _Mine], sealing: dict[str, tuple[int, str]], added: set[str],
                 unsealing: set[str]) -> None:
    """The batch's writes: a few executemany statements, whatever the batch's size."""
    parts = VoteParticipation.__table__  # type: ignore[attr-defined]
    new_rows = [{"vote_id": vote.id, "user_id": uid, "client_seq": m.client_seq,
                 "option": m.option} for uid, m in mine.items() if m.id is None]
    if new_rows:
        await session.exec(insert(parts), params=new_rows)  # type: ignore[call-overload]
    changes = [{"b_id": m.id, "b_seq": m.client_seq, "b_option": m.option}
               for m in mine.values() if m.id is not None and m.dirty]
    if changes:
        await session.exec(update(parts).where(parts.c.id == bindparam("b_id"))  # type: ignore[call-overload]
                           .values(client_seq=bindparam("b_seq"), option=bindparam("b_option")),
                           params=changes)
    if seal is None or not sealing:
        return
    table = SealedBallot.__table__  # type: ignore[attr-defined]
    fresh = [{"vote_id": vote.id, "lookup": lk, "sealed": seal.seal(lk, opt, rh)}
             for lk, (opt, rh) in sealing.items() if lk in added or rh in unsealing]
    again = [{"b_lookup": lk, "b_sealed": seal.seal(lk, opt, rh)}
             for lk, (opt, rh) in sealing.items() if lk not in added and rh not in unsealing]
    if unsealing:
        await session.exec(delete(VoteBallot).where(  # type: ignore[call-overload]
            col(VoteBallot.vote_id) == vote.id, col(VoteBallot.receipt_hash).in_(unsealing)))
    if fresh:
        await session.exec(insert(table), params=fresh)  # type: ignore[call-overload]
    if again:
        await session.exec(update(table).where(  # type: ignore[call-overload]
            table.c.vote_id == vote.id, table.c.lookup == bindparam("b_lookup"))
            .values(sealed=bindparam("b_sealed")), params=again)
