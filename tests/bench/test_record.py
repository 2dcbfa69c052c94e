"""bench/record.py: which figure decides record_cpu_us_per_packet <= 3 us."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import record  # noqa: E402


def summary(whole: str, writer_ci: list[float]) -> dict[str, Any]:
    writer = {"mean": sum(writer_ci) / 2, "ci95": writer_ci}
    return {"record_cpu_us_per_packet_resolved": whole,
            "record_cpu_us_per_packet_resolved_by": "whole process" if whole != "unresolved"
            else None,
            "record_cpu_us_per_packet_parts": {"writer_thread": writer}}


def count(central: float, interval: list[float]) -> dict[str, Any]:
    return {"forwarding_extra_us_per_recorded_packet": central,
            "forwarding_extra_us_interval": interval}


def test_a_count_under_the_target_leaves_it_unresolved_it_is_a_floor() -> None:
    got = record.counted_figure(summary("unresolved", [1.05, 1.10]), count(0.8, [0.3, 1.8]))
    assert got["record_cpu_us_per_packet_counted"] == pytest.approx(1.075 + 0.8)
    assert got["record_cpu_us_per_packet_counted_ci95"] == pytest.approx([1.35, 2.9])
    assert got["record_cpu_us_per_packet_counted_resolved"] == "met"
    assert got["record_cpu_us_per_packet_decision"]["verdict"] == "unresolved"
    assert got["record_cpu_us_per_packet_decision"]["by"] is None


def test_a_count_over_the_target_shows_it_missed() -> None:
    got = record.counted_figure(summary("unresolved", [1.05, 1.10]), count(2.5, [2.0, 3.0]))
    assert got["record_cpu_us_per_packet_counted_resolved"] == "missed"
    assert got["record_cpu_us_per_packet_decision"]["verdict"] == "missed"
    assert got["record_cpu_us_per_packet_decision"]["by"].startswith("the count")


def test_a_resolved_whole_process_interval_decides_over_the_count() -> None:
    # everything is in the whole process's figure; the count leaves some things out
    got = record.counted_figure(summary("missed", [1.05, 1.10]), count(0.8, [0.3, 1.8]))
    assert got["record_cpu_us_per_packet_counted_resolved"] == "met"
    assert got["record_cpu_us_per_packet_decision"] == {
        "verdict": "missed", "by": "whole process",
        "why": got["record_cpu_us_per_packet_decision"]["why"]}


def test_without_a_count_nothing_but_the_whole_process_decides() -> None:
    got = record.counted_figure(summary("unresolved", [1.05, 1.10]),
                                {"error": "valgrind is not installed"})
    assert got["record_cpu_us_per_packet_counted"] is None
    assert got["record_cpu_us_per_packet_counted_reason"] == "valgrind is not installed"
    assert got["record_cpu_us_per_packet_decision"]["verdict"] == "unresolved"


def windows_with(extra_us: float, seed: int) -> list[dict[str, Any]]:
    """Blocks of four windows (off on on off / on off off on) whose CPU is 10 us a
    forwarded packet, `extra_us` a logged one, 2 ms a received RTCP packet (a count that
    varies by window) and a little noise nothing explains."""
    import random
    rng = random.Random(seed)
    out = []
    for b in range(60):
        for on in ((False, True, True, False), (True, False, False, True))[b % 2]:
            forwarded, rx = rng.randint(6500, 7200), rng.randint(90, 130)
            logged = 340 if on else 0
            cpu = (10e-6 * forwarded + extra_us * 1e-6 * logged + 2e-3 * rx
                   + rng.gauss(0, 3e-4))
            out.append({"block": b, "on": on, "forwarded": forwarded, "logged": logged,
                        "rx_packets": rx, "tx_bytes": rng.randint(700, 900) * forwarded,
                        "load_wakeups": rng.randint(100, 140),
                        "time": 0.4 + rng.uniform(0, 0.02), "process_cpu": cpu})
    return out


def test_the_adjusted_estimate_takes_out_what_the_windows_counts_explain() -> None:
    from record_toggle import adjusted_estimate, block_estimates, mean_ci
    windows = windows_with(3.0, seed=1)
    plain = mean_ci(block_estimates(windows))
    adjusted = adjusted_estimate(windows)
    assert abs(adjusted["mean"] - 3.0) < 0.5  # its interval held 3.0 for 96 % of 200 seeds
    # the RTCP's spread is most of the block estimate's; the adjusted one is far narrower
    assert (adjusted["ci95"][1] - adjusted["ci95"][0]) * 4 < plain["ci"][1] - plain["ci"][0]
    assert adjusted_estimate(windows_with(8.0, seed=2))["ci95"][0] > 3.0


def with_mux(windows: list[dict[str, Any]], mux_us: float, idle_s: float) -> None:
    """The mux process's CPU into the windows: `mux_us` a packet logged, `idle_s` a window."""
    for w in windows:
        w["mux_cpu"] = mux_us * 1e-6 * w["logged"] + idle_s


