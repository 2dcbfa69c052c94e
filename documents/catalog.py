"""The documents of a meeting: who may see them, their versions, and their JSON form.

Access rules (docs/protocol.md (Documents)): members with `view` see published documents;
"managers" (roles holding `manage` or `upload_document`) see all. A document the caller may
not see is NotFound, like one that does not exist.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, and_, bindparam, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from documents.db_models import Document, DocumentStatus, DocumentVersion, PageText
from rooms import meetings
from rooms.errors import DomainError, Forbidden, NotFound
from rooms.meetings import MeetingAccess
from rooms.models import Meeting, MeetingMember, MeetingRole
from rooms.permissions import Action, allows

MANAGER_ROLES = frozenset(r for r in MeetingRole
                          if allows(r, Action.manage) or allows(r, Action.upload_document))


def is_manager(role: MeetingRole) -> bool:
    return role in MANAGER_ROLES


@dataclass(frozen=True)
class DocumentGrant:
    """The result of a document access check."""

    document: Document
    access: MeetingAccess

    @property
    def role(self) -> MeetingRole:
        return self.access.role

    @property
    def user_id(self) -> int:
        assert self.access.user.id is not None
        return self.access.user.id

    @property
    def author_id(self) -> str:
        return str(self.user_id)

    @property
    def is_presenter(self) -> bool:
        return allows(self.role, Action.present)

    @property
    def can_manage(self) -> bool:
        return is_manager(self.role)


async def require_document(session: AsyncSession, user: Any, document_id: int,
                           action: Action = Action.view) -> DocumentGrant:
    """One query in the common case (a personal member): it runs on every page fetch and
    every live event."""
    missing = NotFound(f"document {document_id} not found")
    rows = await session.exec(
        select(Document, Meeting, MeetingMember.role)
        .join(Meeting, col(Meeting.id) == Document.meeting_id)
        .outerjoin(MeetingMember, and_(col(MeetingMember.meeting_id) == Document.meeting_id,
                                       col(MeetingMember.user_id) == user.id))
        .where(Document.id == document_id))
    found = rows.first()
    if found is None:
        raise missing
    doc, meeting, role = found
    if role is not None:
        access = MeetingAccess(meeting, MeetingRole(role), user)
    else:  # not a member in person; perhaps the operator of an invited site
        try:
            access = await meetings.require(session, user, doc.meeting_id)
        except NotFound:
            raise missing from None
    verdict = _verdict(doc, access, action)
    if isinstance(verdict, DomainError):
        raise verdict
    return verdict


def _verdict(doc: Document, access: MeetingAccess, action: Action) -> DocumentGrant | DomainError:
    """A member's access to one of their meeting's documents."""
    if not doc.published and not is_manager(access.role):
        return NotFound(f"document {doc.id} not found")
    if not allows(access.role, action):
        return Forbidden(f"your role ({access.role.value}) may not {action.value} this document")
    return DocumentGrant(doc, access)


# A page image, the PDF, a search: the caller's session, the document, their access to its
# meeting and the version asked (`number`; NULL: the current one) in one read, at every
# request (rooms.meetings.session_select). Built once: only its parameters change.
GRANT_BY_TOKEN = meetings.with_membership(
    meetings.session_select(Document, DocumentVersion)
    .outerjoin(Document, col(Document.id) == bindparam("document_id"))
    .outerjoin(DocumentVersion, and_(
        col(DocumentVersion.document_id) == col(Document.id),
        col(DocumentVersion.number) == func.coalesce(bindparam("number", type_=Integer),
                                                     col(Document.version)))),
    col(Document.meeting_id))


def grant_of(row: Sequence[Any], document_id: int, action: Action = Action.view
             ) -> tuple[DocumentGrant, DocumentVersion | None] | DomainError:
    """`require_document`'s verdict from a row of GRANT_BY_TOKEN (whose session the caller
    has checked), with the version asked if it exists."""
    doc, version = row[2], row[3]
    if doc is None:
        return NotFound(f"document {document_id} not found")
    access = meetings.access_of(row, doc.meeting_id)
    if isinstance(access, NotFound):
        return NotFound(f"document {document_id} not found")
    if isinstance(access, DomainError):
        return access
    verdict = _verdict(doc, access, action)
    return verdict if isinstance(verdict, DomainError) else (verdict, version)


async def with_versions(session: AsyncSession, grant: DocumentGrant) -> list[DocumentVersion]:
    """The granted document read again together with its versions (by number), by one
    statement, so both are from one moment: a version made current meanwhile is in both or
    in neither. Two reads in one session would not do: SQLite's reads run outside any
    transaction and PostgreSQL's read committed takes a new snapshot per statement.
    `grant.document` is updated in place; a document withdrawn (or deleted) meanwhile is
    NotFound to whoever could no longer see it."""
    document_id = grant.document.id
    rows = (await session.exec(
        select(Document, DocumentVersion)
        .outerjoin(DocumentVersion, col(DocumentVersion.document_id) == Document.id)
        .where(Document.id == document_id)
        .order_by(col(DocumentVersion.number))
        .execution_options(populate_existing=True))).all()
    if not rows or not (rows[0][0].published or grant.can_manage):
        raise NotFound(f"document {document_id} not found")
    return [v for _, v in rows if v is not None]


async def meeting_document(session: AsyncSession, meeting_id: int, document_id: int) -> Document:
    """A document of this meeting; another meeting's (or none) is not found, never revealed."""
    document = await session.get(Document, document_id)
    if document is None or document.meeting_id != meeting_id:
        raise NotFound(f"document {document_id} not found in this meeting")
    return document


