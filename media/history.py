"""Per-producer packet history, bounded in time, for answering NACKs."""

from __future__ import annotations

from collections import deque

from .rtp import ForwardPacket


class PacketHistory:
    """Packets by source extended sequence number, kept for `max_age_s`.

    Time-sized rather than count-sized (aiortc keeps 128 packets, about 0.1 s
    of HD video); `max_packets` only bounds memory for absurd bitrates.
    """

    def __init__(self, max_age_s: float, max_packets: int = 8192) -> None:
        self.max_age_s = max_age_s
        self.max_packets = max_packets
        self._by_seq: dict[int, ForwardPacket] = {}
        self._order: deque[ForwardPacket] = deque()

    def __len__(self) -> int:
        return len(self._by_seq)

    def put(self, fp: ForwardPacket) -> None:
        self._by_seq[fp.ext_seq] = fp
        order = self._order
        order.append(fp)
        horizon = fp.arrival - self.max_age_s
        while order and (order[0].arrival < horizon or len(order) > self.max_packets):
            old = order.popleft()
            if self._by_seq.get(old.ext_seq) is old:
                del self._by_seq[old.ext_seq]

    def get(self, ext_seq: int, now: float) -> ForwardPacket | None:
        fp = self._by_seq.get(ext_seq)
        if fp is None or now - fp.arrival > self.max_age_s:
            return None
        return fp

    def clear(self) -> None:
        self._by_seq.clear()
        self._order.clear()
