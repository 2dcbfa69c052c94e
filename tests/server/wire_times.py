"""The one format of every time the server sends (docs/protocol.md, Conventions): ISO 8601 in
UTC, as an aware datetime's isoformat() writes it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?\+00:00")
TIME_KEYS = frozenset({"at", "since", "server_time", "t"})  # and every key ending in "_at"


def time_fields(payload: Any, path: str = "") -> dict[str, Any]:
    """Every time field of a JSON payload, however deep, by its path (`votes[0].opened_at`)."""
    found: dict[str, Any] = {}
    if isinstance(payload, dict):
        for key, value in payload.items():
            where = f"{path}.{key}" if path else key
            if key in TIME_KEYS or key.endswith("_at"):
                found[where] = value
            else:
                found.update(time_fields(value, where))
    elif isinstance(payload, list):
        for i, value in enumerate(payload):
            found.update(time_fields(value, f"{path}[{i}]"))
    return found


def assert_wire_times(payload: Any, *required: str, since: datetime | None = None) -> None:
    """Every time field is null or ISO 8601 UTC; the `required` paths are set, and (with
    `since`) no earlier than it, nor later than now."""
    fields = time_fields(payload)
    bad = {k: v for k, v in fields.items()
           if v is not None and not (isinstance(v, str) and ISO_UTC.fullmatch(v))}
    assert not bad, f"times not in ISO 8601 UTC: {bad}"
    for path in required:
        assert fields.get(path) is not None, f"no {path} in {sorted(fields)}"
        if since is not None:
            moment = datetime.fromisoformat(fields[path])
            assert since - timedelta(seconds=1) <= moment <= datetime.now(UTC), (path, moment)
