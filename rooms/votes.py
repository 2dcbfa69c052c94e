"""Votes (biểu quyết): open or secret, cast once (or changed until close when allowed).

Counting: an open vote counts `VoteParticipation.option` (the named record). A secret vote's
participation holds no option; its ballots are sealed (`SealedBallot`, rooms/ballot_seal.py)
while the vote is open, so the database alone never says who chose what, and at close they
are unsealed, counted, and written as `VoteBallot` rows in the order of their receipt hashes
by the closing transaction, while the sealed rows are erased. Nothing stored then keeps the
order ballots were cast in; `scrub_after_close` clears what the database engine may still
hold of earlier states (docs/security.md, "Secret ballots"). Each secret voter gets a receipt
code; only its sha256 is kept after close, so the voter can check it was counted.

Ballots are cast in batches (`cast_many`: a handful of queries for the whole batch); a
batch gives each ballot the outcome it would have had alone, in order. Every change runs
under `rooms.procedure.lock`, so open/close/cast of one meeting apply one at a time; the
unique (vote_id, user_id) constraint is the last guard against a double count.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import and_, col, func, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import agenda, attendance, audit
from rooms.audit import AuditKind
from rooms.ballot_seal import BallotKey, Unsealed, VoteSeal, normal_receipt, receipt_hash
from rooms.db import Database
from rooms.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from rooms.models import MeetingRole, Site, User, utcnow
from rooms.procedure_models import (
    Attendance,
    ProcedureState,
    SealedBallot,
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
_RECEIPT_MIN_DISTINCT = 6  # web_client/static/js/procedure-ui.js makes codes that pass


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
    replayed: bool = False  # a resend of the ballot already stored (its ack was lost)


def options_of(vote: Vote) -> list[str]:
    return list(json.loads(vote.options_json))


def option_labels_vi(vote: Vote) -> list[str]:
    opts = options_of(vote)
    return opts if vote.custom_options else [STANDARD_LABELS_VI.get(o, o) for o in opts]


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
                    key: BallotKey | None = None) -> Vote:
    """Open a vote; a secret one records which ballot key seals it (`key` is then needed)."""
    await agenda.get_item(session, state.meeting_id, spec.agenda_item_id)
    question = " ".join(spec.question.split())
    if not 1 <= len(question) <= 500:
        raise Invalid("question must be 1 to 500 characters")
    options, custom = _clean_options(spec.options)
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
                seal_key_id=key.key_id if spec.secret and key is not None else None)
    session.add(vote)
    await session.flush()
    return vote


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


async def scrub_after_close(db: Database) -> bool:
    """Once a secret vote's close has committed: have the database engine let go of the
    states it may still hold from while the vote was open. True when done; False when a
    reader held the SQLite WAL (try again later).

    SQLite (which runs with secure_delete, so erased rows and freed pages are zeroed in the
    file): checkpoint the WAL into the file and truncate it to zero bytes, so no earlier
    version of a page survives in it. PostgreSQL: VACUUM the ballot tables, so the erased
    sealed rows' dead versions are gone from the heap."""
    if db.is_sqlite:
        async with db.engine.connect() as conn:
            row = (await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")).one()
        return bool(row[0] == 0)
    async with db.engine.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
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
