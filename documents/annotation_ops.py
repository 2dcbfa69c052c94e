"""Annotation operations, the per-page op log, and version remapping.

Clients send ops; the server accepts or rejects each one atomically and
assigns a per-(document, page) sequence number. Undo/redo are not special:
undoing an add is a delete, undoing an erase re-adds the same id (allowed for
its own author), undoing an update is an update with the previous content.

Sync protocol, for the lead's transport layer:

* every accepted op becomes an :class:`OpRecord` holding before/after
  snapshots of what it touched;
* each viewer gets a *projection* (:class:`Event`) that only contains
  annotations it may see, and nothing at all for ops it may not see, so
  private work does not leak (not even its timing);
* an event carries ``prev_seq``, the seq of the previous event *this viewer*
  could see; a client whose last seen seq differs has missed something and
  asks :meth:`AnnotationLog.events_since` (or takes a fresh snapshot).

Everything round-trips through plain dicts (``to_dict``/``from_dict``) so the
lead can persist it as JSON rows.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from .annotations import (
    DEFAULT_LIMITS,
    Annotation,
    AnnotationError,
    AnnotationLimits,
    ErrorCode,
    PageSize,
    parse_annotation,
    parse_uuid,
    parse_visibility,
)

__all__ = [
    "Actor", "AnnotationLog", "Effect", "Event", "FlagReason", "OpRecord", "OpResult", "OpType",
    "PageMapping", "PageState", "Trimmed", "chain_events", "map_annotations_to_version",
    "map_pages", "normalise_page_text",
]  # fmt: skip

# Records kept in memory per document (across its pages), ~5 KB each for a stroke: older ones
# are dropped from memory (the server keeps them in its database, see Trimmed).
DEFAULT_MAX_RECORDS = 1024


class OpType(str, Enum):
    ADD = "add"
    UPDATE = "update"
    DELETE = "delete"  # also what the eraser sends
    SET_VISIBILITY = "set_visibility"


@dataclass(frozen=True)
class Actor:
    user_id: str
    is_presenter: bool = False


@dataclass(frozen=True, slots=True)
class Effect:
    annotation_id: str
    before: Annotation | None
    after: Annotation | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "annotation_id": self.annotation_id,
            "before": self.before.to_dict() if self.before else None,
            "after": self.after.to_dict() if self.after else None,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Effect:
        before, after = raw.get("before"), raw.get("after")
        return cls(
            annotation_id=raw["annotation_id"],
            before=Annotation.from_dict(before) if before else None,
            after=Annotation.from_dict(after) if after else None,
        )


@dataclass(frozen=True, slots=True)
class OpRecord:
    """An accepted op, as stored: the server's seq plus what it changed."""

    seq: int
    op_id: str
    type: OpType
    page: int
    actor_id: str
    at: float
    effects: tuple[Effect, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "op_id": self.op_id,
            "type": self.type.value,
            "page": self.page,
            "actor_id": self.actor_id,
            "at": self.at,
            "effects": [e.to_dict() for e in self.effects],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> OpRecord:
        return cls(
            seq=int(raw["seq"]),
            op_id=raw["op_id"],
            type=OpType(raw["type"]),
            page=int(raw["page"]),
            actor_id=raw["actor_id"],
            at=float(raw["at"]),
            effects=tuple(Effect.from_dict(e) for e in raw["effects"]),
        )


@dataclass(frozen=True)
class Event:
    """One op as a particular viewer may see it."""

    seq: int
    prev_seq: int
    op_id: str
    page: int
    upserts: tuple[Annotation, ...]
    removed: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "prev_seq": self.prev_seq,
            "op_id": self.op_id,
            "page": self.page,
            "upserts": [a.to_dict() for a in self.upserts],
            "removed": list(self.removed),
        }


@dataclass(frozen=True)
class OpResult:
    record: OpRecord
    replayed: bool  # True when op_id was already accepted: nothing was re-applied


class Trimmed(LookupError):
    """The answer needs records older than the in-memory window (ask the stored records)."""


def _project(record: OpRecord, viewer: Actor) -> tuple[list[Annotation], list[str]]:
    upserts: list[Annotation] = []
    removed: list[str] = []
    for eff in record.effects:
        was = eff.before is not None and eff.before.visible_to(viewer.user_id, viewer.is_presenter)
        now = eff.after is not None and eff.after.visible_to(viewer.user_id, viewer.is_presenter)
        if now and eff.after is not None:
            upserts.append(eff.after)
        elif was:
            removed.append(eff.annotation_id)
    return upserts, removed


def visible_in(record: OpRecord, viewer: Actor) -> bool:
    """Whether ``viewer`` gets an event for ``record`` at all."""
    return any(_project(record, viewer))


