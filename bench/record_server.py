"""Server process for bench/record.py: bench/sfu_servers.py's Hopso SFU server, and the same
server recording what it forwards with media/recorder.py.

    python bench/record_server.py CONTROL_SOCKET [--record DIR --copies K] [--cpu 0]

The control protocol and the lag probe are sfu_servers.py's. With `--record`, a
media.Recorder records every producer, and each producer's packets go to K writers (K files
per track, each a whole recording): one publisher's VP8 + Opus with K = 5 make the 10
recorded tracks the issue's target speaks of, at the clip's packet rates, with the writer
thread doing the work of 10 tracks and the forwarding path paying 10 tap calls (each
encoding the packet's record into its track's buffer, media/_packetlog_c.c) per packet pair
instead of 2. (A producer has one tap, so K writers share it through one call.)

The `record_window` op (bench/record_toggle.py's load process asks for one window at a time):
{"op": "record_window", "on": bool, "seconds": T} -> the process's, the forwarding (main)
thread's and the writer thread's CPU clocks, the packets forwarded to subscribers and the
packets logged, read on the event loop at the window's start and end. An "on" window switches
the recording taps on at its start; at its end it switches them off, wakes the writer and
waits until it has logged what the taps held, then (both kinds of window) until the mux
process has read every log to its end and muxed it, then reads the end: every packet
recorded in the window is logged, and paid for, inside it, and the mux's work (not this
process's CPU, but the caches it takes from the forwarding thread) falls in it too. Between "on" windows the writer thread sleeps
without polling (`Gate`), so an "off" window is the plain server's work: the forwarding, with
a recorder attached but idle. While windows are asked for, the writer's keyframe requests (at
the hole an "off" window leaves in a video track) are not sent: the bench's publisher answers
one by restarting its clip, which would change what is forwarded; a recording without holes
sends none either.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for p in (str(HERE), str(HERE.parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

import sfu_servers

from media import Recorder
from media import recorder as recorder_module
from media.producer import Producer
from media.recorder import TrackWriter


class Gate:
    """The recorder's `_stop` event with a pause: `wait(timeout)` (the writer's poll) also
    blocks while paused, without waking up, and returns at once on a `kick`; the callback a
    kick brings runs when the writer next waits, i.e. once it has written every track's pending records."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._stop = False
        self._paused = False
        self._kicked = False
        self._pending: Callable[[], None] | None = None  # the kick's, once the wait returned
        self._served: Callable[[], None] | None = None  # to run at the next wait's entry
        self.timed = True  # False: no polls on a timer, only the kicks'

    def is_set(self) -> bool:
        return self._stop

    def set(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()

    def kick(self, drained: Callable[[], None], pause: bool) -> None:
        """Drain now, `drained()` when done (writer thread); then stop polling if `pause`."""
        with self._cond:
            self._paused = self._paused or pause
            self._kicked, self._pending = True, drained
            self._cond.notify_all()

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def wait(self, timeout: float) -> bool:
        with self._cond:
            if self._served is not None:  # the drain the last kick asked for is done
                served, self._served = self._served, None
                served()
            deadline = time.monotonic() + timeout
            while not self._stop and not self._kicked:
                if self._paused or not self.timed:
                    self._cond.wait()
                    deadline = time.monotonic() + timeout  # a full poll after resuming
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if self._kicked:
                self._kicked, self._served, self._pending = False, self._pending, None
            return self._stop


class CopiesRecorder(Recorder):
    """A Recorder whose every producer is written `copies` times (copy0/, copy1/, ...)."""

    def __init__(self, router: Any, directory: Path, copies: int) -> None:
        super().__init__(router, directory)
        self.copies = copies
        self._stop: Gate = Gate()  # type: ignore[assignment]
        self.taps: dict[str, tuple[Producer, Callable[[Any], None], Callable[[Any], None]]] = {}
        self.ask_keyframes = True  # False while record_window ops come (see the docstring)
        self.tapping = True

    def _run(self) -> None:
        """The writer thread; its own CPU (time.thread_time) and the packets it logged go
        to writer.json beside the recordings when it ends (bench/record.py reports them).
        With HOPSO_BENCH_PROFILE_WRITER=PATH under cProfile (which only sees the thread it
        is enabled in), dumped to PATH when the recorder stops."""
        started = time.thread_time()
        try:
            self._run_profiled()
        finally:
            cpu = time.thread_time() - started
            packets = sum(w.packets for w in self._finished)
            (self.directory / "writer.json").write_text(json.dumps(
                {"thread_cpu_s": cpu, "packets": packets}))

    def _run_profiled(self) -> None:
        path = os.environ.get("HOPSO_BENCH_PROFILE_WRITER")
        if not path:
            super()._run()
            return
        import cProfile
        profile = cProfile.Profile(time.thread_time)  # the thread's CPU, not its waits
        profile.enable()
        try:
            super()._run()
        finally:
            profile.disable()
            profile.dump_stats(path)

    def _attach(self, producer: Producer) -> None:
        if producer.closed or f"{producer.id}#0" in self._tracks:
            return

        def ask_keyframe() -> None:
            loop = self._loop
            if self.ask_keyframes and loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(producer.request_keyframe, time.monotonic(), False)
        writers = []
        for i in range(self.copies):
            folder = self.directory / f"copy{i}"
            folder.mkdir(parents=True, exist_ok=True)
            writers.append(TrackWriter(producer, folder, self._start, ask_keyframe,
                                       self._queue_packets))
        with self._lock:
            for i, writer in enumerate(writers):
                self._tracks[f"{producer.id}#{i}"] = writer
        queues = [w.queue for w in writers]

        def tap(fp: Any) -> None:
            for queue in queues:
                queue(fp)

        def report_tap(sr: Any) -> None:
            for queue in queues:
                queue.report(sr)
        self.taps[producer.id] = (producer, tap, report_tap)
        producer.tap = tap if self.tapping else None
        producer.report_tap = report_tap if self.tapping else None
        producer.request_keyframe(time.monotonic(), count_suppressed=False)

    def tap_on(self) -> None:
        self.tapping = True
        for producer, tap, report_tap in self.taps.values():
            producer.tap, producer.report_tap = tap, report_tap
        self._stop.resume()

    async def tap_off(self) -> None:
        """Taps off, then wait until the writer has logged what the taps held."""
        self.tapping = False
        for producer, _, _ in self.taps.values():
            producer.tap = producer.report_tap = None
        await self.drain(pause=True)

    async def drain(self, pause: bool = False) -> None:
        """Wake the writer and wait until it has logged what the taps hold."""
        loop = asyncio.get_running_loop()
        drained = loop.create_future()

        def done() -> None:  # the writer thread
            loop.call_soon_threadsafe(lambda: drained.done() or drained.set_result(None))
        self._stop.kick(done, pause)
        await asyncio.wait_for(drained, 10)

    def logged(self) -> int:
        with self._lock:
            writers = list(self._tracks.values())
        return sum(w.packets for w in writers + self._finished)

    def log_bytes(self) -> int:
        with self._lock:
            writers = list(self._tracks.values())
        total = 0
        for w in writers:
            try:
                total += w.log_path.stat().st_size
            except OSError:
                pass
        return total

    def writer_cpu(self) -> float:
        thread = self._thread
        if thread is None or thread.ident is None or not thread.is_alive():
            return 0.0
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def mux_read_bytes() -> int | None:
    """What the mux process has read (/proc/PID/io rchar: its logs, and a few lines of
    stdin), or None without one."""
    if BenchMuxProcess.pid is None:
        return None
    try:
        with open(f"/proc/{BenchMuxProcess.pid}/io") as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def mux_sleeping() -> bool:
    """Whether the mux process's main thread sleeps (between its polls)."""
    try:
        with open(f"/proc/{BenchMuxProcess.pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "R"
    except (OSError, IndexError):
        return True


class BenchMuxProcess(recorder_module.MuxProcess):
    """The recorder's mux child, on the CPUs given by HOPSO_BENCH_MUX_CPUS (default: where
    the server is) -- a bench experiment."""

    pid: int | None = None  # the latest one's, for the windows' edges
    wakes = 0  # the writer's empty lines on its stdin: bytes it read that are not the logs'

    def __init__(self, limits: Any = None) -> None:
        super().__init__(limits)
        BenchMuxProcess.pid = self.proc.pid
        cpus = os.environ.get("HOPSO_BENCH_MUX_CPUS")
        if cpus:
            os.sched_setaffinity(self.proc.pid, {int(c) for c in cpus.split(",")})

    def wake(self) -> bool:
        BenchMuxProcess.wakes += 1
        return super().wake()


recorder_module.MuxProcess = BenchMuxProcess  # type: ignore[misc]


def recording_server(directory: Path, copies: int) -> Callable[[], Any]:
    class RecordingHopso(sfu_servers.HopsoServer):
        def __init__(self) -> None:
            super().__init__()
            self.recorder = CopiesRecorder(self.router, directory, copies)
            self.recorder.start()
            self.gc_cpu = [0.0, 0.0, 0.0]
            self._gc_started = 0.0
            gc.callbacks.append(self._on_gc)
            self._mux_offset: int | None = None  # the mux's rchar that is not the logs'
            # the forwarding thread's CPU spent waiting for the mux (the bench's, not the
            # recording's: taken out of the window's CPU by bench/record.py) and its checks
            self.wait_cpu = 0.0
            self.wait_checks = 0

        def _on_gc(self, phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                self._gc_started = time.thread_time()
            else:
                self.gc_cpu[info["generation"]] += time.thread_time() - self._gc_started

        def edge(self) -> dict[str, float]:
            """The clocks and counters at a window's edge (on the loop, no await between).
            Besides the clocks, what the forwarding did in the window (packets and bytes
            sent, packets received: the subscribers' RTCP), to explain the windows' spread
            (bench/record.py's adjusted estimate), and the mux process's CPU (reported,
            not counted: a process of its own)."""
            sent = sum(c.packets_sent for peer in self.router.peers for c in peer.consumers)
            transports = [t for peer in self.router.peers for t in peer.transports]
            tx_bytes = sum(t.bytes_sent for t in transports)
            rx_packets = sum(t.packets_received for t in transports)
            mux_cpu = 0.0
            if BenchMuxProcess.pid is not None:
                try:
                    with open(f"/proc/{BenchMuxProcess.pid}/schedstat") as f:
                        mux_cpu = int(f.read().split()[0]) / 1e9
                except (OSError, ValueError, IndexError):
                    pass
            switches = {}
            with open(f"/proc/self/task/{threading.get_native_id()}/status") as f:
                for line in f:
                    if "ctxt_switches" in line:
                        name, value = line.split(":")
                        switches[name] = int(value)
            return {"wakeups": switches.get("voluntary_ctxt_switches", 0),
                    "preempted": switches.get("nonvoluntary_ctxt_switches", 0),
                    "gc0": self.gc_cpu[0], "gc1": self.gc_cpu[1], "gc2": self.gc_cpu[2],
                    "process_cpu": time.clock_gettime(time.CLOCK_PROCESS_CPUTIME_ID),
                    "main_cpu": time.thread_time(), "writer_cpu": self.recorder.writer_cpu(),
                    "forwarded": sent, "logged": self.recorder.logged(),
                    "tx_bytes": tx_bytes, "rx_packets": rx_packets, "mux_cpu": mux_cpu,
                    "wait_cpu": self.wait_cpu, "wait_checks": self.wait_checks,
                    "time": time.monotonic()}

        async def mux_caught_up(self, limit_s: float = 2.0) -> None:
            """Until the mux process has read every log to its end and muxed it (its main
            thread asleep again), at most `limit_s`: its work, and the caches it takes
            from the forwarding thread, fall in the window that recorded the packets, not
            in the "off" window after it (the writer wakes it after each write; before
            2026-12-07 19:30 it followed the logs every 0.25 s on its own)."""
            if self._mux_offset is None:
                return
            clock = time.thread_time
            cpu = clock()
            logged = self.recorder.log_bytes()
            self.wait_cpu += clock() - cpu
            await asyncio.sleep(0.1)  # it reads and muxes ~0.4 s of logs: no check before
            deadline = time.monotonic() + limit_s
            while True:
                cpu = clock()
                read = mux_read_bytes()
                done = (read is None or time.monotonic() > deadline
                        or (read - self._mux_offset - BenchMuxProcess.wakes >= logged
                            and mux_sleeping()))
                self.wait_checks += 1
                self.wait_cpu += clock() - cpu
                if done:
                    return
                await asyncio.sleep(0.01)

        async def op_record_window(self, request: dict[str, Any]) -> dict[str, Any]:
            on, polls = bool(request["on"]), int(request["polls"])
            poll_s = float(request.get("poll_s") or recorder_module.POLL_S)
            recorder = self.recorder
            recorder.ask_keyframes = False
            recorder._stop.timed = False  # the writer drains when this asks it to
            if recorder.tapping:  # the first window: taps off and drained before it
                await recorder.tap_off()
                await asyncio.sleep(1.0)  # the mux, woken by the drain, has read it all
                read = mux_read_bytes()
                if read is not None and request.get("wait_mux", True):
                    # what it read that is not the logs (stdin's lines; the writer's empty
                    # lines from now on are counted apart, BenchMuxProcess.wakes)
                    self._mux_offset = read - recorder.log_bytes() - BenchMuxProcess.wakes
            start = self.edge()
            if on:
                recorder.tap_on()
            for i in range(polls):  # the writer's polls, every POLL_S as when it times them
                await asyncio.sleep(poll_s)
                if on and i == polls - 1:
                    await recorder.tap_off()
                elif on:
                    await recorder.drain()
            # both conditions wait the same way (an "off" window's mux has nothing to do)
            await self.mux_caught_up()
            end = self.edge()
            return {"on": on, "start": start, "end": end}

        async def op_record_continuous(self, request: dict[str, Any]) -> dict[str, Any]:
            """Record as usual again (taps on, the writer polling, keyframes asked for)."""
            self.recorder.ask_keyframes = True
            self.recorder._stop.timed = True
            self.recorder.tap_on()
            return {}

        def stats(self) -> dict[str, Any]:
            out = super().stats()
            tracks = self.recorder.stats()["tracks"]
            out["recorder"] = {"tracks": len(tracks),
                               "frames": sum(t["frames"] for t in tracks),
                               "dropped_packets": sum(t["dropped_packets"] for t in tracks),
                               "dropped_frames": sum(t["dropped_frames"] for t in tracks),
                               "failed": [t["failed"] for t in tracks if t["failed"]]}
            return out

        async def close(self) -> None:
            await self.recorder.stop()
            await super().close()
    return RecordingHopso


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("control")
    parser.add_argument("--record", type=Path)
    parser.add_argument("--copies", type=int, default=5)
    parser.add_argument("--cpu", type=int, default=0)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})
    logging.basicConfig(level=logging.WARNING)
    if args.record is not None:
        sfu_servers.HopsoServer = recording_server(args.record, args.copies)  # type: ignore[misc]
    if args.loop == "uvloop":
        import uvloop
        uvloop.install()
    asyncio.run(sfu_servers.serve("hopso", args.control))


if __name__ == "__main__":
    main()
