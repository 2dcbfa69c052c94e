"""Small helpers shared by the HTTP handlers: typed bodies and ids."""

from __future__ import annotations

import json
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from rooms.errors import Invalid, NotFound

B = TypeVar("B", bound=BaseModel)


class Body(BaseModel):
    """Base for request bodies: unknown fields and wrong types are rejected."""

    model_config = ConfigDict(extra="forbid", strict=True)


async def read_body(request: web.Request, schema: type[B]) -> B:
    if request.content_type != "application/json":
        raise Invalid("send the body as application/json", code="bad_content_type")
    try:
        text = await request.text()
        json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Invalid("request body is not valid JSON", code="bad_json") from None
    try:
        # JSON-mode strictness: "1" is not an int, but "delegate" is a valid Role.
        return schema.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise Invalid(f"{where}: {first['msg']}") from None


def int_id(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not raw.isdigit() or len(raw) > 12:
        raise NotFound(f"{name} {raw!r} not found")
    return int(raw)