def chain_events(records: Iterable[OpRecord], page: int, prev: int, viewer: Actor
                 ) -> tuple[list[Event], int]:
    """``records`` (ascending seq) as ``viewer`` sees them, prev_seq-chained from ``prev``;
    returns the events and the last visible seq."""
    out = []
    for record in records:
        upserts, removed = _project(record, viewer)
        if upserts or removed:
            out.append(Event(record.seq, prev, record.op_id, page, tuple(upserts), tuple(removed)))
            prev = record.seq
    return out, prev


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
        upserts, removed = _project(record, viewer)
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
            if any(_project(rec, viewer)):
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


def _bad_op(message: str) -> AnnotationError:
    return AnnotationError(ErrorCode.BAD_OP, message)


class AnnotationLog:
    """In-memory op log for one document; pure, synchronous, no I/O."""

    def __init__(
        self,
        document_id: str,
        page_sizes: Sequence[PageSize],
        *,
        limits: AnnotationLimits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.time,
        max_records: int = DEFAULT_MAX_RECORDS,
    ) -> None:
        self.document_id = document_id
        self.page_sizes = list(page_sizes)
        self.limits = limits
        self.clock = clock
        self.max_records = max_records
        self.pages: dict[int, PageState] = {}
        self._ops: dict[str, OpRecord] = {}  # op_id -> record, across pages (in memory only)
        self._order: deque[int] = deque()  # page of each in-memory record, oldest first
        self.trimmed = False  # some records are no longer in memory

    @property
    def records_in_memory(self) -> int:
        return len(self._order)

    @property
    def entries(self) -> int:
        """In-memory size in records and live annotations (what a cache bound counts)."""
        return len(self._order) + sum(len(p.annotations) for p in self.pages.values())

    def known_op(self, op_id: str) -> OpRecord | None:
        """The in-memory record of ``op_id``; older ones may exist only in storage."""
        return self._ops.get(op_id)

    def append(self, state: PageState, record: OpRecord) -> None:
        """Add an accepted record; past max_records, drop the oldest ones from memory (by an
        eighth at a time, so dropping costs O(1) per record)."""
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
                for rec in self.pages[page].trim(count):
                    del self._ops[rec.op_id]
            self.trimmed = True

    # --- queries -----------------------------------------------------------

    def page_state(self, page: int) -> PageState:
        if not 0 <= page < len(self.page_sizes):
            raise AnnotationError(
                ErrorCode.BAD_PAGE, f"page {page} not in 0..{len(self.page_sizes) - 1}"
            )
        if page not in self.pages:
            self.pages[page] = PageState(self.document_id, page, self.page_sizes[page])
        return self.pages[page]

    def snapshot(self, page: int, viewer: Actor) -> tuple[list[Annotation], int]:
        """What ``viewer`` sees now, plus the seq to continue from."""
        state = self.page_state(page)
        return state.visible(viewer), state.last_visible_seq(viewer)

    def events_since(self, page: int, after_seq: int, viewer: Actor) -> list[Event]:
        """Everything ``viewer`` missed after ``after_seq``, prev_seq-chained; raises Trimmed
        if some of it is no longer in memory."""
        state = self.page_state(page)
        start = max(after_seq, 0)
        prev = state.last_visible_seq_before(start + 1, viewer)
        # Chain prev_seq while walking (one pass) rather than per-event lookback.
        return chain_events(state.records[max(start - state.base, 0):], page, prev, viewer)[0]

    def project(self, record: OpRecord, viewer: Actor) -> Event | None:
        """The live broadcast form of ``record`` for one viewer (None: send nothing)."""
        return self.page_state(record.page).project(record, viewer)

    def all_annotations(self) -> list[Annotation]:
        """Every live annotation of every author (for export and storage, not for viewers)."""
        return [a for p in sorted(self.pages) for a in self.pages[p].annotations.values()]

    # --- apply -------------------------------------------------------------

    def apply(self, raw: Any, actor: Actor) -> OpResult:
        """Validate and apply one client op; raises AnnotationError if rejected."""
        if not isinstance(raw, dict):
            raise _bad_op("an op must be a JSON object")
        op_id = parse_uuid(raw.get("op_id"), "op_id")
        seen = self._ops.get(op_id)
        if seen is not None:
            if seen.actor_id != actor.user_id:
                raise AnnotationError(
                    ErrorCode.OP_ID_CONFLICT, "op_id already used by another user"
                )
            return OpResult(seen, replayed=True)
        try:
            op_type = OpType(raw.get("type"))
        except ValueError:
            raise _bad_op(f"unknown op type {raw.get('type')!r}") from None
        page = raw.get("page")
        if isinstance(page, bool) or not isinstance(page, int):
            raise AnnotationError(ErrorCode.BAD_PAGE, "'page' must be an integer")
        state = self.page_state(page)
        now = self.clock()
        handler = {
            OpType.ADD: self._add,
            OpType.UPDATE: self._update,
            OpType.DELETE: self._delete,
            OpType.SET_VISIBILITY: self._set_visibility,
        }[op_type]
        effects = handler(state, raw, actor, now)
        return OpResult(self._commit(state, op_id, op_type, actor, now, effects), replayed=False)

    def _commit(
        self,
        state: PageState,
        op_id: str,
        op_type: OpType,
        actor: Actor,
        now: float,
        effects: list[Effect],
    ) -> OpRecord:
        state.seq += 1
        record = OpRecord(state.seq, op_id, op_type, state.page, actor.user_id, now, tuple(effects))
        for eff in effects:
            if eff.after is None:
                state.annotations.pop(eff.annotation_id, None)
                state.tombstones[eff.annotation_id] = actor.user_id
            else:
                state.annotations[eff.annotation_id] = eff.after
                state.tombstones.pop(eff.annotation_id, None)
        self.append(state, record)
        return record

    def _parse_payload(self, state: PageState, raw: dict[str, Any], actor: Actor) -> Annotation:
        payload = raw.get("annotation")
        if not isinstance(payload, dict):
            raise _bad_op("'annotation' must be an object")
        # The server, not the client, decides who wrote it and where it lives.
        trusted = {
            **payload,
            "document_id": self.document_id,
            "author_id": actor.user_id,
            "page": state.page,
        }
        return parse_annotation(trusted, state.page_size, self.limits)

    def _find_page(self, ann_id: str) -> PageState | None:
        return next(
            (p for p in self.pages.values() if ann_id in p.annotations or ann_id in p.tombstones),
            None,
        )

    def _add(self, state: PageState, raw: dict[str, Any], actor: Actor, now: float) -> list[Effect]:
        ann = self._parse_payload(state, raw, actor)
        home = self._find_page(ann.id)
        if home is not None and ann.id in home.annotations:
            raise AnnotationError(ErrorCode.ALREADY_EXISTS, f"annotation {ann.id} already exists")
        if home is not None and (home is not state or home.tombstones[ann.id] != actor.user_id):
            raise AnnotationError(ErrorCode.NOT_OWNER, f"annotation id {ann.id} belongs elsewhere")
        if state.count_by(actor.user_id) >= self.limits.max_per_page_per_author:
            raise AnnotationError(
                ErrorCode.TOO_MANY_ANNOTATIONS,
                f"at most {self.limits.max_per_page_per_author} annotations per page per author",
            )
        return [
            Effect(
                ann.id,
                None,
                replace(ann, created_at=now, updated_at=now, flagged=False, flag_reason=None),
            )
        ]

    def _owned(self, state: PageState, ann_id: str, actor: Actor) -> Annotation:
        current = state.annotations.get(ann_id)
        if current is None:
            raise AnnotationError(
                ErrorCode.NOT_FOUND, f"no annotation {ann_id} on page {state.page}"
            )
        if current.author_id != actor.user_id:
            raise AnnotationError(
                ErrorCode.NOT_OWNER, f"annotation {ann_id} belongs to another user"
            )
        return current

    def _update(
        self, state: PageState, raw: dict[str, Any], actor: Actor, now: float
    ) -> list[Effect]:
        ann = self._parse_payload(state, raw, actor)
        before = self._owned(state, ann.id, actor)
        if ann.kind is not before.kind:
            raise AnnotationError(
                ErrorCode.KIND_CHANGED, "an update cannot change the annotation kind"
            )
        payload = raw["annotation"]
        visibility = ann.visibility if "visibility" in payload else before.visibility
        after = replace(ann, visibility=visibility, created_at=before.created_at, updated_at=now)
        return [Effect(ann.id, before, after)]

    def _ids(self, raw: dict[str, Any]) -> list[str]:
        ids = raw.get("ids")
        if not isinstance(ids, list) or not ids or len(ids) > self.limits.max_per_page_per_author:
            raise _bad_op("'ids' must be a non-empty list of annotation ids")
        return list(dict.fromkeys(parse_uuid(i, "ids") for i in ids))

    def _delete(
        self, state: PageState, raw: dict[str, Any], actor: Actor, now: float
    ) -> list[Effect]:
        effects = []
        for ann_id in self._ids(raw):
            # Erasing something already erased by its own author is a no-op, so
            # an eraser stroke crossing a just-deleted shape never fails.
            if state.tombstones.get(ann_id) == actor.user_id:
                continue
            effects.append(Effect(ann_id, self._owned(state, ann_id, actor), None))
        return effects

    def _set_visibility(
        self, state: PageState, raw: dict[str, Any], actor: Actor, now: float
    ) -> list[Effect]:
        visibility = parse_visibility(raw.get("visibility"))
        if raw.get("ids") is None:  # bulk: share/unshare my whole layer on this page
            targets = [a for a in state.annotations.values() if a.author_id == actor.user_id]
        else:
            targets = [self._owned(state, i, actor) for i in self._ids(raw)]
        return [
            Effect(a.id, a, replace(a, visibility=visibility, updated_at=now))
            for a in targets
            if a.visibility is not visibility
        ]

    # --- persistence -------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "page_sizes": [list(s) for s in self.page_sizes],
            "pages": [self.pages[p].to_dict() for p in sorted(self.pages)],
        }

    @classmethod
    def from_dict(
        cls,
        raw: dict[str, Any],
        *,
        limits: AnnotationLimits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.time,
    ) -> AnnotationLog:
        sizes = [(float(w), float(h)) for w, h in raw["page_sizes"]]
        log = cls(raw["document_id"], sizes, limits=limits, clock=clock)
        for page_raw in raw["pages"]:
            state = PageState.from_dict(page_raw)
            log.pages[state.page] = state
            log._ops.update((r.op_id, r) for r in state.records)
            log._order.extend(r.page for r in state.records)
            log.trimmed = log.trimmed or state.base > 0
        return log


