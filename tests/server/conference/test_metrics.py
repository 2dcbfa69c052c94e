"""MediaMetrics: the conference's labelled counters."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from server.conference.metrics import (
    DOWNLINK,
    DOWNLINK_FEEDBACK,
    FAULTS,
    RETRANSMISSIONS,
    UPLINK,
    MediaMetrics,
)


@pytest.mark.parametrize(("name", "label", "values"), [
    ("hopso_media_publisher_faults_total", "fault", FAULTS),
    ("hopso_media_downlink_events_total", "event", DOWNLINK),
    ("hopso_media_uplink_feedback_total", "event", UPLINK),
    ("hopso_media_downlink_feedback_total", "event", DOWNLINK_FEEDBACK),
    ("hopso_media_retransmissions_total", "outcome", RETRANSMISSIONS),
])
def test_every_labelled_series_is_scraped_at_zero_before_its_first_event(
        name: str, label: str, values: tuple[str, ...]) -> None:
    registry = CollectorRegistry()
    MediaMetrics.create(registry)
    assert [registry.get_sample_value(name, {label: v}) for v in values] == [0.0] * len(values)
