"""Benchmark: cascade links (province <- city <- ward), one OS process per node.

    .venv/bin/python bench/cascade.py [--quick] [--json PATH] [--sched normal|rr]

Five processes on loopback (127.0.0.1 only, in every process aioice's
get_host_addresses returns ["127.0.0.1"]):

* three nodes, bench/cascade_node.py: an SFU plus the node link
  (server/cascade/link.py) on an aiohttp + socket.io server each, uvloop as in
  run.py; city's parent is the province, ward's parent is the city;
* a publisher process and a subscriber process, bench/cascade_clients.py
  (testkit/aiortc_clients.py's aiortc clients: pre-encoded VP8 320x240 15 fps,
  subscribers that decode), signalling over the nodes' HTTP. The publisher
  sends to the province; N subscribers watch its video at the ward (the
  leaf), so the stream crosses both links.

Measured, for N = 1 then 10 (`--quick`) or 1, 5, 10, 20 leaf subscribers, over
a window of whole clip loops (the clip is 2 s; quick 4 s, full 8 s) after the
subscribers decode and 2 s of settling:

* Link bytes: every byte the province's link peer for the city sends (its
  transports' bytes_sent: SRTP media + RTCP), per second, and per byte the
  publisher sent (the province producer's bytes_received, which follows the
  clip's keyframes). `link_bytes_ratio_10_vs_1` is the latter at 10 leaf
  subscribers over the same at 1 (one copy whatever N: 1.0); `_raw` is the
  bytes/s ratio.
* Added latency per hop: each node process wraps
  media.producer.Producer.receive_rtp (bench/cascade_node.py; media/ is not
  touched, and a renamed method stops the node with a message) and records
  CLOCK_MONOTONIC (time.monotonic(), system-wide on Linux) and a payload key
  for every video packet a producer receives. Hop 1 = t(city) - t(province),
  hop 2 = t(ward) - t(city), for the same packet: province producer in,
  fan-out to the link consumer, SRTP, UDP over loopback, the next node's
  socket read, DTLS/SRTP unprotect, up to its relayed producer. Packets the
  next node never received are counted as missing, not as latency.
  `added_latency_per_hop_p99_ms` pools both hops and every window.
* CPU per node: each process's CPU seconds (all threads, from
  /proc/PID/task/*/schedstat) over the window per wall second (= cores used),
  and per RTP packet the node forwarded (every consumer's packets_sent, link
  consumers included). `cpu_per_node` in the summary is at 10 subscribers.
  At 70 packets/s (province, city: one copy) that figure is mostly the node's
  fixed cost, shown apart as its idle CPU (3 s once the nodes are linked,
  before anything is published: socket.io link, pings, the lag probe); the
  ward's slope between the fewest and the most subscribers is the CPU per
  extra forwarded copy. The clients' CPU is shown too.
* resume_seconds: the city is killed with SIGKILL, 1 s later started again
  on the same port; time from that start (process spawn: interpreter start
  and imports included) until the ward's relayed producer receives the
  stream again (first packet; at least 20 must follow). Also from the
  city's "ready" line. The ward reconnects with backoff and re-pulls by itself.
* Event-loop lag per node over each window (a 10 ms sleep probe in the
  node), to tell a busy or descheduled node from a slow path.

The machine is shared: the load average is recorded at start and end. With
`--sched rr` (root) every bench process runs SCHED_RR priority 10, which
shields latency from other users' processes (not from each other).
Targets (reported, not enforced): link_bytes_ratio_10_vs_1 <= 1.1, hop p99
<= 5 ms, resume <= 5 s. `--json PATH` writes {"results": [...], "summary":
{...}}; the JSON and a table are printed. Quick about 21 s, full about 51 s
(the first run also encodes the clip in the publisher process).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testkit.processes import free_port

UNITS = ("province", "city", "ward")
SECRETS = {"city": "city-bench-secret-0123456789", "ward": "ward-bench-secret-0123456789"}
CLIP_S = 2.0  # testkit/aiortc_clients.encode_media(seconds=2.0): the clip loops
HOPS = (("province", "city"), ("city", "ward"))
IDLE_S = 3.0


class Proc:
    """A child process with a line-oriented stdout (and stdin for commands)."""

    def __init__(self, name: str, argv: list[str], sched: str) -> None:
        self.name, self.argv, self.sched = name, argv, sched
        self.output: list[str] = []
        self.lines: asyncio.Queue[str] = asyncio.Queue()
        self.process: asyncio.subprocess.Process | None = None
        self.ps: psutil.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        def preexec() -> None:
            if self.sched == "rr":
                os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(10))

        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-u", *self.argv, cwd=ROOT, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            preexec_fn=preexec)
        self.ps = psutil.Process(self.process.pid)
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := (await self.process.stdout.readline()).decode(errors="replace"):
            self.output.append(line.rstrip())
            self.lines.put_nowait(line.rstrip())

    async def expect(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = await asyncio.wait_for(self.lines.get(), max(0.05, left))
            except TimeoutError:
                if left <= 0 or (self.process and self.process.returncode is not None):
                    raise RuntimeError(
                        f"{self.name}: no line starting {prefix!r} within {timeout} s; "
                        "output:\n" + "\n".join(self.output[-40:])) from None
                continue
            if line.startswith(prefix):
                return line

    async def send(self, line: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write((line + "\n").encode())
        await self.process.stdin.drain()

    def cpu_seconds(self) -> float:
        """On-CPU time of all the process's live threads, in ns resolution
        (/proc/PID/task/*/schedstat; psutil's user + system ticks at 10 ms,
        too coarse for a node using 1 % of a core). Falls back to psutil."""
        assert self.ps is not None
        total = 0
        try:
            for task in Path(f"/proc/{self.ps.pid}/task").iterdir():
                with contextlib.suppress(OSError):  # a thread that just ended
                    total += int((task / "schedstat").read_text().split()[0])
        except OSError:
            t = self.ps.cpu_times()
            return float(t.user + t.system)
        return total / 1e9

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                await self.kill()
        if self._reader is not None:
            self._reader.cancel()


def p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 3)


def firsts(data: dict[str, list[Any]]) -> dict[int, float]:
    out: dict[int, float] = {}
    for key, t in zip(data["keys"], data["times"], strict=True):
        out.setdefault(key, t)
    return out


class Bench:
    def __init__(self, args: argparse.Namespace, http: aiohttp.ClientSession) -> None:
        self.args, self.http = args, http
        self.ports = {u: free_port() for u in UNITS}
        self.nodes: dict[str, Proc] = {}
        self.clients: dict[str, Proc] = {}
        self.producer = ""
        self.idle: dict[str, float] = {}

    def url(self, unit: str) -> str:
        return f"http://127.0.0.1:{self.ports[unit]}"

    async def get(self, unit: str, path: str) -> Any:
        async with self.http.get(self.url(unit) + path) as r:
            r.raise_for_status()
            return await r.json()

    async def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not await predicate():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not within {timeout} s")
            await asyncio.sleep(0.05)

    def node_argv(self, unit: str) -> list[str]:
        argv = ["-m", "bench.cascade_node", "--unit", unit, "--port", str(self.ports[unit])]
        parent = {"city": "province", "ward": "city"}.get(unit)
        if parent is not None:
            argv += ["--parent-url", self.url(parent), "--secret", SECRETS[unit]]
        child = {"province": "city", "city": "ward"}.get(unit)
        if child is not None:
            argv += ["--child", f"{child}={SECRETS[child]}"]
        return argv

    async def start_node(self, unit: str) -> float:
        """Start a node; returns the CLOCK_MONOTONIC of its "node ready"."""
        proc = Proc(unit, self.node_argv(unit), self.args.sched)
        self.nodes[unit] = proc
        await proc.start()
        return float((await proc.expect("node ready", 60)).split()[2])

    async def linked(self, upper: str, lower: str) -> bool:
        links = (await self.get(upper, "/stats"))["links"]
        return lower in links and not links[lower]["closed"]

    async def setup(self) -> None:
        await self.start_node("province")
        await asyncio.gather(self.start_node("city"), self.start_node("ward"))
        await self.wait(lambda: self.linked("province", "city"), 20, "city linked")
        await self.wait(lambda: self.linked("city", "ward"), 20, "ward linked")
        # Fixed cost of a linked node without media (socket.io link, pings, the lag probe).
        await asyncio.sleep(1.0)
        c0 = {u: pr.cpu_seconds() for u, pr in self.nodes.items()}
        t0 = time.monotonic()
        await asyncio.sleep(IDLE_S)
        wall = time.monotonic() - t0
        self.idle = {u: (pr.cpu_seconds() - c0[u]) / wall for u, pr in self.nodes.items()}
        pub = self.clients["publisher"] = Proc(
            "publisher", ["-m", "bench.cascade_clients", "publisher",
                          "--node", self.url("province")], self.args.sched)
        await pub.start()
        self.producer = (await pub.expect("published", 120)).split()[1]

        async def at_ward() -> bool:
            return self.producer in await self.get("ward", "/available")

        await self.wait(at_ward, 20, "the video in the ward's catalog")
        subs = self.clients["subscribers"] = Proc(
            "subscribers", ["-m", "bench.cascade_clients", "subscribers", "--node",
                            self.url("ward"), "--producer", self.producer], self.args.sched)
        await subs.start()
        await subs.expect("subscribers ready", 60)

    async def frames(self) -> list[int]:
        subs = self.clients["subscribers"]
        await subs.send("frames")
        return [int(f) for f in json.loads((await subs.expect("frames", 10)).split(" ", 1)[1])]

    async def step(self, count: int, window: float) -> dict[str, Any]:
        subs = self.clients["subscribers"]
        await subs.send(f"count {count}")
        await subs.expect(f"ready {count}", 90)
        await asyncio.sleep(2.0)
        procs = {**self.nodes, **self.clients}
        f0 = await self.frames()
        s0 = {u: await self.get(u, "/stats") for u in UNITS}
        c0 = {n: pr.cpu_seconds() for n, pr in procs.items()}
        t0 = time.monotonic()
        await asyncio.sleep(window)
        t1 = time.monotonic()
        c1 = {n: pr.cpu_seconds() for n, pr in procs.items()}
        s1 = {u: await self.get(u, "/stats") for u in UNITS}
        f1 = await self.frames()
        wall = t1 - t0
        arrivals = {u: firsts(await self.get(u, f"/arrivals?since={t0 - 1}&until={t1 + 2}"))
                    for u in UNITS}
        lag = {u: await self.get(u, f"/lag?since={t0}&until={t1}") for u in UNITS}
        for u in UNITS:
            if s1[u]["arrivals"] == s0[u]["arrivals"]:
                raise RuntimeError(
                    f"{u}: the instrumentation hook recorded no video packet in {wall:.1f} s "
                    f"while media flowed (hook calls {s1[u]['hook_calls']}): media/ no longer "
                    "delivers RTP through Producer.receive_rtp; update bench/cascade_node.py")

        hops: dict[str, list[float]] = {}
        missing: dict[str, int] = {}
        for a, b in HOPS:
            name = f"{a}->{b}"
            hops[name], missing[name] = [], 0
            for key, ta in arrivals[a].items():
                if not t0 <= ta < t1:
                    continue
                tb = arrivals[b].get(key)
                if tb is None:
                    missing[name] += 1
                else:
                    hops[name].append((tb - ta) * 1000)

        def delta(unit: str, *path: str) -> float:
            x0: Any = s0[unit]
            x1: Any = s1[unit]
            for k in path:
                x0, x1 = x0[k], x1[k]
            return float(x1 - x0)

        published = delta("province", "producers", self.producer, "bytes_received")
        link_pc = delta("province", "links", "city", "bytes_sent")
        link_cw = delta("city", "links", "ward", "bytes_sent")
        cpu = {n: (c1[n] - c0[n]) / wall for n in procs}
        forwarded = {u: delta(u, "forwarded_packets") for u in UNITS}
        received = {u: delta(u, "producers", self.producer, "packets_received") for u in UNITS}
        fps = [(b - a) / wall for a, b in zip(f0, f1, strict=False)]
        return {
            "subscribers": count, "window_s": round(wall, 2),
            "link_province_city_bytes_per_s": round(link_pc / wall),
            "link_city_ward_bytes_per_s": round(link_cw / wall),
            "published_bytes_per_s": round(published / wall),
            "link_bytes_per_published_byte": round(link_pc / published, 4),
            "copies_province_city": s1["province"]["links"]["city"]["copies"].get(
                self.producer, 0),
            "copies_city_ward": s1["city"]["links"]["ward"]["copies"].get(self.producer, 0),
            "hop_latency_ms": {h: {"p50": p(v, 0.5), "p99": p(v, 0.99), "max": p(v, 1.0),
                                   "packets": len(v), "missing": missing[h]}
                               for h, v in hops.items()},
            "hops_ms": hops,  # raw samples, dropped from the printed JSON
            "slow_hop_packets_over_5ms": {h: sum(1 for x in v if x > 5) for h, v in hops.items()},
            "loop_lag_ms": {u: {"p50": p(lag[u], 0.5), "p99": p(lag[u], 0.99),
                                "max": p(lag[u], 1.0)} for u in UNITS},
            "cpu_cores": {n: round(v, 4) for n, v in cpu.items()},
            "video_packets_in_per_s": {u: round(received[u] / wall, 1) for u in UNITS},
            "forwarded_packets_per_s": {u: round(forwarded[u] / wall, 1) for u in UNITS},
            "cpu_us_per_forwarded_packet": {
                u: round(cpu[u] * wall / forwarded[u] * 1e6, 1) if forwarded[u] else None
                for u in UNITS},

            "subscriber_fps_min": round(min(fps), 1) if fps else None,
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }

    async def resume(self) -> dict[str, Any]:
        city = self.nodes["city"]
        await city.kill()
        killed = time.monotonic()
        await asyncio.sleep(1.0)
        spawned = time.monotonic()
        ready = await self.start_node("city")
        first: list[float] = []

        async def flowing() -> bool:
            data = await self.get("ward", f"/arrivals?since={spawned}")
            first[:] = data["times"][:1]
            return len(data["times"]) >= 20

        await self.wait(flowing, 30, "media at the ward after the city's restart")
        return {"resume_seconds": round(first[0] - spawned, 3),
                "resume_seconds_after_ready": round(first[0] - ready, 3),
                "city_start_seconds": round(ready - spawned, 3),
                "outage_seconds": round(first[0] - killed, 3)}

    async def close(self) -> None:
        for proc in [*self.clients.values(), *reversed(self.nodes.values())]:
            await proc.stop()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    counts = [1, 10] if args.quick else [1, 5, 10, 20]
    window = 2 * CLIP_S if args.quick else 4 * CLIP_S
    load_start = [round(x, 2) for x in os.getloadavg()]
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        bench = Bench(args, http)
        try:
            await bench.setup()
            steps = [await bench.step(n, window) for n in counts]
            resumed = await bench.resume()
        finally:
            await bench.close()
    by_n = {s["subscribers"]: s for s in steps}
    pooled = [x for s in steps for v in s["hops_ms"].values() for x in v]
    per_hop = {f"{a}->{b}": [x for s in steps for x in s["hops_ms"][f"{a}->{b}"]]
               for a, b in HOPS}
    for s in steps:
        del s["hops_ms"]
    one, ten, most = by_n[1], by_n[10], by_n[max(counts)]
    summary: dict[str, Any] = {
        "link_bytes_ratio_10_vs_1": round(ten["link_bytes_per_published_byte"]
                                          / one["link_bytes_per_published_byte"], 3),
        "link_bytes_ratio_10_vs_1_raw": round(ten["link_province_city_bytes_per_s"]
                                              / one["link_province_city_bytes_per_s"], 3),
        "link_bytes_ratio_max_vs_1_raw": round(
            max(s["link_province_city_bytes_per_s"] for s in steps)
            / one["link_province_city_bytes_per_s"], 3),
        "link_copies_max": max(max(s["copies_province_city"], s["copies_city_ward"])
                               for s in steps),
        "added_latency_per_hop_p50_ms": p(pooled, 0.5),
        "added_latency_per_hop_p99_ms": p(pooled, 0.99),
        "added_latency_per_hop_max_ms": p(pooled, 1.0),
        "hop_p99_ms": {h: p(v, 0.99) for h, v in per_hop.items()},
        "hop_packets": len(pooled),
        "hop_missing": sum(h["missing"] for s in steps for h in s["hop_latency_ms"].values()),
        "cpu_per_node": {u: ten["cpu_cores"][u] for u in UNITS},
        "cpu_per_node_at_subscribers": 10,
        "cpu_us_per_forwarded_packet": ten["cpu_us_per_forwarded_packet"],
        # Ward CPU per extra copy forwarded: slope between the fewest and most subscribers.
        "ward_cpu_us_per_extra_forwarded_packet": round(
            (most["cpu_cores"]["ward"] - one["cpu_cores"]["ward"]) * 1e6
            / (most["forwarded_packets_per_s"]["ward"] - one["forwarded_packets_per_s"]["ward"]),
            1),
        "cpu_idle_per_node": {u: round(v, 4) for u, v in bench.idle.items()},
        **resumed,
        "subscriber_counts": counts, "window_s": window, "quick": args.quick,
        "sched": args.sched, "cpus": os.cpu_count(),
        "load_average_start": load_start,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "duration_s": round(time.monotonic() - started, 1),
    }
    summary["targets_met"] = {
        "link_bytes_ratio_10_vs_1 <= 1.1": summary["link_bytes_ratio_10_vs_1"] <= 1.1,
        "added_latency_per_hop_p99_ms <= 5": (summary["added_latency_per_hop_p99_ms"]
                                              or 1e9) <= 5.0,
        "resume_seconds <= 5": summary["resume_seconds"] <= 5.0,
    }
    results: list[dict[str, Any]] = [{"phase": "links", **s} for s in steps]
    results.append({"phase": "resume", **resumed})
    return {"results": results, "summary": summary}


def table(out: dict[str, Any]) -> str:
    rows = [("N   link p>c B/s  /pub B  copies  hop1 p50/p99 ms  hop2 p50/p99 ms  lag p99 ms  "
             "CPU cores p/c/w (pub, subs)       us/pkt p/c/w       fps  load1")]
    for s in out["results"]:
        if s["phase"] != "links":
            continue
        h1, h2 = s["hop_latency_ms"]["province->city"], s["hop_latency_ms"]["city->ward"]
        c, us = s["cpu_cores"], s["cpu_us_per_forwarded_packet"]
        lag = max(v["p99"] or 0 for v in s["loop_lag_ms"].values())
        rows.append(
            f"{s['subscribers']:<3}{s['link_province_city_bytes_per_s']:>12}  "
            f"{s['link_bytes_per_published_byte']:>6}  {s['copies_province_city']:>6}  "
            f"{h1['p50']:>6}/{h1['p99']:<8}  {h2['p50']:>6}/{h2['p99']:<8}  {lag:>9}  "
            f"{c['province']:.3f}/{c['city']:.3f}/{c['ward']:.3f} "
            f"({c['publisher']:.3f}, {c['subscribers']:.3f})  "
            f"{us['province']:>5}/{us['city']}/{us['ward']:<6}  {s['subscriber_fps_min']:>4}  "
            f"{s['load_average'][0]}")
    m = out["summary"]
    rows.append(f"link_bytes_ratio_10_vs_1 {m['link_bytes_ratio_10_vs_1']} "
                f"(raw {m['link_bytes_ratio_10_vs_1_raw']}); per-hop p50/p99 "
                f"{m['added_latency_per_hop_p50_ms']}/{m['added_latency_per_hop_p99_ms']} ms; "
                f"resume {m['resume_seconds']} s ({m['resume_seconds_after_ready']} s after "
                f"ready); load {m['load_average_start']} -> {m['load_average_end']}; "
                f"sched {m['sched']}")
    rows.append(f"CPU cores at 10 subscribers {m['cpu_per_node']}; idle {m['cpu_idle_per_node']}; "
                f"ward {m['ward_cpu_us_per_extra_forwarded_packet']} us per extra copy")
    rows.append(f"targets met: {m['targets_met']}")
    return "\n".join(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--sched", choices=("normal", "rr"), default="normal")
    arguments = parser.parse_args()
    output = asyncio.run(run(arguments))
    print(json.dumps(output, indent=2))
    print(table(output))
    if arguments.json:
        arguments.json.write_text(json.dumps(output, indent=2))
