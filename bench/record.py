"""Benchmark: what recording costs the SFU (issue 16, item 7).

    .venv/bin/python bench/record.py [--quick] [--json PATH] [--n 100] [--copies 5]

ONE Hopso SFU process (bench/record_server.py) records what it forwards (media/recorder.py;
each producer's packets go to K writers, so one publisher's VP8 + Opus with K = 5 make 10
recorded tracks), and its recording is switched on and off many times while N subscribers
(real ICE, DTLS, SRTP; bench/record_toggle.py, the load process) receive the pre-encoded
clip. Both conditions share the process, its heap and caches, and the machine's drift; an
earlier design compared two processes and could not tell 3 us from noise (one round's
difference spread by ~23 us). Server pinned to core 0, load to core 1, SCHED_RR by default
(`--sched normal` to disable), as in bench/sfu.py.

Windows come back to back in blocks of four, off on on off / on off off on (a linear drift
cancels in each block), each window one writer poll long (POLL_S, 0.4 s: the batches the
writer sees in a recording; 0.2 s and 0.4 s windows were as noisy per second of measuring,
1 s ones noisier). The server reads, on its event loop, its process
CPU clock (every thread), the forwarding (main) thread's and the writer thread's CPU clocks,
the packets sent to subscribers and the packets logged, at each window's start and end. What
keeps the accounting whole:
* an "on" window switches the taps on at its start; the writer polls every POLL_S as it does
  (asked by the loop instead of its own timer, the same wake-up); at the end the taps go off,
  the writer writes what the taps hold and only then is the end read: every packet
  recorded in the window is logged, and its writing paid for, inside the window;
* between "on" windows the writer sleeps without polling, so an "off" window is what a
  plain server does (no idle polls counted against the recording);
* the writer's keyframe requests (at the hole an "off" window leaves) are not sent while
  windows run (the bench's publisher would restart its clip); a recording without holes
  sends none either;
* the mux process (a separate process, nice 10, on the server's core unless
  HOPSO_BENCH_MUX_CPUS moves it) is not the SFU process: its CPU is not in
  `record_cpu_us_per_packet` (the SFU process's figure) but in
  `record_cpu_us_per_packet_with_mux` (below), and the caches it takes from the
  forwarding thread are the recording's: every window ends, after its polls, once the mux
  has read every log to its end and is asleep again (bench/record_server.py
  `mux_caught_up`; an "off" window waits the same way, for nothing), so its work falls in
  the "on" window that logged the packets. Before (until 2026-12-07 17:00; `--no-wait-mux`)
  it followed 0.25 s later, mostly in the next "off" window (0.115 of 0.17 CPU s in one quick
  run), counting its cache pressure against the plain server. The forwarding thread's checks
  on it (~0.3 ms a window, its own CPU clock) are taken out of each window's CPU.

* `record_cpu_us_per_packet`: per block, (the "on" windows' process CPU minus the "off"
  windows' CPU per forwarded packet x the "on" windows' forwarded packets) / packets logged
  in the "on" windows; the figure is the mean over the blocks with a ~95 % interval
  (normal, blocks independent), the median with its order-statistics interval beside it.
  `record_cpu_us_per_packet_parts`: the same estimate from the writer thread's clock (its
  own work: exact, no subtraction of noise), the forwarding thread's (the taps' appends, the
  GIL and cache traffic the writer causes it, and all the machine's noise), the rest.
  `record_cpu_us_per_packet_adjusted` (reported, does not decide): the same quantity as a
  regression over the windows (bench/record_toggle.py `adjusted_estimate`): each window's
  CPU less what its counts explain (packets and bytes forwarded, RTCP packets received, the
  load process's wake-ups, the window's length), block means out, a cluster-robust
  interval. It depends on the model as much as its interval is wide (the full run of
  17:05: 1.5 by the blocks, 2.3 adjusted, 3.0 without the length, 3.4 for packets alone),
  so it informs, never decides. The counts explain
  little of the spread (the residual sd fell 10-25 % in the quick runs of 2026-12-07): most
  of it is the VM's speed moving from window to window (the forwarding thread's CPU per
  forwarded packet: sd ~12 %, autocorrelation 0.6 at 0.4 s), which no count sees.
  `record_cpu_us_per_packet_resolved`: "met" when the whole-process interval is <= 3 us,
  "missed" when it is above, or when the writer thread's interval alone is above 3 us (the
  forwarding thread does the taps' appends on top: its extra is not below zero, save a
  batching effect of a delayed loop; `record_cpu_us_per_packet_resolved_by` says which
  decided), else "unresolved".
* `record_cpu_us_per_packet_counted` (with `_ci95`, `_resolved`): the same figure from parts
  measured without the forwarding thread's noise: the writer thread's (its own clock, above)
  plus the forwarding thread's extra as counted by bench/record_count.py after the windows
  (callgrind's instructions and simulated cache misses per recorded packet on the real
  forwarding path with these taps, priced at this machine's measured time per instruction
  and per missed line; its interval's upper end prices every miss at its worst, none
  overlapped; `record_cpu_us_per_packet_count` holds it all). `--no-count` skips it.
  `record_cpu_us_per_packet_decision` says which figure decides the target and why: the
  whole process's interval when it lies on one side of 3 us (it holds everything); else the
  count can show the target missed (its lower end above 3 us) but never met, being a floor
  (it leaves out the GIL's hand-overs, the cache the writer thread and the mux process take
  from the forwarding thread, kernel time); `met` follows the decision.
* `record_cpu_us_per_packet_with_mux` (with `_ci95`, `_resolved`, `_parts`, `_decision`):
  THE ISSUE'S FIGURE, the recording's whole CPU per recorded packet: per block, the SFU
  process's extra (above: the tap on the forwarding thread, the writer thread) plus the mux
  process's own CPU (its main thread's schedstat, all four windows of the block) per packet
  logged in the block's "on" windows; mean and ~95 % interval over the blocks. The mux
  follows the logs live, so it runs during the meeting and its CPU is the recording's
  (`met["record_cpu_us_per_packet"]` follows this figure's decision since 2026-12-07 19:00;
  `record_cpu_us_per_packet_judged_by` says so). Its "off" windows' CPU (the mux's idle
  polls, which a recording that never pauses would not make) is counted too: a slight
  overstatement, `mux_cpu_s_on_off` shows it. Decided by its interval when that lies on one
  side of 3 us; else "missed" when the SFU process's part alone was decided missed, or
  when the parts measured on their own clocks (the writer thread's and the mux's interval
  lower ends, plus the forwarding thread's counted extra's when there is a count) add up to
  more than 3 us; else "unresolved". `mux_process_us_per_recorded_packet` (the mux's CPU
  over every window per packet logged, as before) stays beside it.
* `forward_latency_p99_delta_ms`: p99 of publisher sendto -> subscriber kernel timestamp in
  the "on" windows minus the "off" windows. Target <= 0.5 ms.
* `replay_seek_s`: on the replay page in Chromium (a `run.py --demo` server, a 60 s
  recording), from clicking an agenda item's jump to the video playing there: the worst of
  6 jumps, the first one cold (bench/replay_seek.py). Target <= 1 s. `--no-replay` skips it
  (null, with why).
* `writer_thread_us_per_packet` (no target): the writer thread's CPU over the whole run per
  packet it logged.

`--quick`: 40 blocks (~85 s of windows), full: 500 (~18 min, ~22 with the count and replay; `--blocks B`, `--polls P`).
HOPSO_BENCH_MUX_CPUS=1 (an experiment) moves the recorder's mux process off the server's core.
`--json PATH` writes {"summary": {...}, "windows": [...]}; a table and the summary are printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
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

from record_toggle import (
    ADJUST_FOR,
    adjusted_estimate,
    block_estimates,
    estimate,
    resolved,
)
from sfu import LOAD_CPU, SERVER_CPU, _quit, preexec
from sfu_media import load_clip

from media.recorder import POLL_S

TARGETS = {"record_cpu_us_per_packet": 3.0, "forward_latency_p99_delta_ms": 0.5,
           "replay_seek_s": 1.0}
POLLS = 1  # a window: one writer poll (media.recorder.POLL_S, 0.4 s)
QUICK_BLOCKS, FULL_BLOCKS = 40, 500


def log(msg: str) -> None:
    print(f"[record-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Server:
    """bench/record_server.py, plain or recording into a temporary folder."""

    def __init__(self, args: argparse.Namespace, record: bool) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="hopso-record-bench-"))
        self.control = self.folder / "control.sock"
        self.recordings = self.folder / "recordings"
        extra = ["--record", str(self.recordings), "--copies", str(args.copies)] if record else []
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "record_server.py"), str(self.control),
             "--cpu", str(SERVER_CPU), "--loop", args.loop, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=preexec(SERVER_CPU, args.sched))
        assert self.proc.stdout is not None
        if not self.proc.stdout.readline():
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.stop()
            raise RuntimeError(f"server did not start: {err[-2000:]}")

    def spec(self, name: str) -> str:
        return f"{name},hopso,{self.proc.pid},{self.control},127.0.0.1"

    def files(self) -> list[dict[str, Any]]:
        """The recorded files, checked with ffprobe (codec, duration)."""
        out = []
        for path in sorted(self.recordings.rglob("*.webm")):
            probe = subprocess.run(
                ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name:format=duration",
                 "-of", "json", str(path)], capture_output=True, text=True, timeout=60)
            info = json.loads(probe.stdout or "{}")
            out.append({"file": str(path.relative_to(self.recordings)),
                        "bytes": path.stat().st_size,
                        "codec": (info.get("streams") or [{}])[0].get("codec_name"),
                        "duration_s": float(info.get("format", {}).get("duration") or 0),
                        "ffprobe_errors": probe.stderr.strip()[:300]})
        return out

    def writer(self) -> dict[str, Any]:
        """The writer thread's own CPU for the packets it logged (bench/record_server.py)."""
        try:
            got = json.loads((self.recordings / "writer.json").read_text())
        except (OSError, ValueError):
            return {}
        packets = got.get("packets") or 0
        return {"writer_thread_cpu_s": got.get("thread_cpu_s"), "writer_packets": packets,
                "writer_thread_us_per_packet":
                    got["thread_cpu_s"] / packets * 1e6 if packets else None}

    def stop(self) -> None:
        _quit(self.control)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        err = self.proc.stderr.read() if self.proc.stderr else ""
        if err.strip():
            log(f"server stderr (tail): {err.strip()[-1500:]}")

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    server = Server(args, record=True)
    out = Path(tempfile.mkstemp(prefix="hopso-record-bench-load-", suffix=".json")[1])
    cmd = [sys.executable, str(HERE / "record_toggle.py"), "--server", server.spec("recording"),
           "--n", str(args.n), "--blocks", str(args.blocks), "--polls", str(args.polls),
           "--cpu", str(LOAD_CPU), "--out", str(out),
           *(["--no-wait-mux"] if args.no_wait_mux else [])]
    budget = 180 + args.blocks * 4 * (args.polls * POLL_S + 0.4) * 2
    try:
        subprocess.run(cmd, preexec_fn=preexec(LOAD_CPU, args.sched), timeout=budget,
                       check=False)
        text = out.read_text()
        load = json.loads(text) if text else {"error": "load process wrote nothing"}
    except subprocess.TimeoutExpired:
        load = {"error": f"load process timed out after {budget:.0f}s"}
    finally:
        out.unlink(missing_ok=True)
        server.stop()
        files = server.files()
        writer = server.writer()
        server.remove()
    return {"load": load, "files": files, "writer": writer, "count": counted(args),
            "replay": replay(args)}


