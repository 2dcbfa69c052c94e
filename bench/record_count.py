"""Counting what recording adds to the forwarding thread (issue 16, item 7): instructions, not noise.

    .venv/bin/python bench/record_count.py [--quick] [--json PATH] [--no-direct]

bench/record.py's whole-process figure cannot resolve 3 us: the forwarding thread's extra
(~1 % of its CPU) drowns in a block-to-block spread of ~15 us a recorded packet. This counts
it instead, under `valgrind --tool=callgrind --cache-sim=yes`: user-space instructions and
simulated cache misses, the same whatever the machine's load, on bench/record_count_rig.py,
the real forwarding path (the bench's clip into a real video and audio Producer, the C
fan-out to N = 100 subscribers with SRTP and sendmmsg) with and without bench/record.py's
recording taps (K = 5 TrackLogs per producer: 10 recorded tracks), in stretches of one writer
poll (0.4 s of media) in off on on off / on off off on blocks, each stretch dumped apart
(client requests from bench/record_count_helper.c, built here with cc). Per block: (the "on"
stretches' count - the "off" ones') / packets recorded; the mean over the blocks with a
~95 % interval (they differ by the clip's payloads, not by noise).

Run three times: natively (the forwarding thread's CPU per stretch, the taps' own rate in a
calibration loop, and the prices of a missed cache line on this machine), under callgrind
with this machine's L1s and its core's L2 (1 MB) as the last level, and again with its L3
(32 MB) as the last level (which of the lines read beyond L2 came from memory); with
`direct` (not from bench/record.py) a fourth, the production form (one TrackLog as each
producer's tap, as media.Recorder attaches it).

To microseconds (`priced`): instructions x the taps' measured time per instruction, plus each
extra miss x its measured price (a streamed line written, a load from L2, L3 or memory); an
interval from no miss paid at the fastest rate to every miss paid whole at its worst sample,
none overlapped, at the slower of the taps' slowest rate and the forwarding thread's CPU per
user instruction (its kernel time included). `PRICES_HOW` says how each is measured.

What the count leaves out (`LEFT_OUT`, said in the result): the GIL's hand-overs to the writer
thread, the cache lines the writer thread and the mux process take from the forwarding thread
on the real machine, kernel time (the tap makes no system call).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for p in (str(HERE), str(HERE.parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

from record_count_rig import WINDOW_S
from record_toggle import mean_ci

QUICK_BLOCKS, FULL_BLOCKS = 3, 4  # counted blocks: ~15-20 s of CPU each at N=100, per run
EVENTS = ("Ir", "Dr", "Dw", "I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw")
HELPER_C = HERE / "record_count_helper.c"
NATIVE_REPEATS = 10  # the native run goes through the counted blocks this many times
# the simulated caches: this machine's L1s (32 KB, 8-way), with its core's L2 (1 MB, 8-way) as
# callgrind's last level, then its L3 (32 MB, 16-way): a "last-level" miss of the first is one
# the core's own caches did not hold, of the second one that went to memory (callgrind's
# guess from CPUID here was a 256 MB direct-mapped last level)
CACHES_L2 = ("--I1=32768,8,64", "--D1=32768,8,64", "--LL=1048576,8,64")
CACHES_L3 = ("--I1=32768,8,64", "--D1=32768,8,64", "--LL=33554432,16,64")
PRICES_HOW = (
    "tap_ns_per_instruction: eight stretches' packets given to the taps again and again "
    "with nothing between (record_count_rig.calibrate: no kernel, warm caches), each rep's "
    "thread CPU natively over a rep's count under callgrind; thread_ns_per_instruction: the "
    "native run's forwarding-thread CPU over its 'off' stretches (kernel time included: an "
    "overstatement) / callgrind's user-space instructions for the same stretches, one per "
    "pass; stream_line_ns: a 64-byte line written by memcpy into 64 KB none of which is "
    "cached (64 MB written elsewhere first), the tap's pattern; l2/l3/memory_load_ns: a "
    "dependent load chasing a random cycle over 512 KB / 8 MB / 64 MB (TLB misses in it); "
    "each [min, median, max] of its samples, taken natively in the rig's process")
LEFT_OUT = ("the GIL's hand-overs to the writer thread (a few per 0.4 s poll), the cache lines "
            "the writer thread and the mux process take from the forwarding thread on the "
            "real machine (only the rig's own flushes are in the simulated cache), kernel "
            "time (the tap makes no system call), the sender reports' tap (one report a "
            "second per producer into each of its logs)")


# -- callgrind's output ------------------------------------------------------------------

def parse_dump(text: str) -> dict[str, Any]:
    """A callgrind dump: its label (the client request's), its totals per event, and each
    function's self cost per event (the cost lines under `fn=`, not the calls' inclusive
    lines)."""
    events: list[str] = []
    label = ""
    totals: dict[str, int] = {}
    functions: dict[str, list[int]] = {}
    names: dict[str, str] = {}
    files: dict[str, str] = {}
    source = ""
    current: list[int] | None = None
    skip_next = False
    for line in text.splitlines():
        if not line:
            continue
        head = line[0]
        if head.isdigit() or head in "+-*":
            if skip_next:  # a call's inclusive cost
                skip_next = False
                continue
            if current is not None:
                for i, v in enumerate(line.split()[1:]):
                    current[i] += int(v)
            continue
        m = re.match(r"(\w+)=(.*)", line)
        key, value = m.groups() if m else ("", "")
        if key == "fl":
            source = _name(value, files).rsplit("/", 1)[-1]
        elif key == "fn":
            name = _name(value, names)
            if source and source != "???":
                name = f"{source}:{name}"
            current = functions.setdefault(name, [0] * len(events))
        elif key == "calls":
            skip_next = True
        elif key == "cfn":
            _name(value, names)
        elif key in ("cfl", "cfi", "fi", "fe"):
            _name(value, files)
        elif line.startswith("events:"):
            events = line.split(":", 1)[1].split()
        elif line.startswith("desc: Trigger:"):
            label = line.split("Client Request:", 1)[1].strip() if "Client Request:" in line \
                else line.split(":", 2)[2].strip()
        elif line.startswith(("summary:", "totals:")):
            values = [int(v) for v in line.split(":", 1)[1].split()]
            totals = dict(zip(events, values, strict=False))
    full = {e: totals.get(e, 0) for e in events}
    return {"label": label, "totals": full,
            "functions": {k: dict(zip(events, v, strict=False)) for k, v in functions.items()
                          if any(v)}}


def _name(value: str, names: dict[str, str]) -> str:
    """Callgrind's name compression: "(12) name" defines 12, "(12)" refers to it."""
    m = re.match(r"\((\d+)\)\s*(.*)", value)
    if m is None:
        return value
    ident, rest = m.groups()
    if rest:
        names[ident] = rest
    return names.get(ident, f"({ident})")


