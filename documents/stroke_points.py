"""A stroke's points packed into bytes: what a live annotation keeps in memory.

A point as Python objects (a slotted ``Point`` and two or three boxed floats, plus its tuple
slot) costs ~136 bytes; a meeting keeps every stroke not erased, so that was most of the
server's memory growth during a meeting (docs/benchmarks.md, Soak). Packed, a point costs
8 bytes a coordinate and 4 for its pressure.

Coordinates arrive as JSON numbers of any precision (the web client rounds to 0.01, which
float32 cannot hold), and the wire and the stored ops must carry back exactly what was
accepted, so each array is float32 only when every value survives float32 unchanged, else
float64: exact either way. A point without pressure keeps ``_NO_PRESSURE`` (pressures are
validated to [0, 1]), so ``[x, y]`` and ``[x, y, p]`` come back as they went in.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, overload

_NO_PRESSURE = -1.0
_Code = Literal["f", "d"]  # float32, float64


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float
    pressure: float | None = None

    def to_list(self) -> list[float]:
        return [self.x, self.y] if self.pressure is None else [self.x, self.y, self.pressure]


def _pack(values: list[float]) -> tuple[_Code, bytes]:
    """The narrowest exact packing of ``values``: (typecode, bytes)."""
    narrow = array("f", values)  # out-of-range values become inf and fail the comparison
    if narrow.tolist() == values:
        return "f", narrow.tobytes()
    return "d", array("d", values).tobytes()


def _unpack(code: _Code, data: bytes) -> list[float]:
    values = array(code)
    values.frombytes(data)
    return values.tolist()


class StrokePoints(Sequence[Point]):
    """Immutable, hashable sequence of ``Point``; points are rebuilt on access."""

    __slots__ = ("_pressure", "_pressure_code", "_xy", "_xy_code")
    _xy_code: _Code
    _xy: bytes
    _pressure_code: _Code
    _pressure: bytes

    def __init__(self, xy: Iterable[float] = (), pressures: Iterable[float | None] = ()) -> None:
        """``xy``: x0, y0, x1, y1, ...; ``pressures``: one per point (None: none), or empty
        when no point has one."""
        flat = [float(v) for v in xy]
        given = [_NO_PRESSURE if p is None else float(p) for p in pressures]
        if given and len(given) * 2 != len(flat):
            raise ValueError("one pressure per point, or none at all")
        if len(flat) % 2:
            raise ValueError("coordinates come in x, y pairs")
        self._xy_code, self._xy = _pack(flat)
        if any(p != _NO_PRESSURE for p in given):
            self._pressure_code, self._pressure = _pack(given)
        else:
            self._pressure_code, self._pressure = "f", b""

    def __len__(self) -> int:
        return len(self._xy) // (8 if self._xy_code == "d" else 4) // 2

    @overload
    def __getitem__(self, index: int) -> Point: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Point, ...]: ...

    def __getitem__(self, index: int | slice) -> Point | tuple[Point, ...]:
        if isinstance(index, slice):
            return tuple(self)[index]
        n = len(self)
        if not -n <= index < n:
            raise IndexError("point index out of range")
        i = index % n
        xy = memoryview(self._xy).cast(self._xy_code)
        pressure = memoryview(self._pressure).cast(self._pressure_code)[i] if self._pressure \
            else _NO_PRESSURE
        return Point(xy[2 * i], xy[2 * i + 1], None if pressure == _NO_PRESSURE else pressure)

    def __iter__(self) -> Iterator[Point]:
        xy = _unpack(self._xy_code, self._xy)
        pressures = _unpack(self._pressure_code, self._pressure) if self._pressure else None
        for i in range(len(xy) // 2):
            p = pressures[i] if pressures is not None else _NO_PRESSURE
            yield Point(xy[2 * i], xy[2 * i + 1], None if p == _NO_PRESSURE else p)

    def to_lists(self) -> list[list[float]]:
        """The wire and storage form: ``[x, y]`` or ``[x, y, pressure]`` per point."""
        xy = _unpack(self._xy_code, self._xy)
        if not self._pressure:
            return [xy[i:i + 2] for i in range(0, len(xy), 2)]
        pressures = _unpack(self._pressure_code, self._pressure)
        return [[xy[2 * i], xy[2 * i + 1]] if p == _NO_PRESSURE else [xy[2 * i], xy[2 * i + 1], p]
                for i, p in enumerate(pressures)]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StrokePoints):
            return (self._xy, self._pressure) == (other._xy, other._pressure) and \
                (self._xy_code, self._pressure_code) == (other._xy_code, other._pressure_code)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self._xy, self._pressure))

    def __repr__(self) -> str:
        return f"StrokePoints({len(self)} points)"

    def nbytes(self) -> int:
        """What this stroke's points keep in memory: the object and its two buffers."""
        return sys.getsizeof(self) + sys.getsizeof(self._xy) + sys.getsizeof(self._pressure)


NO_POINTS = StrokePoints()  # a highlighter of text boxes only