def counted(args: argparse.Namespace) -> dict[str, Any]:
    """The forwarding thread's extra per recorded packet, counted under callgrind
    (bench/record_count.py), after the windows (nothing else measured meanwhile)."""
    if args.no_count:
        return {"error": "skipped (--no-count)"}
    import record_count
    log("counting the forwarding thread's extra under callgrind (bench/record_count.py)")
    try:
        return record_count.count(args.quick, n=args.n, copies=args.copies, cpu=SERVER_CPU,
                                  direct=False)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        log(f"count failed: {exc!r}")
        return {"error": f"failed: {exc!r}"[:500]}


def replay(args: argparse.Namespace) -> dict[str, Any]:
    if args.no_replay:
        return {"replay_seek_s": None, "replay_seek_s_reason": "skipped (--no-replay)"}
    import replay_seek
    try:
        return replay_seek.measure()
    except Exception as exc:  # noqa: BLE001 - reported with the figure's reason
        log(f"replay seek failed: {exc!r}")
        return {"replay_seek_s": None, "replay_seek_s_reason": f"failed: {exc!r}"[:300]}


def summarize(args: argparse.Namespace, measured: dict[str, Any]) -> dict[str, Any]:
    load, files = measured["load"], measured["files"]
    summary: dict[str, Any] = {"n": args.n, "recorded_tracks": 2 * args.copies,
                               "targets": TARGETS, **measured["replay"], **measured["writer"]}
    windows = load.get("windows") or []
    if "error" in load or not windows:
        summary["error"] = load.get("error", "no windows")
    else:
        on = [w for w in windows if w["on"]]
        off = [w for w in windows if not w["on"]]
        for w in windows:
            # the forwarding thread's checks whether the mux has followed (the bench's own
            # work, timed on that thread's clock) are not the server's
            wait = w.get("wait_cpu", 0.0)
            w["main_cpu"] -= wait
            w["process_cpu"] -= wait
            # threads other than the forwarding one and the writer
            w["other_cpu"] = w["process_cpu"] - w["main_cpu"] - w["writer_cpu"]
        whole = estimate(block_estimates(windows, "process_cpu"))
        target = TARGETS["record_cpu_us_per_packet"]
        lat = load["latency_ms"]
        seconds = sum(w["time"] for w in windows)
        writer = estimate(block_estimates(windows, "writer_cpu"))
        verdict, by = resolved(whole["ci95"], target), "whole process"
        if verdict == "unresolved" and resolved(writer["ci95"], target) == "missed":
            verdict, by = "missed", "writer thread alone (a lower bound)"
        summary.update({
            "record_cpu_us_per_packet": whole["mean"],
            "record_cpu_us_per_packet_ci95": whole["ci95"],
            "record_cpu_us_per_packet_resolved": verdict,
            "record_cpu_us_per_packet_resolved_by": by if verdict != "unresolved" else None,
            "record_cpu_us_per_packet_estimate": whole,
            # the same quantity, less the part of the windows' spread their counts explain
            "record_cpu_us_per_packet_adjusted": adjusted_estimate(windows, "process_cpu"),
            "record_cpu_us_per_packet_parts": {
                "writer_thread": writer,
                "forwarding_thread": estimate(block_estimates(windows, "main_cpu")),
                "other_threads": estimate(block_estimates(windows, "other_cpu"))},
            "windows": {"blocks": args.blocks, "window_s": round(args.polls * POLL_S, 3),
                        "on": len(on), "off": len(off), "measured_s": round(seconds, 1),
                        # a window: its polls, then the wait for the mux to follow
                        "mean_on_s": round(sum(w["time"] for w in on) / len(on), 3),
                        "mean_off_s": round(sum(w["time"] for w in off) / len(off), 3),
                        "elapsed_s": round(load.get("elapsed_s", 0.0), 1)},
            "forwarded_packets_per_s": sum(w["forwarded"] for w in windows) / seconds,
            "recorded_packets_per_s": sum(w["logged"] for w in on) / sum(w["time"] for w in on),
            "forwarding_us_per_packet_off": (sum(w["process_cpu"] for w in off)
                                             / sum(w["forwarded"] for w in off) * 1e6),
            "cpu_s_per_s_off": sum(w["process_cpu"] for w in off) / sum(w["time"] for w in off),
            "cpu_s_per_s_on": sum(w["process_cpu"] for w in on) / sum(w["time"] for w in on),
            "server_cpu_wait_s_per_s": sum(w["server_wait_s"] for w in windows) / seconds,
            "loadavg_1m": [min(w["loadavg_1m"] for w in windows),
                           max(w["loadavg_1m"] for w in windows)],
            "gc_cpu_s": sum(w["gc0"] + w["gc1"] + w["gc2"] for w in windows),
            # the mux process (not the server: not in record_cpu_us_per_packet), and the
            # forwarding thread's checks on it taken out of each window's CPU
            "mux_process_us_per_recorded_packet": (sum(w.get("mux_cpu", 0.0) for w in windows)
                                                   / max(sum(w["logged"] for w in on), 1)
                                                   * 1e6),
            "mux_cpu_s_on_off": [sum(w.get("mux_cpu", 0.0) for w in on),
                                 sum(w.get("mux_cpu", 0.0) for w in off)],
            "mux_wait_cpu_s": sum(w.get("wait_cpu", 0.0) for w in windows),
            "forward_latency_ms_on": lat["on"], "forward_latency_ms_off": lat["off"],
            "forward_latency_p99_delta_ms": lat["on"].get("p99", 0) - lat["off"].get("p99", 0),
            "forward_latency_p50_delta_ms": lat["on"].get("p50", 0) - lat["off"].get("p50", 0),
            "subscribers": load.get("subscribers"), "subscriber_failures": load.get("failures"),
            "publisher": load.get("publisher"),
            "server_producers": (load.get("server_stats") or {}).get("producers")})
    summary["files"] = {"count": len(files), "bytes": sum(f["bytes"] for f in files),
                        "codecs": sorted({f["codec"] or "?" for f in files}),
                        "ffprobe_errors": [f["file"] for f in files if f["ffprobe_errors"]],
                        "shortest_s": min((f["duration_s"] for f in files), default=0.0)}
    if "record_cpu_us_per_packet_parts" in summary:
        summary.update(counted_figure(summary, measured.get("count") or {}))
        summary.update(with_mux_figure(summary, windows))
    summary["met"] = {k: (summary.get(k) is not None and summary[k] <= v)
                      for k, v in TARGETS.items()}
    # The CPU figure is met only when an interval says so, not a mean alone; and it is the
    # recording's whole cost, the mux process's included: it follows the logs live, so it
    # runs during the meeting (the lead's reading of issue 16 item 7).
    summary["met"]["record_cpu_us_per_packet"] = (
        (summary.get("record_cpu_us_per_packet_with_mux_decision") or {}).get("verdict")
        == "met")
    summary["record_cpu_us_per_packet_judged_by"] = (
        "record_cpu_us_per_packet_with_mux: the SFU process's extra (tap + writer) plus the mux "
        "process's CPU, which runs during the meeting")
    return summary


