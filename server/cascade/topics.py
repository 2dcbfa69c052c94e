"""The meeting state that crosses node links, as topics (docs/cascade.md, "Meeting state
across nodes").

DOWN: the owner node's journal of a meeting, `Entry(key, seq, topic, data)`, stored by every
node it reaches with the owner's seq and applied there in order by the topic's `apply`
(server/cascade/journal.py). UP: `Report(id, key, origin, topic, data)`, stored at the node
where it happened before anyone is told it is, then forwarded node by node to the owner,
whose `receive` applies it once per id (server/cascade/reports.py). Features do not import
the cascade: they publish bus events, and the topic modules (server/cascade/topic/) turn
them into entries and reports and apply what arrives through the features' own code.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from server.cascade.schemas import NodeError, NodeSchema, validate

if TYPE_CHECKING:
    from sqlmodel.ext.asyncio.session import AsyncSession

MAX_DATA_BYTES = 64_000  # one entry's or report's data, as JSON


# Adds a journal entry, stored and marked applied, to the applier's own transaction.
Keep = Callable[["AsyncSession"], Awaitable[None]]


@dataclass(frozen=True)
class Entry:
    """One step of a meeting's journal; seq 0 for an ephemeral push (never stored).
    `keep`, for a topic that `keeps` (at a node applying it from its parent): the applier
    awaits `keep(s)` in the transaction that writes the entry's effects, before its commit,
    so the entry is stored, applied and marked in that one commit (docs/cascade.md,
    "Meeting state across nodes"); if the applier does not (nothing to write, a refusal)
    or that commit fails, the journal stores it by itself."""

    key: str
    seq: int
    topic: str
    data: dict[str, Any]
    keep: Keep | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Report:
    """Something that happened at a non-owner node, on its way to the owner."""

    id: str
    key: str
    origin: str
    topic: str
    data: dict[str, Any]


# (local meeting id, entry): applies a journal entry at a non-owner node; idempotent.
Applier = Callable[[int, Entry], Awaitable[None]]
# (owner's meeting id, child unit it came through, report) -> result; NodeError refuses.
Receiver = Callable[[int, str, Report], Awaitable[dict[str, Any]]]
# (local mirror id, child unit, report): an intermediate node sees a report pass by; NodeError
# refuses it there.
Forwarder = Callable[[int, str, Report], Awaitable[None]]


@dataclass(frozen=True)
class Topic:
    name: str
    schema: type[NodeSchema]  # strict schema of `data`
    direction: Literal["down", "up"]
    apply: Applier | None = None  # down topics, at every non-owner node
    keeps: bool = False  # its applier stores the entry in its own commit (`Entry.keep`)
    # Down topics whose entries are whole states (the floor, the presenter): whether a newer
    # entry's data makes an older one's needless (`covers(older, newer)`). A node behind
    # applies only the newest of those queued; the others are stored with it (journal.py).
    covers: Callable[[dict[str, Any], dict[str, Any]], bool] | None = None
    receive: Receiver | None = None  # up topics, at the owner
    forward: Forwarder | None = None  # up topics, at an intermediate node (optional)
    # Up topics whose reports are snapshots: what a newer report of the same origin, meeting
    # and key carries makes an older one needless (reports.py drops an older one held back
    # by a temporary refusal instead of sending it again).
    supersedes: Callable[[dict[str, Any]], Any] | None = None


class Topics:
    """The registry: every topic is declared once, at set-up."""

    def __init__(self) -> None:
        self._topics: dict[str, Topic] = {}

    def register(self, topic: Topic) -> None:
        if topic.name in self._topics:
            raise ValueError(f"topic {topic.name!r} registered twice")
        if topic.direction == "down" and topic.receive is not None:
            raise ValueError(f"down topic {topic.name!r} cannot have a receiver")
        if topic.direction == "up" and topic.apply is not None:
            raise ValueError(f"up topic {topic.name!r} cannot have an applier")
        topic.schema.check_scoped()
        self._topics[topic.name] = topic

    def get(self, name: str, direction: str) -> Topic:
        """The topic, or NodeError("invalid") for an unknown one or the wrong direction."""
        topic = self._topics.get(name)
        if topic is None or topic.direction != direction:
            raise NodeError("invalid", f"no {direction} topic {name[:64]!r}")
        return topic

    def find(self, name: str) -> Topic | None:
        return self._topics.get(name)

    def whole(self, name: str) -> bool:
        """Whether the down topic's entries are whole states (`Topic.covers`)."""
        topic = self._topics.get(name)
        return topic is not None and topic.direction == "down" and topic.covers is not None

    def covers(self, older: Entry, newer: Entry) -> bool:
        """Whether applying `newer` (the next entry of the same down topic) makes applying
        `older` needless: its topic's entries are whole states and `newer` covers it (a
        malformed one covers nothing: each is checked by its own applying)."""
        topic = self._topics.get(older.topic)
        if topic is None or topic.covers is None or newer.topic != older.topic:
            return False
        try:
            return topic.covers(older.data, newer.data)
        except (KeyError, TypeError, ValueError, AttributeError):
            return False

    def keeps(self, name: str) -> bool:
        """Whether the down topic's applier stores its entries itself (`Entry.keep`)."""
        topic = self._topics.get(name)
        return topic is not None and topic.direction == "down" and topic.keeps

    def checked(self, name: str, direction: str, data: Any) -> dict[str, Any]:
        """`data` as the topic's schema accepts it (NodeError otherwise), bounded in size."""
        topic = self.get(name, direction)
        validate(topic.schema, data)
        text = encode(data)
        if len(text) > MAX_DATA_BYTES:
            raise NodeError("too_large", f"{name}: data over {MAX_DATA_BYTES} bytes")
        return data  # type: ignore[no-any-return]


def encode(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def decode(text: str) -> dict[str, Any]:
    value = json.loads(text)
    return value if isinstance(value, dict) else {}
