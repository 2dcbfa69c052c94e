"""Server process for bench/record.py: bench/sfu_servers.py's Hopso SFU server, and the same
server recording what it forwards with media/recorder.py.

    python bench/record_server.py CONTROL_SOCKET [--record DIR --copies K] [--cpu 0]

The control protocol and the lag probe are sfu_servers.py's. With `--record`, a
media.Recorder records every producer, and each producer's packets go to K writers (K files
per track, each a whole recording): one publisher's VP8 + Opus with K = 5 make the 10
recorded tracks the issue's target speaks of, at the clip's packet rates, with the writer
thread doing the work of 10 tracks and the forwarding path paying 10 queue appends per
packet pair instead of 2. (A producer has one tap, so K writers share it through one call.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
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


class CopiesRecorder(Recorder):
    """A Recorder whose every producer is written `copies` times (copy0/, copy1/, ...)."""

    def __init__(self, router: Any, directory: Path, copies: int) -> None:
        super().__init__(router, directory)
        self.copies = copies
        # (writer thread CPU s, packets logged) at each stats call: the load process asks at
        # the start and the end of each of this server's windows
        self.snapshots: list[tuple[float, int]] = []

    def snapshot(self) -> None:
        thread = self._thread
        if thread is None or thread.ident is None or not thread.is_alive():
            return
        cpu = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        with self._lock:
            writers = list(self._tracks.values())
        packets = sum(w.packets for w in writers + self._finished)
        self.snapshots.append((cpu, packets))

    def _run(self) -> None:
        """The writer thread; its own CPU (time.thread_time) and the packets it logged go
        to writer.json beside the recordings when it ends, with the snapshots taken at each
        window's start and end (bench/record.py reports them).
        With HOPSO_BENCH_PROFILE_WRITER=PATH under cProfile (which only sees the thread it
        is enabled in), dumped to PATH when the recorder stops."""
        started = time.thread_time()
        try:
            self._run_profiled()
        finally:
            cpu = time.thread_time() - started
            packets = sum(w.packets for w in self._finished)
            (self.directory / "writer.json").write_text(json.dumps(
                {"thread_cpu_s": cpu, "packets": packets, "snapshots": self.snapshots}))

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
            if loop is not None and not loop.is_closed():
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
        producer.tap = tap
        producer.request_keyframe(time.monotonic(), count_suppressed=False)


class BenchMuxProcess(recorder_module.MuxProcess):
    """The recorder's mux child, on the CPUs given by HOPSO_BENCH_MUX_CPUS (default: where
    the server is) -- a bench experiment."""

    def __init__(self, limits: Any = None) -> None:
        super().__init__(limits)
        cpus = os.environ.get("HOPSO_BENCH_MUX_CPUS")
        if cpus:
            os.sched_setaffinity(self.proc.pid, {int(c) for c in cpus.split(",")})


recorder_module.MuxProcess = BenchMuxProcess  # type: ignore[misc]


def recording_server(directory: Path, copies: int) -> Callable[[], Any]:
    class RecordingHopso(sfu_servers.HopsoServer):
        def __init__(self) -> None:
            super().__init__()
            self.recorder = CopiesRecorder(self.router, directory, copies)
            self.recorder.start()

        def stats(self) -> dict[str, Any]:
            self.recorder.snapshot()
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
