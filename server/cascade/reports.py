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
from server.cascade.schemas import NodeError, shown
from server.cascade.topics import Entry, Report, Topics, decode, encode

log = logging.getLogger(__name__)

MAX_BATCH = 50  # reports per delivery
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

    # -- the outbox --------------------------------------------------------------------------
    async def store(self, key: str, topic: str, data: dict[str, Any],
                    origin: str | None = None, report_id: str | None = None) -> Report:
        """Committed to this node's outbox; delivered in the background."""
        async with self.db.session() as s:
            report = self.add(s, key, topic, data, origin, report_id)
            await s.commit()
        return report

    def add(self, s: AsyncSession, key: str, topic: str, data: dict[str, Any],
            origin: str | None = None, report_id: str | None = None,
            ahead: bool = False) -> Report:
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
                            data=encode(data)))
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
        async with self.db.session() as s:
            rows = list((await s.exec(select(CascadeReport)
                                      .where(CascadeReport.state == "pending")
                                      .order_by(col(CascadeReport.n)).limit(limit))).all())
        # Answered before their commit: committed now (here), settled by that answer, not
        # sent again; an answer whose commit ended without a row here is dropped.
        early = [self._early.pop(r.id) for r in rows if r.id in self._early]
        for gone in [i for i in self._early if i not in self._passing]:
            del self._early[gone]
        answered = {o["id"] for o in early}
        if early:
            await self.settle(early)
            rows = [r for r in rows if r.id not in answered]
        ids = {r.id for r in rows} | self._offered | answered
        passing = [r for r in passing if r.id not in ids][:max(0, limit - len(rows))]
        self._offered |= {r.id for r in passing}
        return rows + passing

    async def pending_counts(self) -> dict[str, int]:
        """Undelivered reports held here, per meeting key."""
        async with self.db.session() as s:
            rows = await s.exec(select(CascadeReport.key, func.count())
                                .where(CascadeReport.state == "pending")
                                .group_by(CascadeReport.key))
            return {key: int(n) for key, n in rows.all()}

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
                if state == "refused":
                    error = outcome.get("error") or {}
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

    async def refused_here(self, entry: Entry) -> None:
        """The `report.refused` entry: if the report is in this outbox, it says why
        (whatever its state: one conditional UPDATE, as in `settle`)."""
        reason = f"{entry.data['code']}: {entry.data['message']}"[:300]
        async with self.db.session() as s:
            await s.exec(update(CascadeReport)
                         .where(and_(col(CascadeReport.id) == entry.data["id"],
                                     col(CascadeReport.state) != "refused"))
                         .values(state="refused", reason=reason))
            await s.commit()

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
            log.warning("cascade: refused report %s (%s) from %s: %s: %s", report.id,
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
        async with self.db.session() as s:
            held = (await s.exec(select(CascadeReport)
                                 .where(CascadeReport.id == report.id))).first()
        if held is not None:
            if held.state == "refused":
                code, _, message = (held.reason or "refused: ").partition(": ")
                return {"id": report.id, "state": "refused",
                        "error": {"code": code, "message": message}}
            return {"id": report.id, "state": "stored"}
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
            await self.store(report.key, report.topic, report.data, report.origin, report.id)
        except IntegrityError:
            pass  # stored by a concurrent delivery of the same report
        finally:
            self._passing.pop(report.id, None)
            self._offered.discard(report.id)
        return {"id": report.id, "state": "stored"}