# --- version remapping ------------------------------------------------------


class FlagReason(str, Enum):
    PAGE_TEXT_CHANGED = "page_text_changed"
    PAGE_REMOVED = "page_removed"
    NO_TEXT = "page_has_no_text"  # scanned page: nothing to compare, so unverified
    OUT_OF_PAGE = "out_of_page"  # the new page is smaller and the shape no longer fits


@dataclass(frozen=True)
class PageMapping:
    old_page: int
    new_page: int
    reason: FlagReason | None  # None: content verified identical


_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\ufeff"))
_SPACE_RE = re.compile(r"\s+")


def normalise_page_text(text: str) -> str:
    """Compare-form of extracted text: NFC (producers differ on Vietnamese
    composed/decomposed marks), casefolded, whitespace dropped entirely (line
    breaks and word spacing differ between extractions of the same page)."""
    text = unicodedata.normalize("NFC", text).translate(_INVISIBLE).casefold()
    return _SPACE_RE.sub("", text)


def map_pages(old_texts: Sequence[str], new_texts: Sequence[str]) -> list[PageMapping]:
    """Where each old page went: same index if unchanged, else the nearest new
    page with identical text (page moved), else flagged in place."""
    if not new_texts:
        raise ValueError("the new version has no pages")
    old_n = [normalise_page_text(t) for t in old_texts]
    new_n = [normalise_page_text(t) for t in new_texts]
    last = len(new_n) - 1
    out = []
    for page, text in enumerate(old_n):
        fallback = min(page, last)
        if not text:
            out.append(PageMapping(page, fallback, FlagReason.NO_TEXT))
            continue
        if page <= last and new_n[page] == text:
            out.append(PageMapping(page, page, None))
            continue
        hits = [q for q, t in enumerate(new_n) if t == text]
        if hits:
            out.append(PageMapping(page, min(hits, key=lambda q: (abs(q - page), q)), None))
        else:
            reason = FlagReason.PAGE_TEXT_CHANGED if page <= last else FlagReason.PAGE_REMOVED
            out.append(PageMapping(page, fallback, reason))
    return out


