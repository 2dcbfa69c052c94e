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
import resource
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for p in (str(HERE), str(HERE.parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

from sfu_client import UnsafeAddress
from sfu_load import Target, percentiles, proc_cpu, steal_seconds
from sfu_media import load_clip

from testkit.ice import gather_only_on

PATTERNS = ((False, True, True, False), (True, False, False, True))
# what a window's figures are made of: the difference of these at its end and start
CLOCKS = ("wakeups", "preempted", "gc0", "gc1", "gc2", "process_cpu", "main_cpu", "writer_cpu",
          "forwarded", "logged", "time", "tx_bytes", "rx_packets", "mux_cpu", "wait_cpu",
          "wait_checks")


def machine() -> dict[str, float]:
    """This (load) process's CPU and wake-ups, and the interrupts each core received that
    cross cores (rescheduling, function calls): how often the server's sends had to wake
    the load process's core, a cost in the server's kernel time that is not its work."""
    out: dict[str, float] = {"load_cpu": time.process_time()}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["load_wakeups"] = usage.ru_nvcsw
    with open("/proc/interrupts") as f:
        for line in f:
            name, _, rest = line.strip().partition(":")
            if name in ("RES", "CAL"):
                counts = rest.split()
                out[f"{name.lower()}0"], out[f"{name.lower()}1"] = int(counts[0]), int(counts[1])
    return out


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
                steal0, machine0 = steal_seconds(), machine()
                poll_s = args.poll_s[b % len(args.poll_s)] if args.poll_s else None
                reply = await sig.call(op="record_window", on=on, polls=args.polls,
                                       poll_s=poll_s, wait_mux=not args.no_wait_mux)
                run1, wait1 = proc_cpu(target.server_pid)
                steal1, machine1 = steal_seconds(), machine()
                for s in target.subs:
                    s.recording = False
                got = [v / 1e6 for s in target.subs for v in s.latencies]
                latencies[on] += got
                window = {k: reply["end"][k] - reply["start"][k] for k in CLOCKS}
                window.update(on=on, block=b, poll_s=poll_s, latency_samples=len(got),
                              server_wait_s=wait1 - wait0, server_run_s=run1 - run0,
                              steal_s=steal1 - steal0,
                              **{k: machine1[k] - machine0[k] for k in machine1},
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


# the window's length too: an "on" window waits longer for the mux (~10 ms), and the timers'
# work (RTCP, probes) goes with time, not with the packets forwarded
ADJUST_FOR = ("forwarded", "tx_bytes", "rx_packets", "load_wakeups", "time")


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """a x = b by Gauss-Jordan with partial pivoting (a few unknowns)."""
    n = len(a)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for c in range(n):
        pivot = max(range(c, n), key=lambda r: abs(m[r][c]))
        m[c], m[pivot] = m[pivot], m[c]
        if m[c][c] == 0:
            raise ValueError("singular")
        for r in range(n):
            if r != c:
                f = m[r][c] / m[c][c]
                for k in range(c, n + 1):
                    m[r][k] -= f * m[c][k]
    return [m[i][n] / m[i][i] for i in range(n)]


def adjusted_estimate(windows: list[dict[str, Any]], part: str = "process_cpu",
                      adjust: tuple[str, ...] = ADJUST_FOR) -> dict[str, Any]:
    """The extra CPU (`part`) per recorded packet as a regression over the windows: each
    window's CPU = b . (its `adjust` counts: the work it forwarded, the RTCP it received,
    the load process's wake-ups, its length) + extra x packets logged, every variable taken from its
    block's mean (a block's drift out); the interval from the blocks' scores (a
    cluster-robust sandwich), so the windows of a block need not be independent. The
    same quantity as block_estimates', less the part of each window's spread that its
    counts explain; in us."""
    blocks: dict[int, list[dict[str, Any]]] = {}
    for w in windows:
        blocks.setdefault(w["block"], []).append(w)
    names = ("logged", *adjust)
    rows: list[tuple[int, list[float], float]] = []
    for b, ws in blocks.items():
        if len(ws) != 4 or any(k not in w for w in ws for k in names):
            continue
        means = {k: sum(w[k] for w in ws) / 4 for k in (*names, part)}
        for w in ws:
            rows.append((b, [w[k] - means[k] for k in names], w[part] - means[part]))
    k = len(names)
    groups = len({b for b, _, _ in rows})
    if groups < 3:
        return {"mean": None, "ci95": None, "blocks": groups}
    scale = [max(abs(x[i]) for _, x, _ in rows) or 1.0 for i in range(k)]
    xs = [[x[i] / scale[i] for i in range(k)] for _, x, _ in rows]
    xtx = [[sum(x[i] * x[j] for x in xs) for j in range(k)] for i in range(k)]
    try:
        beta = _solve(xtx, [sum(x[i] * r[2] for x, r in zip(xs, rows, strict=True))
                            for i in range(k)])
        inverse = [_solve(xtx, [1.0 if i == j else 0.0 for i in range(k)]) for j in range(k)]
    except ValueError:
        return {"mean": None, "ci95": None, "blocks": groups}
    score: dict[int, list[float]] = {}
    for x, (b, _, y) in zip(xs, rows, strict=True):
        e = y - sum(bi * xi for bi, xi in zip(beta, x, strict=True))
        s = score.setdefault(b, [0.0] * k)
        for i in range(k):
            s[i] += x[i] * e
    # the variance of the first coefficient: row 0 of inverse . meat . inverse
    row = [inverse[j][0] for j in range(k)]  # inverse is symmetric; column 0
    var = sum(sum(row[i] * s[i] for i in range(k)) ** 2 for s in score.values())
    var *= groups / (groups - 1)
    extra = beta[0] / scale[0] * 1e6
    half = 1.96 * math.sqrt(var) / scale[0] * 1e6
    return {"mean": extra, "ci95": [extra - half, extra + half], "blocks": groups,
            "adjusted_for": list(adjust)}


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


def median_ci(values: list[float]) -> dict[str, Any]:
    """The median, the interquartile range and a distribution-free confidence interval of
    the median (order statistics: [x_(j), x_(n+1-j)] with j the largest rank whose binomial
    tail P(B <= j-1) is <= 2.5 %; its exact level is reported)."""
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        return {"median": None, "iqr": None, "ci": None, "level": None}

    def quantile(q: float) -> float:
        pos = q * (n - 1)
        lo = int(pos)
        hi = min(lo + 1, n - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)
    tail = 0.0
    j = 0
    while True:  # tail = P(B <= j) for B ~ Binomial(n, 1/2)
        nxt = tail + math.comb(n, j) / 2 ** n
        if nxt > 0.025:
            break
        tail, j = nxt, j + 1
    if j == 0:  # too few rounds for a 95 % interval: the whole range, its own level
        return {"median": quantile(0.5), "iqr": [quantile(0.25), quantile(0.75)],
                "ci": [xs[0], xs[-1]], "level": round(1 - 2 / 2 ** n, 4)}
    return {"median": quantile(0.5), "iqr": [quantile(0.25), quantile(0.75)],
            "ci": [xs[j - 1], xs[n - j]], "level": round(1 - 2 * tail, 4)}


def resolved(ci: list[float] | None, target: float) -> str:
    """Whether the interval decides the target: 'met', 'missed' or 'unresolved'."""
    if ci is None:
        return "unresolved"
    if ci[1] <= target:
        return "met"
    if ci[0] > target:
        return "missed"
    return "unresolved"


def estimate(values: list[float]) -> dict[str, Any]:
    """A part's block estimates: the mean with its ~95 % interval, and the median with its."""
    m, med = mean_ci(values), median_ci(values)
    return {"mean": m["mean"], "ci95": m["ci"], "sd": m["sd"], "blocks": m["n"],
            "median": med["median"], "median_ci": med["ci"], "median_ci_level": med["level"]}


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
    parser.add_argument("--no-wait-mux", action="store_true",
                        help="experiment: end an \"on\" window without waiting for the mux "
                             "process to follow what it logged (as before 2026-12-07 17:00)")
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
