"""bench/record_count.py: the forwarding thread's extra per recorded packet, counted.

The rig is the real forwarding path (C fan-out, SRTP, sendmmsg to a loopback sink) with the
recording taps; the counting parts are checked on callgrind's own format; one run under
valgrind checks the whole count end to end, small (a few subscribers, one block)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import record_count  # noqa: E402
from record_count_rig import Rig  # noqa: E402

from media.packetlog import LoggedPacket, LogReader, header_bytes  # noqa: E402
from tests.conftest import IN_CI  # noqa: E402

# a keyframe (the VP8 tag's P bit clear) of three packets, then delta frames of two
KEY = [b"\x00" + b"k" * 999, b"k" * 1000, b"k" * 300]
DELTA = [b"\x01" + b"d" * 899, b"d" * 500]
FRAMES = [KEY] + [DELTA] * 40
OPUS = [bytes([i]) * 120 for i in range(60)]

DUMP = """# callgrind format
version: 1
desc: Trigger: Client Request: b0-1-on
positions: line
events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
summary: 1000 300 100 5 4 3 0 1 2

ob=(1) /lib/x.so
fl=(1) ???
fn=(1) tap
0 600 200 80 2 3 2 0 1 2
+2 50
cfn=(2) memcpy
calls=1 0
0 300 90 20 3 1 1 0 0 0
fn=(2)
-1 300 100 20 3 1 1 0 0 0
fn=(3) other
* 50
totals: 1000 300 100 5 4 3 0 1 2
"""


def test_a_dump_gives_its_label_totals_and_each_functions_self_cost() -> None:
    d = record_count.parse_dump(DUMP)
    assert d["label"] == "b0-1-on"
    assert d["totals"]["Ir"] == 1000 and d["totals"]["DLmw"] == 2
    # the call's inclusive line is not tap's own; "(2)" alone names memcpy again
    assert d["functions"]["tap"]["Ir"] == 650
    assert d["functions"]["memcpy"] == {"Ir": 300, "Dr": 100, "Dw": 20, "I1mr": 3,
                                        "D1mr": 1, "D1mw": 1, "ILmr": 0, "DLmr": 0, "DLmw": 0}
    assert d["functions"]["other"]["Ir"] == 50
    assert sum(f["Ir"] for f in d["functions"].values()) == d["totals"]["Ir"]


def stretch(block: int, on: bool, ir: float, forwarded: int = 1000,
            recorded: int = 0) -> dict[str, object]:
    return {"label": f"b{block}-{on}", "block": block, "on": on, "forwarded": forwarded,
            "recorded": recorded, "Ir": ir}


def test_a_block_counts_the_on_stretches_above_the_off_ones_per_recorded_packet() -> None:
    # off: 10 per forwarded packet; on: 1,010 forwarded, 100 recorded, 10,100 + 5,000
    block = [stretch(0, False, 10_000), stretch(0, True, 15_100, 1010, 100),
             stretch(0, True, 15_100, 1010, 100), stretch(0, False, 10_000)]
    assert record_count.block_counts(block, "Ir") == [pytest.approx(50.0)]
    assert record_count.block_counts(block[:1], "Ir") == []  # no "on" stretch: no estimate


def test_the_priced_interval_holds_the_central_figure_and_misses_never_go_below_zero() -> None:
    def event(mean: float, half: float = 0.0) -> dict[str, object]:
        return {"mean": mean, "ci": [mean - half, mean + half]}
    l2 = {e: event(0.0) for e in record_count.EVENTS}
    l2.update(Ir=event(1000, 50), DLmw=event(12, 1), DLmr=event(4, 1), ILmr=event(-0.5, 1),
              D1mw=event(15, 1), I1mr=event(20, 2))
    l3 = {e: event(0.0) for e in record_count.EVENTS}
    l3.update(DLmr=event(1, 0.5))  # of the 4 lines read beyond L2, 1 beyond L3
    prices = {"tap_ns_per_instruction": [0.2, 0.25, 0.3],
              "thread_ns_per_instruction": [0.2, 0.3, 0.4],
              "stream_line_ns": [5, 7, 11], "memory_load_ns": [150, 160, 200],
              "l3_load_ns": [20, 60, 100], "l2_load_ns": [4, 5, 8]}
    cost = record_count.priced(l2, l3, prices)
    # a negative mean of misses is noise, not a saving
    assert cost["misses"] == {"written_beyond_l2": 12, "read_from_l3": 3,
                              "read_from_memory": 1, "l1_held_by_l2": 35 - 12 - 4}
    assert cost["us"] == pytest.approx((1000 * 0.25 + 12 * 7 + 3 * 60 + 1 * 160 + 19 * 5)
                                       / 1e3)
    lower, upper = cost["us_interval"]
    assert lower == pytest.approx(950 * 0.2 / 1e3)  # every miss free
    # every miss at its worst price, L1 misses at L2's; the thread's slower rate
    hi = {"written": 13, "l3": 5 + 0.5 - 1.5, "memory": 1.5, "l1": 16 + 22 - 13 - 5.5}
    assert upper == pytest.approx((1050 * 0.4 + hi["written"] * 11 + hi["l3"] * 100
                                   + hi["memory"] * 200 + hi["l1"] * 8) / 1e3)
    assert lower < cost["us"] < upper
    # without the L3 run, every read beyond L2 is L3's
    assert record_count.priced(l2, None, prices)["misses"]["read_from_memory"] == 0


def test_the_rig_records_each_forwarded_packet_once_per_track_and_only_when_on(
        tmp_path: Path) -> None:
    rig = Rig(3, 2, "bench", frames=FRAMES, opus=OPUS)
    rig.stretch(1.0)  # the keyframe: every consumer starts
    assert rig.flush() == 0  # no tap yet
    sent = rig.sent()
    rig.tapping(True)
    rig.stretch(0.4, 1)
    rig.tapping(False)
    # 12 frames of 2 packets and 20 Opus packets, to 3 subscribers and into 2 tracks each
    assert rig.sent() - sent == (12 * 2 + 20) * 3
    log = tmp_path / "tracks.rtplog"  # every track's records, one log after the other
    log.write_bytes(header_bytes({"test": True}))
    rig.null = os.open(log, os.O_WRONLY | os.O_APPEND)
    assert rig.flush() == (12 * 2 + 20) * 2
    os.close(rig.null)
    records = LogReader(log).read()
    packets = [r for r in records if isinstance(r, LoggedPacket)]
    assert len(packets) == len(records)
    payloads = sorted(len(r.payload) for r in packets)  # the packets whole, descriptor and all
    assert payloads == sorted([4 + 900, 4 + 500] * 12 * 2 + [120] * 20 * 2)
    sent = rig.sent()
    rig.stretch(0.4, 1)  # off: forwarded alike, nothing recorded
    assert rig.sent() - sent == (12 * 2 + 20) * 3
    rig.null = os.open(os.devnull, os.O_WRONLY)
    assert rig.flush() == 0


def test_callgrind_counts_the_taps_on_the_forwarding_path() -> None:
    if shutil.which("valgrind") is None:
        if IN_CI:
            pytest.fail("valgrind is not installed: CI must run the count", pytrace=False)
        pytest.skip("valgrind is not installed (scripts/setup.sh --test installs it)")
    got = record_count.count(n=4, blocks=1, direct=False)
    # each recorded packet: the C tap's encoding and its copy, and the bench's Python tap
    # calling five of them, a few hundred to a few thousand instructions; nothing else
    assert 300 < got["instructions_per_recorded_packet"] < 5000
    assert any(f["function"].endswith("tap") for f in got["by_function"])
    lower, upper = got["forwarding_extra_us_interval"]
    assert 0 < lower <= got["forwarding_extra_us_per_recorded_packet"] <= upper
    assert 0.01 < got["prices"]["tap_ns_per_instruction"][1] < 10
    # the run with L3 as the last level counted the same instructions: the count repeats
    assert got["per_recorded_packet_l3"]["Ir"] == pytest.approx(
        got["instructions_per_recorded_packet"], rel=0.05)
