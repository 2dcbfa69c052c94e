from __future__ import annotations

from media.speaker import ActiveSpeakerDetector


def feed(det: ActiveSpeakerDetector, start: float, seconds: float,
         levels: dict[str, int]) -> list[tuple[float, object]]:
    changes = []
    t = start
    while t < start + seconds:
        for pid, level in levels.items():
            det.add(pid, level, t)
        change = det.evaluate(t)
        if change is not None:
            changes.append((round(t, 2), change))
        t += 0.02
    return changes


def test_loudest_wins_after_hold_windows() -> None:
    det = ActiveSpeakerDetector(interval_s=0.3, threshold_dbov=60, hold_windows=2)
    changes = feed(det, 0.0, 1.0, {"a": 20, "b": 45, "c": 127})
    assert [c.producer_id for _, c in changes] == ["a"]  # type: ignore[attr-defined]
    assert changes[0][0] <= 0.7
    changes = feed(det, 1.0, 1.0, {"a": 90, "b": 30})
    assert [c.producer_id for _, c in changes] == ["b"]  # type: ignore[attr-defined]


def test_short_blips_do_not_switch_and_silence_takes_longer() -> None:
    det = ActiveSpeakerDetector(interval_s=0.3, threshold_dbov=60, hold_windows=2)
    feed(det, 0.0, 1.0, {"a": 20, "b": 50})
    assert det.current == "a"
    assert feed(det, 1.0, 0.3, {"a": 50, "b": 20}) == []  # one window only
    assert det.current == "a"
    changes = feed(det, 1.3, 3.0, {"a": 127, "b": 100})
    assert [c.producer_id for _, c in changes] == [None]  # type: ignore[attr-defined]
    assert changes[0][0] >= 1.3 + 5 * 0.3


def test_removed_producer_stops_counting() -> None:
    det = ActiveSpeakerDetector(interval_s=0.3, threshold_dbov=60, hold_windows=1)
    det.add("a", 10, 0.0)
    det.remove("a")
    det.add("b", 40, 0.1)
    change = det.evaluate(0.31)
    assert change is not None and change.producer_id == "b"
