"""The load process of bench/record.py: one recording server, its recording switched on and
off in windows, and the per-block estimate of what recording costs.

    python bench/record_toggle.py --server NAME,hopso,PID,ENDPOINT,127.0.0.1 --n 100
                                  --window 0.5 --blocks 120 --out RESULT.json

bench/sfu_load.py's Target connects one publisher and N subscribers (real ICE, DTLS, SRTP) to
the server (bench/record_server.py, recording). After `--warmup` s of recording as usual, it
asks for windows back to back (`record_window`: the server reads its own clocks and counters
at each edge, see there), in blocks of four whose order cancels a linear drift: off on on off,
then on off off on, and so on. Each window's forwarding latencies (publisher sendto ->
subscriber kernel timestamp) go to its condition's pool. Then recording as usual again for
`--tail` s (its keyframe request restarts the clip, so the files end with video).

`block_estimates` (the functions below are also bench/record.py's): per block, the extra CPU
per recorded packet = (CPU of its two "on" windows - the "off" windows' CPU per forwarded
packet x the "on" windows' forwarded packets) / packets logged in the "on" windows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for p in (str(HERE), str(HERE.parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

from sfu_client import UnsafeAddress
from sfu_load import Target, percentiles, proc_cpu
from sfu_media import load_clip

from testkit.ice import gather_only_on

PATTERNS = ((False, True, True, False), (True, False, False, True))
# what a window's figures are made of: the difference of these at its end and start
CLOCKS = ("wakeups", "preempted", "gc0", "gc1", "gc2", "process_cpu", "main_cpu", "writer_cpu", "forwarded", "logged", "time")


def log(msg: str) -> None:
    print(f"[record-load {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    clip = load_clip()
    gather_only_on(args.address)
    target = Target(args, args.server)
    windows: list[dict[str, Any]] = []
    latencies: dict[bool, list[float]] = {False: [], True: []}
    try:
        await target.connect(clip)
        await target.grow(args.n)
        await asyncio.sleep(args.warmup)
        log(f"{len(target.subs)} subscribers; {args.blocks} blocks of 4 x {args.polls} polls")
        sig = target.sig
        started = time.monotonic()
        for b in range(args.blocks):
            for on in PATTERNS[b % 2]:
                for s in target.subs:
                    s.latencies.clear()
                    s.recording = True
                run0, wait0 = proc_cpu(target.server_pid)
                poll_s = args.poll_s[b % len(args.poll_s)] if args.poll_s else None
                reply = await sig.call(op="record_window", on=on, polls=args.polls,
                                       poll_s=poll_s)
                run1, wait1 = proc_cpu(target.server_pid)
                for s in target.subs:
                    s.recording = False
                got = [v / 1e6 for s in target.subs for v in s.latencies]
                latencies[on] += got
                window = {k: reply["end"][k] - reply["start"][k] for k in CLOCKS}
                window.update(on=on, block=b, poll_s=poll_s, latency_samples=len(got),
                              server_wait_s=wait1 - wait0, server_run_s=run1 - run0,
                              loadavg_1m=os.getloadavg()[0])
                windows.append(window)
        elapsed = time.monotonic() - started
        await sig.call(op="record_continuous")
        await asyncio.sleep(args.tail)
        stats = await sig.stats()
    finally:
        publisher = target._publisher_stats() if target.publisher else {}
        await target.shutdown()
    return {"windows": windows, "elapsed_s": elapsed, "subscribers": len(target.subs),
            "failures": target.failures, "publisher": publisher, "server_stats": stats,
            "latency_ms": {"on": percentiles(latencies[True]),
                           "off": percentiles(latencies[False])}}


def block_estimates(windows: list[dict[str, Any]], part: str = "process_cpu") -> list[float]:
    """Per block of four windows: the extra CPU (`part`: the whole process, or one thread's
    clock) per recorded packet, in us; see the module docstring."""
    blocks: dict[int, list[dict[str, Any]]] = {}
    for w in windows:
        blocks.setdefault(w["block"], []).append(w)
    out = []
    for ws in blocks.values():
        on = [w for w in ws if w["on"]]
        off = [w for w in ws if not w["on"]]
        fwd_off = sum(w["forwarded"] for w in off)
        logged = sum(w["logged"] for w in on)
        if len(ws) != 4 or not fwd_off or not logged:
            continue
        per_forwarded_off = sum(w[part] for w in off) / fwd_off
        extra = sum(w[part] for w in on) - per_forwarded_off * sum(w["forwarded"] for w in on)
        out.append(extra / logged * 1e6)
    return out


def mean_ci(values: list[float]) -> dict[str, Any]:
    """The mean with a ~95 % interval (normal approximation: the blocks are independent, and
    there are dozens to hundreds of them)."""
    n = len(values)
    if n < 2:
        return {"mean": values[0] if values else None, "ci": None, "sd": None, "n": n}
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = 1.96 * sd / math.sqrt(n)
    return {"mean": mean, "ci": [mean - half, mean + half], "sd": sd, "n": n}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True, help="NAME,KIND,PID,ENDPOINT,SERVER_ADDRESS")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--polls", type=int, default=1, help="a window: this many writer polls")
    parser.add_argument("--blocks", type=int, default=120)
    parser.add_argument("--poll-s", type=lambda v: [float(x) for x in v.split(",")],
                        help="experiment: the writer's poll interval, by block in turn "
                             "(default: media.recorder.POLL_S)")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--tail", type=float, default=2.0)
    parser.add_argument("--media-timeout", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=12)
    parser.add_argument("--cpu", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})
    try:
        out = asyncio.run(run(args))
    except UnsafeAddress as exc:
        out = {"error": f"unsafe address, aborted before sending media: {exc}"}
    except Exception as exc:  # noqa: BLE001 - reported to the orchestrator
        import traceback
        traceback.print_exc()
        out = {"error": f"{type(exc).__name__}: {exc}"}
    Path(args.out).write_text(json.dumps(out))


if __name__ == "__main__":
    main()
