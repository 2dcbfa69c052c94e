"""What HTTP handlers read from a request, parsed in one place: path and query integers,
JSON bodies into strict models, forms. Anything else is a 4xx in the documented shape, never
an exception the error middleware does not know (docs/security.md, "Hostile input at the
edges"). Handlers never call int(), request.text()/json()/post() themselves."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import annotated_types
import pydantic_core
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from rooms.errors import Invalid, NotFound

B = TypeVar("B", bound=BaseModel)

# Every integer we accept from a client ends up compared with or stored in an INTEGER column:
# 32-bit on PostgreSQL (64-bit on SQLite). Beyond it asyncpg/sqlite3 raise (DataError,
# OverflowError) instead of answering "not found".
MAX_ID = 2**31 - 1
MIN_INT = -(2**31)
# ASCII digits only: str.isdigit() and int() also accept "¹", "١" or "１" (and int() then
# fails on the superscripts); 10 digits is all MAX_ID needs, so int() never sees a long text.
_DIGITS = re.compile(r"[0-9]{1,10}")
MAX_JSON_DEPTH = 32  # our bodies nest 3 levels; this bounds any walk of a parsed body
MAX_STRING_CHARS = 10_000  # a body string without its own max_length (bodies are ≤ 1 MiB)
UTF8 = frozenset({"utf-8", "utf8"})


def parse_int(text: str, name: str, *, low: int = 0, high: int = MAX_ID) -> int:
    """A whole number written in ASCII digits, low ≤ n ≤ high; else Invalid naming `name`."""
    if _DIGITS.fullmatch(text):
        value = int(text)
        if low <= value <= high:
            return value
    raise Invalid(f"{name}: must be a whole number from {low} to {high}")


def as_id(text: str) -> int | None:
    """An id written in ASCII digits within MAX_ID, else None (for ids inside other strings,
    such as a cascade meeting key "province/12")."""
    return int(text) if _DIGITS.fullmatch(text) and int(text) <= MAX_ID else None


def int_id(request: web.Request, name: str) -> int:
    """An id from the path: anything that is not one is a missing resource (404)."""
    raw = request.match_info[name]
    try:
        return parse_int(raw, name)
    except Invalid:
        raise NotFound(f"{name} {raw[:24]!r} not found") from None


def query_int(request: web.Request, name: str, default: int, *, low: int = 0,
              high: int = MAX_ID) -> int:
    """An integer query parameter (400 when present and not one), or the default."""
    raw = request.query.get(name)
    return default if raw is None else parse_int(raw, name, low=low, high=high)


def _check_charset(request: web.Request) -> None:
    charset = request.charset
    if charset is not None and charset.lower() not in UTF8:
        raise Invalid(f"charset {charset[:40]!r} is not accepted; send UTF-8",
                      code="bad_content_type")


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


async def read_json(request: web.Request) -> bytes:
    """The body, checked: application/json in UTF-8, at most the app's client_max_size (else
    413 too_large, from aiohttp), valid JSON (no NaN, numbers within range) nested at most
    MAX_JSON_DEPTH levels."""
    if request.content_type != "application/json":
        raise Invalid("send the body as application/json", code="bad_content_type")
    _check_charset(request)
    data = await request.read()
    try:
        # jiter: strict UTF-8, no lone surrogates, refuses numbers Python would choke on
        # (> 4300 digits) and nesting beyond ~200 levels without recursing in Python.
        value = pydantic_core.from_json(data, allow_inf_nan=False)
    except ValueError as exc:
        if "recursion limit" in str(exc):
            raise Invalid(f"request body is nested deeper than {MAX_JSON_DEPTH} levels",
                          code="bad_json") from None
        raise Invalid(f"request body is not valid JSON: {str(exc)[:120]}", code="bad_json") from None
    if _depth_exceeds(value, MAX_JSON_DEPTH):
        raise Invalid(f"request body is nested deeper than {MAX_JSON_DEPTH} levels",
                      code="bad_json")
    return data


def _bounded(value: Any, max_chars: int | None) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not MIN_INT <= value <= MAX_ID:
            raise ValueError(f"must be between {MIN_INT} and {MAX_ID}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
    elif isinstance(value, str):
        if max_chars is not None and len(value) > max_chars:
            raise ValueError(f"must be at most {max_chars} characters")
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _bounded(item, MAX_STRING_CHARS)
    elif isinstance(value, dict):
        for key, item in value.items():
            _bounded(key, MAX_STRING_CHARS)
            _bounded(item, MAX_STRING_CHARS)


class Body(BaseModel):
    """Base for request bodies: unknown fields and wrong types are rejected, and whatever a
    subclass declares, every integer fits the database's INTEGER column, every float is
    finite and every string is NUL-free and bounded (its own max_length, else
    MAX_STRING_CHARS)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _within_bounds(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        own = field is not None and any(isinstance(m, annotated_types.MaxLen)
                                        for m in field.metadata)
        _bounded(value, None if own else MAX_STRING_CHARS)
        return value


async def read_body(request: web.Request, schema: type[B]) -> B:
    data = await read_json(request)
    try:
        # JSON-mode strictness: "1" is not an int, but "delegate" is a valid Role.
        return schema.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise Invalid(f"{where}: {message}") from None


@contextmanager
def form_errors() -> Iterator[None]:
    """Around aiohttp's form and multipart parsing: what it raises for a malformed body is
    400 bad_form. ValueError: no or a bad boundary, a body cut short, undecodable bytes, a
    part without a name; LookupError: a part's unknown charset; HttpProcessingError: a part
    header that is not one."""
    try:
        yield
    except (ValueError, LookupError, HttpProcessingError):
        raise Invalid("the form body is malformed", code="bad_form") from None


async def read_form(request: web.Request) -> MultiDictProxy[Any]:
    """A form body (urlencoded or multipart) in UTF-8; a malformed one is 400 bad_form."""
    _check_charset(request)
    with form_errors():
        return await request.post()
