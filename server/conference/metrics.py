"""Prometheus numbers of the conference: counters fed from the SFU's cumulative stats by
each room (`Room.count`), and gauges read from the live SFU at scrape time."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from server.conference.keys import MEDIA

KINDS = ("audio", "video")


@dataclass
class MediaMetrics:
    forwarded_packets: Counter
    forwarded_bytes: Counter
    received_packets: Counter
    dropped_packets: Counter
    publisher_faults: Counter  # simulcast publishers' faults, by kind (docs/media.md, Simulcast)
    downlink_events: Counter  # subscribers' bandwidth feedback faults and audio-only falls
    uplink_feedback: Counter  # publishers' transport-wide sequence numbers ignored or skipped
    downlink_feedback: Counter  # subscribers' transport-wide feedback refused or not ours
    retransmissions: Counter  # NACKed packets resent, or refused (media/rtx_budget.py)

    @classmethod
    def create(cls, registry: CollectorRegistry) -> MediaMetrics:
        return cls(
            forwarded_packets=Counter("hopso_media_forwarded_packets_total",
                                      "RTP packets the SFU sent to subscribers",
                                      registry=registry),
            forwarded_bytes=Counter("hopso_media_forwarded_bytes_total",
                                    "RTP payload bytes the SFU sent to subscribers",
                                    registry=registry),
            received_packets=Counter("hopso_media_received_packets_total",
                                     "RTP packets the SFU received from publishers",
                                     registry=registry),
            dropped_packets=Counter("hopso_media_dropped_packets_total",
                                    "RTP packets not forwarded (slow subscriber, waiting "
                                    "for a keyframe)", registry=registry),
            publisher_faults=_labelled(
                registry, "hopso_media_publisher_faults_total",
                "Publisher packets or streams the SFU could not use (simulcast: an unknown "
                "rid, an SSRC without rid, a layer rebound to a new SSRC)", "fault", FAULTS),
            downlink_events=_labelled(
                registry, "hopso_media_downlink_events_total",
                "Subscribers' downlink events (docs/media.md, Bandwidth allocation): an absurd "
                "REMB refused, feedback gone missing, a fall to audio only, a link's fall seen in "
                "transport-cc feedback (media/link_fall.py)", "event", DOWNLINK),
            uplink_feedback=_labelled(
                registry, "hopso_media_uplink_feedback_total",
                "Publishers' transport-wide sequence numbers the feedback left out "
                "(docs/media.md, Publisher uplink): too far behind to record, or too many for "
                "one report", "event", UPLINK),
            downlink_feedback=_labelled(
                registry, "hopso_media_downlink_feedback_total",
                "Subscribers' transport-wide feedback the SFU did not use (docs/media.md, "
                "Transport-cc from subscribers): packets refused as malformed or huge, "
                "sequence numbers it never sent or no longer remembers", "event",
                DOWNLINK_FEEDBACK),
            retransmissions=_labelled(
                registry, "hopso_media_retransmissions_total",
                "Packets subscribers NACKed (docs/media.md, Retransmission budget): resent, "
                "refused over the transport's budget (a share of its downlink estimate), "
                "refused as a repeat within a round trip", "outcome", RETRANSMISSIONS),
        )


FAULTS = ("unknown_rid", "unbound", "ssrc_change")  # ProducerStats' fault counters
DOWNLINK = ("remb_absurd", "no_feedback", "video_off", "link_fall")  # AllocatorStats' counters
UPLINK = ("too_old", "skipped")  # UplinkStats' counters of what the feedback left out
DOWNLINK_FEEDBACK = ("malformed", "unknown")  # HistoryStats' counters of feedback not used
RETRANSMISSIONS = ("sent", "budget", "repeat")  # RtxStats: sent, refused_budget, refused_repeat


def _labelled(registry: CollectorRegistry, name: str, documentation: str, label: str,
              values: tuple[str, ...]) -> Counter:
    """A counter with one label whose every value's series exists from the start, at 0
    (a rate over a series that appears late misses its first increase)."""
    counter = Counter(name, documentation, [label], registry=registry)
    for value in values:
        counter.labels(value)
    return counter


class MediaCollector(Collector):
    """Gauges read from the live SFU at scrape time."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterable[GaugeMetricFamily]:
        hub = self._app.get(MEDIA)
        routers = hub.sfu.routers if hub is not None else []
        peers = sum(len(r.peers) for r in routers)
        producers = GaugeMetricFamily("hopso_media_producers", "Live media producers",
                                      labels=["kind"])
        counts = {k: 0 for k in KINDS}
        consumers = 0
        for router in routers:
            for info in router.producers():
                counts[info.kind.value] += 1
            consumers += sum(len(p.consumers) for p in router.peers)
        for kind, n in counts.items():
            producers.add_metric([kind], n)
        yield GaugeMetricFamily("hopso_media_routers", "Meetings with live media",
                                value=len(routers))
        yield GaugeMetricFamily("hopso_media_peers", "Connections in a meeting's media",
                                value=peers)
        yield producers
        yield GaugeMetricFamily("hopso_media_consumers", "Live media consumers",
                                value=consumers)
