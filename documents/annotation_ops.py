"""Annotation operations: the in-memory op log of one document.

Clients send ops; the log accepts or rejects each one atomically and assigns a per-(document,
page) sequence number. Undo/redo are not special: undoing an add is a delete, undoing an
erase re-adds the same id (allowed for its own author), undoing an update is an update with
the previous content.

Sync protocol, for the server's transport layer:

* every accepted op becomes an :class:`OpRecord` (documents/op_records.py), and each viewer
  gets its projection, an :class:`Event`, or nothing for ops it may not see;
* an event carries ``prev_seq``; a client whose last seen seq differs has missed something
  and asks :meth:`AnnotationLog.events_since` (or takes a fresh snapshot);
* only the newest records stay in memory (documents/op_window.py): what needs older ones
  raises :class:`Trimmed`.

Carrying annotations to a new document version is documents/version_mapping.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
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
from .op_records import Actor, Effect, Event, OpRecord, OpResult, OpType, chain_events
from .op_window import DEFAULT_MAX_RECORDS, PageState, RecordWindow

__all__ = ["AnnotationLog"]


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
        self.pages: dict[int, PageState] = {}
        self.window = RecordWindow(max_records)

    @property
    def trimmed(self) -> bool:
        """Some records are no longer in memory."""
        return self.window.trimmed

    @property
    def records_in_memory(self) -> int:
        return len(self.window)

    @property
    def entries(self) -> int:
        """In-memory size in records and live annotations (what a cache bound counts)."""
        return len(self.window) + sum(len(p.annotations) for p in self.pages.values())

    def known_op(self, op_id: str) -> OpRecord | None:
        """The in-memory record of ``op_id``; older ones may exist only in storage."""
        return self.window.known(op_id)

    def append(self, state: PageState, record: OpRecord) -> None:
        """Add an accepted record (the window drops the oldest past max_records)."""
        self.window.add(self.pages, state, record)

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
        seen = self.window.known(op_id)
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
            log.window.restore(state)
        return log
