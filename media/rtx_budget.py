"""Retransmission budget of one subscriber transport (issue 15, weak links).

A receiver NACKs what it misses, and aiortc re-NACKs every packet still missing at each new
gap (up to 43 in one NACK on a 300 kbit/s link). Answered in full, the retransmissions
overflow the very queue that lost the packets: more loss, more NACKs, keyframe requests. So
each subscriber transport answers NACKs within a budget:

* **bytes**: a token bucket refilled at `share` (20 %) of the transport's downlink estimate
  (REMB or the transport-cc estimate; without one, of what the transport sends), holding at
  most `burst_s` of that rate and never less than `min_burst_bytes` (a lost packet or two of
  a keyframe can always be repaired);
* **repeats**: one packet is resent at most once per round trip (the subscriber's RTT from its
  reports, `repeat_min_s`..`repeat_max_s`): a NACK repeated before our answer could arrive is
  not a new loss.

Packets older than the producer's history (`video_history_s`, 1 s) are not resent either: the
history has forgotten them. The counters go to /metrics (`hopso_media_rtx_total`).
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass


class RtxOutcome(enum.Enum):
    SENT = "sent"
    BUDGET = "budget"  # refused: the transport's byte budget is spent
    REPEAT = "repeat"  # refused: the same packet was resent less than a round trip ago


@dataclass
class RtxStats:
    sent: int = 0
    refused_budget: int = 0
    refused_repeat: int = 0


class RtxBudget:
    """The retransmission budget of one subscriber transport (the module's docstring)."""

    def __init__(self, share: float = 0.2, burst_s: float = 0.25,
                 min_burst_bytes: int = 2_600, repeat_min_s: float = 0.1,
                 repeat_max_s: float = 0.5, default_rtt_s: float = 0.2,
                 max_keys: int = 4096) -> None:
        self.share, self.burst_s, self.min_burst_bytes = share, burst_s, min_burst_bytes
        self.repeat_min_s, self.repeat_max_s = repeat_min_s, repeat_max_s
        self.default_rtt_s = default_rtt_s
        self.max_keys = max_keys
        self.basis_bps: int | None = None  # None: no basis yet, nothing is refused for bytes
        self._tokens = float(min_burst_bytes)
        self._stamp: float | None = None
        self._resent: OrderedDict[tuple[int, int], float] = OrderedDict()  # (ssrc, seq) -> t
        self.stats = RtxStats()

    @property
    def rate_bytes_s(self) -> float:
        return 0.0 if self.basis_bps is None else self.basis_bps * self.share / 8

    @property
    def burst_bytes(self) -> float:
        return max(float(self.min_burst_bytes), self.rate_bytes_s * self.burst_s)

    def set_basis(self, bps: int | None, now: float) -> None:
        """The downlink estimate (or sent rate) the budget is a share of."""
        self._refill(now)
        first = self.basis_bps is None
        self.basis_bps = bps
        self._tokens = self.burst_bytes if first else min(self._tokens, self.burst_bytes)

    def _refill(self, now: float) -> None:
        if self._stamp is not None and now > self._stamp:
            self._tokens = min(self.burst_bytes,
                               self._tokens + (now - self._stamp) * self.rate_bytes_s)
        self._stamp = now if self._stamp is None else max(self._stamp, now)

    def repeat_interval(self, rtt_s: float | None) -> float:
        rtt = self.default_rtt_s if rtt_s is None else rtt_s
        return min(self.repeat_max_s, max(self.repeat_min_s, rtt))

    def admit(self, ssrc: int, seq: int, size: int, now: float,
              rtt_s: float | None = None, free: bool = False) -> RtxOutcome:
        """Whether the packet `seq` of the consumer sending `ssrc` may be resent now
        (`size` bytes on the wire); if so, it is counted as sent and its bytes are spent.
        `free`: outside the byte budget (a step down's keyframe), the repeat rule still holds."""
        key = (ssrc, seq & 0xFFFF)
        last = self._resent.get(key)
        if last is not None and now - last < self.repeat_interval(rtt_s):
            self.stats.refused_repeat += 1
            return RtxOutcome.REPEAT
        if self.basis_bps is not None and not free:
            self._refill(now)
            if self._tokens < size:
                self.stats.refused_budget += 1
                return RtxOutcome.BUDGET
            self._tokens -= size
        self._resent[key] = now
        self._resent.move_to_end(key)
        self._forget(now)
        self.stats.sent += 1
        return RtxOutcome.SENT

    def _forget(self, now: float) -> None:
        resent = self._resent
        horizon = now - self.repeat_max_s
        while resent and (len(resent) > self.max_keys or next(iter(resent.values())) < horizon):
            resent.popitem(last=False)
