"""What the documents feature tells other features (through the app's Bus, server/core/bus.py).

Each is published in the process that made the change, after it was committed and pushed to
the local tablets. The cascade (server/cascade/topic/documents.py, presenter.py, ink.py) turns
them into journal entries (at a meeting's owner node) or reports (at a node mirroring it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from documents.op_records import OpRecord


@dataclass(frozen=True, slots=True)
class DocumentChanged:
    """A document was published, withdrawn or edited (title, confidentiality), or a new
    version of it became current. `was_published`: it was published before this change (a
    withdrawal is `published=False, was_published=True`)."""

    meeting_id: int
    document_id: int
    published: bool
    was_published: bool


@dataclass(frozen=True, slots=True)
class PresenterMoved:
    """The meeting's presentation changed (start, page, zoom/scroll, stop); `state` is the
    `present:state` payload that went out to the meeting."""

    meeting_id: int
    state: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PresenterPointed:
    """The presenter's laser pointer moved (never stored)."""

    meeting_id: int
    document_id: int
    page: int
    x: float | None
    y: float | None


@dataclass(frozen=True, slots=True)
class AnnotationAccepted:
    """An annotation op from a local user was accepted and stored (not a replay): the
    cascade carries the parts of it the whole meeting may see; private ink stays here."""

    document_id: int
    version: int
    user_id: int
    record: OpRecord