async def versions_of(session: AsyncSession, document_ids: list[int]
                      ) -> dict[int, list[DocumentVersion]]:
    out: dict[int, list[DocumentVersion]] = defaultdict(list)
    if not document_ids:
        return out
    rows = await session.exec(select(DocumentVersion)
                              .where(col(DocumentVersion.document_id).in_(document_ids))
                              .order_by(col(DocumentVersion.number)))
    for v in rows.all():
        out[v.document_id].append(v)
    return out


async def version(session: AsyncSession, document_id: int, number: int) -> DocumentVersion:
    rows = await session.exec(select(DocumentVersion).where(
        DocumentVersion.document_id == document_id, DocumentVersion.number == number))
    found = rows.first()
    if found is None:
        raise NotFound(f"version {number} of document {document_id} not found")
    return found


async def meeting_documents(session: AsyncSession, meeting_id: int, role: MeetingRole
                            ) -> list[Document]:
    query = select(Document).where(Document.meeting_id == meeting_id)
    if not is_manager(role):
        query = query.where(Document.published)
    rows = await session.exec(query.order_by(col(Document.created_at), col(Document.id)))
    return list(rows.all())


async def duplicate_of(session: AsyncSession, meeting_id: int, sha256: str) -> int | None:
    """A document of this meeting that already has these bytes (rejected ones do not count)."""
    rows = await session.exec(
        select(DocumentVersion.document_id).join(Document)
        .where(Document.meeting_id == meeting_id, DocumentVersion.sha256 == sha256,
               DocumentVersion.status != "rejected"))
    return rows.first()


async def manager_user_ids(session: AsyncSession, meeting_id: int) -> set[int]:
    rows = await session.exec(select(MeetingMember).where(
        MeetingMember.meeting_id == meeting_id, col(MeetingMember.user_id).is_not(None)))
    return {m.user_id for m in rows.all() if m.user_id is not None and is_manager(m.role)}


async def page_texts(session: AsyncSession, version_id: int, page_count: int) -> list[str]:
    rows = await session.exec(select(PageText).where(PageText.version_id == version_id))
    texts = [""] * page_count
    for row in rows.all():
        if 0 <= row.page < page_count:
            texts[row.page] = row.text
    return texts


# --- JSON forms ----------------------------------------------------------------------------


def rejection_dict(v: DocumentVersion) -> dict[str, str] | None:
    if v.reject_code is None:
        return None
    return {"code": v.reject_code, "message_en": v.reject_en or "", "message_vi": v.reject_vi or ""}


def progress_dict(v: DocumentVersion) -> dict[str, Any] | None:
    if v.status.finished:
        return None
    return {"stage": v.status.value, "done": v.pages_done, "total": v.page_count or 0}


def version_dict(v: DocumentVersion) -> dict[str, Any]:
    return {"version": v.number, "status": v.status.value, "page_count": v.page_count,
            "size": v.size, "sha256": v.sha256, "created_at": v.created_at.isoformat(),
            "rejection": rejection_dict(v)}


def document_dict(doc: Document, versions: list[DocumentVersion]) -> dict[str, Any]:
    by_number = {v.number: v for v in versions}
    current = by_number.get(doc.version)
    latest = versions[-1] if versions else None
    pending = latest if latest is not None and latest.number > doc.version else None
    usable = current is not None and current.status.usable
    return {
        "id": doc.id, "meeting_id": doc.meeting_id, "agenda_item_id": doc.agenda_item_id,
        "title": doc.title, "filename": doc.filename, "confidential": doc.confidential,
        "published": doc.published, "version": doc.version,
        # From the version row, so status and progress always agree.
        "status": (status_of(current) if current else doc.status).value,
        "page_count": current.page_count if current else None,
        "page_sizes": current.page_sizes if current and usable else None,
        "outline": (current.outline or []) if current else [],
        "warnings": (current.warnings or []) if current else [],
        "rejection": rejection_dict(current) if current else None,
        "progress": progress_dict(current) if current else None,
        "pending_version": None if pending is None else {
            "version": pending.number, "progress": progress_dict(pending),
            "rejection": rejection_dict(pending)},
        "has_pdf": bool(usable and current and current.has_safe_copy and not doc.confidential),
        "created_by": doc.created_by, "created_at": doc.created_at.isoformat(),
        "updated_at": doc.updated_at.isoformat(),
    }


def details_dict(grant: DocumentGrant, versions: list[DocumentVersion]) -> dict[str, Any]:
    data = document_dict(grant.document, versions)
    data.update(versions=[version_dict(v) for v in versions], my_role=grant.role.value,
                can_annotate=allows(grant.role, Action.annotate), can_present=grant.is_presenter,
                can_manage=grant.can_manage, me=grant.author_id)
    return data


def group_by_agenda_item(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[int | None, list[dict[str, Any]]] = defaultdict(list)
    for d in docs:
        groups[d["agenda_item_id"]].append(d)
    order = sorted(k for k in groups if k is not None) + ([None] if None in groups else [])
    return [{"agenda_item_id": k, "documents": groups[k]} for k in order]


def status_of(v: DocumentVersion) -> DocumentStatus:
    if v.status.usable:
        return DocumentStatus(v.status.value)
    return DocumentStatus.rejected if v.status.finished else DocumentStatus.processing
