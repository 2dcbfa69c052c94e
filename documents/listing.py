"""A meeting's document list as its members poll it (GET /api/meetings/{id}/documents).

Tablets ask for it over and over, and it rarely changes, so it is read as plain rows (no ORM
objects: the documents with their versions in one statement, the JSON columns as the text
stored) and tagged by a hash of those rows: equal tags, equal lists. A request whose ETag
names the tag is answered 304 without the list being built; only a changed list decodes
the JSON and builds `document_dict`s. Nothing is kept between requests.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import Row, Table, Text, and_, bindparam, select
from sqlalchemy import cast as sql_cast
from sqlmodel.ext.asyncio.session import AsyncSession

from documents.catalog import document_dict, group_by_agenda_item, is_manager
from documents.db_models import Document, DocumentVersion
from rooms.models import MeetingRole

_DOCUMENT: Table = Document.__table__  # type: ignore[attr-defined]
_VERSION: Table = DocumentVersion.__table__  # type: ignore[attr-defined]
_JSON = frozenset({"page_sizes", "outline", "warnings"})  # the version's JSON columns
_DOCUMENT_KEYS = tuple(c.key for c in _DOCUMENT.columns)
_VERSION_KEYS = tuple(c.key for c in _VERSION.columns)
# Part of every tag: change it when document_dict's output changes for the same rows, so a
# tablet's copy made by older code is not confirmed by a 304.
FORMAT = b"1"


def _columns(table: Table, prefix: str) -> list[Any]:
    # The JSON columns as text (a CAST: PostgreSQL's driver would decode them itself).
    return [(sql_cast(c, Text) if c.key in _JSON else c).label(prefix + c.key)
            for c in table.columns]


# `everything`: unpublished documents too (managers).
_LISTING = (select(*_columns(_DOCUMENT, "d_"), *_columns(_VERSION, "v_"))
            .select_from(_DOCUMENT.outerjoin(_VERSION, _VERSION.c.document_id == _DOCUMENT.c.id))
            .where(and_(_DOCUMENT.c.meeting_id == bindparam("meeting_id"),
                        _DOCUMENT.c.published | bindparam("everything")))
            .order_by(_DOCUMENT.c.created_at, _DOCUMENT.c.id, _VERSION.c.number))


@dataclass(frozen=True)
class Listing:
    rows: Sequence[Row[Any]]
    tag: str  # an ETag: quoted


async def listed(session: AsyncSession, meeting_id: int, role: MeetingRole) -> Listing:
    """The documents a member in `role` sees, in one read on the session's connection."""
    connection = await session.connection()
    rows = (await connection.execute(_LISTING, {"meeting_id": meeting_id,
                                                "everything": is_manager(role)})).all()
    digest = hashlib.blake2b(FORMAT, digest_size=16)
    digest.update(repr([tuple(row) for row in rows]).encode())
    return Listing(rows, f'"{digest.hexdigest()}"')


def _fields(keys: tuple[str, ...], values: Sequence[Any]) -> SimpleNamespace:
    """One table's part of a row, read by attribute as its model would be."""
    fields = dict(zip(keys, values, strict=True))
    for key in _JSON & fields.keys():
        if fields[key] is not None:
            fields[key] = json.loads(fields[key])
    return SimpleNamespace(**fields)


def listing_dict(listing: Listing) -> dict[str, Any]:
    """The answer: {"groups": [...]} (docs/protocol.md, Documents)."""
    split = len(_DOCUMENT_KEYS)
    documents: list[tuple[SimpleNamespace, list[SimpleNamespace]]] = []
    for row in listing.rows:
        if not documents or documents[-1][0].id != row[0]:
            documents.append((_fields(_DOCUMENT_KEYS, row[:split]), []))
        if row[split] is not None:  # the version's id: none for a document without one
            documents[-1][1].append(_fields(_VERSION_KEYS, row[split:]))
    # document_dict reads attributes only; these carry the same values as the models would.
    return {"groups": group_by_agenda_item([
        document_dict(cast(Document, d), cast(list[DocumentVersion], v))
        for d, v in documents])}
