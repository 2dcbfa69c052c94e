"""The chat's live state: each sender's message budget (a token bucket per person and
meeting). Per process: with several processes a person's budget is per process they reach,
which still bounds a flood to a few times the rate (the socket guard bounds all events)."""

from __future__ import annotations

import time

from media import TokenBucket
from rooms.procedure import RateLimited

# A person may send a burst of 5 messages, then one every 2 s: fast typing in a debate,
# not a script filling every screen of the meeting.
RATE_PER_S = 0.5
BURST = 5
_IDLE_S = 60.0  # a full bucket unused this long is forgotten


class ChatLimits:
    def __init__(self, rate: float = RATE_PER_S, burst: float = BURST) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[tuple[int, int], TokenBucket] = {}
        self._swept = time.monotonic()

    def spend(self, user_id: int, meeting_id: int) -> None:
        """Take one message from the sender's budget or refuse it `rate_limited`."""
        self._sweep()
        bucket = self._buckets.setdefault((user_id, meeting_id),
                                          TokenBucket(self.rate, self.burst))
        if not bucket.take():
            raise RateLimited(f"too many messages; at most {self.burst} at once, then one "
                              f"every {1 / self.rate:g} s")

    def _sweep(self) -> None:
        now = time.monotonic()
        if now - self._swept < _IDLE_S:
            return
        self._swept = now
        self._buckets = {k: b for k, b in self._buckets.items()
                         if now - b.stamp < _IDLE_S}