def sfu_summary(windows: list[dict[str, Any]], sfu_verdict: str = "unresolved",
                writer_ci: list[float] | None = None) -> dict[str, Any]:
    from record_toggle import block_estimates
    got = summary(sfu_verdict, writer_ci or [0.9, 1.0])
    got["record_cpu_us_per_packet_estimate"] = record.estimate(block_estimates(windows))
    got["record_cpu_us_per_packet_decision"] = {"verdict": sfu_verdict, "by": "whole process"}
    return got


def test_the_figure_with_the_mux_adds_its_cpu_block_by_block() -> None:
    windows = windows_with(1.5, seed=3)
    with_mux(windows, 4.0, 2e-4)
    got = record.with_mux_figure(sfu_summary(windows), windows)
    sfu = got["record_cpu_us_per_packet_with_mux_parts"]["sfu_process"]["mean"]
    mux = got["record_cpu_us_per_packet_with_mux_parts"]["mux_process"]
    # the idle polls of all four windows over the packets of the two "on" ones
    assert mux["mean"] == pytest.approx(4.0 + 4 * 2e-4 / 680 * 1e6)
    assert got["record_cpu_us_per_packet_with_mux"] == pytest.approx(sfu + mux["mean"])
    assert got["record_cpu_us_per_packet_with_mux_decision"]["verdict"] == "missed"


def test_the_mux_alone_can_show_the_target_missed_when_the_whole_cannot() -> None:
    windows = windows_with(1.0, seed=4)  # the RTCP's spread: the whole stays unresolved
    with_mux(windows, 2.5, 0.0)
    got = record.with_mux_figure(sfu_summary(windows, writer_ci=[0.9, 1.0]), windows)
    assert got["record_cpu_us_per_packet_with_mux_resolved"] == "unresolved"
    decision = got["record_cpu_us_per_packet_with_mux_decision"]
    assert decision["verdict"] == "missed" and decision["by"].startswith("the parts")
    assert got["record_cpu_us_per_packet_with_mux_floor"] == pytest.approx(0.9 + 2.5)


def test_an_sfu_process_over_the_target_is_over_it_with_the_mux() -> None:
    windows = windows_with(1.0, seed=5)
    with_mux(windows, 0.5, 0.0)
    got = record.with_mux_figure(sfu_summary(windows, "missed", [0.1, 0.2]), windows)
    assert got["record_cpu_us_per_packet_with_mux_decision"]["verdict"] == "missed"
    assert "SFU process alone" in got["record_cpu_us_per_packet_with_mux_decision"]["by"]


def test_a_low_mux_leaves_it_unresolved_and_no_mux_is_no_figure() -> None:
    windows = windows_with(1.0, seed=6)
    with_mux(windows, 0.5, 0.0)
    got = record.with_mux_figure(sfu_summary(windows, writer_ci=[0.9, 1.0]), windows)
    assert got["record_cpu_us_per_packet_with_mux_decision"]["verdict"] == "unresolved"
    with_mux(windows, 0.0, 0.0)
    got = record.with_mux_figure(sfu_summary(windows), windows)
    assert got["record_cpu_us_per_packet_with_mux"] is None
