"""Today's single-layer path through the SFU on weak links, with real aiortc peers (testkit/
weak_links.py in a loopback-only namespace): the baseline issue 15's simulcast improves on.
The publisher encodes live and follows the SFU's REMB, as a browser does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from testkit.netem import in_namespace, namespace_unavailable

ROOT = Path(__file__).resolve().parents[2]
SECONDS = 12


def call(profile: str, *options: str, seconds: float = SECONDS,
         timeout: float = 120) -> dict[str, Any]:
    reason = namespace_unavailable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must emulate links: {reason}")
        pytest.skip(reason)
    argv = in_namespace([sys.executable, "-m", "testkit.weak_links", profile, str(seconds),
                         *options])
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                         check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def media_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the simulcast calls keep their encoded layers (testkit/weak_links.py's
    simulcast_media): the first call encodes them (8-30 s by the box's load), the next reads
    them, the same media."""
    return tmp_path_factory.mktemp("weak-links") / "simulcast-media.pkl"


@pytest.mark.timeout(150)
def test_audio_stays_continuous_at_5_percent_random_loss() -> None:
    r = call("loss5")
    lossy, strong = r["viewers"]["lossy"], r["viewers"]["strong"]
    # 5 % of 50 packets/s lost at random, no NACK for audio: a gap (audio missing between
    # two packets received in a row, in the sender's time) over 100 ms needs 4 losses in a
    # row. Arrival times are not asserted: SFU and clients share one process on a loaded box.
    assert lossy["audio_gap_p99_ms"] <= 100, r
    assert lossy["audio_gap_max_ms"] <= 100, r
    assert strong["audio_gap_max_ms"] <= 40, r
    assert 0.02 <= lossy["audio_loss"] <= 0.09, r  # the link did lose its 5 %
    assert strong["audio_loss"] <= 0.01, r
    # (Video at 5 % loss is not asserted: it freezes for seconds today, bench/network.py.)


@pytest.mark.timeout(150)
def test_a_300_kbit_ward_keeps_receiving_video_on_the_single_layer_path() -> None:
    r = call("weak_ward")  # the ward's link is named by the SFU's port, as a browser's is
    ward, strong = r["viewers"]["ward"], r["viewers"]["strong"]
    # The SFU keeps forwarding to the ward at what its link carries, every 2 s (the call's
    # process shares a loaded box: a half-second bin can miss a stall's worth)...
    per_2s = [sum(ward["video_kbps"][i:i + 4]) / 4 for i in range(0, len(ward["video_kbps"]) - 3, 4)]
    assert min(per_2s) >= 120, r
    assert ward["video_kbps_mean"] <= 300, r  # ...and the link is really 300 kbit/s.
    # The ward got its first picture (the call waits for one at every subscriber) and video
    # all along; decoding it is another matter today: the publisher's one encoding (its floor
    # is above the link) does not fit, most frames arrive broken, the ward sees a frame every
    # few seconds. Simulcast's low layer must make it continuous (issue 15 item 6), and this
    # test then asserts that (bench/network.py has today's figures).
    assert strong["video_fps"] >= 20 and strong["freezes_over_500ms"] <= 1, r


@pytest.mark.timeout(300)
def test_a_ward_back_on_the_low_layer_recovers_without_a_retransmission_flood(
        media_cache: Path) -> None:
    """The simulcast path, allocation off: a 300 kbit/s ward on 160x90 asks for 320x180
    (~350-580 kbit/s) from 1 to 4 s into the call, as a failed try does, and back. The
    overflow's losses are NACKed; answered in full (aiortc re-NACKs every packet still
    missing at each new gap), the retransmissions kept the queue overflowing: 1,062-1,118
    RTX packets for 33-35 NACKs, the link dropped 1,178-1,235 packets (103-121 within the
    budget), and 2.1-2.5 % of the ward's audio with them (media/rtx_budget.py)."""
    r = call("ward_overload", "--simulcast", "--media-cache", str(media_cache),
             seconds=24, timeout=240)
    ward, stats = r["viewers"]["ward"], r["consumers"]["ward"]
    assert r["layers"]["ward"][-1][1] == 0, r["layers"]  # on the low layer to the end
    # From 2 s after the step down, the low layer (~100 kbit/s) plays without a freeze.
    after = [(at, length) for at, length in ward["freeze_spans_s"] if at + length > 6.0]
    assert after == [], ward["freeze_spans_s"]
    assert ward["video_fps"] >= 10, ward
    # NACKs answered within a share of the ward's estimate, once per round trip per packet.
    assert stats["retransmissions_sent"] <= 200, stats
    assert stats["retransmissions_refused"] > 0, stats
    assert ward["audio_loss"] <= 0.01, ward
    strong = r["viewers"]["strong"]
    assert strong["freezes_over_500ms"] == 0, strong



@pytest.mark.timeout(300)
def test_with_transport_cc_a_link_drop_moves_down_without_a_freeze_and_back_up_within_10_s(
        media_cache: Path) -> None:
    """The simulcast path with transport-wide feedback from the subscribers (testkit/
    twcc_client.py, as Chromium's) and the SFU's padding probes (media/probe.py): a link
    4 Mbit/s -> 500 kbit/s -> 4 Mbit/s, 10 s each. At the drop the queue the top layer
    builds shows the fall within ~0.2 s (media/link_fall.py) and the low layer's keyframe
    follows once that queue has drained: no freeze over 500 ms (issue 15 item 6; 0.52-0.54 s
    before, when GCC's trendline saw it after ~0.56 s). Restored, a probe's result lifts the
    SFU's estimate within seconds (not GCC's 8 %/s climb, capped at 1.5x what the 500 kbit/s
    layer got acknowledged) and the subscriber is back on the top layer within 10 s (issue
    15's adapt_up_s: on REMB, not within the call in any bench run) with no freeze: a layer
    is raised once the estimate shows it fits, never tried blind."""
    r = call("rate_drop", "--simulcast", "--twcc", "--media-cache", str(media_cache),
             seconds=30, timeout=280)
    assert r["transport_cc"] and r["feedback_stats"]["dropping"]["malformed"] == 0, r
    drop, restore = r["changes"][0]["at_s"], r["changes"][1]["at_s"]
    rows = r["layers"]["dropping"]  # [s into the call, current, allocated, estimate kbit/s]
    down = next((row[0] for row in rows if row[0] > drop and row[1] is not None
                 and row[1] < r["top_layer"]), None)
    assert down is not None and down - drop <= 1, rows
    at_restore = [row[3] for row in rows if row[0] <= restore][-1]
    rose = next((row[0] for row in rows if row[0] > restore and row[3] >= 2 * at_restore),
                None)
    assert rose is not None and rose - restore <= 5, (at_restore, rows)
    top = next((row[0] for row in rows if row[0] > restore and row[1] == r["top_layer"]),
               None)
    assert top is not None and top - restore <= 10, rows
    assert r["probe_stats"]["dropping"]["lifted"] >= 1, r["probe_stats"]
    freezes = r["viewers"]["dropping"]["freeze_spans_s"]  # [start s, length s], > 500 ms
    assert [f for f in freezes if f[0] + f[1] > restore or drop - 1 < f[0] < drop + 3] == [], \
        freezes
