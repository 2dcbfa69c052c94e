"""The load process of bench/sfu.py: publishers and N subscribers, measured.

    python bench/sfu_load.py --server NAME,KIND,PID,ENDPOINT,SERVER_ADDRESS [--server ...]
                             --ns 1,10 --address 127.0.0.1 --out RESULT.json

Started by bench/sfu.py, pinned to its own core. Each server (KIND hopso,
mediarelay or janus) gets its own publisher and subscribers. For each N,
subscribers join each server up to N (none leave) while only that server's
publisher sends; once every one has audio and a video keyframe, rounds of
measurement windows follow, one server after the other (only the measured
server's publisher sends; the others idle). A window records the server
process's CPU (the sum of its threads' run time from
/proc/PID/task/*/schedstat, so every thread counts, and the time they waited
for a CPU), the packets, frames and sequence gaps every subscriber saw,
publisher sendto -> subscriber kernel timestamp for every forwarded packet,
and the server's event-loop lag (its own probe: Hopso and MediaRelay).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for p in (str(HERE), str(HERE.parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

from sfu_client import Publisher, UnsafeAddress
from sfu_media import load_clip
from sfu_subscriber import Subscriber

from testkit.ice import gather_only_on


def log(msg: str) -> None:
    print(f"[load {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def proc_cpu(pid: int | str) -> tuple[float, float]:
    """(CPU seconds, seconds waiting for a CPU) summed over the threads."""
    run = wait = 0
    base = f"/proc/{pid}/task"
    for tid in os.listdir(base):
        try:
            with open(f"{base}/{tid}/schedstat") as f:
                a, b, _ = f.read().split()
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
        run += int(a)
        wait += int(b)
    return run / 1e9, wait / 1e9


def proc_stat_cpu(pid: int | str) -> tuple[float, float]:
    """(utime, stime) of the whole process (includes exited threads), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def steal_seconds() -> float:
    """Time the hypervisor ran something else on our vCPUs (all CPUs, seconds)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


def udp_errors() -> dict[str, int]:
    """UDP buffer errors of this network namespace (/proc/net/snmp): in the host's
    namespace they include every other process's sockets, in Janus's only ours."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    if len(rows) < 2:
        return {}
    values = dict(zip(rows[0][1:], rows[1][1:]))
    return {k: int(values.get(k, 0)) for k in ("RcvbufErrors", "SndbufErrors", "InErrors")}


def percentiles(values: list[float], points: tuple[float, ...] = (50, 90, 99, 99.9)) -> dict[str, float]:
    if not values:
        return {}
    s = sorted(values)
    n = len(s)
    out = {f"p{str(p).replace('.0', '').replace('.', '_')}": s[min(n - 1, int(n * p / 100))]
           for p in points}
    out["max"] = s[-1]
    out["count"] = n
    return out


# --- signaling ------------------------------------------------------------------------

class ControlSignaling:
    """JSON lines over the server's Unix socket (Hopso and MediaRelay)."""

    def __init__(self, path: str, size: int = 6) -> None:
        self.path = path
        self.size = size
        self._pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = \
            asyncio.Queue()

    async def open(self) -> None:
        for _ in range(self.size):
            self._pool.put_nowait(await asyncio.open_unix_connection(self.path, limit=1 << 22))

    async def call(self, **request: Any) -> dict[str, Any]:
        reader, writer = await self._pool.get()
        try:
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            reply = json.loads(await reader.readline())
        finally:
            self._pool.put_nowait((reader, writer))
        if "error" in reply:
            raise RuntimeError(f"server: {request.get('op')}: {reply['error']}")
        return reply

    async def publish(self, sdp: str) -> str:
        return (await self.call(op="publish", sdp=sdp))["sdp"]

    async def subscribe(self, peer: str) -> str:
        return (await self.call(op="subscribe", peer=peer))["sdp"]

    async def answer(self, peer: str, sdp: str) -> str | None:
        return (await self.call(op="answer", peer=peer, sdp=sdp))["sdp"]

    async def lag(self, record: bool) -> dict[str, Any] | None:
        return await self.call(op="lag", record=record)

    async def stats(self) -> dict[str, Any] | None:
        return await self.call(op="stats")

    async def close(self) -> None:
        while not self._pool.empty():
            _, writer = self._pool.get_nowait()
            writer.close()


# --- driver -----------------------------------------------------------------------------