def block_counts(stretches: list[dict[str, Any]], key: str) -> list[float]:
    """Per block: (the "on" stretches' `key` - the "off" ones' per forwarded packet x the "on"
    ones' forwarded packets) / packets recorded (bench/record_toggle.block_estimates' rule)."""
    out = []
    for block in sorted({s["block"] for s in stretches}):
        ss = [s for s in stretches if s["block"] == block]
        on = [s for s in ss if s["on"]]
        off = [s for s in ss if not s["on"]]
        fwd_off = sum(s["forwarded"] for s in off)
        recorded = sum(s["recorded"] for s in on)
        if not on or not off or not fwd_off or not recorded:
            continue
        per_fwd = sum(s[key] for s in off) / fwd_off
        out.append((sum(s[key] for s in on) - per_fwd * sum(s["forwarded"] for s in on))
                   / recorded)
    return out


def function_deltas(on: list[dict[str, Any]], off: list[dict[str, Any]], recorded: int,
                    top: int = 10) -> list[dict[str, Any]]:
    """Instructions per recorded packet by function, the "on" dumps' self cost minus the
    "off" ones' (as many of each), largest first."""
    totals: dict[str, float] = {}
    for sign, dumps in ((1, on), (-1, off)):
        for d in dumps:
            for name, cost in d["functions"].items():
                totals[name] = totals.get(name, 0.0) + sign * cost.get("Ir", 0)
    rows = sorted(totals.items(), key=lambda kv: -abs(kv[1]))[:top]
    return [{"function": name, "ir_per_recorded_packet": round(v / recorded, 1)}
            for name, v in rows if abs(v) >= recorded * 0.5]


