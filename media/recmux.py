"""The mux process: packet logs (media/packetlog.py) → WebM / MPEG-TS files.

    python -m media.recmux --follow          # the recorder's child: log paths on stdin
    python -m media.recmux LOG [LOG ...]     # after the fact: a log left by a crash

Following, each stdin line names a log to add, and an empty line is the writer's word that it
has written to the logs: each line wakes the mux to read every log (else it looks every
FOLLOW_POLL_S); stdin's end (the recorder stopped, or the SFU
process died) means: read every log to its end, close the files, print the result, exit. So
a killed server still leaves finished files up to its last whole record. The result on
stdout is one JSON object {"tracks": [{"log", "file", "frames", "dropped_frames",
"anchored_by", "failed"}]} ("file" null: none was made, e.g. a camera that sent no keyframe
before the end); a log muxed cleanly to its end is deleted, any other is kept for
a second try.

Limits, as for the composite's ffmpeg (server/archive/composite.py), set by the process on
itself before it reads a log (`MuxLimits`, passed on its command line by media/recorder.py):
a lower priority than the SFU (nice, never real-time), an address-space limit (RLIMIT_AS),
no core file, and a CPU budget (RLIMIT_CPU's soft limit, raised as the recording goes on:
`cpu_min_s` + `cpu_s_per_s` per second since the start; a mux spinning past it gets SIGXCPU
and dies, its logs kept for `python -m media.recmux LOG`, the recorder logs it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .packetlog import LogReader, MuxLimits
from .trackmux import TrackMuxer

logger = logging.getLogger(__name__)

# The writer wakes the mux after each of its writes (an empty line on stdin), so this is a
# fallback, not the pace: each wake-up starts cold on a core the SFU shares (the caches, the
# file reads), ~0.5 ms a poll here, and an idle recording's looks were most of the mux's CPU
# between its writes.
FOLLOW_POLL_S = 1.0


class CpuBudget:
    """RLIMIT_CPU's soft limit, raised with the time since the start (the hard one stays)."""

    def __init__(self, limits: MuxLimits) -> None:
        self.limits = limits
        self.started = time.monotonic()
        self.extend()

    def extend(self) -> None:
        seconds = self.limits.cpu_min_s + (time.monotonic() - self.started) * \
            self.limits.cpu_s_per_s
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        soft = max(1, int(seconds))
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


class LogMux:
    """One log and its muxer."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.reader = LogReader(log)
        self.muxer: TrackMuxer | None = None
        self.failed: str | None = None

    def step(self) -> None:
        if self.failed is not None:
            return
        try:
            records = self.reader.read()
        except OSError as exc:
            self.failed = f"reading the log: {exc}"
            return
        if self.muxer is None:
            header = self.reader.header
            if header is None:
                return
            try:
                output = self.log.parent / Path(str(header["file"])).name
                self.muxer = TrackMuxer(output, str(header["codec"]),
                                        int(header["clock_rate"]), str(header["kind"]),
                                        float(header["start"]))
            except (KeyError, TypeError, ValueError) as exc:
                self.failed = f"bad header: {exc!r}"
                return
        self.muxer.feed(records)

    def finish(self) -> dict[str, Any]:
        self.step()
        self.reader.close()
        problem = self.failed or self.reader.corrupt
        if self.reader.header is None and problem is None:
            problem = "no header"
        if self.reader.pending_bytes:
            logger.warning("recmux: %s: %d bytes after the last whole record (cut short)",
                           self.log.name, self.reader.pending_bytes)
        if problem:
            logger.error("recmux: %s: %s", self.log.name, problem)
        out: dict[str, Any] = {"log": str(self.log), "file": None, "frames": 0,
                               "dropped_frames": 0, "anchored_by": "arrival",
                               "failed": problem}
        if self.muxer is not None:
            self.muxer.finish()
            if not self.muxer.opened and problem is None:
                logger.warning("recmux: %s: nothing to start a file with (a video track: no "
                               "keyframe came): no file", self.log.name)
            # no file at all when no frame could start one (a camera with no keyframe)
            out.update(file=str(self.muxer.path) if self.muxer.opened else None,
                       frames=self.muxer.frames,
                       dropped_frames=self.muxer.dropped_frames,
                       anchored_by=self.muxer.anchored_by,
                       failed=self.muxer.failed or problem)
        if out["failed"] is None and not self.reader.pending_bytes:
            self.log.unlink(missing_ok=True)  # muxed to its end: the file is the record now
        return out


def mux(logs: list[Path], budget: CpuBudget | None = None) -> list[dict[str, Any]]:
    """Mux whole logs (or cut ones, up to their last whole record)."""
    out = []
    for log in logs:
        out.append(LogMux(log).finish())
        if budget is not None:
            budget.extend()
    return out


def follow(lines: Any, budget: CpuBudget | None = None,
           poll_s: float = FOLLOW_POLL_S) -> list[dict[str, Any]]:
    """Mux the logs named on `lines` as they grow, until `lines` ends: at each line (a new
    log, or an empty one: the writer wrote), else every `poll_s`."""
    muxes: dict[str, LogMux] = {}
    lock = threading.Lock()
    ended = threading.Event()
    wake = threading.Event()  # a line came: a new log, or the writer wrote to them

    def read_lines() -> None:
        for line in lines:
            name = line.strip()
            if name:
                with lock:
                    muxes.setdefault(name, LogMux(Path(name)))
            wake.set()
        ended.set()
        wake.set()

    threading.Thread(target=read_lines, daemon=True).start()
    while True:
        wake.wait(poll_s)
        wake.clear()  # before reading: a write meanwhile wakes the next round at once
        if ended.is_set():
            break
        if budget is not None:
            budget.extend()
        with lock:
            current = list(muxes.values())
        for m in current:
            m.step()
    if budget is not None:
        budget.extend()
    with lock:
        current = list(muxes.values())
    return [m.finish() for m in current]


def apply_limits(limits: MuxLimits) -> CpuBudget:
    """Forwarding wins the CPU (the SFU may run real-time, as in the bench, and we inherited
    it); memory and CPU bounded; no core file. The CPU budget, to extend as time passes."""
    try:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (AttributeError, OSError):
        pass
    try:
        os.nice(limits.nice)
    except OSError:
        pass
    memory = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return CpuBudget(limits)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m media.recmux")
    parser.add_argument("--follow", action="store_true",
                        help="follow the logs named on stdin until it ends")
    parser.add_argument("logs", nargs="*", type=Path)
    default = MuxLimits()
    parser.add_argument("--memory-mb", type=int, default=default.memory_mb)
    parser.add_argument("--nice", type=int, default=default.nice)
    parser.add_argument("--cpu-s-per-s", type=float, default=default.cpu_s_per_s)
    parser.add_argument("--cpu-min-s", type=float, default=default.cpu_min_s)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    budget = apply_limits(MuxLimits(args.memory_mb, args.nice, args.cpu_s_per_s,
                                    args.cpu_min_s))
    results = follow(sys.stdin, budget) if args.follow else mux(args.logs, budget)
    json.dump({"tracks": results}, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
