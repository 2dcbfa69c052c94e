"""Reports from every node towards a meeting's owner (docs/cascade.md, "Meeting state
across nodes").

A report is stored (committed) at the node where it happened before anybody is told it
is: "stored at the ward" is a promise that survives the WAN link, a restart, a crash. Each
node then delivers its pending reports, oldest first, to its parent, which either applies
them (the owner: the topic's receiver, once per report id; a replay is answered from the
record of the first) or stores them in its own outbox under the same id and passes them on
(store and forward; an intermediate node passes a report on while it stores it, so the
owner hears of it one commit sooner: the child is answered "stored" only once it is). A
refusal (a ballot for a vote already closed: "late"; a report that
breaks the rules) is answered to the node it came from, stored on its outbox row, logged,
and told down the tree as the journal entry `report.refused` so that the origin node learns
it too. Nothing acknowledged is ever lost: a report leaves an outbox only when the next node
up has stored or applied it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import and_, event, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import SessionTransaction
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import meeting_nodes
from rooms.cascade_models import CascadeReceived, CascadeReport
from rooms.db import Database
from rooms.models import Meeting, MeetingStatus
from server.cascade.schemas import TEMPORARY_REFUSALS, NodeError, shown
from server.cascade.topics import Entry, Report, Topics, decode, encode

log = logging.getLogger(__name__)

MAX_BATCH = 50  # reports per delivery
MAX_SKIPPED_READ = 5_000  # held-back rows an outbox read may pass in one statement (then more)
RETRY_FIRST_S, RETRY_MAX_S = 1.0, 30.0  # a temporarily refused report: doubling, bounded
# Reports this node holds for its parent (its outbox's pending rows) past which it takes no
# more from its children (`busy`): with its own link up down or slow, a flooding child would
# fill its disk; what it refuses stays in the child's outbox, and the child's in turn.
MAX_HELD = 20_000
# Past this many of one child link's reports held here, that child's are refused `busy` while
# its siblings' are still taken: one flooding child alone no longer stops every other (a
# quarter: four must flood at once to reach MAX_HELD, which still bounds the disk).
MAX_HELD_PER_CHILD = 5_000
RECOUNT_S = 1.0  # the outbox counted again at most this often (in between: + stored here)
LIVE = (MeetingStatus.scheduled, MeetingStatus.open)
REFUSED = "report.refused"  # the built-in down topic telling the origin of a refusal
Append = Callable[[str, str, dict[str, Any]], Awaitable[Entry]]  # the owner's journal


def wire(row: CascadeReport) -> dict[str, Any]:
    return {"id": row.id, "meeting": row.key, "origin": row.origin, "topic": row.topic,
            "data": decode(row.data)}


class Reports:
    def __init__(self, db: Database, unit: str, topics: Topics,
                 meeting_of: Callable[[str], Awaitable[int | None]], append: Append) -> None:
        self.db = db
        self.unit = unit
        self.topics = topics
        self.meeting_of = meeting_of
        self.append = append
        self.wake = asyncio.Event()  # set when there is something to deliver
        # Reports of a child being stored here, delivered up before their commit is done
        # (each offered for delivery once that way; after the commit, from the outbox).
        self._passing: dict[str, CascadeReport] = {}
        self._offered: set[str] = set()
        # The parent's answers to reports of `_passing` that came before their commit here
        # was done: applied to the outbox rows once it is (`pending`), so that a report the
        # parent already has is not delivered a second time from the outbox.
        self._early: dict[str, dict[str, Any]] = {}
        # Reports the parent refused for a reason that may not hold later (TEMPORARY_REFUSALS):
        # kept pending, sent again no sooner than their time (monotonic), then their delay,
        # and whether the reports after them wait too (`busy`: the parent takes nothing now,
        # and what it took later would overtake them).
        self._later: dict[str, tuple[float, float, bool]] = {}
        # For `busy`: when the outbox was last counted, its pending rows, and those of each
        # child link (plus what was stored here since).
        self._counted_at: float | None = None
        self._held = 0
        self._held_by: dict[str, int] = {}
        self._busy = False  # refusing children's reports `busy` (logged once per stretch)
        self._busy_children: set[str] = set()  # each refused at its own share (logged once)

    # -- the outbox --------------------------------------------------------------------------
    async def store(self, key: str, topic: str, data: dict[str, Any],
                    origin: str | None = None, report_id: str | None = None,
                    via: str | None = None) -> Report:
        """Committed to this node's outbox; delivered in the background. `via`: the child
        link a report passing on came through."""
        async with self.db.session() as s:
            report = self.add(s, key, topic, data, origin, report_id, via=via)
            await s.commit()
        return report

    def add(self, s: AsyncSession, key: str, topic: str, data: dict[str, Any],
            origin: str | None = None, report_id: str | None = None,
            ahead: bool = False, via: str | None = None) -> Report:
        """Into the outbox with the caller's own change, in its one commit (no commit of its
        own on the way of what caused the report); delivery starts once that commit is
        done. `ahead`: offered to delivery at once, beside that commit (the caller tells
        nobody it is stored before the commit, so that promise still waits for it; if the
        commit fails, the owner may have it already and applies a report id once, and a
        topic that makes the report again must make it so that the owner sees the same
        thing twice as once)."""
        data = self.topics.checked(topic, "up", data)
        report = Report(report_id or uuid.uuid4().hex, key, origin or self.unit, topic, data)
        s.add(CascadeReport(id=report.id, key=key, origin=report.origin, topic=topic,
                            data=encode(data), via=via))
        event.listen(s.sync_session, "after_commit", self._committed, once=True)
        if ahead:
            self._passing[report.id] = CascadeReport(id=report.id, key=key,
                                                     origin=report.origin, topic=topic,
                                                     data=encode(data))
            self.wake.set()

            def settled(_: object, transaction: SessionTransaction) -> None:
                if transaction.parent is None:  # committed or not: the outbox's from now on
                    self._passing.pop(report.id, None)
                    self._offered.discard(report.id)
            event.listen(s.sync_session, "after_transaction_end", settled)
        return report

    def _committed(self, _: object) -> None:
        self.wake.set()

    async def pending(self, limit: int = MAX_BATCH) -> list[CascadeReport]:
        """The outbox, oldest first, then the reports passing through that are still being
        stored (a child's, in arrival order)."""
        passing = list(self._passing.values())
        rows, blocked = await self._due(limit)
        # Answered before their commit: committed now (here), settled by that answer, not
        # sent again; an answer whose commit ended without a row here is dropped.
        early = [self._early.pop(r.id) for r in rows if r.id in self._early]
        for gone in [i for i in self._early if i not in self._passing]:
            del self._early[gone]
        answered = {o["id"] for o in early}
        if early:
            await self.settle(early)
            rows = [r for r in rows if r.id not in answered]
        if any(r.id in self._later for r in rows):
            dropped = await self._superseded([r for r in rows if r.id in self._later])
            rows = [r for r in rows if r.id not in dropped]
        ids = {r.id for r in rows} | self._offered | answered
        passing = [] if blocked else \
            [r for r in passing if r.id not in ids][:max(0, limit - len(rows))]
        self._offered |= {r.id for r in passing}
        return rows + passing

    async def _due(self, limit: int) -> tuple[list[CascadeReport], bool]:
        """The oldest `limit` pending rows that may go now, read past those held back by a
        temporary refusal whose time has not come (as many of them at the outbox's head as
        one read takes stopped every report behind them), up to the first held `busy`
        (nothing after it goes before it); whether one such stopped the read."""
        now = time.monotonic()
        holding = sum(1 for at, _, _ in self._later.values() if at > now)
        page = limit + min(holding, MAX_SKIPPED_READ)  # mostly one read
        rows: list[CascadeReport] = []
        after: int | None = None
        async with self.db.session() as s:
            while True:
                query = select(CascadeReport).where(CascadeReport.state == "pending")
                if after is not None:
                    query = query.where(col(CascadeReport.n) > after)
                read = list((await s.exec(query.order_by(col(CascadeReport.n))
                                          .limit(page))).all())
                for row in read:
                    at, _, busy = self._later.get(row.id, (0.0, 0.0, False))
                    if at > now and row.id not in self._early:
                        if busy:
                            return rows, True
                        continue
                    rows.append(row)
                    if len(rows) == limit:
                        return rows, False
                if len(read) < page:
                    return rows, False
                after = read[-1].n

    def held_back(self) -> int:
        """Reports waiting out a temporary refusal here (each is still pending)."""
        return len(self._later)

    async def pending_counts(self) -> dict[str, int]:
        """Undelivered reports held here, per meeting key."""
        async with self.db.session() as s:
            rows = await s.exec(select(CascadeReport.key, func.count())
                                .where(CascadeReport.state == "pending")
                                .group_by(CascadeReport.key))
            return {key: int(n) for key, n in rows.all()}

    async def states(self, key: str) -> dict[str, int]:
        """This outbox's reports of one meeting, counted per state ("pending", "delivered",
        "refused", "superseded")."""
        async with self.db.session() as s:
            rows = await s.exec(select(CascadeReport.state, func.count())
                                .where(CascadeReport.key == key)
                                .group_by(CascadeReport.state))
            return {state: int(n) for state, n in rows.all()}

    async def state_of(self, report_id: str) -> str | None:
        """"pending", "delivered" or "refused: <reason>" (None: not in this outbox)."""
        async with self.db.session() as s:
            row = (await s.exec(select(CascadeReport)
                                .where(CascadeReport.id == report_id))).first()
        if row is None:
            return None
        return f"refused: {row.reason}" if row.state == "refused" else row.state

    async def settle(self, outcomes: list[dict[str, Any]]) -> None:
        """The parent's answer to a delivery: rows taken up leave the outbox's pending set,
        refused ones keep the reason. Each change is one conditional UPDATE (only a row still
        pending), never read-then-write: a `report.refused` coming down the journal and
        committed between a read and a write was overwritten with "delivered"."""
        async with self.db.session() as s:
            for outcome in outcomes:
                report_id, state = outcome.get("id"), outcome.get("state")
                if not isinstance(report_id, str):
                    continue
                pending = and_(col(CascadeReport.id) == report_id,
                               col(CascadeReport.state) == "pending")
                error = outcome.get("error") or {}
                if state == "refused" and isinstance(error, dict) \
                        and error.get("code") in TEMPORARY_REFUSALS:
                    self._again(report_id, error)  # stays pending: sent again later
                    continue
                self._later.pop(report_id, None)
                if state == "refused":
                    reason = f"{error.get('code')}: {error.get('message')}"[:300]
                    topic = (await s.exec(update(CascadeReport).where(pending)
                                          .values(state="refused", reason=reason)
                                          .returning(col(CascadeReport.topic)))).first()
                    if topic is None and report_id in self._passing:
                        self._early[report_id] = outcome  # its commit here is not done yet
                    elif topic is not None:
                        log.warning("cascade: report %s (%s) refused upstream: %s", report_id,
                                    topic[0], reason)
                elif state in ("applied", "stored"):
                    changed = await s.exec(update(CascadeReport).where(pending)
                                           .values(state="delivered"))
                    if changed.rowcount == 0 and report_id in self._passing:
                        self._early[report_id] = outcome  # its commit here is not done yet
            await s.commit()

    def _again(self, report_id: str, error: dict[str, Any]) -> None:
        """A temporary refusal: the report is sent again after a delay that doubles with
        each refusal up to RETRY_MAX_S (a parent that never learns what is missing costs one
        delivery every RETRY_MAX_S); logged at its first refusal only."""
        _, delay, _ = self._later.get(report_id, (0.0, 0.0, False))
        if not delay:
            log.info("cascade: report %s refused upstream for now (sent again): %s: %s",
                     report_id, error.get("code"), str(error.get("message"))[:200])
        delay = min(RETRY_MAX_S, delay * 2 or RETRY_FIRST_S)
        self._later[report_id] = (time.monotonic() + delay, delay, error.get("code") == "busy")

    async def _superseded(self, held: list[CascadeReport]) -> set[str]:
        """Of the reports held back by a temporary refusal and due again, those a newer
        report of the same snapshot (`Topic.supersedes`) makes needless: settled as
        "superseded", not sent (the owner would refuse the older one as stale)."""
        gone: set[str] = set()
        async with self.db.session() as s:
            for row in held:
                topic = self.topics.find(row.topic)
                if topic is None or topic.supersedes is None:
                    continue
                same = topic.supersedes(decode(row.data))
                newer = (await s.exec(select(CascadeReport).where(
                    CascadeReport.key == row.key, CascadeReport.origin == row.origin,
                    CascadeReport.topic == row.topic, col(CascadeReport.n) > row.n,
                    col(CascadeReport.state).in_(("pending", "delivered"))))).all()
                by = next((r.id for r in newer if topic.supersedes(decode(r.data)) == same),
                          None)
                if by is None:
                    continue
                await s.exec(update(CascadeReport)
                             .where(and_(col(CascadeReport.id) == row.id,
                                         col(CascadeReport.state) == "pending"))
                             .values(state="superseded", reason=f"by {by}"[:300]))
                self._later.pop(row.id, None)
                gone.add(row.id)
            await s.commit()
        return gone

    async def refused_here(self, entry: Entry) -> None:
        """The `report.refused` entry: if the report is in this outbox, it says why
        (whatever its state: one conditional UPDATE, as in `settle`). A report held back by
        a temporary refusal leaves the hold once that is committed (no longer pending, it
        is never sent again; before the commit it still may be, if the commit fails)."""
        reason = f"{entry.data['code']}: {entry.data['message']}"[:300]
        async with self.db.session() as s:
            await s.exec(update(CascadeReport)
                         .where(and_(col(CascadeReport.id) == entry.data["id"],
                                     col(CascadeReport.state) != "refused"))
                         .values(state="refused", reason=reason))
            await s.commit()
        self._later.pop(entry.data["id"], None)

    # -- at the parent -----------------------------------------------------------------------
    async def receive(self, via: str, item: dict[str, Any]) -> dict[str, Any]:
        """One delivered report from child `via` (its schema and meeting scope are checked
        by the dispatcher): its outcome, never an exception."""
        report = Report(item["id"], item["meeting"], item["origin"], item["topic"],
                        item["data"])
        try:
            meeting_id = await self.meeting_of(report.key)
            if meeting_id is None:
                raise NodeError("not_found", f"meeting {report.key} is not live here")
            await self._check_origin(meeting_id, via, report)
            if report.key.startswith(f"{self.unit}/"):
                return await self._apply_once(meeting_id, via, report)
            return await self._pass_on(meeting_id, via, report)
        except NodeError as exc:
            # A temporary refusal comes again at each retry: the child logs it, once; `busy`
            # is logged once for the stretch (`_room`).
            if exc.code != "busy":
                log.log(logging.INFO if exc.code in TEMPORARY_REFUSALS else logging.WARNING,
                        "cascade: refused report %s (%s) from %s: %s: %s", report.id,
                        shown(report.topic), via, exc.code, exc.message)
            return {"id": report.id, "state": "refused",
                    "error": {"code": exc.code, "message": exc.message}}

    async def _check_origin(self, meeting_id: int, via: str, report: Report) -> None:
        """A child speaks for itself and the nodes below it that the meeting invites, never
        for this node nor for a node the meeting does not invite."""
        self.topics.checked(report.topic, "up", report.data)
        if report.origin == via:
            return
        async with self.db.session() as s:
            invited = await meeting_nodes.node_seats(s, meeting_id)
        if report.origin == self.unit or report.origin not in invited:
            raise NodeError("forbidden", f"{via} cannot report for {shown(report.origin)}")

    async def _apply_once(self, meeting_id: int, via: str, report: Report) -> dict[str, Any]:
        async with self.db.session() as s:
            seen = await s.get(CascadeReceived, report.id)
        if seen is not None:
            return self._outcome(seen)
        topic = self.topics.get(report.topic, "up")
        try:
            result = await topic.receive(meeting_id, via, report) if topic.receive else {}
            row = CascadeReceived(id=report.id, key=report.key, via=via, origin=report.origin,
                                  topic=report.topic, state="applied", result=encode(result))
        except NodeError as exc:
            if exc.code in TEMPORARY_REFUSALS:  # not recorded: the replay may be applied
                raise
            row = CascadeReceived(id=report.id, key=report.key, via=via, origin=report.origin,
                                  topic=report.topic, state="refused",
                                  result=encode({"code": exc.code, "message": exc.message}))
            log.warning("cascade: report %s (%s) from %s refused: %s: %s", report.id,
                        report.topic, report.origin, exc.code, exc.message)
            if report.origin != via:  # the origin is further down: tell it through the tree
                await self.append(report.key, REFUSED, {
                    "id": report.id, "origin": report.origin, "code": exc.code,
                    "message": exc.message[:200]})
        try:
            async with self.db.session() as s:
                s.add(row)
                await s.commit()
        except IntegrityError:  # the same report through another process, at the same time
            async with self.db.session() as s:
                found = await s.get(CascadeReceived, report.id)
            if found is not None:
                return self._outcome(found)
        return self._outcome(row)

    @staticmethod
    def _outcome(row: CascadeReceived) -> dict[str, Any]:
        if row.state == "refused":
            return {"id": row.id, "state": "refused", "error": decode(row.result)}
        return {"id": row.id, "state": "applied", "result": decode(row.result)}

    async def _pass_on(self, meeting_id: int, via: str, report: Report) -> dict[str, Any]:
        """An intermediate node: into this node's outbox under the same id (a replay finds
        it there), after the topic's forwarder had its say."""
        async with self.db.session() as s:  # the row and whether the meeting ended: one read
            found = (await s.exec(
                select(Meeting.status, CascadeReport).select_from(Meeting)
                .outerjoin(CascadeReport, col(CascadeReport.id) == report.id)
                .where(col(Meeting.id) == meeting_id))).first()
        held = found[1] if found is not None else None
        ended = found is not None and found[0] not in LIVE
        if held is not None:
            if held.state == "refused":
                code, _, message = (held.reason or "refused: ").partition(": ")
                return {"id": report.id, "state": "refused",
                        "error": {"code": code, "message": message}}
            if ended and held.state == "pending":
                raise self._awaited(report)
            return {"id": report.id, "state": "stored"}
        await self._room(via)
        topic = self.topics.get(report.topic, "up")
        if topic.forward is not None:
            await topic.forward(meeting_id, via, report)
        # Up at once, beside this node's commit: if that fails the child is not answered
        # "stored" and sends it again; the owner applies a report id once, whoever sends it.
        self._passing[report.id] = CascadeReport(
            id=report.id, key=report.key, origin=report.origin, topic=report.topic,
            data=encode(self.topics.checked(report.topic, "up", report.data)))
        self.wake.set()
        try:
            await self.store(report.key, report.topic, report.data, report.origin, report.id,
                             via)
            self._held += 1
            self._held_by[via] = self._held_by.get(via, 0) + 1
        except IntegrityError:
            pass  # stored by a concurrent delivery of the same report
        finally:
            self._passing.pop(report.id, None)
            self._offered.discard(report.id)
        if ended:
            raise self._awaited(report)
        return {"id": report.id, "state": "stored"}

    @staticmethod
    def _awaited(report: Report) -> NodeError:
        """A report for a meeting that ended here (a ballot cast below while a link was cut):
        stored here and passed on, but the child's answer is the owner's (`late` for a closed
        vote), which no journal will tell it once the meeting is no longer followed: for now
        `not_yet`, so that the child asks again, answered from this outbox's row once the
        parent settled it (refused with its reason, or stored)."""
        return NodeError("not_yet", f"meeting {report.key} ended: report {report.id} is on "
                                    "its way to the owner, whose answer is not here yet")

    async def _room(self, via: str) -> None:
        """Backpressure: NodeError("busy") while this node's outbox holds MAX_HELD reports
        its parent has not taken, or MAX_HELD_PER_CHILD of them came through child link
        `via` (counted at most every RECOUNT_S, plus those stored here since). A refused
        report stays in the child's outbox (it is not lost: the child acknowledged it when
        it stored it) and the child sends it again later, the reports after it waiting
        behind it; another child's are still taken, until the node-wide bound."""
        now = time.monotonic()
        if self._counted_at is None or now - self._counted_at >= RECOUNT_S:
            async with self.db.session() as s:
                rows = (await s.exec(select(CascadeReport.via, func.count())
                                     .where(CascadeReport.state == "pending")
                                     .group_by(CascadeReport.via))).all()
            self._counted_at = now
            self._held = sum(int(n) for _, n in rows)
            self._held_by = {child: int(n) for child, n in rows if child is not None}
        if self._held >= MAX_HELD:
            if not self._busy:
                log.warning("cascade: the outbox holds %d reports its parent has not taken: "
                            "children's reports refused busy (they keep them) until it "
                            "drains", self._held)
                self._busy = True
            raise NodeError("busy", f"{self._held} reports wait here for the parent; "
                                    "send again later")
        if self._busy:
            log.info("cascade: the outbox holds %d reports: taking children's again",
                     self._held)
            self._busy = False
        mine = self._held_by.get(via, 0)
        if mine >= MAX_HELD_PER_CHILD:
            if via not in self._busy_children:
                log.warning("cascade: %d reports of child %s wait here for the parent (its "
                            "share: %d): its reports refused busy (it keeps them) until they "
                            "drain", mine, shown(via), MAX_HELD_PER_CHILD)
                self._busy_children.add(via)
            raise NodeError("busy", f"{mine} of your reports wait here for the parent; "
                                    "send again later")
        if via in self._busy_children:
            log.info("cascade: %d reports of child %s wait here: taking its reports again",
                     mine, shown(via))
            self._busy_children.discard(via)