# -- the count, from bench/record.py or this command -------------------------------------

def build_helper(folder: Path) -> Path:
    """bench/record_count_helper.c as a shared library."""
    out = folder / "libhopcount.so"
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(out), str(HELPER_C)],
                   check=True, capture_output=True, text=True)
    return out


def run_rig(folder: Path, name: str, args: argparse.Namespace, helper: Path, prefix: list[str],
            cpu: int | None, blocks: int, copies: int, tap: str) -> dict[str, Any]:
    """bench/record_count_rig.py (under `prefix`, e.g. valgrind); its JSON."""
    out = folder / f"{name}.json"
    cmd = [*prefix, sys.executable, str(HERE / "record_count_rig.py"), str(out),
           "--n", str(args.n), "--copies", str(copies), "--tap", tap, "--blocks", str(blocks),
           "--clip-blocks", str(args.blocks), "--marks", str(helper)]
    # natively: the prices, and the calibration's reps to time (each ~1 ms); under
    # callgrind the reps' count is the same every time: two are enough
    cmd += ["--prices", "--calibration-reps", "40"] if not prefix else [
        "--calibration-reps", "2"]
    env = dict(os.environ, PYTHONHASHSEED="0")  # the same dicts, the same count
    preexec = None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, preexec_fn=preexec,
                          timeout=3600, check=False)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"{name} rig failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def callgrind(folder: Path, name: str, args: argparse.Namespace, helper: Path, cpu: int | None,
              caches: tuple[str, ...], copies: int, tap: str) -> dict[str, Any]:
    """The rig under callgrind: its stretches, each with its dump's totals; its dumps; the
    calibration's count."""
    out = folder / name
    out.mkdir()
    cg = ["valgrind", "--tool=callgrind", "--cache-sim=yes", *caches, "--instr-atstart=no",
          "--collect-atstart=no", f"--callgrind-out-file={out}/cg.out"]
    got = run_rig(folder, name, args, helper, cg, cpu, args.blocks, copies, tap)
    dumps = {}
    for path in out.glob("cg.out.*"):
        d = parse_dump(path.read_text(errors="replace"))
        if d["label"]:
            dumps[d["label"]] = d
    stretches = got["stretches"]
    missing = [s["label"] for s in stretches + [{"label": "calibration"}]
               if s["label"] not in dumps]
    if missing:
        raise RuntimeError(f"callgrind dumps missing for {missing[:3]} ({len(missing)})")
    for s in stretches:
        s.update(dumps[s["label"]]["totals"])
    per_event = {e: mean_ci(block_counts(stretches, e)) for e in EVENTS}
    return {"stretches": stretches, "dumps": dumps, "per_event": per_event,
            "calibration": {**got["calibration"], **dumps["calibration"]["totals"]}}


def count(quick: bool = False, n: int = 100, copies: int = 5, blocks: int = 0,
          cpu: int | None = None, direct: bool = True) -> dict[str, Any]:
    """The forwarding thread's extra instructions and simulated cache misses per recorded
    packet with bench/record.py's taps, and their time (`priced`); with `direct`, the
    production form's too (one TrackLog as each producer's tap). Raises RuntimeError when
    valgrind or a C compiler is missing or a run fails."""
    for tool in ("valgrind", "cc"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed")
    args = argparse.Namespace(n=n, blocks=blocks or (QUICK_BLOCKS if quick else FULL_BLOCKS))
    started = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="hopso-record-count-"))
    try:
        helper = build_helper(folder)
        native = run_rig(folder, "native", args, helper, [], cpu,
                         args.blocks * NATIVE_REPEATS, copies, "bench")
        l2 = callgrind(folder, "l2", args, helper, cpu, CACHES_L2, copies, "bench")
        l3 = callgrind(folder, "l3", args, helper, cpu, CACHES_L3, copies, "bench")
        result = summarize(args, copies, native, l2, l3)
        if direct:
            form = callgrind(folder, "direct", args, helper, cpu, CACHES_L2, 1, "direct")
            result["production_form"] = production(form, result)
        result["harness"]["elapsed_s"] = round(time.monotonic() - started, 1)
        return result
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _at(v: dict[str, Any], end: int | None) -> float:
    """A block estimate's mean (end None) or an end of its interval, never below zero (a
    negative count of misses is noise, not a saving)."""
    x = v["mean"] if end is None or v["ci"] is None else v["ci"][end]
    return max(0.0, float(x or 0.0))