class Target:
    """One server under test: its signaling, publisher, subscribers, results."""

    def __init__(self, args: argparse.Namespace, spec: str) -> None:
        # NAME,KIND,PID,ENDPOINT,SERVER_ADDRESS
        name, kind, pid, endpoint, server_address = spec.split(",")
        self.args = args
        self.name = name
        self.kind = kind  # hopso, mediarelay, janus
        self.server_pid = int(pid)
        self.endpoint = endpoint
        self.server_address = server_address  # every candidate it sends must be this
        self.address = args.address  # ours
        self.sig: Any = None
        self.publisher: Publisher | None = None
        self.subs: list[Subscriber] = []
        self.failures: list[str] = []
        self.results: list[dict[str, Any]] = []
        self.windows: list[dict[str, Any]] = []
        self.others: list[int] = []  # pids of the other servers (idle while we measure)

    async def connect(self, clip: Any) -> None:
        if self.kind == "janus":
            from sfu_janus import JanusSignaling
            self.sig = JanusSignaling(self.endpoint)
        else:
            self.sig = ControlSignaling(self.endpoint)
        await self.sig.open()
        pub = self.publisher = Publisher(self.address, clip)
        await pub.gather()
        answer = await self.sig.publish(pub.offer())
        await asyncio.wait_for(pub.apply_answer(answer, self.server_address), 20)
        pub.start()
        log(f"{self.name}: publisher connected")

    def finish(self, n: int) -> None:
        result = self.aggregate(n, self.windows)
        self.windows = []
        self.results.append(result)
        log(f"{self.name} N={n}: cpu {result['cpu_s_per_s']:.3f} s/s, "
            f"{result['forwarded_pps']:.0f} pps, {result['us_per_forwarded_packet'] or 0:.1f} "
            f"us/pkt, fps min {result['fps']['min']:.1f}, loss {result['loss_pct']:.3f}%")

    def output(self) -> dict[str, Any]:
        return {"results": self.results, "failures": self.failures,
                "publisher": self._publisher_stats() if self.publisher else {}}

    def _publisher_stats(self) -> dict[str, Any]:
        p = self.publisher
        assert p is not None
        return {"packets_sent": p.packets_sent, "video_frames_sent": p.video_frames_sent,
                "keyframes_sent": p.keyframes_sent, "keyframe_requests": p.keyframe_requests,
                "nacks_received": p.nacks, "retransmissions": p.retransmissions,
                "late_ticks": p.late_ticks, "side_table_ambiguous": p.side.ambiguous}

    async def _add_subscriber(self, index: int) -> None:
        assert self.publisher is not None
        sub = Subscriber(self.address, self.publisher.side)
        peer = f"sub{index}"
        try:
            await sub.gather()
            offer: str | None = await self.sig.subscribe(peer)
            remote = None
            while offer is not None:
                answer, remote = sub.answer(offer, self.server_address)
                offer = await self.sig.answer(peer, answer)
            assert remote is not None
            await asyncio.wait_for(sub.connect_to(remote), 25)
        except UnsafeAddress:
            raise
        except Exception as exc:  # noqa: BLE001 - counted and reported
            self.failures.append(f"{peer}: {type(exc).__name__}: {exc}")
            await sub.close()
            return
        self.subs.append(sub)

    async def grow(self, n: int) -> None:
        start = len(self.subs) + len(self.failures)
        missing = n - len(self.subs)
        if missing > 0:
            t = time.monotonic()
            sem = asyncio.Semaphore(self.args.concurrency)

            async def one(i: int) -> None:
                async with sem:
                    await self._add_subscriber(i)

            await asyncio.gather(*(one(start + i) for i in range(missing)))
            log(f"{self.name}: {len(self.subs)} subscribers connected in "
                f"{time.monotonic() - t:.1f}s"
                f" ({len(self.failures)} failures so far)")
        deadline = time.monotonic() + self.args.media_timeout
        while time.monotonic() < deadline and not all(s.has_media() for s in self.subs):
            await asyncio.sleep(0.1)
        waiting = sum(1 for s in self.subs if not s.has_media())
        if waiting:
            log(f"{self.name}: {waiting} subscribers lack audio or a video keyframe")

    def aggregate(self, n: int, windows: list[dict[str, Any]]) -> dict[str, Any]:
        """Medians over windows for CPU figures (robust to a noisy neighbour's
        burst), every sample pooled for percentiles and frame rates."""
        med = _median
        dt = sum(w["dt"] for w in windows)
        cpu = sum(w["cpu"] for w in windows)
        forwarded = sum(w["received"] for w in windows)
        per_window = [{
            "window_s": round(w["dt"], 3), "cpu_s_per_s": w["cpu"] / w["dt"],
            "us_per_forwarded_packet": w["cpu"] / w["received"] * 1e6 if w["received"] else None,
            "latency_p99_ms": percentiles(w["latencies"]).get("p99"),
            "loop_lag_p99_ms": percentiles(w["lag"]).get("p99"),
            "fps_min": min((f / w["dt"] for f in w["frames"]), default=0.0),
            "cpu_wait_s_per_s": w["wait"] / w["dt"], "loadavg_1m": w["loadavg"]}
            for w in windows]
        nsubs = len(windows[-1]["frames"])
        fps = [sum(w["frames"][i] for w in windows) / dt for i in range(nsubs)]
        audio = [sum(w["audio"][i] for w in windows) / dt for i in range(nsubs)]
        expected = sum(w["expected"] for w in windows)
        lost = sum(w["lost"] for w in windows)
        rtx = sum(w["rtx"] for w in windows)
        latencies = [v for w in windows for v in w["latencies"]]
        result: dict[str, Any] = {
            "n": n, "subscribers": len(self.subs), "windows": len(windows),
            "window_s": round(dt, 3),
            "cpu_s_per_s": med([x["cpu_s_per_s"] for x in per_window]),
            "cpu_s_per_s_mean": cpu / dt,
            "us_per_forwarded_packet": med([x["us_per_forwarded_packet"] for x in per_window
                                           if x["us_per_forwarded_packet"]]),
            "us_per_forwarded_packet_pooled": cpu / forwarded * 1e6 if forwarded else None,
            "forwarded_pps": forwarded / dt,
            "cpu_ms_per_subscriber_s": (med([x["cpu_s_per_s"] for x in per_window]) or 0.0)
            / max(1, len(self.subs)) * 1000,
            "cpu_s_per_s_procstat": sum(w["stat"] for w in windows) / dt,
            "cpu_user_s_per_s": sum(w["user"] for w in windows) / dt,
            "cpu_system_s_per_s": sum(w["system"] for w in windows) / dt,
            "cpu_wait_s_per_s": sum(w["wait"] for w in windows) / dt,
            "rtx_pps": rtx / dt,
            "loss_pct": 100 * lost / expected if expected else 0.0,
            "worst_subscriber_loss_pct": max(w["worst_loss"] for w in windows) * 100,
            "fps": _summary(fps), "audio_pps": _summary(audio),
            "keyframes_received": sum(w["keyframes"] for w in windows),
            "latency_ms": percentiles(latencies),
            "latency_matched_fraction": len(latencies) / max(1, forwarded - rtx),
            "hopso_after_decrypt_ms": percentiles([v for w in windows for v in w["ast"]])
            if self.kind == "hopso" else {},
            "loop_lag_ms": _lag_summary([v for w in windows for v in w["lag"]]),
            "gc_pauses": _gc_summary([p for w in windows for p in w["gc"]], dt),
            "machine_steal_s_per_s": sum(w["steal_s"] for w in windows) / dt,
            "idle_co_servers_cpu_s_per_s": sum(w["others_cpu"] for w in windows) / dt,
            "load_cpu_s_per_s": sum(w["self"] for w in windows) / dt,
            "load_cpu_wait_s_per_s": sum(w["selfwait"] for w in windows) / dt,
            "loadavg_1m": [windows[0]["loadavg"][0], windows[-1]["loadavg"][1]],
            "publisher": {k: sum(w["publisher"][k] for w in windows) / (dt if k in ("pps", "fps")
                                                                      else 1)
                          for k in windows[0]["publisher"]},
            "srtp_errors": sum(w["srtp_errors"] for w in windows),
            "udp_errors_in_namespace": {k: sum(w["udp"].get(k, 0) for w in windows)
                                          for k in windows[0]["udp"]},
            "server_threads": windows[-1]["threads"],
            "srtp_profiles": _count(s.srtp_profile for s in self.subs),
            "failures": len(self.failures),
            "per_window": per_window,
        }
        stats0, stats1 = windows[0]["stats0"], windows[-1]["stats1"]
        if stats0 and stats1 and "packets_sent" in stats0:
            result["server_packets_sent_pps"] = (stats1["packets_sent"] - stats0["packets_sent"]) / dt
            result["server_packets_dropped"] = stats1["packets_dropped"] - stats0["packets_dropped"]
            result["server_producers"] = stats1.get("producers")
            result["server_events"] = stats1.get("events")
            result["server_consumers_with_rtt_from_rr"] = stats1.get("consumers_with_rtt_from_rr")
        elif stats1 and "events" in stats1:
            result["server_events"] = stats1["events"]
        return result

    async def window(self) -> dict[str, Any]:
        sig, pub = self.sig, self.publisher
        assert pub is not None
        await sig.lag(True)
        stats0 = await sig.stats()
        for s in self.subs:
            s.latencies.clear()
            s.ast_delays.clear()
        # No await from here to t0, nor from t1 to the end snapshots: packet counts
        # and CPU cover exactly the same interval.
        clock_offset = time.time_ns() - time.monotonic_ns()
        load_avg0 = os.getloadavg()
        udp0 = udp_errors()
        pub0 = (pub.packets_sent, pub.video_frames_sent, pub.keyframes_sent, pub.retransmissions,
                pub.late_ticks)
        srtp0 = sum(s.srtp_errors for s in self.subs)
        steal0 = steal_seconds()
        self0, selfwait0 = proc_cpu("self")
        stat0 = proc_stat_cpu(self.server_pid)
        cpu0, wait0 = proc_cpu(self.server_pid)
        others0 = sum(proc_cpu(pid)[0] for pid in self.others)
        snaps0 = [s.snapshot() for s in self.subs]
        for s in self.subs:
            s.recording = True
        t0 = time.monotonic()
        await asyncio.sleep(self.args.window)
        t1 = time.monotonic()
        for s in self.subs:
            s.recording = False
        snaps1 = [s.snapshot() for s in self.subs]
        cpu1, wait1 = proc_cpu(self.server_pid)
        others1 = sum(proc_cpu(pid)[0] for pid in self.others)
        stat1 = proc_stat_cpu(self.server_pid)
        self1, selfwait1 = proc_cpu("self")
        steal1 = steal_seconds()
        threads = len(os.listdir(f"/proc/{self.server_pid}/task"))
        udp1 = udp_errors()
        lag = await sig.lag(False)
        stats1 = await sig.stats()
        dt = t1 - t0

        frames: list[int] = []
        audio: list[int] = []
        received = expected = lost = rtx = keyframes = 0
        worst_loss = 0.0
        for before, after in zip(snaps0, snaps1):
            sub_expected = sub_lost = sub_frames = sub_audio = 0
            for ssrc, (kind, rec1, high1, frames1, key1) in after.items():
                _, rec0, high0, frames0, key0 = before.get(ssrc, (kind, 0, 0, 0, 0))
                got = rec1 - rec0
                received += got
                if kind == "rtx":
                    rtx += got
                    continue
                if kind not in ("audio", "video"):
                    continue
                exp = high1 - high0 if high0 else got
                sub_expected += exp
                sub_lost += max(0, exp - got)
                if kind == "video":
                    sub_frames += frames1 - frames0
                    keyframes += key1 - key0
                else:
                    sub_audio += got
            frames.append(sub_frames)
            audio.append(sub_audio)
            expected += sub_expected
            lost += sub_lost
            if sub_expected:
                worst_loss = max(worst_loss, sub_lost / sub_expected)
        ast = []
        for s in self.subs:
            for ts_ns, value in s.ast_delays:  # type: ignore[misc]
                arrival = int((ts_ns - clock_offset) / 1e9 * 262144) & 0xFFFFFF
                d = (arrival - value) & 0xFFFFFF
                if d < 0x800000:
                    ast.append(d / 262144 * 1000)
        return {
            "dt": dt, "cpu": cpu1 - cpu0, "wait": wait1 - wait0,
            "stat": stat1[0] + stat1[1] - stat0[0] - stat0[1], "user": stat1[0] - stat0[0],
            "system": stat1[1] - stat0[1], "self": self1 - self0, "selfwait": selfwait1 - selfwait0,
            "received": received, "expected": expected, "lost": lost, "rtx": rtx,
            "keyframes": keyframes, "worst_loss": worst_loss, "frames": frames, "audio": audio,
            "latencies": [v / 1e6 for s in self.subs for v in s.latencies], "ast": ast,
            "lag": (lag or {}).get("samples_ms", []), "threads": threads,
            "gc": (lag or {}).get("gc_pauses_ms", []),
            "steal_s": steal1 - steal0, "others_cpu": others1 - others0,
            "loadavg": [load_avg0[0], os.getloadavg()[0]],
            "udp": {k: udp1[k] - udp0.get(k, 0) for k in udp1},
            "srtp_errors": sum(s.srtp_errors for s in self.subs) - srtp0,
            "publisher": {"pps": pub.packets_sent - pub0[0], "fps": pub.video_frames_sent - pub0[1],
                          "keyframes": pub.keyframes_sent - pub0[2],
                          "retransmissions": pub.retransmissions - pub0[3],
                          "late_ticks": pub.late_ticks - pub0[4]},
            "stats0": stats0, "stats1": stats1,
        }

    async def shutdown(self) -> None:
        await asyncio.gather(*(s.close() for s in self.subs), return_exceptions=True)
        if self.publisher is not None:
            await self.publisher.close()
        if self.sig is not None:
            await self.sig.close()


