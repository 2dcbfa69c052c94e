"""Hopso's own annotation model (never a drawing library's format).

Coordinates are PDF points in the page's *visual* space as PyMuPDF reports it
(``page.rect``: origin top-left, y down, page rotation applied), i.e. exactly
what a client sees on a page rendered at 72 dpi. Export converts to the
unrotated space PDF annotations need.

Client input goes through :func:`parse_annotation` (full validation against
the page box and limits); stored JSON comes back through
:meth:`Annotation.from_dict` (structure only: it was validated on the way in).
The eraser is not a shape: it is a delete operation (see annotation_ops).
"""

from __future__ import annotations

import math
import re
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar

from .stroke_points import NO_POINTS, StrokePoints
from .stroke_points import Point as Point  # re-exported: callers take points from here


class ErrorCode(str, Enum):
    BAD_TYPE = "bad_type"
    MISSING_FIELD = "missing_field"
    BAD_ID = "bad_id"
    BAD_KIND = "bad_kind"
    BAD_NUMBER = "bad_number"
    BAD_PAGE = "bad_page"
    OUT_OF_PAGE = "out_of_page"
    TOO_FEW_POINTS = "too_few_points"
    TOO_MANY_POINTS = "too_many_points"
    TOO_MANY_RECTS = "too_many_rects"
    BAD_COLOR = "bad_color"
    BAD_WIDTH = "bad_width"
    BAD_OPACITY = "bad_opacity"
    BAD_PRESSURE = "bad_pressure"
    BAD_FONT_SIZE = "bad_font_size"
    EMPTY_TEXT = "empty_text"
    TEXT_TOO_LONG = "text_too_long"
    BAD_VISIBILITY = "bad_visibility"
    TOO_MANY_ANNOTATIONS = "too_many_annotations"
    # Operation-level codes (raised by annotation_ops).
    BAD_OP = "bad_op"
    WRONG_DOCUMENT = "wrong_document"
    NOT_FOUND = "not_found"
    NOT_OWNER = "not_owner"
    ALREADY_EXISTS = "already_exists"
    KIND_CHANGED = "kind_changed"
    OP_ID_CONFLICT = "op_id_conflict"


