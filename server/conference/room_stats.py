"""One meeting's media numbers (owned by its `Room`): per-connection statistics for the
chair, the quality levels last pushed to the meeting, and the room's share of the
Prometheus counters (deltas of the SFU's cumulative numbers)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter

from media import Router
from rooms.models import MeetingRole
from server.conference.metrics import (
    DOWNLINK,
    DOWNLINK_FEEDBACK,
    FAULTS,
    RETRANSMISSIONS,
    UPLINK,
    MediaMetrics,
)
from server.conference.views import summarize

STATS_ROLES = frozenset({MeetingRole.chair, MeetingRole.secretary})
AppData = Callable[[str], dict[str, Any]]  # peer id -> the person, {} if not a member here


class RoomStats:
    def __init__(self, meeting_id: int) -> None:
        self.meeting_id = meeting_id
        self.quality: dict[str, str] = {}  # peer -> last level pushed
        self.counted: dict[str, tuple[int, int, int]] = {}  # consumer -> sent, bytes, dropped
        self.received: dict[str, int] = {}  # producer id -> packets received
        self.faults: dict[str, tuple[int, int, int]] = {}  # producer id -> FAULTS counts
        # peer id -> its DOWNLINK, UPLINK, DOWNLINK_FEEDBACK and RETRANSMISSIONS counts
        self.downlink: dict[str, tuple[int, ...]] = {}
        self.uplink: dict[str, tuple[int, ...]] = {}
        self.feedback: dict[str, tuple[int, ...]] = {}
        self.rtx: dict[str, tuple[int, ...]] = {}

    def snapshot(self, router: Router | None, app_data: AppData) -> dict[str, Any]:
        """`GET .../media/stats` and ``media:stats``: every connection's numbers."""
        if router is None:
            return {"meeting_id": self.meeting_id, "active_speaker_peer_id": None, "peers": []}
        stats = router.stats()
        peers = []
        for ps in stats.peers:
            entry: dict[str, Any] = {"peer_id": ps.id, **app_data(ps.id)}
            entry.update(summarize(ps))
            entry["transports"] = [dataclasses.asdict(t) for t in ps.transports]
            entry["producers"] = [dataclasses.asdict(p) for p in ps.producers]
            entry["consumers"] = [dataclasses.asdict(c) for c in ps.consumers]
            peers.append(entry)
        return {"meeting_id": self.meeting_id,
                "active_speaker_peer_id": stats.active_speaker_peer_id, "peers": peers}

    def changed_levels(self, snapshot: dict[str, Any]) -> dict[str, str] | None:
        """The quality levels if they differ from those last pushed (and now they are)."""
        levels = {p["peer_id"]: p["quality"] for p in snapshot["peers"]}
        if levels == self.quality:
            return None
        self.quality = levels
        return levels

    def count(self, router: Router | None, metrics: MediaMetrics) -> None:
        """Prometheus counters from the SFU's cumulative numbers (deltas per sample)."""
        live: set[str] = set()
        for peer in router.peers if router else []:
            d, u = peer.downlink_stats(), peer.uplink_stats()
            f, r = peer.downlink_feedback_stats(), peer.retransmission_stats()
            self.downlink[peer.id] = _advance(
                metrics.downlink_events, DOWNLINK,
                (d.remb_absurd, d.no_feedback, d.video_off_events, d.link_falls),
                self.downlink.get(peer.id))
            self.uplink[peer.id] = _advance(metrics.uplink_feedback, UPLINK,
                                            (u.too_old, u.skipped), self.uplink.get(peer.id))
            self.feedback[peer.id] = _advance(metrics.downlink_feedback, DOWNLINK_FEEDBACK,
                                              (f.malformed, f.unknown),
                                              self.feedback.get(peer.id))
            self.rtx[peer.id] = _advance(metrics.retransmissions, RETRANSMISSIONS,
                                         (r.sent, r.refused_budget, r.refused_repeat),
                                         self.rtx.get(peer.id))
            for consumer in peer.consumers:
                s = consumer.stats()
                last = self.counted.get(s.id, (0, 0, 0))
                now = (s.packets_sent, s.bytes_sent, s.packets_dropped)
                metrics.forwarded_packets.inc(max(0, now[0] - last[0]))
                metrics.forwarded_bytes.inc(max(0, now[1] - last[1]))
                metrics.dropped_packets.inc(max(0, now[2] - last[2]))
                self.counted[s.id] = now
                live.add(s.id)
            for producer in peer.producers:
                ps = producer.stats()
                received = ps.packets_received
                metrics.received_packets.inc(max(0, received - self.received.get(producer.id, 0)))
                self.received[producer.id] = received
                faults = (ps.unknown_rid_packets, ps.unbound_packets, ps.ssrc_changes)
                last_faults = self.faults.get(producer.id, (0, 0, 0))
                for fault, count, before in zip(FAULTS, faults, last_faults, strict=True):
                    if count > before:
                        metrics.publisher_faults.labels(fault).inc(count - before)
                self.faults[producer.id] = faults
        for gone in set(self.counted) - live:
            del self.counted[gone]

    def producer_closed(self, producer_id: str) -> None:
        self.received.pop(producer_id, None)
        self.faults.pop(producer_id, None)

    def peer_left(self, peer_id: str) -> None:
        self.quality.pop(peer_id, None)
        self.downlink.pop(peer_id, None)
        self.uplink.pop(peer_id, None)
        self.feedback.pop(peer_id, None)
        self.rtx.pop(peer_id, None)


def _advance(counter: Counter, labels: tuple[str, ...], counts: tuple[int, ...],
             before: tuple[int, ...] | None) -> tuple[int, ...]:
    """Advance the labelled `counter` by what each cumulative count gained since `before`
    (None: since zero); returns `counts`, the next sample's `before`."""
    for label, count, last in zip(labels, counts, before or (0,) * len(counts), strict=True):
        if count > last:
            counter.labels(label).inc(count - last)
    return counts
