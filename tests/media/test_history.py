from __future__ import annotations

from media.history import PacketHistory
from media.rtp import ForwardPacket


def fp(ext: int, arrival: float) -> ForwardPacket:
    return ForwardPacket(ext, 0, 0, b"", False, 0, arrival)


def test_history_is_bounded_in_time() -> None:
    history = PacketHistory(max_age_s=1.0)
    for i in range(300):  # 3 s at 100 packets/s
        history.put(fp(i, i / 100))
    assert len(history) <= 101
    assert history.get(150, now=2.99) is None  # older than 1 s
    assert history.get(250, now=2.99) is not None
    assert history.get(250, now=3.6) is None  # aged out on read too


def test_history_count_bound_and_replacement() -> None:
    history = PacketHistory(max_age_s=10.0, max_packets=50)
    for i in range(200):
        history.put(fp(i, 0.0))
    assert len(history) == 50 and history.get(149, 0.0) is None
    newer = fp(199, 0.1)
    history.put(newer)
    assert history.get(199, 0.1) is newer
