"""Tables of the paperless documents: documents, their versions, page text, annotation ops
and the access log. Schema changes go through Alembic (server/migrations, revision 0003).

A document's `version` is the version viewers see; a newer upload stays a pending
DocumentVersion until it is processed, then annotations are carried over and it becomes
current. Annotation ops are the durable truth of the annotation layer: the in-memory
AnnotationLog of a document version is rebuilt from them.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from rooms.models import enum_column, utcnow


class DocumentStatus(str, enum.Enum):
    processing = "processing"
    ready = "ready"
    ready_with_warnings = "ready_with_warnings"
    rejected = "rejected"


class VersionStatus(str, enum.Enum):
    """The processing stage of one uploaded version (documents.processing.Stage values)."""

    validating = "validating"
    converting = "converting"
    rendering = "rendering"
    ready = "ready"
    ready_with_warnings = "ready_with_warnings"
    rejected = "rejected"

    @property
    def finished(self) -> bool:
        return self in (VersionStatus.ready, VersionStatus.ready_with_warnings,
                        VersionStatus.rejected)

    @property
    def usable(self) -> bool:
        return self in (VersionStatus.ready, VersionStatus.ready_with_warnings)


def _json(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(JSON, nullable=nullable))


class Document(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="meeting.id", index=True)
    # The procedure owns agenda items; no foreign key, so the two features stay decoupled.
    agenda_item_id: int | None = Field(default=None, index=True)
    title: str = Field(max_length=300)
    filename: str = Field(max_length=200)  # sanitised original name, for display only
    confidential: bool = False
    published: bool = False
    # Published once, then taken back: no new version until it is published again.
    withdrawn: bool = False
    status: DocumentStatus = Field(sa_column=enum_column(DocumentStatus))
    version: int = 1  # the version viewers see
    created_by: int = Field(foreign_key="user.id")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class DocumentVersion(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("document_id", "number", name="uq_document_version"),)

    id: int | None = Field(default=None, primary_key=True)
    document_id: int = Field(foreign_key="document.id", index=True)
    number: int
    sha256: str = Field(max_length=64, index=True)
    size: int
    status: VersionStatus = Field(sa_column=enum_column(VersionStatus))
    pages_done: int = 0
    page_count: int | None = None
    page_sizes: list[list[float]] | None = _json()
    outline: list[dict[str, Any]] | None = _json()
    warnings: list[dict[str, Any]] | None = _json()
    reject_code: str | None = Field(default=None, max_length=40)
    reject_en: str | None = Field(default=None, max_length=500)
    reject_vi: str | None = Field(default=None, max_length=500)
    has_safe_copy: bool = False  # the sanitised PDF exists (derived/…/document.pdf)
    converted: bool = False  # rendered from derived/…/converted.pdf, not the blob
    created_by: int = Field(foreign_key="user.id")
    created_at: datetime = Field(default_factory=utcnow)
    processed_at: datetime | None = None


class PageText(SQLModel, table=True):
    """Extracted text of one page of one version, for search and annotation carry-over."""

    __table_args__ = (UniqueConstraint("version_id", "page", name="uq_page_text"),)

    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(foreign_key="documentversion.id", index=True)
    page: int
    text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class AnnotationOp(SQLModel, table=True):
    """One accepted annotation op (documents.op_records.OpRecord as JSON), written before
    the client's acknowledgement."""

    __table_args__ = (
        UniqueConstraint("document_id", "op_id", name="uq_annotation_op_id"),
        UniqueConstraint("document_id", "version", "page", "seq", name="uq_annotation_op_seq"),
    )

    id: int | None = Field(default=None, primary_key=True)
    document_id: int = Field(foreign_key="document.id", index=True)
    version: int
    page: int
    seq: int
    op_id: str = Field(max_length=36)
    actor_id: int = Field(foreign_key="user.id")
    record: dict[str, Any] = _json(nullable=False)
    at: datetime = Field(default_factory=utcnow)


class DocumentAccess(SQLModel, table=True):
    """Who fetched what of a document, and when (written in batches)."""

    id: int | None = Field(default=None, primary_key=True)
    document_id: int = Field(foreign_key="document.id", index=True)
    version: int | None = None
    user_id: int = Field(foreign_key="user.id")
    kind: str = Field(max_length=16)
    page: int | None = None
    at: datetime = Field(default_factory=utcnow)


class Presentation(SQLModel, table=True):
    """Who presents which page in a meeting (server.documents.presenter): one row per meeting, shared
    by every server process. Start, page turn and stop are written at once with a conditional
    UPDATE (one presenter per meeting); zoom/scroll moves within a page are written at most
    about once a second. `seq` only grows (see server.documents.presenter for its layout)."""

    meeting_id: int = Field(foreign_key="meeting.id", primary_key=True)
    active: bool = False
    seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    user_id: int | None = Field(default=None, foreign_key="user.id")
    name: str | None = Field(default=None, max_length=200)
    # No foreign key: like agenda items, a presentation only points at the document.
    document_id: int | None = None
    version: int | None = None
    page: int | None = None
    zoom: float | None = None
    scroll_x: float | None = None
    scroll_y: float | None = None
    at: datetime | None = None