def misses(l2: dict[str, dict[str, Any]], l3: dict[str, dict[str, Any]] | None,
           end: int | None) -> dict[str, float]:
    """The extra misses per recorded packet, by where they were served: lines written beyond
    L2 (DLmw, L2 as callgrind's last level), lines read beyond L2 that L3 held and that it
    did not (D/ILmr with L2 as the last level, and with L3: `l3` None counts them all as
    L3's), and L1 misses L2 held."""
    written = _at(l2["DLmw"], end)
    read = _at(l2["DLmr"], end) + _at(l2["ILmr"], end)
    memory = min(read, _at(l3["DLmr"], end) + _at(l3["ILmr"], end)) if l3 else 0.0
    l1 = _at(l2["D1mr"], end) + _at(l2["D1mw"], end) + _at(l2["I1mr"], end)
    return {"written_beyond_l2": written, "read_from_l3": read - memory,
            "read_from_memory": memory, "l1_held_by_l2": max(0.0, l1 - written - read)}


def priced(l2: dict[str, dict[str, Any]], l3: dict[str, dict[str, Any]] | None,
           prices: dict[str, Any]) -> dict[str, Any]:
    """Microseconds per recorded packet, and an interval meant to hold the truth. Each price
    is [min, median, max] of its samples (see PRICES_HOW).
    central: instructions x the taps' own time per instruction (median) + lines written
    beyond L2 x a streamed line's time + lines read from L3 x its latency + from memory x
    its latency + L1 misses L2 held x its latency (medians; the taps' rate is a warm one).
    lower: the interval's lower instructions at the taps' fastest rate, every miss free.
    upper: its upper instructions at the slower of the taps' slowest rate and the forwarding
    thread's whole CPU time per user instruction (kernel time included: an overstatement),
    every miss at its price's worst sample and none overlapped, L1 misses at L2's latency."""
    ir = l2["Ir"]
    ir_lo, ir_hi = ir["ci"] or [ir["mean"], ir["mean"]]
    tap_ns, thread_ns = prices["tap_ns_per_instruction"], prices["thread_ns_per_instruction"]
    mid, hi = misses(l2, l3, None), misses(l2, l3, 1)

    def cost(m: dict[str, float], at: int) -> float:
        return (m["written_beyond_l2"] * prices["stream_line_ns"][at]
                + m["read_from_l3"] * prices["l3_load_ns"][at]
                + m["read_from_memory"] * prices["memory_load_ns"][at])
    central = (ir["mean"] * tap_ns[1] + cost(mid, 1)
               + mid["l1_held_by_l2"] * prices["l2_load_ns"][1]) / 1e3
    lower = ir_lo * tap_ns[0] / 1e3
    upper = (ir_hi * max(tap_ns[2], thread_ns[2]) + cost(hi, 2)
             + hi["l1_held_by_l2"] * prices["l2_load_ns"][2]) / 1e3
    return {"us": central, "us_interval": [lower, upper],
            "instructions_us": ir["mean"] * tap_ns[1] / 1e3, "misses": mid}


