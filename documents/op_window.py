"""The in-memory window of an annotation log: the newest records only, per page and per
document, with what the dropped ones leave behind.

A page keeps its records densely (``records[i].seq == base + i + 1``); the ``base`` older ones
are summarised by the last seq each viewer class could see among them, so a projection's
``prev_seq`` still answers without them, and anything else that needs them raises
:class:`Trimmed` (the server reads them from its database). A document keeps at most
``max_records`` records in memory across its pages (:class:`RecordWindow`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .annotations import Annotation, PageSize
from .op_records import Actor, Event, OpRecord, Trimmed, projection, visible_in

# Records kept in memory per document (across its pages), ~0.5 KB each plus the stroke it holds:
# older ones are dropped from memory (the server keeps them in its database, see Trimmed).
DEFAULT_MAX_RECORDS = 1024

_ANYONE = Actor("", is_presenter=False)  # no author has the empty id
_PRESENTER = Actor("", is_presenter=True)


@dataclass
class PageState:
    """Live annotations and the op history of one (document, page)."""

    document_id: str
    page: int
    page_size: PageSize
    seq: int = 0
    annotations: dict[str, Annotation] = field(default_factory=dict)
    # Deleted id -> author, so only the author can bring it back (undo).
    tombstones: dict[str, str] = field(default_factory=dict)
    # The newest records only: records[i].seq == base + i + 1; the `base` older ones were
    # dropped from memory, summarised by the last seq each viewer class could see among them
    # (everyone, presenters, and each author, who sees all of their own records).
    records: list[OpRecord] = field(default_factory=list)
    base: int = 0
    trimmed_anyone: int = 0
    trimmed_presenter: int = 0
    trimmed_by_author: dict[str, int] = field(default_factory=dict)

    def visible(self, viewer: Actor) -> list[Annotation]:
        anns = self.annotations.values()
        return sorted(
            (a for a in anns if a.visible_to(viewer.user_id, viewer.is_presenter)),
            key=lambda a: (a.created_at, a.id),
        )

    def count_by(self, author_id: str) -> int:
        return sum(1 for a in self.annotations.values() if a.author_id == author_id)

    def project(self, record: OpRecord, viewer: Actor) -> Event | None:
        upserts, removed = projection(record, viewer)
        if not upserts and not removed:
            return None
        prev = self.last_visible_seq_before(record.seq, viewer)
        return Event(record.seq, prev, record.op_id, self.page, tuple(upserts), tuple(removed))

    def last_visible_seq(self, viewer: Actor) -> int:
        return self.last_visible_seq_before(self.seq + 1, viewer)

    def last_visible_seq_before(self, seq: int, viewer: Actor) -> int:
        """Raises Trimmed if that needs records older than the window (seq <= base)."""
        if self.base and seq <= self.base:
            raise Trimmed(f"records up to seq {self.base} of page {self.page} are not in memory")
        # Records are dense (seq == base + index + 1); walk back from just before seq.
        for rec in reversed(self.records[: max(seq - 1 - self.base, 0)]):
            if any(projection(rec, viewer)):
                return rec.seq
        return self._trimmed_last(viewer)

    def _trimmed_last(self, viewer: Actor) -> int:
        last = max(self.trimmed_anyone, self.trimmed_by_author.get(viewer.user_id, 0))
        return max(last, self.trimmed_presenter) if viewer.is_presenter else last

    def append(self, record: OpRecord) -> None:
        self.records.append(record)

    def trim(self, count: int) -> list[OpRecord]:
        """Drop the ``count`` oldest records from memory; returns them."""
        dropped = self.records[:count]
        del self.records[:count]
        for rec in dropped:
            if rec.effects:  # the author sees each of their records that changed something
                self.trimmed_by_author[rec.actor_id] = rec.seq
            if visible_in(rec, _PRESENTER):
                self.trimmed_presenter = rec.seq
                if visible_in(rec, _ANYONE):
                    self.trimmed_anyone = rec.seq
        self.base += len(dropped)
        return dropped

    def to_dict(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "page": self.page,
            "page_size": list(self.page_size),
            "seq": self.seq,
            "annotations": [a.to_dict() for a in self.annotations.values()],
            "tombstones": dict(self.tombstones),
            "records": [r.to_dict() for r in self.records],
            "base": self.base,
            "trimmed": [self.trimmed_anyone, self.trimmed_presenter, dict(self.trimmed_by_author)],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PageState:
        anns = (Annotation.from_dict(a) for a in raw["annotations"])
        return cls(
            document_id=raw["document_id"],
            page=int(raw["page"]),
            page_size=(float(raw["page_size"][0]), float(raw["page_size"][1])),
            seq=int(raw["seq"]),
            annotations={a.id: a for a in anns},
            tombstones=dict(raw.get("tombstones", {})),
            records=[OpRecord.from_dict(r) for r in raw.get("records", [])],
            base=int(raw.get("base", 0)),
            trimmed_anyone=int(raw.get("trimmed", [0, 0, {}])[0]),
            trimmed_presenter=int(raw.get("trimmed", [0, 0, {}])[1]),
            trimmed_by_author=dict(raw.get("trimmed", [0, 0, {}])[2]),
        )


class RecordWindow:
    """The records of one document held in memory, by op id, oldest first; past
    ``max_records``, the oldest are dropped from their pages."""

    def __init__(self, max_records: int = DEFAULT_MAX_RECORDS) -> None:
        self.max_records = max_records
        self._ops: dict[str, OpRecord] = {}  # op_id -> record, across pages (in memory only)
        self._order: deque[int] = deque()  # page of each in-memory record, oldest first
        self.trimmed = False  # some records are no longer in memory

    def __len__(self) -> int:
        return len(self._order)

    def known(self, op_id: str) -> OpRecord | None:
        return self._ops.get(op_id)

    def add(self, pages: dict[int, PageState], state: PageState, record: OpRecord) -> None:
        """Add an accepted record of ``state``; past max_records, drop the oldest ones from
        memory (by an eighth at a time, so dropping costs O(1) per record)."""
        state.append(record)
        self._ops[record.op_id] = record
        self._order.append(record.page)
        if len(self._order) > self.max_records:
            drop = len(self._order) - self.max_records + self.max_records // 8
            per_page: dict[int, int] = {}
            for _ in range(drop):
                page = self._order.popleft()
                per_page[page] = per_page.get(page, 0) + 1
            for page, count in per_page.items():
                for rec in pages[page].trim(count):
                    del self._ops[rec.op_id]
            self.trimmed = True

    def restore(self, state: PageState) -> None:
        """Count a page's records read back from storage (``AnnotationLog.from_dict``)."""
        self._ops.update((r.op_id, r) for r in state.records)
        self._order.extend(r.page for r in state.records)
        self.trimmed = self.trimmed or state.base > 0