class Driver:
    """Runs every target in one load process. For each N: grow each target to N
    subscribers with only its publisher sending, then measure rounds of windows
    that alternate between targets (only the measured target's publisher sends),
    so servers compared in one run see the same machine conditions."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.targets = [Target(args, spec) for spec in args.server]
        for t in self.targets:
            t.others = [o.server_pid for o in self.targets if o is not t]

    def activate(self, target: Target | None) -> None:
        for t in self.targets:
            if t.publisher is not None:
                t.publisher.active = t is target

    async def run(self) -> dict[str, Any]:
        clip = load_clip()
        gather_only_on(self.args.address)
        for t in self.targets:
            await t.connect(clip)
        self.activate(None)
        try:
            for n in self.args.ns:
                for t in self.targets:
                    self.activate(t)
                    await t.grow(n)
                for r in range(self.args.windows):
                    k = r % len(self.targets)  # rotate the order: no target always goes first
                    for t in self.targets[k:] + self.targets[:k]:
                        self.activate(t)
                        await asyncio.sleep(self.args.settle)
                        t.windows.append(await t.window())
                self.activate(None)
                for t in self.targets:
                    t.finish(n)
        finally:
            out = {t.name: t.output() for t in self.targets}
            for t in self.targets:
                await t.shutdown()
        return {"targets": out}


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return out


def _median(values: list[float]) -> float | None:
    s = sorted(v for v in values if v is not None)
    if not s:
        return None
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _lag_summary(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    p = percentiles(samples)
    return {"count": p["count"], "p50_ms": p["p50"], "p99_ms": p["p99"], "max_ms": p["max"]}


def _gc_summary(pauses: list[Any], dt: float) -> dict[str, Any]:
    if not pauses:
        return {}
    out: dict[str, Any] = {}
    for gen in (0, 1, 2):
        d = [ms for g, ms in pauses if g == gen]
        if d:
            out[f"gen{gen}"] = {"per_s": round(len(d) / dt, 2), "max_ms": max(d),
                                "total_ms_per_s": round(sum(d) / dt, 3)}
    return out


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"min": 0.0, "median": 0.0, "mean": 0.0, "max": 0.0}
    s = sorted(values)
    return {"min": s[0], "median": s[len(s) // 2], "mean": sum(s) / len(s), "max": s[-1]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", action="append", required=True,
                        help="NAME,KIND,PID,ENDPOINT,SERVER_ADDRESS (repeatable)")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--ns", type=lambda s: [int(x) for x in s.split(",")], required=True)
    parser.add_argument("--window", type=float, default=4.0)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--media-timeout", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=12)
    parser.add_argument("--cpu", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})
    profile = os.environ.get("HOPSO_BENCH_PROFILE_LOAD")  # development aid
    profiler = None
    if profile:
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
    try:
        out = asyncio.run(Driver(args).run())
    except UnsafeAddress as exc:
        out = {"error": f"unsafe address, aborted before sending media: {exc}"}
    except Exception as exc:  # noqa: BLE001 - reported to the orchestrator
        import traceback
        traceback.print_exc()
        out = {"error": f"{type(exc).__name__}: {exc}"}
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(profile))
    Path(args.out).write_text(json.dumps(out))


if __name__ == "__main__":
    main()
