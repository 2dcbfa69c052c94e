"""testkit/netem.py's impairments are real: measured with UDP traffic between real sockets in
a loopback-only network namespace (testkit/netem_probe.py, run under `unshare -n`)."""

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


@pytest.fixture(scope="module")
def probed() -> dict[str, Any]:
    reason = namespace_unavailable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must emulate links: {reason}")
        pytest.skip(reason)
    run = subprocess.run(in_namespace([sys.executable, "-m", "testkit.netem_probe"]), cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def within(measured: float, target: float, share: float = 0.15) -> bool:
    return abs(measured - target) <= share * target


def test_a_client_link_runs_at_its_rate_through_a_mid_call_drop_while_a_clean_one_does_not(
        probed: dict[str, Any]) -> None:
    r = probed["rates"]
    assert within(r["shaped_1m_bps"], 1_000_000), r
    assert within(r["shaped_500k_bps"], 500_000), r
    assert within(r["shaped_4m_bps"], r["offered_bps"]), r  # 4 Mbit/s: all of the 2 offered
    assert within(r["clean_bps"], r["offered_bps"]), r  # the client beside it is untouched
    assert r["queue_drops"] > 0, r  # over the rate: the link's buffer overflows, as a real one


def test_a_link_can_be_named_by_the_servers_port_as_for_a_browser(
        probed: dict[str, Any]) -> None:
    assert within(probed["server_side"]["shaped_1m_bps"], 1_000_000), probed["server_side"]


def test_random_loss_drops_its_share_independently(probed: dict[str, Any]) -> None:
    r = probed["random_loss"]  # 4000 packets at 5 %
    assert 0.035 <= r["loss"] <= 0.065, r
    assert r["mean_burst"] < 1.3, r


def test_bursty_loss_drops_its_share_in_runs(probed: dict[str, Any]) -> None:
    r = probed["burst_loss"]  # 5 % in bursts of 4 packets on average
    assert 0.025 <= r["loss"] <= 0.08, r
    assert 2.5 <= r["mean_burst"] <= 6.5, r


def test_delay_adds_its_round_trip_and_jitter_spreads_it(probed: dict[str, Any]) -> None:
    clean, fixed, jittery = (probed[k] for k in ("delay_clean", "delay_40ms",
                                                   "delay_40ms_jitter_15"))
    assert clean["rtt_median_ms"] < 5, clean
    assert fixed["rtt_p5_ms"] >= 78 and fixed["rtt_median_ms"] <= 95, fixed  # 40 ms each way
    # +-15 ms each way: some round trips are well under the fixed 80 ms (a loaded machine only
    # ever adds, so the low side is the proof), some well over. Fewer than without reordering:
    # a packet never overtakes the one before it.
    assert fixed["rtt_min_ms"] >= 79.5, fixed
    assert jittery["rtt_min_ms"] < 70, jittery
    assert jittery["rtt_p95_ms"] > 92, jittery
    assert 70 <= jittery["rtt_median_ms"] <= 105, jittery
    assert fixed["received"] == jittery["received"] == 150, (fixed, jittery)
