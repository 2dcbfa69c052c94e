"""Votes across the cascade (issue 13, item 4; docs/cascade.md, "Votes across nodes").

* `vote.opened` / `vote.closed` (down): a vote opened at the owner opens on every mirror
  (a local vote, on a local agenda item mapped to the owner's, `CascadeRef`), so each node's
  delegates vote through its own tablets and ballot box: a secret ballot is sealed, counted
  and stored where it was cast, and nothing linking it to its voter leaves that node. The
  close carries the owner's result, which replaces the mirror's own on its tablets.
* `vote.tally` (up): each mirror reports its OWN ballots (not its children's, which report
  theirs: nothing is counted twice), a snapshot with a growing revision, at once after
  ballots are stored and on every tally push; open votes with names, secret votes with
  their turnout only, and their counts once, after the mirror closed its part. The owner
  checks and counts it (server/cascade/topic/vote_receive.py); an intermediate node checks
  it against the seats it holds for that node on the way (`forward`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import audit, meeting_nodes, procedure, votes
from rooms.audit import AuditKind
from rooms.cascade_models import CascadeEntry
from rooms.errors import DomainError
from rooms.models import Meeting, Site, User
from rooms.procedure_models import (
    AgendaItem,
    Attendance,
    Threshold,
    Vote,
    VoteBase,
    VoteKind,
    VoteParticipation,
    VoteStatus,
)
from rooms.remote_floor import CascadeRef, proxy_user, ref_get, ref_put
from server.cascade.schemas import NodeError, validate
from server.cascade.topic.vote_receive import receive_tally
from server.cascade.topic.vote_schemas import VoteClosedData, VoteOpenedData, VoteTallyData
from server.cascade.topics import Entry, Report, Topic, decode
from server.core import keys
from server.procedure.events import BallotsCast, VoteUpdated
from server.procedure.keys import LIVE
from server.procedure.views import vote_emit

if TYPE_CHECKING:
    from server.cascade.state import MeetingState

log = logging.getLogger(__name__)
OPENED, CLOSED, TALLY = "vote.opened", "vote.closed", "vote.tally"
SWEEP_S = 5.0
APPLY_WAIT_S = 5.0  # a child's report for a vote this node's journal is applying waits


def install(app: web.Application, state: MeetingState) -> None:
    app.cleanup_ctx.append(register(app, state).sweeping)


def register(app: web.Application, state: MeetingState) -> CascadeVotes:
    """The vote topics and what they follow on the bus (`install` adds the sweep)."""
    votes_ = CascadeVotes(app, state)
    state.register(Topic(OPENED, VoteOpenedData, "down", apply=votes_.apply_opened,
                         keeps=True))
    state.register(Topic(CLOSED, VoteClosedData, "down", apply=votes_.apply_closed,
                         keeps=True))
    state.register(Topic(TALLY, VoteTallyData, "up",
                         receive=lambda m, via, r: receive_tally(app, m, via, r),
                         forward=votes_.forward_tally,
                         supersedes=lambda data: data.get("vote")))  # snapshots of a vote
    app[keys.BUS].subscribe(VoteUpdated, votes_.on_vote_updated)
    app[keys.BUS].subscribe(BallotsCast, votes_.on_ballots)
    return votes_


class CascadeVotes:
    def __init__(self, app: web.Application, state: MeetingState) -> None:
        self.app, self.state = app, state
        node = app[keys.SETTINGS].node
        self.unit = node.unit if node is not None else "local"
        self._journaled: dict[tuple[int, int], str] = {}  # owner: (meeting, vote) -> last sent
        self._reporting: dict[int, asyncio.Task[None]] = {}  # mirror: local vote -> task
        self._again: set[int] = set()
        self._last: dict[int, str] = {}  # mirror: local vote -> last snapshot reported
        self._storing = asyncio.Lock()  # a snapshot compared with `_last` and stored at once
        self._tasks: set[asyncio.Task[None]] = set()
        self._unmirrored: set[tuple[str, int]] = set()  # intermediate: logged once each
        self._opened: set[int] = set()  # mirror: votes whose opening reports itself

    async def sweeping(self, _: web.Application) -> AsyncIterator[None]:
        """Every SWEEP_S, and after a restart: each open mirrored vote's snapshot again if
        it changed since the last one reported (a report that could not be stored, a crash
        between a ballot's commit and its report), so a stored ballot always reaches up."""
        task = asyncio.create_task(self._sweep(), name="cascade-vote-sweep")
        yield
        task.cancel()
        await asyncio.gather(task, *self._tasks, return_exceptions=True)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                async with self.app[keys.DB].session() as s:
                    rows = await s.exec(select(Vote.meeting_id, Vote.id)
                                        .join(Meeting, col(Meeting.id) == col(Vote.meeting_id))
                                        .where(Vote.status == VoteStatus.open,
                                               col(Meeting.cascade_key).is_not(None)))
                    open_votes = list(rows.all())
                for meeting_id, vote_id in open_votes:
                    self.report_soon(meeting_id, vote_id)  # type: ignore[arg-type]
            except Exception:
                log.exception("cascade: the vote sweep failed")

    # --- bus: the owner journals, a mirror reports --------------------------------------

    async def on_vote_updated(self, event: VoteUpdated) -> None:
        async with self.app[keys.DB].session() as s:
            meeting = await s.get(Meeting, event.meeting_id)
            if meeting is None:
                return
            if meeting.cascade_key is None:
                await self._journal(s, meeting, event)
                return
        if event.status == VoteStatus.open.value and event.vote_id not in self._opened:
            self.report_soon(event.meeting_id, event.vote_id)

    async def on_ballots(self, event: BallotsCast) -> None:
        """Ballots stored at a mirror: their snapshot is in the outbox (stored here) before
        the voters are acknowledged."""
        async with self.app[keys.DB].session() as s:
            meeting = await s.get(Meeting, event.meeting_id)
            if meeting is None or meeting.cascade_key is None:
                return
        await self.report_tally(event.meeting_id, event.vote_id)

    async def _journal(self, s: AsyncSession, meeting: Meeting, event: VoteUpdated) -> None:
        vote = await s.get(Vote, event.vote_id)
        if vote is None or meeting.id is None:
            return
        done = self._journaled.get((meeting.id, event.vote_id))
        if vote.status == VoteStatus.open:
            if done is None and not await ref_get(s, meeting.id, f"sent:open:{vote.id}"):
                item = await s.get(AgendaItem, vote.agenda_item_id)
                sent = await self.state.publish(meeting.id, OPENED, {
                    "vote": vote.id, "item": vote.agenda_item_id,
                    "item_title": (item.title if item else "") or "?",
                    "question": vote.question, "options": votes.options_of(vote),
                    "custom_options": vote.custom_options, "secret": vote.secret,
                    "allow_change": vote.allow_change, **rules_of(vote)})
                if sent is not None:
                    await ref_put(s, meeting.id, f"sent:open:{vote.id}", sent.seq)
                    await s.commit()
            self._journaled[(meeting.id, event.vote_id)] = "open"
            return
        result = json.loads(vote.result_json or "{}")
        if vote.secret:  # a ward never sees another ward's secret counts
            result["nodes"] = [{k: v for k, v in n.items() if k != "counts"}
                               for n in result.get("nodes", [])]
        text = json.dumps(result, sort_keys=True)
        if done == text:
            return
        revision = await ref_get(s, meeting.id, f"sent:close:{vote.id}") or 0
        sent = await self.state.publish(meeting.id, CLOSED, {
            "vote": vote.id, "result": result, "revision": revision + 1})
        if sent is not None:
            await ref_put(s, meeting.id, f"sent:close:{vote.id}", revision + 1)
            await s.commit()
        self._journaled[(meeting.id, event.vote_id)] = text

    # --- a mirror's reports -------------------------------------------------------------

    def report_soon(self, meeting_id: int, vote_id: int) -> None:
        if vote_id in self._reporting:
            self._again.add(vote_id)
            return
        task = asyncio.create_task(self._report_loop(meeting_id, vote_id))
        self._reporting[vote_id] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report_loop(self, meeting_id: int, vote_id: int) -> None:
        try:
            while True:
                self._again.discard(vote_id)
                await self.report_tally(meeting_id, vote_id)
                if vote_id not in self._again:
                    return
        except Exception:
            log.exception("cascade: reporting the tally of vote %s failed", vote_id)
        finally:
            self._reporting.pop(vote_id, None)

    async def report_tally(self, meeting_id: int, vote_id: int) -> None:
        """This node's own ballots for the vote, as one snapshot, into the outbox."""
        async with self.app[LIVE].lock(meeting_id), self.app[keys.DB].session() as s:
            data = await snapshot(s, meeting_id, vote_id)
        if data is not None:
            await self._report(meeting_id, vote_id, data)

    async def _report(self, meeting_id: int, vote_id: int, data: dict[str, Any]) -> None:
        """Into the outbox, unless the owner already has the same figures (a tally push
        with no new ballot). Compared and stored under one lock: a batch of ballots asks
        once per ballot (`BallotsCast`), each with the same snapshot, and while the first
        was being stored the others found `_last` not set yet and stored it too (the
        owner refused those copies as stale). One waiting finds it stored and returns."""
        same = json.dumps({k: v for k, v in data.items() if k != "revision"}, sort_keys=True)
        async with self._storing:
            if self._last.get(vote_id) == same:
                return
            await self.state.report(meeting_id, TALLY, data)
            self._last[vote_id] = same

    def _reported(self, vote: Vote, counted: dict[str, Any]) -> bool:
        """Whether this node's last snapshot in its outbox has every ballot of an open vote
        the close `counted`: ballots are only added (not `allow_change`), so the same number
        cast with the same counts are the same ballots, and a last snapshot would tell the
        owner nothing (after the close, when every mirror's last one went up at once, they
        held the result back at the other nodes). Unknown after a restart: sent."""
        last = self._last.get(vote.id or 0)
        if last is None or vote.allow_change or vote.secret:
            return False
        sent = json.loads(last)
        return bool(sent.get("cast") == min(counted["cast"], counted["members"])
                    and sent.get("counts") == counted["totals"])

    async def forward_tally(self, meeting_id: int, child: str, report: Report) -> None:
        """Passing a child's report up: held to the seats this node holds for it (the
        owner's list, on this mirror) and to its vote being one this node mirrors."""
        data = validate(VoteTallyData, report.data)
        async with self.app[keys.DB].session() as s:
            seats = await meeting_nodes.node_seats(s, meeting_id)
            if report.origin not in seats and report.origin != child:
                raise NodeError("forbidden", f"{report.origin[:64]} is not among the "
                                "meeting's nodes")
            if data.members > seats.get(report.origin, seats.get(child, 0)):
                raise NodeError("over_seats", f"{report.origin} reports {data.members} members")
            mirrored = await ref_get(s, meeting_id, f"vote:{data.vote}") is not None
        if not mirrored and await self.state.journal.applying(APPLY_WAIT_S):
            # This node passes the owner's vote.opened on to its children before applying
            # it, so a child's first reports may come first: refused, the child would not
            # send the same snapshot again and its ballots would never be counted.
            async with self.app[keys.DB].session() as s:
                mirrored = await ref_get(s, meeting_id, f"vote:{data.vote}") is not None
        if not mirrored and await self._in_journal(report.key, data.vote):
            # The owner opened it and this node could not (its applier failed): the owner,
            # not this node, decides (counted while open, `late` after its close), so the
            # child's ballots are neither held here for ever nor refused for this node's fault.
            if (report.key, data.vote) not in self._unmirrored:
                self._unmirrored.add((report.key, data.vote))
                log.warning("cascade: vote %s of %s is not open here; reports for it go on "
                            "to the owner", data.vote, report.key)
            return
        if not mirrored:
            # not yet here (its opening behind): the child keeps it and sends it again
            raise NodeError("not_yet", f"vote {data.vote} is not open here")

    async def _in_journal(self, key: str, vote: int) -> bool:
        """Whether this node's copy of the owner's journal opens or closes `vote` (a vote
        entry is stored by its applier's commit, or by the journal once the applier failed)."""
        async with self.app[keys.DB].session() as s:
            rows = await s.exec(select(CascadeEntry.data).where(
                CascadeEntry.key == key, col(CascadeEntry.topic).in_((OPENED, CLOSED))))
            return any(decode(text).get("vote") == vote for text in rows.all())

    # --- appliers at a mirror -----------------------------------------------------------

    async def apply_opened(self, meeting_id: int, entry: Entry) -> None:
        """The owner's vote opened here as a local vote, stored with the entry in one
        commit (`Entry.keep`); the vote's and its item's marks in one read."""
        data = validate(VoteOpenedData, entry.data)
        live = self.app[LIVE]
        async with live.lock(meeting_id), self.app[keys.DB].session() as s:
            vote_ref, item_ref = f"vote:{data.vote}", f"item:{data.item}"
            marks = await _marks(s, meeting_id, vote_ref, item_ref)
            if vote_ref in marks:
                return  # applied before (idempotent)
            state = await procedure.lock(s, meeting_id)
            item = await _local_item(s, meeting_id, data.item, data.item_title,
                                     marks.get(item_ref))
            for other in await votes.votes_of(s, meeting_id):  # one open vote at a time
                if other.status == VoteStatus.open:
                    live.cancel_tally(other.id)  # type: ignore[arg-type]
                    await votes.close_vote(s, other, live.key)
            owner_unit = entry.key.rpartition("/")[0]
            owner = await proxy_user(s, owner_unit, 1, owner_unit)
            try:  # the owner's rules: kind, base, threshold (never this node's defaults)
                vote = await votes.open_vote(s, state, owner, votes.NewVote(
                    item.id, data.question, data.secret, data.allow_change,  # type: ignore[arg-type]
                    tuple(data.options) if data.custom_options else None,
                    VoteKind(data.kind), VoteBase(data.base), Threshold(data.threshold)),
                    live.key)
            except DomainError as exc:  # logged, and the journal goes on
                log.warning("cascade: vote %s of %s not opened here: %s", data.vote,
                            entry.key, exc)
                return
            assert vote.id is not None
            if data.time_limit_s is not None:  # the owner's deadline; the owner closes it
                vote.closes_at = data.opened_at + timedelta(seconds=data.time_limit_s)
                s.add(vote)
            s.add(CascadeRef(meeting_id=meeting_id, ref=vote_ref, local_id=vote.id))  # none yet
            await audit.record(s, meeting_id, None, AuditKind.vote_opened, {
                "vote_id": vote.id, "owner_vote_id": data.vote, "from": entry.key,
                "question": vote.question, "secret": vote.secret, "kind": data.kind,
                "base": data.base, "threshold": data.threshold,
                "closes_at": vote.closes_at.isoformat() if vote.closes_at else None})
            counted = await votes.tally(s, vote)  # once: the tablets' view, the first report
            emit = "vote:updated", {"vote": votes.vote_dict(vote, counted)}
            seq = state.seq
            if entry.keep is not None:
                await entry.keep(s)
            await s.commit()
        self._opened.add(vote.id)  # its first snapshot is made below, not on its VoteUpdated
        await live.emit(meeting_id, seq, [emit])
        await self._first_report(meeting_id, vote, data.vote, seq, counted)

    async def _first_report(self, meeting_id: int, vote: Vote, owner_vote: int, seq: int,
                            counted: dict[str, Any]) -> None:
        """The node's first snapshot of a vote it opened, from the opening's own count while
        the meeting's procedure is still at the opening's seq (no ballot since: every batch
        moves it); else counted again, as any snapshot. At every mirror at every opening,
        the vote used to be counted twice, once for the tablets and once for this report."""
        try:
            async with self.app[LIVE].lock(meeting_id), self.app[keys.DB].session() as s:
                if (await procedure.read_state(s, meeting_id)).seq == seq:
                    data: dict[str, Any] | None = await _share(s, vote, owner_vote, seq,
                                                               counted)
                else:
                    data = await snapshot(s, meeting_id, vote.id)  # type: ignore[arg-type]
            if data is not None:
                await self._report(meeting_id, vote.id, data)  # type: ignore[arg-type]
        except Exception:  # the sweep sends it (SWEEP_S)
            log.exception("cascade: the first report of vote %s failed", vote.id)
        finally:
            self._opened.discard(vote.id or 0)

    async def apply_closed(self, meeting_id: int, entry: Entry) -> None:
        """The owner's result on this node's vote (closed here first if it was open), stored
        with the entry in one commit and pushed to the tablets; only then this node's last
        snapshot of an open vote (a ballot not yet reported goes up, late), made from the
        close's own count: no statement on the way of the result that is not its own."""
        data = validate(VoteClosedData, entry.data)
        live = self.app[LIVE]
        final: dict[str, Any] | None = None
        closed_here = False  # by this apply: its last snapshot goes up
        async with live.lock(meeting_id), self.app[keys.DB].session() as s:
            vote = await _local_vote(s, meeting_id, data.vote)
            if vote is None:
                return
            state = await procedure.lock(s, meeting_id)
            mine: dict[str, Any] | None = None
            if vote.status == VoteStatus.open:
                live.cancel_tally(vote.id)  # type: ignore[arg-type]
                mine = await votes.close_vote(s, vote, live.key)
                closed_here = True
                await audit.record(s, meeting_id, None, AuditKind.vote_closed, {
                    "vote_id": vote.id, "owner_vote_id": data.vote, "from": entry.key,
                    "cast": mine.get("cast"), "voters": sorted(await votes.participants(s, vote))
                    if vote.secret else None})
            else:
                mine = json.loads(vote.result_json or "{}").get("local")
            vote.result_json = json.dumps({**data.result, "local": mine}, ensure_ascii=False)
            s.add(vote)
            emit = await vote_emit(s, vote.id)  # type: ignore[arg-type]
            seq = state.seq
            if entry.keep is not None:
                await entry.keep(s)
            await s.commit()
        await live.emit(meeting_id, seq, [emit])  # the result first: tablets wait on it
        if closed_here and mine is not None and vote.secret:
            final = _final_snapshot(data.vote, seq, mine)
        elif closed_here and mine is not None and not self._reported(vote, mine):
            # Its ballots are those the close counted (none is taken once it is closed).
            async with live.lock(meeting_id), self.app[keys.DB].session() as s:
                final = await _share(s, vote, data.vote, seq, mine)
        if final is not None:
            await self._report(meeting_id, vote.id, final)  # type: ignore[arg-type]
        if vote.secret:
            live.scrub_soon()


def rules_of(vote: Vote) -> dict[str, Any]:
    """The rules a mirror opens the vote with (VoteOpenedData): kind, base, threshold and
    the time limit from the owner's opening."""
    opened = vote.opened_at if vote.opened_at.tzinfo else vote.opened_at.replace(tzinfo=UTC)
    limit = None
    if vote.closes_at is not None:
        closes = vote.closes_at if vote.closes_at.tzinfo else vote.closes_at.replace(tzinfo=UTC)
        limit = round((closes - opened).total_seconds())
    return {"kind": vote.kind.value, "base": vote.base.value,
            "threshold": vote.threshold.value, "opened_at": opened.isoformat(),
            "time_limit_s": limit}


async def _marks(s: AsyncSession, meeting_id: int, *refs: str) -> dict[str, int]:
    rows = await s.exec(select(CascadeRef.ref, CascadeRef.local_id).where(
        CascadeRef.meeting_id == meeting_id, col(CascadeRef.ref).in_(refs)))
    return dict(rows.all())


async def _local_vote(s: AsyncSession, meeting_id: int, owner_vote: int) -> Vote | None:
    """This node's vote for the owner's, through its mark, in one read."""
    rows = await s.exec(select(Vote).join(CascadeRef, (col(CascadeRef.local_id) == col(Vote.id))
                                          & (col(CascadeRef.meeting_id) == meeting_id)
                                          & (col(CascadeRef.ref) == f"vote:{owner_vote}")))
    return rows.first()


async def _local_item(s: AsyncSession, meeting_id: int, owner_item: int, title: str,
                      local: int | None) -> AgendaItem:
    """The mirror's agenda item for the owner's item (`local`: its mark), made on first
    use. The row is returned, and so kept in the session: open_vote's check of the item
    finds it there instead of reading it again."""
    item = await s.get(AgendaItem, local) if local is not None else None
    if item is not None:
        return item
    count = len((await s.exec(select(AgendaItem.id).where(
        AgendaItem.meeting_id == meeting_id))).all())
    item = AgendaItem(meeting_id=meeting_id, position=count + 1, title=title[:300])
    s.add(item)
    await s.flush()
    assert item.id is not None
    await ref_put(s, meeting_id, f"item:{owner_item}", item.id)
    return item


async def snapshot(s: AsyncSession, meeting_id: int, vote_id: int) -> dict[str, Any] | None:
    """This node's own share of a mirrored open vote (None for a vote of its own). Made at
    each ballot and tally push at every mirror: the vote with the owner's id in one read,
    and the procedure state kept while the tally runs (its get finds it in the session)."""
    found = (await s.exec(select(Vote, CascadeRef.ref).join(
        CascadeRef, (col(CascadeRef.local_id) == col(Vote.id))
        & (col(CascadeRef.meeting_id) == meeting_id)
        & col(CascadeRef.ref).startswith("vote:")).where(Vote.id == vote_id))).first()
    if found is None or found[0].status != VoteStatus.open:
        return None
    vote, ref = found
    state = await procedure.read_state(s, meeting_id)  # read first: never newer
    return await _share(s, vote, int(ref.partition(":")[2]), state.seq,
                        await votes.tally(s, vote))


async def _share(s: AsyncSession, vote: Vote, owner_vote: int, revision: int,
                 tally: dict[str, Any]) -> dict[str, Any]:
    """This node's share of the vote as `tally` counted it: at a mirror, its members and
    present members are this node's own (rooms.remote_votes.part adds nothing there), so
    they are not counted again. An open vote's voters and who has not voted yet with it."""
    members = tally["members"]
    data: dict[str, Any] = {
        "vote": owner_vote, "revision": revision, "secret": vote.secret,
        "members": members, "present": tally["present"],
        "cast": min(tally["cast"], members), "not_voted": tally["not_voted"]}
    if not vote.secret:
        data["counts"] = tally["totals"]
        data["voters"] = await _voters(s, vote)
        pending = await votes.pending_voters(s, vote)
        data["pending"] = [{"user": p["user_id"], "name": p["name"]}
                           for p in pending["names"] or []]
    return data


def _final_snapshot(owner_vote: int, revision: int, result: dict[str, Any]) -> dict[str, Any]:
    """A secret vote's counts at this node, once, after its close here (`result`: the
    close's count, `revision`: its seq)."""
    return {"vote": owner_vote, "revision": revision, "secret": True, "final": True,
            "members": result["members"], "present": result["present"],
            "cast": result["cast"], "not_voted": result.get("not_voted", 0),
            "counts": result["totals"]}


async def _voters(s: AsyncSession, vote: Vote) -> list[dict[str, Any]]:
    rows = await s.exec(select(VoteParticipation.user_id, VoteParticipation.option,
                               User.full_name, Site.name)
                        .join(User, col(User.id) == col(VoteParticipation.user_id))
                        .outerjoin(Attendance, (col(Attendance.user_id)
                                                == col(VoteParticipation.user_id))
                                   & (col(Attendance.meeting_id) == vote.meeting_id))
                        .outerjoin(Site, col(Site.id) == col(Attendance.site_id))
                        .where(VoteParticipation.vote_id == vote.id)
                        .order_by(col(VoteParticipation.user_id)))
    return [{"user": uid, "name": name, "option": option, "site": site or ""}
            for uid, option, name, site in rows.all() if option is not None]
