"""Annotations and their events as clients get them (docs/protocol.md (Documents)).

The op log keeps an annotation's times as epoch seconds (documents/annotations.py, stored that
way); on the wire they are ISO 8601 UTC, the one format of every time the server sends
(docs/protocol.md, Conventions)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from documents.annotations import Annotation
from documents.op_records import Event

TIMES = ("created_at", "updated_at")


def wire_annotation(annotation: Annotation) -> dict[str, Any]:
    return _wire_times(annotation.to_dict())


def wire_event(event: Event) -> dict[str, Any]:
    data = event.to_dict()
    for annotation in data["upserts"]:
        _wire_times(annotation)
    return data


def wire_time(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


def _wire_times(annotation: dict[str, Any]) -> dict[str, Any]:
    for key in TIMES:
        annotation[key] = wire_time(annotation[key])
    return annotation
