"""Which file of a document crosses cascade links, and where a mirrored document came from
(server/cascade/topic/documents.py). Schema: server/migrations (0016_document_cascade).

One row per document that takes part in a cascaded meeting:

* at the owner node, the document as it was last sent down: `origin_id` is None and
  `sha256`/`size` name the *distributed* file (the sanitised PDF, stored as a blob too);
* at every other node, the mirror of the owner's document `origin_id` in the mirror
  meeting: what the owner sent last (version, file, first page) — the local Document and
  DocumentVersion rows follow once their file is here.

A parent serves a blob to a child only if a row of a meeting that invites the child names it.
"""

from __future__ import annotations

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel


class DocumentCascade(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("meeting_id", "origin_id", name="uq_document_origin"),)

    document_id: int = Field(foreign_key="document.id", primary_key=True)
    meeting_id: int = Field(foreign_key="meeting.id", index=True)
    origin_id: int | None = None  # the owner's document id (None: this is the owner)
    version: int  # the owner's version number
    sha256: str = Field(max_length=64, index=True)  # the file that crosses links
    size: int
    page1_sha256: str | None = Field(default=None, max_length=64, index=True)
    page1_size: int | None = None
