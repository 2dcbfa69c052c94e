"""Benchmark: Hopso's SFU vs the aiortc MediaRelay path vs Janus 1.1.2 VideoRoom.

    .venv/bin/python bench/sfu.py [--quick] [--json PATH] [--sched rr|normal] [--only ...]

One publisher sends a pre-encoded clip (VP8 about 1 Mbps at 30 fps, 640x360,
plus Opus 20 ms; nothing is encoded while measuring, see sfu_media) and N
subscribers receive it. The server under test runs pinned to core 0; the
publisher and every subscriber run in one load process pinned to core 1
(os.sched_setaffinity). Subscribers are lightweight endpoints that do real
ICE, DTLS and SRTP and send receiver reports, but never decode (sfu_client
explains why and what they count). For each N we report:

* CPU: the server process's CPU seconds per second (all its threads, from
  /proc/PID/task/*/schedstat), CPU us per forwarded packet (forwarded =
  RTP packets the subscribers received), CPU ms per subscriber per second.
* Added latency inside the server, ingress to egress, measured externally:
  the publisher notes time.time_ns() at sendto() for every payload; each
  subscriber reads the kernel receive timestamp (SO_TIMESTAMPNS) of every
  packet. On loopback both sendto()s deliver synchronously into the
  receiving socket, so the difference is: time in the server's socket
  queue + its processing until its sendto() for that subscriber, plus two
  loopback traversals (a few us). Packets are matched by payload bytes,
  which Hopso and Janus forward unchanged (MediaRelay re-encodes: no
  latency there). media/ has no ingress/egress hook; for Hopso a second
  figure comes for free: abs-send-time, which Hopso stamps after SRTP
  decryption, to the kernel arrival (the fan-out part of the latency).
* Event-loop lag of the server (Hopso, MediaRelay): a probe task in the
  server process sleeps 10 ms and records how late it wakes (p50/p99/max),
  plus garbage-collector pauses.
* Subscriber frame rate (VP8 frames = distinct RTP timestamps with the
  marker bit, per subscriber: min/median) and loss (sequence gaps).

Phases:
1. Hopso and Janus with `event_loops = 1` (one media thread: the fair
   one-core comparison) in one load process, window by window in turn
   (only the measured server's publisher sends; see sfu_load.Driver), so
   that the machine's drifting load hits both alike.
2. Janus with its default threading (a thread per handle), on its own.
3. The aiortc MediaRelay transcoding path (an RTCPeerConnection receives,
   MediaRelay fans the decoded track out, one encoder per subscriber) for
   N in 1, 5, 10, 20.
Hopso runs media/ through its public API with uvloop, as in production, and
the default MediaConfig. Janus is Debian's package. Janus will not gather
ICE candidates on loopback interfaces, so phases 1 and 2 run in a network
namespace the bench creates (sfu_janus) with 127.0.0.1 (lo) and 127.0.0.2
(a veth pair inside it); phase 3 uses the host's 127.0.0.1. Every candidate
a server sends is checked; another address aborts before media is sent.

The machine is shared (other sessions run test suites on it), so by default
the server and the load process run with SCHED_RR priority 10 (`--sched
normal` to disable). CPU time is per process and barely depends on this;
latency, lag and frame rate would otherwise mostly measure the neighbours.
Each row also shows the time the server waited for a CPU and the machine's
load average. The per-packet CPU still depends on the neighbours (their
cache footprint on the shared cores, and on loopback the sender's kernel
time includes waking the receiving process): compare servers within a run.

Each N is measured over several windows (full: 3 x 4 s after 1 s of
settling; quick: 2 x 3 s after 1 s): CPU figures are the median window
(the range is shown), percentiles and frame rates pool every window.

`--quick`: Hopso N=10,100, MediaRelay N=10, Janus N=10,100 (both modes);
70-90 s once the clip is cached (the first run encodes it, 20-50 s). The
full run takes 5-6 minutes. `--json PATH` writes {"results": [...],
"summary": {...}, "phases": [...]}; the summary and a table are printed.
Development aids: HOPSO_BENCH_PROFILE_SERVER=PATH (sfu_servers.py --profile),
HOPSO_BENCH_PROFILE_LOAD=PATH.

Targets (reported, not enforced): <= 12 us CPU per forwarded packet at
N=100; >= 50x less CPU per subscriber than MediaRelay; added latency p99
<= 5 ms and loop lag p99 <= 10 ms at N=100; every subscriber >= 29 fps at
N=150; Hopso within 1.5x of Janus (event_loops=1) in CPU per packet.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(HERE), str(ROOT)):
    if p not in sys.path:
        sys.path.insert(0, p)

from sfu_janus import (
    JANUS_ADDRESS,
    JANUS_PORT,
    JanusProcess,
    JanusUnavailable,
    Namespace,
    janus_version,
)
from sfu_media import load_clip

SERVER_CPU, LOAD_CPU = 0, 1
TARGETS = {"us_per_forwarded_packet_n100": 12.0, "cpu_ratio_vs_mediarelay": 50.0,
           "added_latency_p99_ms": 5.0, "loop_lag_p99_ms": 10.0, "min_subscriber_fps": 29.0,
           "cpu_ratio_vs_janus": 1.5}


def log(msg: str) -> None:
    print(f"[sfu-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def preexec(cpu: int, sched: str) -> Callable[[], None]:
    def apply() -> None:
        os.sched_setaffinity(0, {cpu})
        if sched == "rr":
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(10))
    return apply


def machine_busy() -> tuple[int, int]:
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def run_load(args: argparse.Namespace, servers: list[str], ns: list[int],
             prefix: list[str] | None = None, address: str = "127.0.0.1") -> dict[str, Any]:
    """Run the load process over `servers` (NAME,KIND,PID,ENDPOINT,SERVER_ADDRESS)."""
    out = Path(tempfile.mkstemp(prefix="hopso-sfu-bench-load-", suffix=".json")[1])
    cmd = (prefix or []) + [
        sys.executable, str(HERE / "sfu_load.py"), "--address", address,
        "--ns", ",".join(map(str, ns)), "--window", str(args.window),
        "--windows", str(args.windows), "--settle", str(args.settle),
        "--cpu", str(LOAD_CPU), "--out", str(out)]
    for server in servers:
        cmd += ["--server", server]
    per_n = len(servers) * (args.windows * (args.window + args.settle) + 60)
    budget = 120 + len(ns) * per_n
    try:
        subprocess.run(cmd, preexec_fn=preexec(LOAD_CPU, args.sched),
                       timeout=budget, check=False)
        text = out.read_text()
        return json.loads(text) if text else {"error": "load process wrote nothing"}
    except subprocess.TimeoutExpired:
        return {"error": f"load process timed out after {budget:.0f}s"}
    finally:
        out.unlink(missing_ok=True)


class PythonServer:
    """sfu_servers.py (hopso or mediarelay), optionally inside a namespace."""

    def __init__(self, args: argparse.Namespace, kind: str, prefix: list[str]) -> None:
        self.kind = kind
        self.folder = Path(tempfile.mkdtemp(prefix="hopso-sfu-bench-"))
        self.control = self.folder / "control.sock"
        # development aid: cProfile each measured window of the server to PATH.<n>
        profile_path = os.environ.get("HOPSO_BENCH_PROFILE_SERVER")
        profile = ["--profile", profile_path] if profile_path else []
        self.proc = subprocess.Popen(
            prefix + [sys.executable, str(HERE / "sfu_servers.py"), kind, str(self.control),
                      "--cpu", str(SERVER_CPU), "--loop", args.loop] + profile,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=preexec(SERVER_CPU, args.sched))
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.stop()
            raise RuntimeError(f"{kind} server did not start: {err[-2000:]}")
        self.ready = json.loads(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        _quit(self.control)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        err = self.proc.stderr.read() if self.proc.stderr else ""
        if err.strip():
            log(f"{self.kind} server stderr (tail): {err.strip()[-1500:]}")
        self.control.unlink(missing_ok=True)
        self.folder.rmdir()


def _quit(control: Path) -> None:
    import socket
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(control))
            s.sendall(b'{"op": "quit"}\n')
            s.recv(100)
    except OSError:
        pass


def _entries(load: dict[str, Any], labels: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    out = []
    for name, (server, config) in labels.items():
        got = load.get("targets", {}).get(name)
        entry: dict[str, Any] = {"server": server, "config": config}
        if got is None:
            entry.update(results=[], error=load.get("error", "no result"))
        else:
            entry.update(got)
            if load.get("error"):
                entry["error"] = load["error"]
        out.append(entry)
    return out


def run_mediarelay(args: argparse.Namespace, ns: list[int]) -> list[dict[str, Any]]:
    labels = {"mediarelay": ("mediarelay", "default")}
    try:
        server = PythonServer(args, "mediarelay", [])
    except RuntimeError as exc:
        return [{"server": "mediarelay", "config": "default", "results": [], "error": str(exc)}]
    try:
        load = run_load(args, [f"mediarelay,mediarelay,{server.pid},{server.control},127.0.0.1"],
                        ns)
    finally:
        server.stop()
    return _entries(load, labels)


def run_forwarders(args: argparse.Namespace, ns: list[int], hopso: bool,
                   janus_loops: list[int | None]) -> list[dict[str, Any]]:
    """Hopso and/or Janus instances in one namespace and one load process, measured
    in alternating windows (see sfu_load.Driver). Without a namespace (no root,
    no janus) Hopso runs on the host's loopback and Janus is reported unavailable."""
    labels: dict[str, tuple[str, str]] = {}
    janus_error = None
    namespace: Namespace | None = None
    if janus_loops:
        try:
            janus_version()
            namespace = Namespace().__enter__()
        except JanusUnavailable as exc:
            janus_error = str(exc)
    janus_procs: list[JanusProcess] = []
    server: PythonServer | None = None
    specs: list[str] = []
    entries: list[dict[str, Any]] = []
    try:
        prefix = namespace.exec_prefix() if namespace else []
        address = JANUS_ADDRESS if namespace else "127.0.0.1"
        if hopso:
            server = PythonServer(args, "hopso", prefix)
            specs.append(f"hopso,hopso,{server.pid},{server.control},127.0.0.1")
            labels["hopso"] = ("hopso", "default")
        if namespace is not None:
            for i, loops in enumerate(janus_loops):
                port, rtp = JANUS_PORT + i, f"{20000 + 20000 * i}-{39999 + 20000 * i}"
                janus = JanusProcess(namespace, loops, preexec(SERVER_CPU, args.sched),
                                     port=port, rtp_range=rtp)
                janus_procs.append(janus)
                try:
                    pid = janus.start()
                except JanusUnavailable as exc:
                    janus_error = str(exc)
                    break
                name = f"janus{i}"
                specs.append(f"{name},janus,{pid},http://{JANUS_ADDRESS}:{port}/janus,"
                             f"{JANUS_ADDRESS}")
                labels[name] = ("janus", "event_loops=1" if loops else "default")
        if specs:
            load = run_load(args, specs, ns, prefix=prefix, address=address)
            for janus in janus_procs:
                if janus.proc is not None and janus.proc.poll() is not None:
                    load.setdefault("error", f"janus died: {janus.tail()}")
            entries = _entries(load, labels)
    except RuntimeError as exc:
        entries = [{"server": "hopso", "config": "default", "results": [], "error": str(exc)}]
    finally:
        if server is not None:
            server.stop()
        for janus in janus_procs:
            janus.stop()
        if namespace is not None:
            namespace.delete()
    got = {e["config"] for e in entries if e["server"] == "janus"}
    for loops in janus_loops:
        config = "event_loops=1" if loops else "default"
        if config not in got:
            entries.append({"server": "janus", "config": config, "results": [],
                            "error": janus_error or "not started"})
    return entries