class AnnotationError(ValueError):
    """Rejected input; ``code`` is stable for clients, ``message`` is for humans."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code.value, "message": self.message}


@dataclass(frozen=True)
class AnnotationLimits:
    max_points: int = 5000
    max_rects: int = 500
    max_per_page_per_author: int = 2000
    max_text_chars: int = 2000
    # Points may stray slightly outside the box: styluses overshoot edges.
    tolerance: float = 2.0
    min_width: float = 0.25
    max_width: float = 24.0
    max_highlighter_width: float = 60.0
    min_opacity: float = 0.05
    min_font_size: float = 6.0
    max_font_size: float = 48.0
    max_id_chars: int = 128


DEFAULT_LIMITS = AnnotationLimits()


class AnnotationKind(str, Enum):
    INK = "ink"
    HIGHLIGHTER = "highlighter"
    NOTE = "note"


class Visibility(str, Enum):
    PRIVATE = "private"  # author only (the default)
    MEETING = "meeting"  # every participant who can open the document
    PRESENTER = "presenter"  # author plus whoever currently presents/chairs


PageSize = tuple[float, float]
_COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True, slots=True)
class Rect:
    x0: float
    y0: float
    x1: float
    y1: float

    def to_list(self) -> list[float]:
        return [self.x0, self.y0, self.x1, self.y1]


@dataclass(frozen=True, slots=True)
class InkShape:
    KIND: ClassVar[AnnotationKind] = AnnotationKind.INK
    points: StrokePoints  # packed: see stroke_points
    color: str = "#000000"
    width: float = 2.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "points": self.points.to_lists(),
            "color": self.color,
            "width": self.width,
        }


@dataclass(frozen=True, slots=True)
class HighlighterShape:
    """A free-hand stroke (``points``) or text-aligned boxes (``rects``), or both."""

    KIND: ClassVar[AnnotationKind] = AnnotationKind.HIGHLIGHTER
    points: StrokePoints = NO_POINTS
    rects: tuple[Rect, ...] = ()
    color: str = "#ffeb3b"
    width: float = 14.0
    opacity: float = 0.35

    def to_dict(self) -> dict[str, Any]:
        return {
            "points": self.points.to_lists(),
            "rects": [r.to_list() for r in self.rects],
            "color": self.color,
            "width": self.width,
            "opacity": self.opacity,
        }


@dataclass(frozen=True, slots=True)
class NoteShape:
    """A text note anchored at its top-left corner; the box grows downwards."""

    KIND: ClassVar[AnnotationKind] = AnnotationKind.NOTE
    x: float
    y: float
    text: str
    color: str = "#000000"
    font_size: float = 12.0
    box_width: float = 200.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "x": self.x,
            "y": self.y,
            "text": self.text,
            "color": self.color,
            "font_size": self.font_size,
            "box_width": self.box_width,
        }


Shape = InkShape | HighlighterShape | NoteShape


@dataclass(frozen=True, slots=True)
class Annotation:
    id: str
    document_id: str
    page: int
    author_id: str
    shape: Shape
    visibility: Visibility = Visibility.PRIVATE
    created_at: float = 0.0
    updated_at: float = 0.0
    # Set by version mapping when the page content changed under the annotation.
    flagged: bool = False
    flag_reason: str | None = None

    @property
    def kind(self) -> AnnotationKind:
        return self.shape.KIND

    def visible_to(self, user_id: str, is_presenter: bool = False) -> bool:
        if user_id == self.author_id or self.visibility is Visibility.MEETING:
            return True
        return self.visibility is Visibility.PRESENTER and is_presenter

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "document_id": self.document_id,
            "page": self.page,
            "author_id": self.author_id,
            "kind": self.kind.value,
            "visibility": self.visibility.value,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "flagged": self.flagged,
            "flag_reason": self.flag_reason,
            "data": self.shape.to_dict(),
        }

    @classmethod
    def from_dict(
        cls, raw: dict[str, Any], limits: AnnotationLimits = DEFAULT_LIMITS
    ) -> Annotation:
        """Load a stored annotation (no page-box check: that was done on input)."""
        return _parse(raw, None, limits)


def parse_annotation(
    raw: Any, page_size: PageSize, limits: AnnotationLimits = DEFAULT_LIMITS
) -> Annotation:
    """Validate client JSON for a page of ``page_size`` (width, height) points."""
    return _parse(raw, page_size, limits)


# --- validation helpers -----------------------------------------------------


def _fail(code: ErrorCode, message: str) -> AnnotationError:
    return AnnotationError(code, message)


def _require(raw: dict[str, Any], key: str) -> Any:
    if key not in raw or raw[key] is None:
        raise _fail(ErrorCode.MISSING_FIELD, f"missing field '{key}'")
    return raw[key]


def _number(value: Any, name: str) -> float:
    # bool is an int subclass; NaN/inf would poison every later comparison.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(ErrorCode.BAD_NUMBER, f"'{name}' must be a finite number")
    return float(value)


def _ranged(value: Any, name: str, lo: float, hi: float, code: ErrorCode) -> float:
    num = _number(value, name)
    if not lo <= num <= hi:
        raise _fail(code, f"'{name}' must be within [{lo}, {hi}], got {num}")
    return num


def _text_id(value: Any, name: str, limits: AnnotationLimits) -> str:
    if not isinstance(value, str) or not value or len(value) > limits.max_id_chars:
        raise _fail(ErrorCode.BAD_ID, f"'{name}' must be a non-empty string")
    return value


def parse_uuid(value: Any, name: str = "id") -> str:
    """Client-generated ids must be UUIDs; returned in canonical lowercase form."""
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    raise _fail(ErrorCode.BAD_ID, f"'{name}' must be a UUID string")


def parse_color(value: Any) -> str:
    if not isinstance(value, str) or not _COLOR_RE.match(value):
        raise _fail(ErrorCode.BAD_COLOR, f"color must be #rrggbb, got {value!r}")
    # Interned: a meeting's thousands of strokes share a handful of colours.
    return sys.intern(value.lower())


def parse_visibility(value: Any) -> Visibility:
    try:
        return Visibility(value)
    except ValueError:
        raise _fail(ErrorCode.BAD_VISIBILITY, f"unknown visibility {value!r}") from None


class _Box:
    """The page box check; ``None`` page size means 'trusted, skip'."""

    def __init__(self, page_size: PageSize | None, tolerance: float) -> None:
        self.size = page_size
        self.tol = tolerance

    def check(self, x: float, y: float) -> None:
        if self.size is None:
            return
        w, h = self.size
        if not (-self.tol <= x <= w + self.tol and -self.tol <= y <= h + self.tol):
            raise _fail(
                ErrorCode.OUT_OF_PAGE, f"({x:.1f}, {y:.1f}) lies outside the {w:.0f}x{h:.0f} page"
            )


def _points(raw: Any, box: _Box, limits: AnnotationLimits, required: bool) -> StrokePoints:
    if not isinstance(raw, list):
        raise _fail(ErrorCode.BAD_TYPE, "'points' must be a list of [x, y] or [x, y, pressure]")
    if len(raw) > limits.max_points:
        raise _fail(
            ErrorCode.TOO_MANY_POINTS, f"{len(raw)} points; at most {limits.max_points} per stroke"
        )
    if required and not raw:
        raise _fail(ErrorCode.TOO_FEW_POINTS, "a stroke needs at least one point")
    xy: list[float] = []
    pressures: list[float | None] = []
    for item in raw:
        if not isinstance(item, (list, tuple)) or len(item) not in (2, 3):
            raise _fail(ErrorCode.BAD_TYPE, "each point must be [x, y] or [x, y, pressure]")
        x, y = _number(item[0], "x"), _number(item[1], "y")
        box.check(x, y)
        pressure = None
        if len(item) == 3 and item[2] is not None:
            pressure = _ranged(item[2], "pressure", 0.0, 1.0, ErrorCode.BAD_PRESSURE)
        xy += (x, y)
        pressures.append(pressure)
    return StrokePoints(xy, pressures)


def _rects(raw: Any, box: _Box, limits: AnnotationLimits) -> tuple[Rect, ...]:
    if not isinstance(raw, list):
        raise _fail(ErrorCode.BAD_TYPE, "'rects' must be a list of [x0, y0, x1, y1]")
    if len(raw) > limits.max_rects:
        raise _fail(ErrorCode.TOO_MANY_RECTS, f"{len(raw)} rects; at most {limits.max_rects}")
    out = []
    for item in raw:
        if not isinstance(item, (list, tuple)) or len(item) != 4:
            raise _fail(ErrorCode.BAD_TYPE, "each rect must be [x0, y0, x1, y1]")
        x0, y0, x1, y1 = (_number(v, "rect") for v in item)
        box.check(x0, y0)
        box.check(x1, y1)
        # Normalise so export never sees an inverted box.
        out.append(Rect(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
    return tuple(out)


def _ink(data: dict[str, Any], box: _Box, limits: AnnotationLimits) -> InkShape:
    return InkShape(
        points=_points(_require(data, "points"), box, limits, required=True),
        color=parse_color(data.get("color", "#000000")),
        width=_ranged(
            data.get("width", 2.0), "width", limits.min_width, limits.max_width, ErrorCode.BAD_WIDTH
        ),
    )


def _highlighter(data: dict[str, Any], box: _Box, limits: AnnotationLimits) -> HighlighterShape:
    points = _points(data.get("points", []), box, limits, required=False)
    rects = _rects(data.get("rects", []), box, limits)
    if not points and not rects:
        raise _fail(ErrorCode.TOO_FEW_POINTS, "a highlighter needs 'points' or 'rects'")
    width_hi = limits.max_highlighter_width
    return HighlighterShape(
        points=points,
        rects=rects,
        color=parse_color(data.get("color", "#ffeb3b")),
        width=_ranged(
            data.get("width", 14.0), "width", limits.min_width, width_hi, ErrorCode.BAD_WIDTH
        ),
        opacity=_ranged(
            data.get("opacity", 0.35), "opacity", limits.min_opacity, 1.0, ErrorCode.BAD_OPACITY
        ),
    )


def _note(data: dict[str, Any], box: _Box, limits: AnnotationLimits) -> NoteShape:
    x, y = _number(_require(data, "x"), "x"), _number(_require(data, "y"), "y")
    box.check(x, y)
    text = _require(data, "text")
    if not isinstance(text, str):
        raise _fail(ErrorCode.BAD_TYPE, "'text' must be a string")
    if not text.strip():
        raise _fail(ErrorCode.EMPTY_TEXT, "a note needs some text")
    if len(text) > limits.max_text_chars:
        raise _fail(ErrorCode.TEXT_TOO_LONG, f"{len(text)} chars; at most {limits.max_text_chars}")
    page_w = box.size[0] if box.size else 10_000.0
    return NoteShape(
        x=x,
        y=y,
        text=text,
        color=parse_color(data.get("color", "#000000")),
        font_size=_ranged(
            data.get("font_size", 12.0),
            "font_size",
            limits.min_font_size,
            limits.max_font_size,
            ErrorCode.BAD_FONT_SIZE,
        ),
        box_width=_ranged(
            data.get("box_width", 200.0), "box_width", 20.0, page_w, ErrorCode.BAD_WIDTH
        ),
    )


_SHAPE_PARSERS: dict[AnnotationKind, Callable[[dict[str, Any], _Box, AnnotationLimits], Shape]] = {
    AnnotationKind.INK: _ink,
    AnnotationKind.HIGHLIGHTER: _highlighter,
    AnnotationKind.NOTE: _note,
}


def _parse(raw: Any, page_size: PageSize | None, limits: AnnotationLimits) -> Annotation:
    if not isinstance(raw, dict):
        raise _fail(ErrorCode.BAD_TYPE, "an annotation must be a JSON object")
    try:
        kind = AnnotationKind(_require(raw, "kind"))
    except ValueError:
        raise _fail(ErrorCode.BAD_KIND, f"unknown kind {raw.get('kind')!r}") from None
    page = _require(raw, "page")
    if isinstance(page, bool) or not isinstance(page, int) or page < 0:
        raise _fail(ErrorCode.BAD_PAGE, "'page' must be a 0-based integer")
    data = _require(raw, "data")
    if not isinstance(data, dict):
        raise _fail(ErrorCode.BAD_TYPE, "'data' must be an object")
    shape = _SHAPE_PARSERS[kind](data, _Box(page_size, limits.tolerance), limits)
    reason = raw.get("flag_reason")
    return Annotation(
        id=parse_uuid(_require(raw, "id")),
        document_id=_text_id(_require(raw, "document_id"), "document_id", limits),
        page=page,
        author_id=_text_id(_require(raw, "author_id"), "author_id", limits),
        shape=shape,
        visibility=parse_visibility(raw.get("visibility", Visibility.PRIVATE.value)),
        created_at=_number(raw.get("created_at", 0.0), "created_at"),
        updated_at=_number(raw.get("updated_at", 0.0), "updated_at"),
        flagged=bool(raw.get("flagged", False)),
        flag_reason=reason if isinstance(reason, str) else None,
    )
