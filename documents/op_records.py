"""Accepted annotation ops as records, and what each viewer may see of them.

Every accepted op becomes an :class:`OpRecord` holding before/after snapshots of what it
touched; each viewer gets a *projection* (:class:`Event`) that only contains annotations it
may see, and nothing at all for ops it may not see, so private work does not leak (not even
its timing). An event carries ``prev_seq``, the seq of the previous event *this viewer* could
see. Everything round-trips through plain dicts (``to_dict``/``from_dict``) for storage.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .annotations import Annotation


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


def projection(record: OpRecord, viewer: Actor) -> tuple[list[Annotation], list[str]]:
    """What of ``record`` ``viewer`` may see: annotations to upsert, ids to remove."""
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
    return any(projection(record, viewer))


def chain_events(records: Iterable[OpRecord], page: int, prev: int, viewer: Actor
                 ) -> tuple[list[Event], int]:
    """``records`` (ascending seq) as ``viewer`` sees them, prev_seq-chained from ``prev``;
    returns the events and the last visible seq."""
    out = []
    for record in records:
        upserts, removed = projection(record, viewer)
        if upserts or removed:
            out.append(Event(record.seq, prev, record.op_id, page, tuple(upserts), tuple(removed)))
            prev = record.seq
    return out, prev