def spread(xs: list[float]) -> list[float]:
    """[min, median, max]"""
    xs = sorted(xs)
    return [xs[0], xs[len(xs) // 2], xs[-1]]


def summarize(args: argparse.Namespace, copies: int, native: dict[str, Any],
              l2: dict[str, Any], l3: dict[str, Any]) -> dict[str, Any]:
    stretches = native["stretches"]
    counted = l2["stretches"]
    off_counted = [s for s in counted if not s["on"]]
    ir_off = sum(s["Ir"] for s in off_counted)
    # the forwarding thread's CPU per user instruction: the native run's "off" stretches'
    # thread CPU (kernel included) over their count (it goes through the counted blocks
    # NATIVE_REPEATS times: the same payloads, packets and order), one per pass
    passes = [sum(s["thread_s"] for s in stretches if not s["on"]
                  and r * args.blocks <= s["block"] < (r + 1) * args.blocks) / ir_off * 1e9
              for r in range(len(stretches) // (4 * args.blocks))]
    calib = native["calibration"]
    per_rep = l2["calibration"]["Ir"] / l2["calibration"]["reps"]
    p = native["prices"]
    prices = {"tap_ns_per_instruction": [t / per_rep * 1e9 for t in spread(calib["thread_s"])],
              "thread_ns_per_instruction": spread(passes),
              "stream_line_ns": spread(p["stream_line_ns"]),
              "l2_load_ns": spread(p["l2_load_ns"]), "l3_load_ns": spread(p["l3_load_ns"]),
              "memory_load_ns": spread(p["memory_load_ns"])}
    per_event = l2["per_event"]
    cost = priced(per_event, l3["per_event"], prices)
    native_extra = mean_ci([v * 1e6 for v in block_counts(stretches, "thread_s")])
    on = [l2["dumps"][s["label"]] for s in counted if s["on"]]
    off = [l2["dumps"][s["label"]] for s in off_counted]
    recorded = sum(s["recorded"] for s in counted if s["on"])
    off_native = [s for s in stretches if not s["on"]]
    return {
        "forwarding_extra_us_per_recorded_packet": cost["us"],
        "forwarding_extra_us_interval": cost["us_interval"],
        "forwarding_extra_us_instructions_only": cost["instructions_us"],
        "instructions_per_recorded_packet": per_event["Ir"]["mean"],
        "instructions_per_recorded_packet_ci95": per_event["Ir"]["ci"],
        "per_recorded_packet": {e: round(v["mean"], 3) for e, v in per_event.items()
                                if v["mean"] is not None},
        "per_recorded_packet_l3": {e: round(l3["per_event"][e]["mean"], 3)
                                   for e in ("Ir", "DLmr", "DLmw", "ILmr")},
        "misses_per_recorded_packet": cost["misses"],
        "prices": prices, "prices_how": PRICES_HOW,
        "instructions_per_forwarded_packet_off": ir_off / sum(s["forwarded"]
                                                              for s in off_counted),
        "native_forwarding_us_per_packet_off":
            sum(s["thread_s"] for s in off_native) / sum(s["forwarded"] for s in off_native)
            * 1e6,
        "native_extra_us_per_recorded_packet": native_extra["mean"],
        "native_extra_us_ci95": native_extra["ci"],
        "by_function": function_deltas(on, off, recorded),
        "harness": {"n": args.n, "tap": "bench", "copies": copies,
                    "recorded_tracks": 2 * copies, "blocks": args.blocks,
                    "native_blocks": len(stretches) // 4, "stretch_s": WINDOW_S,
                    "recorded_packets": recorded, "calibration_calls": calib["calls"],
                    "caches": [" ".join(CACHES_L2), " ".join(CACHES_L3)]},
        "left_out": LEFT_OUT,
    }


def production(form: dict[str, Any], bench_form: dict[str, Any]) -> dict[str, Any]:
    """The direct tap's count (one TrackLog per producer, as media.Recorder attaches it),
    priced as the bench form's, its reads beyond L2 all taken as L3's (not run with L3)."""
    cost = priced(form["per_event"], None, bench_form["prices"])
    ir = form["per_event"]["Ir"]
    return {"forwarding_extra_us_per_recorded_packet": cost["us"],
            "forwarding_extra_us_interval": cost["us_interval"],
            "instructions_per_recorded_packet": ir["mean"],
            "instructions_per_recorded_packet_ci95": ir["ci"],
            "misses_per_recorded_packet": cost["misses"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--copies", type=int, default=5, help="TrackLogs per producer")
    parser.add_argument("--blocks", type=int, default=0,
                        help=f"counted blocks (default {QUICK_BLOCKS} quick, {FULL_BLOCKS})")
    parser.add_argument("--cpu", type=int, default=None, help="pin the harness to this core")
    parser.add_argument("--no-direct", action="store_true",
                        help="skip the production form's count")
    args = parser.parse_args()
    result = count(args.quick, args.n, args.copies, args.blocks, args.cpu,
                   direct=not args.no_direct)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