def mux_block_estimates(windows: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Per block (those block_estimates takes): the mux process's CPU in its four windows
    per packet logged in its "on" ones, and that plus the SFU process's extra (us). The "off"
    windows' mux CPU (its idle polls, which a recording that never pauses would not make)
    is counted: an overstatement, reported apart (`mux_cpu_s_on_off`)."""
    blocks: dict[int, list[dict[str, Any]]] = {}
    for w in windows:
        blocks.setdefault(w["block"], []).append(w)
    mux, total = [], []
    for ws in blocks.values():
        sfu = block_estimates(ws, "process_cpu")
        if not sfu:
            continue
        logged = sum(w["logged"] for w in ws if w["on"])
        m = sum(w.get("mux_cpu", 0.0) for w in ws) / logged * 1e6
        mux.append(m)
        total.append(sfu[0] + m)
    return mux, total


def with_mux_figure(summary: dict[str, Any], windows: list[dict[str, Any]]) -> dict[str, Any]:
    """record_cpu_us_per_packet_with_mux: the recording's whole CPU per recorded packet, the
    SFU process's extra (the tap on the forwarding thread, the writer thread) plus the mux
    process's own CPU, block by block in the same run; and which figure decides it."""
    target = TARGETS["record_cpu_us_per_packet"]
    if not any(w.get("mux_cpu") for w in windows):
        return {"record_cpu_us_per_packet_with_mux": None,
                "record_cpu_us_per_packet_with_mux_reason": "no mux process CPU in the windows",
                "record_cpu_us_per_packet_with_mux_decision": {
                    "verdict": "unresolved", "by": None, "why": "the mux was not measured"}}
    mux_blocks, total_blocks = mux_block_estimates(windows)
    total, mux = estimate(total_blocks), estimate(mux_blocks)
    by: str | None = "SFU process + mux process, per block"
    verdict = resolved(total["ci95"], target)
    why = "the interval of the whole, measured in the same blocks, lies on one side of the target"
    sfu = summary.get("record_cpu_us_per_packet_decision") or {}
    # parts measured exactly on their own clocks; the forwarding thread's extra only adds
    # (its count, a floor, when there is one)
    writer = summary["record_cpu_us_per_packet_parts"]["writer_thread"]
    floor = None
    if writer["ci95"] is not None and mux["ci95"] is not None:
        floor = writer["ci95"][0] + mux["ci95"][0]
        if summary.get("record_cpu_us_per_packet_counted") is not None:
            floor += summary["record_cpu_us_per_packet_count"][
                "forwarding_extra_us_interval"][0]
    if verdict == "unresolved":
        if sfu.get("verdict") == "missed":
            verdict, by = "missed", f"the SFU process alone ({sfu.get('by')})"
            why = "the SFU process's part alone is over the target; the mux only adds"
        elif floor is not None and floor > target:
            verdict, by = "missed", "the parts' own clocks (writer thread + mux process " \
                "[+ the forwarding thread's counted extra]), lower ends"
            why = "even the exactly measured parts' lower ends add up to more than the target"
        else:
            by, why = None, "the interval holds the target, and the exact parts do not decide"
    return {"record_cpu_us_per_packet_with_mux": total["mean"],
            "record_cpu_us_per_packet_with_mux_ci95": total["ci95"],
            "record_cpu_us_per_packet_with_mux_resolved": resolved(total["ci95"], target),
            "record_cpu_us_per_packet_with_mux_estimate": total,
            "record_cpu_us_per_packet_with_mux_parts": {
                "sfu_process": summary["record_cpu_us_per_packet_estimate"],
                "mux_process": mux},
            "record_cpu_us_per_packet_with_mux_floor": floor,
            "record_cpu_us_per_packet_with_mux_decision": {"verdict": verdict, "by": by,
                                                            "why": why}}


def counted_figure(summary: dict[str, Any], count: dict[str, Any]) -> dict[str, Any]:
    """record_cpu_us_per_packet by its parts, each exact: the writer thread's own clock (in
    the windows) plus the forwarding thread's extra as counted (bench/record_count.py); and
    which figure decides the target."""
    target = TARGETS["record_cpu_us_per_packet"]
    whole = summary.get("record_cpu_us_per_packet_resolved", "unresolved")
    writer = summary["record_cpu_us_per_packet_parts"]["writer_thread"]
    out: dict[str, Any] = {"record_cpu_us_per_packet_count": count}
    verdict = "unresolved"
    if "error" in count or writer["ci95"] is None:
        out["record_cpu_us_per_packet_counted"] = None
        out["record_cpu_us_per_packet_counted_reason"] = count.get("error", "no writer interval")
    else:
        fwd, fwd_ci = (count["forwarding_extra_us_per_recorded_packet"],
                       count["forwarding_extra_us_interval"])
        ci = [writer["ci95"][0] + fwd_ci[0], writer["ci95"][1] + fwd_ci[1]]
        verdict = resolved(ci, target)
        out.update({"record_cpu_us_per_packet_counted": writer["mean"] + fwd,
                    "record_cpu_us_per_packet_counted_ci95": ci,
                    "record_cpu_us_per_packet_counted_resolved": verdict})
    if whole != "unresolved":
        decision = {"verdict": whole, "by": summary.get("record_cpu_us_per_packet_resolved_by"),
                    "why": "an interval measured in the server lies on one side of the target: "
                           "it holds everything, the count leaves some things out"}
    elif verdict == "missed":
        decision = {"verdict": "missed",
                    "by": "the count: writer thread (its clock) + forwarding thread's extra "
                          "(callgrind's instructions and simulated cache misses, priced at "
                          "this machine's time per instruction and per missed line)",
                    "why": "even the count, which leaves out the GIL's hand-overs, the cache "
                           "the writer thread and the mux process take from the forwarding "
                           "thread and kernel time, is above the target"}
    else:
        # The count is a floor, not the figure: what it leaves out is what the whole
        # process holds (its mean was 2.4 and 3.4 us in the two quiet full runs against a
        # count of 1.5-1.9), so a count under the target does not show the target met.
        decision = {"verdict": "unresolved", "by": None,
                    "why": "the whole-process interval holds the target, and the count under "
                           "it is a floor that leaves out the GIL's hand-overs, the writer "
                           "thread's and mux process's cache pressure and kernel time"}
    out["record_cpu_us_per_packet_decision"] = decision
    return out


def table(summary: dict[str, Any]) -> str:
    lines = []
    for key in TARGETS:
        value = summary.get(key)
        mark = "met" if summary["met"][key] else "MISSED" if value is not None else "n/a"
        if key == "record_cpu_us_per_packet" and value is not None:
            mark = {"met": "met", "missed": "MISSED"}.get(
                summary.get("record_cpu_us_per_packet_resolved", ""),
                "UNRESOLVED (the interval holds the target)")
            if summary.get("record_cpu_us_per_packet_resolved_by"):
                mark += f" (by the {summary['record_cpu_us_per_packet_resolved_by']})"
            decision = summary.get("record_cpu_us_per_packet_decision") or {}
            if (decision.get("by") or "").startswith("the count"):
                mark = f"whole process {mark}; decided: {decision['verdict'].upper()} by the count"
            mark = f"SFU process only: {mark}; judged with the mux below"
        shown = f"{value:.3f}" if isinstance(value, float) else "null"
        lines.append(f"{key:34} {shown:>9}  (target <= {TARGETS[key]})  {mark}")
    parts = summary.get("record_cpu_us_per_packet_parts")
    if parts:
        whole = summary["record_cpu_us_per_packet_estimate"]
        rows = [("  whole process", whole)] + [(f"  {k.replace('_', ' ')}", v)
                                               for k, v in parts.items()]
        for name, e in rows:
            ci = e["ci95"] or [math.nan, math.nan]
            lines.append(f"{name:34} {e['mean']:>9.3f}  95 % CI {ci[0]:.2f} .. {ci[1]:.2f} "
                         f"(sd {e['sd']:.1f}, median {e['median']:.2f}, {e['blocks']} blocks)")
        adj = summary["record_cpu_us_per_packet_adjusted"]
        if adj.get("mean") is not None:
            lines.append(f"{'  whole process, adjusted':34} {adj['mean']:>9.3f}  95 % CI "
                         f"{adj['ci95'][0]:.2f} .. {adj['ci95'][1]:.2f} (for "
                         f"{', '.join(ADJUST_FOR)}; {adj['blocks']} blocks)")
        lines.append(f"{'  mux process (whole run)':34} "
                     f"{summary['mux_process_us_per_recorded_packet']:>9.3f}  us of its CPU "
                     f"per recorded packet; on/off windows "
                     f"{summary['mux_cpu_s_on_off'][0]:.3f} / "
                     f"{summary['mux_cpu_s_on_off'][1]:.3f} s")
        w = summary["windows"]
        lines.append(f"{'  windows':34} {w['on']} on + {w['off']} off ({w['mean_on_s']} / "
                     f"{w['mean_off_s']} s: {w['window_s']} s polls + the mux's wait); "
                     f"{summary['recorded_packets_per_s']:.0f} recorded / "
                     f"{summary['forwarded_packets_per_s']:.0f} forwarded packets/s; "
                     f"{summary['forwarding_us_per_packet_off']:.2f} us/fwd packet off; "
                     f"load {summary['loadavg_1m'][0]:.1f}-{summary['loadavg_1m'][1]:.1f}")
    if summary.get("record_cpu_us_per_packet_counted") is not None:
        c, ci = summary["record_cpu_us_per_packet_counted"], \
            summary["record_cpu_us_per_packet_counted_ci95"]
        count = summary["record_cpu_us_per_packet_count"]
        lines.append(f"{'  counted (writer + forwarding)':34} {c:>9.3f}  95 % CI {ci[0]:.2f} .. "
                     f"{ci[1]:.2f}: {summary['record_cpu_us_per_packet_counted_resolved']}; "
                     f"forwarding extra "
                     f"{count['forwarding_extra_us_per_recorded_packet']:.3f} us "
                     f"({count['instructions_per_recorded_packet']:.0f} instructions, "
                     f"{count['misses_per_recorded_packet']['written_beyond_l2']:.1f} lines "
                     f"written beyond L2 per recorded packet)")
    decision = summary.get("record_cpu_us_per_packet_decision")
    if decision:
        lines.append(f"{'  SFU process decided':34} {decision['verdict']} by "
                     f"{decision['by'] or '-'}")
    total = summary.get("record_cpu_us_per_packet_with_mux")
    if total is not None:
        ci = summary["record_cpu_us_per_packet_with_mux_ci95"] or [math.nan, math.nan]
        mux = summary["record_cpu_us_per_packet_with_mux_parts"]["mux_process"]
        mci = mux["ci95"] or [math.nan, math.nan]
        d = summary["record_cpu_us_per_packet_with_mux_decision"]
        lines.append(f"{'record_cpu_us_per_packet_with_mux':34} {total:>9.3f}  95 % CI "
                     f"{ci[0]:.2f} .. {ci[1]:.2f} (target <= "
                     f"{TARGETS['record_cpu_us_per_packet']}, THE ISSUE'S FIGURE): "
                     f"{d['verdict'].upper()} by {d['by'] or '-'}")
        lines.append(f"{'  of which the mux process':34} {mux['mean']:>9.3f}  95 % CI "
                     f"{mci[0]:.2f} .. {mci[1]:.2f} (its own CPU, every window of a block "
                     f"per packet logged in its \"on\" ones)")
    writer = summary.get("writer_thread_us_per_packet")
    if writer is not None:
        lines.append(f"{'writer_thread_us_per_packet':34} {writer:>9.3f}  "
                     f"(whole run, {summary['writer_packets']} packets)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--copies", type=int, default=5, help="writers per producer (K)")
    parser.add_argument("--sched", choices=("rr", "normal"), default="rr")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--no-replay", action="store_true", help="skip replay_seek_s")
    parser.add_argument("--no-count", action="store_true",
                        help="skip the callgrind count (bench/record_count.py)")
    parser.add_argument("--no-wait-mux", action="store_true",
                        help="experiment: \"on\" windows end without waiting for the mux "
                             "process (its work then falls in the next \"off\" window)")
    parser.add_argument("--blocks", type=int, default=0,
                        help=f"blocks of 4 windows (default: {QUICK_BLOCKS} quick, "
                             f"{FULL_BLOCKS} full)")
    parser.add_argument("--polls", type=int, default=POLLS,
                        help=f"a window's length in writer polls of {POLL_S} s")
    args = parser.parse_args()
    args.blocks = args.blocks or (QUICK_BLOCKS if args.quick else FULL_BLOCKS)
    if args.sched == "rr":
        try:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        except PermissionError:
            log("SCHED_RR not permitted: --sched normal")
            args.sched = "normal"
    load_clip()  # encode the clip once before measuring (cached)
    started = time.time()
    measured = measure(args)
    summary = summarize(args, measured)
    summary["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "loadavg": os.getloadavg(), "load_cpu": LOAD_CPU,
                          "server_cpu": SERVER_CPU, "sched": args.sched,
                          "elapsed_s": round(time.time() - started, 1)}
    print(table(summary))
    print(json.dumps(summary, indent=1, default=str))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary,
                                         "windows": measured["load"].get("windows")},
                                        indent=1, default=str))


if __name__ == "__main__":
    main()
