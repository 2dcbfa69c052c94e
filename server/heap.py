"""The cyclic garbage collector's policy for a server process (set up by `server.app`).

Start-up objects are frozen (`settle`). What remains unfrozen with 500 clients connected is
55-130k long-lived objects (sockets, sessions, queues); CPython runs a full ("generation 2")
collection whenever the objects promoted since the last one reach a quarter of those, which
under a vote's load was every 3-5 s, each stopping the event loop 46-115 ms and freeing
almost nothing: the p99 of every ballot round it landed in. So full collections are not left
to allocation counts: `FullCollections` runs them when the process is quiet (little CPU used
in the last second), at most every `min_interval_s`, and in any case every `max_interval_s`,
which bounds what a real cycle leak could hold. Young collections (cheap, a few ms) keep their
defaults. The automatic full collection stays as a safety net behind a high threshold, in case
the scheduler cannot run (a blocked loop).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
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
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, SAFETY_NET_GEN2_THRESHOLD)


class FullCollections:
    """Runs `gc.collect(2)` when the process is quiet; see the module docstring."""

    def __init__(self, *, min_interval_s: float = 30.0, max_interval_s: float = 300.0,
                 quiet_cpu_fraction: float = 0.25,
                 clock: Callable[[], float] = time.monotonic,
                 cpu_clock: Callable[[], float] = time.process_time) -> None:
        self.min_interval_s, self.max_interval_s = min_interval_s, max_interval_s
        self.quiet_cpu_fraction = quiet_cpu_fraction
        self.clock, self.cpu_clock = clock, cpu_clock
        self._last_full = clock()
        self._last_tick, self._last_cpu = clock(), cpu_clock()

    def _noticed(self, phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:  # ours, the safety net's or anyone's
            self._last_full = self.clock()

    def tick(self) -> bool:
        """Called about once a second; returns whether it ran a full collection."""
        now, cpu = self.clock(), self.cpu_clock()
        busy = (cpu - self._last_cpu) / max(now - self._last_tick, 1e-3)
        self._last_tick, self._last_cpu = now, cpu
        since = now - self._last_full
        if since >= self.max_interval_s or (
                since >= self.min_interval_s and busy < self.quiet_cpu_fraction):
            gc.collect(2)
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
