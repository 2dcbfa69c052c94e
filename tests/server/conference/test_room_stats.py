"""RoomStats.count: the SFU's cumulative per-peer numbers become Prometheus counter deltas."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry

from media import HistoryStats, RtxStats, UplinkStats
from media.allocator import AllocatorStats
from server.conference.metrics import MediaMetrics
from server.conference.room_stats import RoomStats


def peer(peer_id: str, rtx: RtxStats) -> Any:
    return SimpleNamespace(
        id=peer_id, consumers=[], producers=[], downlink_stats=AllocatorStats,
        uplink_stats=UplinkStats, downlink_feedback_stats=HistoryStats,
        retransmission_stats=lambda: rtx)


def sample(registry: CollectorRegistry, outcome: str) -> float | None:
    return registry.get_sample_value("hopso_media_retransmissions_total", {"outcome": outcome})


def test_retransmissions_sent_and_refused_reach_metrics_as_deltas() -> None:
    registry = CollectorRegistry()
    metrics = MediaMetrics.create(registry)
    assert [sample(registry, o) for o in ("sent", "budget", "repeat")] == [0.0, 0.0, 0.0]
    stats = RoomStats(1)
    rtx = RtxStats(sent=10, refused_budget=40, refused_repeat=3)
    router: Any = SimpleNamespace(peers=[peer("a", rtx), peer("b", RtxStats(sent=1))])
    stats.count(router, metrics)
    assert [sample(registry, o) for o in ("sent", "budget", "repeat")] == [11.0, 40.0, 3.0]
    rtx.sent, rtx.refused_budget = 12, 41  # cumulative: only what was gained is added
    stats.count(router, metrics)
    assert [sample(registry, o) for o in ("sent", "budget", "repeat")] == [13.0, 41.0, 3.0]
    stats.peer_left("a")
    router.peers = [peer("a", RtxStats(sent=2))]  # the same id, a new peer: counts from zero
    stats.count(router, metrics)
    assert sample(registry, "sent") == 15.0
