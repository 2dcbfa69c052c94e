"""The cyclic garbage collector's policy for a server process (set up by `server.app`).

Start-up objects are frozen (`settle`). What remains unfrozen with 500 clients connected is
55-130k long-lived objects (sockets, sessions, queues); CPython runs a full ("generation 2")
collection whenever the objects promoted since the last one reach a quarter of those, which
under a vote's load was every 3-5 s, each stopping the event loop 46-115 ms and freeing
almost nothing: the p99 of every ballot round it landed in. So full collections are not left
to allocation counts: `FullCollections` runs them when the process is quiet (over the last
2 s: < 10 % of a core used, and fewer than 10 socket events a second; the CPU figure alone
misreads a process starved by a loaded machine as quiet), at most every `min_interval_s`,
and in any case every `max_interval_s`, which bounds what a real cycle leak could hold. After each, the survivors are frozen too
(connections and sessions live for the meeting), so the next one walks only what was
allocated since: tens of ms, not 100-150. Frozen objects are still freed by reference
counting; only cycles among them would be kept, so every `thaw_interval_s` one quiet
collection unfreezes everything first and walks it all (start-up objects included, a few
hundred ms, at a quiet moment): a cycle is kept at most that long. Young collections (cheap,
a few ms) keep their defaults. The automatic full collection stays as a safety net behind a
high threshold, in case the scheduler cannot run (a blocked loop).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

from aiohttp import web

log = logging.getLogger(__name__)

# Generation-2 threshold: the automatic full collection then needs this many generation-1
# collections since the last full one (~7M net allocations at the default 700 x 10), not 10.
SAFETY_NET_GEN2_THRESHOLD = 1000


def settle() -> None:
    """Once per process: collect and freeze what start-up allocated, and leave full
    collections to `FullCollections` (GC state is process-wide; a test process creating
    many apps does this at the first)."""
    _freeze_start_up()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, SAFETY_NET_GEN2_THRESHOLD)


@functools.cache
def _freeze_start_up() -> None:
    # Asked once: get_freeze_count walks every frozen object (~25 ms of CPU at 220k, which a
    # test process creating hundreds of apps paid at each). A thaw always freezes again.
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()


class FullCollections:
    """Runs `gc.collect(2)` when the process is quiet; see the module docstring."""

    def __init__(self, *, min_interval_s: float = 30.0, max_interval_s: float = 300.0,
                 quiet_cpu_fraction: float = 0.10, quiet_s: float = 2.0,
                 thaw_interval_s: float = 600.0, activity: Callable[[], int] = lambda: 0,
                 quiet_events_per_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic,
                 cpu_clock: Callable[[], float] = time.process_time) -> None:
        self.min_interval_s, self.max_interval_s = min_interval_s, max_interval_s
        self.quiet_cpu_fraction, self.thaw_interval_s = quiet_cpu_fraction, thaw_interval_s
        self._last_thaw = clock()
        self.clock, self.cpu_clock = clock, cpu_clock
        self._last_full = clock()
        self.quiet_s, self.quiet_events_per_s = quiet_s, quiet_events_per_s
        self.activity = activity  # a count of events handled, e.g. socket events
        self._samples: deque[tuple[float, float, int]] = deque([(clock(), cpu_clock(),
                                                                 activity())])

    def _noticed(self, phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:  # ours, the safety net's or anyone's
            self._last_full = self.clock()

    def tick(self) -> bool:
        """Called about once a second; returns whether it ran a full collection."""
        now, cpu, events = self.clock(), self.cpu_clock(), self.activity()
        self._samples.append((now, cpu, events))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.quiet_s:
            self._samples.popleft()  # keep the newest sample at least quiet_s old
        then, cpu_then, events_then = self._samples[0]
        window = now - then
        quiet = window >= self.quiet_s and (cpu - cpu_then) / window < self.quiet_cpu_fraction \
            and (events - events_then) / window < self.quiet_events_per_s
        since = now - self._last_full
        if since >= self.max_interval_s or (since >= self.min_interval_s and quiet):
            if now - self._last_thaw >= self.thaw_interval_s:
                gc.unfreeze()  # frozen cycles that became garbage are freed by this one
                self._last_thaw = now
            gc.collect(2)
            gc.freeze()
            self._last_full = self.clock()
            return True
        return False

    async def run(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: ticks every second while the app runs."""
        gc.callbacks.append(self._noticed)
        task = asyncio.ensure_future(self._forever())
        yield
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        gc.callbacks.remove(self._noticed)

    async def _forever(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.tick()
