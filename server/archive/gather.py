"""What goes into a meeting's archive, read from the database and the data directory:

- the minutes: the newest version's signed file when it has been signed (the chair's over
  the secretary's), else the generated PDF (rooms/minutes_signing.py, when present);
- the documents as presented: every version the timeline shows on screen, plus the current
  version of each published document; the sanitised copy exactly as stored, and beside it
  the same version with the meeting-shared annotations (visibility `meeting`: never private
  or presenter-only ink), made by documents/export.py in the worker pool;
- the recordings (finished ones: a recording still running here is left out, and said so)
  with each one's timeline as JSON;
- the meeting chat, whole (messages to everyone, private ones to the chair and secretariat,
  and those the chair hid, marked so): the record the chat export gives the managers;
- the audit chain, whole, with its head.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from documents import oplog
from documents.annotations import Annotation, Visibility
from documents.archive_format import Member
from documents.db_models import AnnotationOp, Document, DocumentVersion
from rooms import audit, chat, minutes, recording_log
from rooms.errors import NotFound
from rooms.models import Meeting
from rooms.procedure_models import AuditHead
from rooms.recording_log import Kind

logger = logging.getLogger(__name__)
MEDIA_SUFFIXES = (".webm", ".ts", ".mkv")


@dataclass(frozen=True)
class ToAnnotate:
    """A document version whose shared annotations are exported in the worker pool."""

    path: str  # its member path
    source: Path  # the sanitised PDF
    annotations: list[dict[str, Any]]
    confidential: bool
    about: dict[str, Any]


@dataclass
class Plan:
    header: dict[str, Any]
    members: list[Member] = field(default_factory=list)
    annotate: list[ToAnnotate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


async def plan(session: AsyncSession, meeting_id: int, data_dir: Path, documents_root: Path,
               running_recording_ids: set[int]) -> Plan:
    meeting = await session.get(Meeting, meeting_id)
    if meeting is None:
        raise NotFound("meeting not found")
    head = await session.get(AuditHead, meeting_id)
    result = Plan(header={
        "meeting": {"id": meeting_id, "title": meeting.title, "status": meeting.status.value,
                    "starts_at": _iso(meeting.starts_at), "opened_at": _iso(meeting.opened_at),
                    "closed_at": _iso(meeting.closed_at)},
        "audit_head": {"seq": head.seq if head else 0,
                       "hash": head.hash if head else audit.GENESIS}})
    await _minutes(session, meeting_id, result)
    presented = await _recordings(session, meeting_id, data_dir, running_recording_ids, result)
    await _documents(session, meeting_id, documents_root, presented, result)
    await _chat(session, meeting_id, result)
    await _audit(session, meeting_id, result)
    return result


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment is not None else None


async def _minutes(session: AsyncSession, meeting_id: int, out: Plan) -> None:
    try:
        row = await minutes.get_pdf(session, meeting_id, None)
    except NotFound:
        out.notes.append("no minutes have been generated")
        return
    out.members.append(Member(f"minutes/minutes-v{row.version}.pdf", "minutes", data=row.pdf,
                              about={"version": row.version}))
    try:  # signed minutes (issue 16, item 5) when that module is part of this build
        from rooms import minutes_signing
    except ImportError:
        return
    try:
        signed = await minutes_signing.signed_file(session, meeting_id, row.version)
    except NotFound:
        out.notes.append(f"minutes version {row.version} is not signed")
        return
    out.members.append(Member(f"minutes/minutes-v{row.version}-signed.pdf", "minutes_signed",
                              data=signed.pdf, about={"version": row.version,
                                                      "signed_by": signed.role.value}))


async def _recordings(session: AsyncSession, meeting_id: int, data_dir: Path,
                      running: set[int], out: Plan) -> set[tuple[int, int]]:
    """The recordings' files and timelines; returns the (document, version) pairs shown."""
    shown: set[tuple[int, int]] = set()
    for row in await recording_log.recordings(session, meeting_id):
        assert row.id is not None
        if row.id in running:
            out.notes.append(f"recording {row.directory} is still running: left out")
            continue
        entries = await recording_log.entries(session, row.id)
        for e in entries:
            d = e["data"]
            if e["kind"] == Kind.presented and d.get("active") and d.get("document_id"):
                shown.add((int(d["document_id"]), int(d["version"])))
        folder = data_dir / "recordings" / str(meeting_id) / row.directory
        if not _plain_name(row.directory):
            continue
        files = sorted(p for p in folder.glob("*") if p.suffix in MEDIA_SUFFIXES
                       and p.is_file()) if folder.is_dir() else []
        if not files:
            out.notes.append(f"recording {row.directory}: no files on disk (deleted?)")
        for path in files:
            out.members.append(Member(f"recordings/{row.directory}/{path.name}", "recording",
                                      source=path, about={"recording_id": row.id}))
        timeline = {"recording": recording_log.recording_dict(row), "entries": entries}
        out.members.append(Member(f"timeline/{row.directory}.json", "timeline",
                                  data=_json(timeline), about={"recording_id": row.id}))
    return shown


