"""The ``/node`` wire format: one strict schema per event, the meeting keys a payload
names (checked against the child's invitations by the dispatcher, server/cascade/dispatch.py),
and the acknowledgements ``{"ok": true, "result": ...}`` / ``{"ok": false, "error": {"code",
"message"}}``. The protocol itself is described in server/cascade/link.py.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from media import MAX_CATALOG, MAX_IDS

NAMESPACE = "/node"
MAX_SDP_CHARS = 512_000


def shown(value: Any) -> str:
    """A client-sent value as it may appear in a log line or the admin view: bounded."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


# Refusals that may not hold later (what the report needs is not known here yet, e.g. a vote
# this node has not opened yet; `busy`: this node holds as many reports for its own parent as
# it takes, reports.MAX_HELD, or as many of that child's, MAX_HELD_PER_CHILD): the sender
# keeps such a report in its outbox and sends it again (server/cascade/reports.py), never
# settles it as refused.
TEMPORARY_REFUSALS = frozenset({"not_yet", "busy"})


class NodeError(Exception):
    """A /node event refused: acknowledged ``{"ok": false, "error": {"code", "message"}}``,
    changing nothing."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class _Scoped:
    """Marks a field holding a meeting key: the dispatcher checks every such value against
    the child's invitations before the handler runs."""


SCOPED = _Scoped()
# "<owner node unit>/<owner's meeting id>" (units as rooms.meeting_nodes.UNIT).
MeetingKey = Annotated[str, Field(min_length=3, max_length=84,
                                  pattern=r"^[\w:.\-]{1,64}/[0-9]{1,18}$"), SCOPED]
_KEY_NAMES = frozenset({"meeting", "meetings", "key", "keys", "meeting_id"})


class NodeSchema(BaseModel):
    """Base of every /node payload: unknown fields and wrong types are errors (as
    server/core/realtime.py's EventSchema), and `meeting_keys()` finds every meeting it names."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def meeting_keys(self) -> set[str]:
        found: set[str] = set()
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if SCOPED in info.metadata:
                found.add(value)
            for item in value if isinstance(value, (list, tuple)) else (value,):
                if isinstance(item, NodeSchema):
                    found |= item.meeting_keys()
        return found

    @classmethod
    def check_scoped(cls) -> None:
        """Registration-time guard: a field named like a meeting must be a MeetingKey, so a
        new event cannot name a meeting the dispatcher would not check."""
        for name, info in cls.model_fields.items():
            if name in _KEY_NAMES and SCOPED not in info.metadata:
                raise TypeError(f"{cls.__name__}.{name} names a meeting: type it MeetingKey")
            for arg in getattr(info.annotation, "__args__", ()) + (info.annotation,):
                if isinstance(arg, type) and issubclass(arg, NodeSchema):
                    arg.check_scoped()


class Empty(NodeSchema):
    """``hello``, ``meetings``: no fields."""


_Unit = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[\w:.\-]+$")]


class Ping(NodeSchema):
    rtt_ms: float | None = Field(default=None, ge=0, le=60_000)
    below: list[_Unit] = Field(default_factory=list, max_length=1000)  # linked under the child


class Join(NodeSchema):
    meeting: MeetingKey


class HeadcountEntry(NodeSchema):
    key: MeetingKey
    members: int = Field(ge=0, le=10_000)
    present: int = Field(ge=0, le=10_000)

    @model_validator(mode="after")
    def _present_within_members(self) -> HeadcountEntry:
        if self.present > self.members:
            raise ValueError("present must not exceed members")
        return self


class Headcounts(NodeSchema):
    """The child's complete report: one entry per meeting, each meeting once."""

    counts: list[HeadcountEntry] = Field(max_length=500)

    @model_validator(mode="after")
    def _each_meeting_once(self) -> Headcounts:
        if len({c.key for c in self.counts}) != len(self.counts):
            raise ValueError("a meeting is reported more than once")
        return self


# The media link's requests (media/link.py), checked here before LinkEnd.handle sees them.
_Id = Annotated[str, Field(min_length=1, max_length=128)]


class _CatalogData(NodeSchema):
    producers: list[dict[str, Any]] = Field(max_length=MAX_CATALOG)
    peers: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_CATALOG)


class _IdsData(NodeSchema):
    ids: list[_Id] = Field(max_length=MAX_IDS)


