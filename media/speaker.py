"""Active speaker detection from RFC 6464 audio levels (no audio decoding)."""

from __future__ import annotations

from dataclasses import dataclass

from .rtp import SILENCE_DBOV


@dataclass(frozen=True)
class SpeakerChange:
    producer_id: str | None  # None: nobody above the threshold
    level_dbov: int | None


class ActiveSpeakerDetector:
    """Loudest producer per window, switched only after it wins `hold` windows.

    Levels are magnitudes in dBov (0 loudest, 127 silence); a window's score is
    the mean level of the packets received in it. Silence must last three times
    as long as a new speaker needs to win, so short pauses keep the speaker.
    """

    def __init__(self, interval_s: float, threshold_dbov: int, hold_windows: int) -> None:
        self.interval_s = interval_s
        self.threshold = threshold_dbov
        self.hold = max(1, hold_windows)
        self.current: str | None = None
        self._sums: dict[str, list[int]] = {}  # producer id -> [level sum, count]
        self._window_start: float | None = None
        self._candidate: str | None = None
        self._streak = 0

    def add(self, producer_id: str, level: int, now: float) -> None:
        acc = self._sums.get(producer_id)
        if acc is None:
            self._sums[producer_id] = [level, 1]
        else:
            acc[0] += level
            acc[1] += 1
        if self._window_start is None:
            self._window_start = now

    def remove(self, producer_id: str) -> None:
        self._sums.pop(producer_id, None)

    def due(self, now: float) -> bool:
        return self._window_start is not None and now - self._window_start >= self.interval_s

    def evaluate(self, now: float) -> SpeakerChange | None:
        """Close the window if it is over; return a change of speaker if any."""
        if not self.due(now):
            return None
        best: str | None = None
        best_level = SILENCE_DBOV + 1
        for producer_id, (total, count) in self._sums.items():
            level = total // count
            if level < best_level:
                best, best_level = producer_id, level
        self._sums = {}
        self._window_start = now
        if best_level > self.threshold:
            best = None
        if best == self._candidate:
            self._streak += 1
        else:
            self._candidate, self._streak = best, 1
        needed = self.hold if best is not None else 3 * self.hold
        if best != self.current and self._streak >= needed:
            self.current = best
            return SpeakerChange(best, best_level if best is not None else None)
        return None