def _plain_name(name: str) -> bool:
    return bool(name) and all(c.isalnum() or c in "-_T" for c in name)


async def _documents(session: AsyncSession, meeting_id: int, root: Path,
                     shown: set[tuple[int, int]], out: Plan) -> None:
    docs = {d.id: d for d in (await session.exec(
        select(Document).where(Document.meeting_id == meeting_id))).all()}
    wanted = {(i, d.version) for i, d in docs.items()
              if i is not None and d.published and not d.withdrawn}
    wanted |= {(d, v) for d, v in shown if d in docs}
    for doc_id, number in sorted(wanted):
        doc = docs[doc_id]
        version = (await session.exec(select(DocumentVersion).where(
            DocumentVersion.document_id == doc_id, DocumentVersion.number == number))).first()
        if version is None or not version.has_safe_copy:
            out.notes.append(f"document {doc_id} version {number}: no sanitised copy, left out")
            continue
        source = root / "derived" / version.sha256[:2] / version.sha256[2:4] / \
            version.sha256 / "default" / "document.pdf"
        if not source.is_file():
            out.notes.append(f"document {doc_id} version {number}: file missing, left out")
            continue
        about = {"document_id": doc_id, "version": number, "title": doc.title,
                 "presented": (doc_id, number) in shown, "confidential": doc.confidential,
                 "sha256_stored": version.sha256}
        base = f"documents/{doc_id}-v{number}"
        out.members.append(Member(f"{base}/document.pdf", "document", source=source,
                                  about=about))
        shared = await shared_annotations(session, doc_id, number, version.page_sizes or [])
        if shared:
            out.annotate.append(ToAnnotate(f"{base}/annotated.pdf", source,
                                           [a.to_dict() for a in shared], doc.confidential,
                                           {**about, "annotations": len(shared)}))


async def shared_annotations(session: AsyncSession, document_id: int, version: int,
                             sizes: list[list[float]]) -> list[Annotation]:
    """The annotations everyone in the meeting sees on that version (none private)."""
    rows = (await session.exec(select(AnnotationOp.record).where(
        AnnotationOp.document_id == document_id, AnnotationOp.version == version))).all()
    if not rows:
        return []
    log = oplog.rebuild(str(document_id), [(w, h) for w, h in sizes], list(rows))
    return [a for a in log.all_annotations() if a.visibility is Visibility.MEETING]


async def _chat(session: AsyncSession, meeting_id: int, out: Plan) -> None:
    messages = [chat.message_dict(m) for m in await chat.record(session, meeting_id)]
    if messages:
        out.members.append(Member("chat/messages.json", "chat", data=_json(
            {"meeting_id": meeting_id, "messages": messages}), about={"messages": len(messages)}))


async def _audit(session: AsyncSession, meeting_id: int, out: Plan) -> None:
    """Up to the head read at the start (entries appended since are the next archive's)."""
    last = out.header["audit_head"]["seq"]
    entries: list[dict[str, Any]] = []
    after = 0
    while after < last and (batch := await audit.entries(session, meeting_id, after_seq=after,
                                                         limit=min(2000, last - after))):
        entries += [audit.entry_dict(e) for e in batch]
        after = batch[-1].seq
    chain = {"meeting_id": meeting_id, "head": out.header["audit_head"], "entries": entries}
    out.members.append(Member("audit/chain.json", "audit", data=_json(chain),
                              about={"entries": len(entries)}))


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True).encode()