class _OfferedConsumer(NodeSchema):
    mid: str = Field(min_length=1, max_length=32)
    producer_id: _Id
    producer_peer_id: _Id
    source: str = Field(min_length=1, max_length=32)
    # One layer of a simulcast producer (media/link.py): its rid, and the producer's.
    rid: str | None = Field(default=None, min_length=1, max_length=16)
    rids: list[Annotated[str, Field(min_length=1, max_length=16)]] | None = Field(
        default=None, min_length=1, max_length=3)


class _OfferData(NodeSchema):
    sdp: str = Field(min_length=1, max_length=MAX_SDP_CHARS)
    consumers: list[_OfferedConsumer] = Field(max_length=MAX_CATALOG)


class _LayersData(NodeSchema):
    producer_id: _Id
    layers: list[Annotated[int, Field(ge=0, le=2)]] = Field(max_length=3)


class _ControlData(NodeSchema):
    action: Literal["lock", "allow", "mute-all", "floor"]
    producer_id: _Id | None = None
    holder: dict[str, Any] | None = None


_LINK_DATA: dict[str, type[NodeSchema]] = {
    "catalog": _CatalogData, "pull": _IdsData, "release": _IdsData, "offer": _OfferData,
    "reset": Empty, "control": _ControlData, "layers": _LayersData}


class LinkRequest(NodeSchema):
    """``link``: one media link request; `data` as that op's schema requires."""

    meeting: MeetingKey
    op: Literal["catalog", "pull", "offer", "release", "reset", "control", "layers"]
    data: dict[str, Any]

    @model_validator(mode="after")
    def _data_fits_op(self) -> LinkRequest:
        _LINK_DATA[self.op].model_validate_json(json.dumps(self.data))
        return self


# Meeting state across nodes (server/cascade/journal.py, reports.py).
_Seq = Annotated[int, Field(ge=0, le=2**53)]
_Topic = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.\-]*$")]
MAX_JOURNAL_PUSH = 200
MAX_REPORTS = 50


class JournalPull(NodeSchema):
    """``journal`` (child -> parent): the entries after `after`; subscribes to the rest."""

    meeting: MeetingKey
    after: _Seq


class JournalItem(NodeSchema):
    seq: _Seq  # 0: an ephemeral push, never stored
    topic: _Topic
    data: dict[str, Any]


class JournalPush(NodeSchema):
    """``journal`` (parent -> child): entries in seq order."""

    meeting: MeetingKey
    entries: list[JournalItem] = Field(max_length=MAX_JOURNAL_PUSH)


class ReportItem(NodeSchema):
    id: str = Field(pattern=r"^[0-9a-f]{32}$")
    meeting: MeetingKey
    origin: _Unit
    topic: _Topic
    data: dict[str, Any]


class ReportBatch(NodeSchema):
    """``report`` (child -> parent): the oldest pending reports of the child's outbox;
    `after`: the last report id of the batch sent before it on this connection (None: the
    first since the child (re)started delivering)."""

    reports: list[ReportItem] = Field(min_length=1, max_length=MAX_REPORTS)
    after: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")

    @model_validator(mode="after")
    def _each_once(self) -> ReportBatch:
        if len({r.id for r in self.reports}) != len(self.reports):
            raise ValueError("a report is sent twice in one batch")
        return self


P = TypeVar("P", bound=NodeSchema)


def ack_ok(result: Any) -> dict[str, Any]:
    return {"ok": True, "result": result}


def ack_error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


def validate(schema: type[P], data: Any) -> P:
    """`data` checked as the JSON it arrived as (strict types); NodeError if it is not."""
    try:
        text = json.dumps(data if data is not None else {})
    except (TypeError, ValueError, RecursionError):
        raise NodeError("invalid", "payload: not JSON (binary or circular)") from None
    try:
        return schema.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise NodeError("invalid", f"{where}: {first['msg']}"[:200]) from None


def unwrap(reply: Any) -> dict[str, Any]:
    """The other end's acknowledgement of a `link` request, as LinkEnd.request wants it:
    the result, or ``{"error": message}``."""
    if isinstance(reply, dict) and reply.get("ok") is True and isinstance(reply.get("result"),
                                                                          dict):
        return reply["result"]  # type: ignore[no-any-return]
    error = reply.get("error") if isinstance(reply, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return {"error": f"{error.get('code')}: {error['message']}"}
    return {"error": "malformed reply"}


def parent_result(reply: Any, what: str) -> Any:
    """The result of a parent's acknowledgement; ConnectionError if it refused."""
    if isinstance(reply, dict) and reply.get("ok") is True:
        return reply.get("result")
    raise ConnectionError(f"parent refused {what}: {shown(reply)}")