def map_annotations_to_version(
    annotations: Sequence[Annotation],
    old_texts: Sequence[str],
    new_texts: Sequence[str],
    *,
    new_document_id: str | None = None,
    new_page_sizes: Sequence[PageSize] | None = None,
) -> list[Annotation]:
    """Carry annotations over to a new document version.

    Every annotation is kept (nobody's notes silently vanish); those whose
    page could not be verified come back ``flagged`` with a ``flag_reason``
    so the UI can ask the author to review them.
    """
    mapping = map_pages(old_texts, new_texts)
    out = []
    for ann in annotations:
        if not 0 <= ann.page < len(mapping):
            raise ValueError(f"annotation {ann.id} is on page {ann.page}, beyond the old version")
        m = mapping[ann.page]
        reason = m.reason.value if m.reason else None
        if reason is None and new_page_sizes is not None:
            try:
                parse_annotation(ann.to_dict(), new_page_sizes[m.new_page])
            except AnnotationError:
                reason = FlagReason.OUT_OF_PAGE.value
        # A flag still awaiting review survives a clean mapping.
        reason = reason or ann.flag_reason
        moved = replace(ann, document_id=new_document_id or ann.document_id, page=m.new_page)
        out.append(replace(moved, flagged=ann.flagged or reason is not None, flag_reason=reason))
    return out