# --- report ---------------------------------------------------------------------------

def _row(entry: dict[str, Any], n: int) -> dict[str, Any] | None:
    return next((r for r in entry.get("results", []) if r["n"] == n), None)


def summarize(entries: list[dict[str, Any]]) -> dict[str, Any]:
    by = {(e["server"], e["config"]): e for e in entries}
    hopso = by.get(("hopso", "default"), {})
    relay = by.get(("mediarelay", "default"), {})
    janus1 = by.get(("janus", "event_loops=1"), {})
    janusd = by.get(("janus", "default"), {})
    summary: dict[str, Any] = {}
    hr = hopso.get("results", [])
    if hr:
        largest = max(hr, key=lambda r: r["n"])
        summary["largest_n"] = largest["n"]
        summary["us_per_forwarded_packet"] = largest["us_per_forwarded_packet"]
        summary["added_latency_p99_ms_largest_n"] = largest["latency_ms"].get("p99")
        summary["min_subscriber_fps"] = largest["fps"]["min"]
        summary["min_subscriber_fps_n"] = largest["n"]
        summary["loss_pct_largest_n"] = largest["loss_pct"]
        if (r100 := _row(hopso, 100)) is not None:
            summary["us_per_forwarded_packet_n100"] = r100["us_per_forwarded_packet"]
            summary["added_latency_p50_ms"] = r100["latency_ms"].get("p50")
            summary["added_latency_p99_ms"] = r100["latency_ms"].get("p99")
            summary["hopso_after_decrypt_p99_ms"] = r100["hopso_after_decrypt_ms"].get("p99")
            summary["loop_lag_p99_ms"] = r100["loop_lag_ms"].get("p99_ms")
            summary["cpu_s_per_s_n100"] = r100["cpu_s_per_s"]
            summary["srtp_profiles_n100"] = r100.get("srtp_profiles")
    ratios, normalised, saturated = {}, {}, {}
    for rr in relay.get("results", []):
        h = _row(hopso, rr["n"])
        if h:
            ratio = rr["cpu_ms_per_subscriber_s"] / h["cpu_ms_per_subscriber_s"]
            ratios[str(rr["n"])] = ratio
            # A saturated MediaRelay delivers fewer frames than the publisher sends:
            # scale its CPU up to the frame rate Hopso delivered.
            fps = rr["fps"]["median"]
            normalised[str(rr["n"])] = ratio * h["fps"]["median"] / fps if fps else None
            saturated[str(rr["n"])] = fps < 0.95 * rr["publisher"]["fps"]
    if ratios:
        key = "10" if "10" in ratios else list(ratios)[-1]
        summary["cpu_ratio_vs_mediarelay"] = ratios[key]
        summary["cpu_ratio_vs_mediarelay_n"] = int(key)
        summary["cpu_ratio_vs_mediarelay_by_n"] = ratios
        summary["cpu_ratio_vs_mediarelay_fps_normalised_by_n"] = normalised
        summary["mediarelay_saturated_by_n"] = saturated
        # MediaRelay's cheapest subscriber while it still delivers >= 29 fps, against
        # Hopso's per-subscriber cost at N=100: what each costs when not overloaded.
        ok = [r["cpu_ms_per_subscriber_s"] for r in relay.get("results", [])
              if r["fps"]["median"] >= 29]
        h100 = _row(hopso, 100)
        if ok and h100:
            summary["cpu_ratio_vs_mediarelay_unsaturated_vs_hopso_n100"] = \
                min(ok) / h100["cpu_ms_per_subscriber_s"]
    elif relay.get("error"):
        summary["cpu_ratio_vs_mediarelay"] = f"unavailable ({relay['error']})"
    for key, entry in (("cpu_ratio_vs_janus", janus1), ("cpu_ratio_vs_janus_default", janusd)):
        if entry.get("error") and not entry.get("results"):
            summary[key] = f"unavailable ({entry['error']})"
            continue
        by_n = {}
        for jr in entry.get("results", []):
            h = _row(hopso, jr["n"])
            if h and jr["us_per_forwarded_packet"] and h["us_per_forwarded_packet"]:
                by_n[str(jr["n"])] = h["us_per_forwarded_packet"] / jr["us_per_forwarded_packet"]
        if by_n:
            summary[key + "_by_n"] = by_n
            summary[key] = by_n.get("100", list(by_n.values())[-1])
            if (j100 := _row(entry, 100)) is not None:
                summary[key.replace("cpu_ratio_vs_", "") + "_us_per_forwarded_packet_n100"] = \
                    j100["us_per_forwarded_packet"]
                summary[key.replace("cpu_ratio_vs_", "") + "_added_latency_p99_ms_n100"] = \
                    j100["latency_ms"].get("p99")
    checks = {}
    def check(name: str, value: Any, ok: Callable[[float], bool], note: str = "") -> None:
        if isinstance(value, (int, float)):
            checks[name] = {"value": round(value, 3), "target": TARGETS.get(name),
                            "met": ok(value), "note": note}
        else:
            checks[name] = {"value": value, "met": None, "note": note}
    check("us_per_forwarded_packet_n100", summary.get("us_per_forwarded_packet_n100"),
          lambda v: v <= 12, "<= 12 us at N=100")
    check("cpu_ratio_vs_mediarelay", summary.get("cpu_ratio_vs_mediarelay"),
          lambda v: v >= 50, ">= 50x")
    check("added_latency_p99_ms", summary.get("added_latency_p99_ms"), lambda v: v <= 5,
          "<= 5 ms at N=100")
    check("loop_lag_p99_ms", summary.get("loop_lag_p99_ms"), lambda v: v <= 10,
          "<= 10 ms at N=100")
    fps_note = f">= 29 fps at N=150 (measured at N={summary.get('min_subscriber_fps_n')})"
    check("min_subscriber_fps", summary.get("min_subscriber_fps"), lambda v: v >= 29, fps_note)
    check("cpu_ratio_vs_janus", summary.get("cpu_ratio_vs_janus"), lambda v: v <= 1.5,
          "Hopso/Janus(event_loops=1) us per packet <= 1.5 at N=100")
    summary["targets"] = checks
    return summary


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def table(entries: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    head = (f"{'server':<24} {'N':>4} {'CPU s/s':>8} {'fwd pps':>8} {'us/pkt':>7} "
            f"{'(range)':>11} "
            f"{'ms/sub.s':>8} {'lat p50':>8} {'lat p99':>8} {'lag p99':>8} {'fps min':>7} "
            f"{'fps med':>7} {'loss %':>7} {'wait s/s':>8} {'load':>5}")
    lines = [head, "-" * len(head)]
    for e in entries:
        name = e["server"] + ("" if e["config"] == "default" and e["server"] != "janus"
                              else f" ({e['config']})")
        if not e.get("results"):
            lines.append(f"{name:<24} unavailable: {e.get('error', 'no result')}")
            continue
        for r in e["results"]:
            lat = r.get("latency_ms", {})
            spread = [w["us_per_forwarded_packet"] for w in r.get("per_window", [])
                      if w["us_per_forwarded_packet"]]
            rng = f"{min(spread):.0f}-{max(spread):.0f}" if spread else "-"
            lines.append(
                f"{name:<24} {r['n']:>4} {_fmt(r['cpu_s_per_s'], 3):>8} "
                f"{_fmt(r['forwarded_pps'], 0):>8} {_fmt(r['us_per_forwarded_packet']):>7} "
                f"{rng:>11} "
                f"{_fmt(r['cpu_ms_per_subscriber_s'], 2):>8} {_fmt(lat.get('p50'), 2):>8} "
                f"{_fmt(lat.get('p99'), 2):>8} {_fmt(r['loop_lag_ms'].get('p99_ms'), 2):>8} "
                f"{_fmt(r['fps']['min']):>7} {_fmt(r['fps']['median']):>7} "
                f"{_fmt(r['loss_pct'], 3):>7} {_fmt(r['cpu_wait_s_per_s'], 3):>8} "
                f"{_fmt(r['loadavg_1m'][1]):>5}")
        if e.get("error"):
            lines.append(f"{'':<24} error: {e['error']}")
    lines.append("")
    lines.append("CPU s/s, us/pkt: median of the windows (range: min-max over windows); "
                 "ms/sub.s = CPU ms per subscriber per second")
    lines.append("lat = publisher sendto -> subscriber kernel timestamp, ms, all packets of all "
                 "windows (= server ingress -> egress + 2 loopback hops); lag = server "
                 "event-loop probe (10 ms sleep)")
    lines.append("fps = per subscriber over all windows; wait = s/s the server's threads waited "
                 "for a CPU (summed over threads); load = 1-min load average at the end")
    for name, c in summary.get("targets", {}).items():
        met = {True: "met", False: "NOT met", None: "n/a"}[c["met"]]
        lines.append(f"target {name:<30} {_fmt(c['value'], 2):>10}  {met:<8} ({c['note']})")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--sched", choices=("rr", "normal"), default="rr")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="event loop of the Hopso/MediaRelay server (production: uvloop)")
    parser.add_argument("--only", default="hopso,mediarelay,janus",
                        help="comma list of hopso, mediarelay, janus")
    parser.add_argument("--window", type=float, help="seconds per window")
    parser.add_argument("--windows", type=int, help="windows per N (medians are reported)")
    parser.add_argument("--settle", type=float)
    args = parser.parse_args()
    if os.cpu_count() is None or os.cpu_count() < 2:  # type: ignore[operator]
        print("needs two cores", file=sys.stderr)
        return 2
    args.window = args.window or (3.0 if args.quick else 4.0)
    args.windows = args.windows or (2 if args.quick else 3)
    args.settle = args.settle or 1.0
    only = set(args.only.split(","))
    if args.quick:
        forwarder_ns, relay_ns = [10, 100], [10]
    else:
        forwarder_ns, relay_ns = [1, 10, 50, 100, 150], [1, 5, 10, 20]
    started = time.monotonic()
    t = time.monotonic()
    clip = load_clip()
    log(f"clip ready in {time.monotonic() - t:.1f}s: {len(clip.vp8)} VP8 frames "
        f"({clip.video_bps / 1e6:.2f} Mbps), {len(clip.opus)} Opus packets")
    environment: dict[str, Any] = {
        "cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
        "sched": args.sched, "server_loop": args.loop, "window_s": args.window,
        "windows_per_n": args.windows, "settle_s": args.settle, "quick": args.quick,
        "loadavg_start": os.getloadavg()}
    try:
        import aiortc
        environment["aiortc"] = aiortc.__version__
    except ImportError:
        pass
    if "janus" in only:
        try:
            environment["janus"] = janus_version()
        except JanusUnavailable as exc:
            environment["janus"] = f"unavailable: {exc}"
    entries: list[dict[str, Any]] = []
    phases: list[tuple[str, Callable[[], list[dict[str, Any]]]]] = []
    # Hopso and Janus (event_loops=1) alternate window by window in one run, so
    # that drifting machine load hits both alike. Janus's default mode (a thread
    # per handle) runs on its own: idle, its hundreds of threads would still wake
    # up on core 0 and disturb whichever server is being measured.
    if "hopso" in only or "janus" in only:
        phases.append(("hopso + janus (event_loops=1)",
                       lambda: run_forwarders(args, forwarder_ns, "hopso" in only,
                                              [1] if "janus" in only else [])))
    if "janus" in only:
        phases.append(("janus (default)",
                       lambda: run_forwarders(args, forwarder_ns, False, [None])))
    if "mediarelay" in only:
        phases.append(("mediarelay", lambda: run_mediarelay(args, relay_ns)))
    for label, run in phases:
        log(f"{label}: N = {relay_ns if label == 'mediarelay' else forwarder_ns}")
        busy0 = machine_busy()
        t = time.monotonic()
        got = run()
        busy1 = machine_busy()
        for entry in got:
            entry["phase_s"] = round(time.monotonic() - t, 1)
            entry["machine_busy_fraction"] = round(
                (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]), 3)
            if entry.get("error"):
                log(f"{entry['server']} ({entry['config']}): {entry['error']}")
        entries += got
    environment["loadavg_end"] = os.getloadavg()
    environment["total_s"] = round(time.monotonic() - started, 1)
    summary = summarize(entries)
    janus_errors = [e["error"] for e in entries if e["server"] == "janus" and not e.get("results")]
    if janus_errors and not any(e.get("results") for e in entries if e["server"] == "janus"):
        summary["janus"] = f"unavailable ({janus_errors[0]})"
    elif "janus" in environment:
        summary["janus"] = f"Janus {environment['janus']} VideoRoom (Debian package)"
    summary["environment"] = environment
    rows = [dict(r, server=e["server"], config=e["config"]) for e in entries
            for r in e.get("results", [])]
    output = {"results": rows, "summary": summary,
              "phases": [{k: v for k, v in e.items() if k != "results"} for e in entries]}
    print(json.dumps(summary, indent=2, default=str))
    print()
    print(table(entries, summary))
    print(f"\ntotal {environment['total_s']}s; load average at start "
          f"{environment['loadavg_start'][0]:.1f}, at end {environment['loadavg_end'][0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(output, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
