"""Packed stroke points: exact round-trips (the wire carries JSON doubles) and a small,
measured memory footprint per kept stroke."""

from __future__ import annotations

import json
import math
import sys

from documents.annotations import Annotation, InkShape, Point, parse_annotation
from documents.stroke_points import StrokePoints

A4 = (595.0, 842.0)


def stroke(n: int, pressure: float | None = 0.5) -> list[list[float]]:
    """Like the web client: coordinates rounded to 0.01 (not float32-exact)."""
    return [[round(50 + i * 4.37, 2), round(400 + 90 * math.sin(i / 7), 2)]
            + ([] if pressure is None else [pressure]) for i in range(n)]


def ink_payload(points: list[list[float]]) -> dict[str, object]:
    return {"id": "8b1f0a3e-5a3c-4d8e-9a61-0c6f2b7d9e10", "document_id": "doc-1", "page": 0,
            "author_id": "alice", "kind": "ink",
            "data": {"points": points, "color": "#c62828", "width": 2.0}}


def test_points_come_back_exactly_as_sent() -> None:
    sent = [[10.01, 20.02, 0.5], [1e-7, 841.99], [594.999999999, 0.1, 0.3140000104904175],
            [0.0, -0.0, None], [1, 2, 1]]
    ann = parse_annotation(ink_payload(sent), A4)
    expected = [[float(v) for v in p if v is not None] for p in sent]
    wire = ann.to_dict()["data"]["points"]
    assert wire == expected
    assert json.dumps(wire) == json.dumps(expected)  # byte-for-byte, signs of zero included
    assert Annotation.from_dict(ann.to_dict()) == ann


def test_points_read_as_points() -> None:
    points = StrokePoints([1.5, 2.25, 3.1, 4.2], [0.5, None])
    assert list(points) == [Point(1.5, 2.25, 0.5), Point(3.1, 4.2)]
    assert points[-1] == Point(3.1, 4.2) and points[0:1] == (Point(1.5, 2.25, 0.5),)
    assert len(points) == 2 and points and not StrokePoints()
    assert hash(points) == hash(StrokePoints([1.5, 2.25, 3.1, 4.2], [0.5, None]))


def test_float32_exact_values_pack_narrow_and_others_wide() -> None:
    narrow = StrokePoints([1.5, 2.25] * 50, [0.5] * 50)
    wide = StrokePoints([1.01, 2.25] * 50, [0.5] * 50)
    assert narrow.to_lists() == [[1.5, 2.25, 0.5]] * 50
    assert wide.to_lists() == [[1.01, 2.25, 0.5]] * 50
    assert narrow.nbytes() < wide.nbytes()
    huge = StrokePoints([1e300, 1.0])  # beyond float32: kept as float64, not as inf
    assert huge.to_lists() == [[1e300, 1.0]]


# Measured 2026-12-06: 100 client points with pressure keep 2 130 bytes packed (float64
# coordinates, float32 pressures) where the tuple of Points kept 13 640 (Point 56 + three
# floats 72 + tuple slot 8 a point).
MAX_BYTES_100_POINTS = 2_300


def test_a_kept_stroke_is_small() -> None:
    ann = parse_annotation(ink_payload(stroke(100)), A4)
    assert isinstance(ann.shape, InkShape)
    assert ann.shape.points.nbytes() <= MAX_BYTES_100_POINTS
    without_pressure = parse_annotation(ink_payload(stroke(100, None)), A4)
    assert isinstance(without_pressure.shape, InkShape)
    assert without_pressure.shape.points.nbytes() <= MAX_BYTES_100_POINTS - 350
    as_objects = sys.getsizeof(tuple(ann.shape.points)) + sum(
        sys.getsizeof(p) + 3 * sys.getsizeof(p.x) for p in ann.shape.points)
    assert ann.shape.points.nbytes() * 5 < as_objects
