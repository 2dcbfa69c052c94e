"""WorkerPool: results, errors, timeouts, crashes, memory cap, recycling, shutdown."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from documents import raster, render
from documents.worker_pool import (
    PRIORITY_HIGH,
    PRIORITY_LOW,
    JobTimeout,
    PoolBusy,
    PoolClosed,
    RemoteTraceback,
    WorkerCrashed,
    WorkerPool,
    job_ref,
)
from tests.documents import corpus

# --- job functions (run in the workers; must be importable module-level) --------


async def refilled(pool: WorkerPool, within: float = 15.0) -> list[int]:
    """The pool's workers once every slot has one again: a recycled worker is replaced by
    its slot in the background, so right after a job the pool may be one short for a while."""
    deadline = time.monotonic() + within
    while len(pool.worker_pids()) < pool.size and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return pool.worker_pids()


def add(a: int, b: int) -> int:
    return a + b


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def stamp_after(seconds: float) -> float:
    time.sleep(seconds)
    return time.monotonic()  # CLOCK_MONOTONIC is system-wide on Linux


def fail() -> None:
    raise ValueError("xấu")


def segfault() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def allocate(nbytes: int) -> int:
    return len(bytearray(nbytes))


def sandbox_info() -> tuple[int, int]:
    return resource.getrlimit(resource.RLIMIT_AS)[0], os.nice(0)


def unpicklable() -> object:
    return lambda: None


def write_then(path: str, outcome: str) -> str:
    """Leaves ``path`` half-written, then hangs, crashes, fails or succeeds."""
    Path(path).write_bytes(b"partial")
    if outcome in ("hang", "cancel"):
        time.sleep(60)
    elif outcome == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    elif outcome == "fail":
        raise OSError("disk full")
    return path


# --- helpers ---------------------------------------------------------------------


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def wait_dead(pid: int, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


# --- tests -----------------------------------------------------------------------


async def test_results_and_remote_exceptions() -> None:
    async with WorkerPool(size=2) as pool:
        assert await pool.run(add, 2, 3) == 5
        assert await pool.run("tests.documents.test_worker_pool:add", 1, 1) == 2
        with pytest.raises(ValueError, match="xấu") as info:
            await pool.run(fail)
        assert isinstance(info.value.__cause__, RemoteTraceback)
        assert "def fail" in str(info.value.__cause__) or "fail" in str(info.value.__cause__)
        with pytest.raises(Exception, match="cannot send result"):
            await pool.run(unpicklable)
        assert await pool.run(add, 1, 2) == 3  # the worker survived all that


def test_job_ref_only_accepts_importable_functions() -> None:
    assert job_ref(add) == "tests.documents.test_worker_pool:add"
    with pytest.raises(ValueError):
        job_ref(lambda: None)
    with pytest.raises(ValueError):
        job_ref("no_colon")


async def test_hanging_job_is_killed_and_pool_keeps_working() -> None:
    async with WorkerPool(size=1) as pool:
        [victim] = pool.worker_pids()
        started = time.monotonic()
        with pytest.raises(JobTimeout):
            await pool.run(pid_after, 60, timeout=0.5)
        assert time.monotonic() - started < 2.0
        assert await wait_dead(victim)
        assert await pool.run(add, 20, 22) == 42
        assert pool.worker_pids() != [victim]
        assert pool.stats.timeouts == 1


async def test_crash_is_reported_and_worker_replaced() -> None:
    async with WorkerPool(size=1) as pool:
        with pytest.raises(WorkerCrashed, match="exit status -11"):
            await pool.run(segfault)
        assert await pool.run(add, 1, 1) == 2
        assert pool.stats.crashes == 1


async def test_memory_cap_raises_memory_error_and_recycles() -> None:
    async with WorkerPool(size=1, memory_limit=512 * 1024 * 1024) as pool:
        limit, niceness = await pool.run(sandbox_info)
        assert limit == 512 * 1024 * 1024
        assert niceness >= 10
        before = pool.worker_pids()
        with pytest.raises(MemoryError):
            await pool.run(allocate, 1024 * 1024 * 1024)
        assert await pool.run(allocate, 10) == 10
        assert pool.worker_pids() != before  # recycled after the MemoryError


async def test_recycle_after_n_jobs() -> None:
    async with WorkerPool(size=1, max_jobs_per_worker=2) as pool:
        pids = [await pool.run(pid_after, 0) for _ in range(5)]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    for pid in set(pids):
        assert await wait_dead(pid)


async def test_bounded_queue_and_priorities() -> None:
    async with WorkerPool(size=1, max_queue=2) as pool:
        blocker = asyncio.create_task(pool.run(pid_after, 0.5))
        await asyncio.sleep(0.1)  # the worker is now busy
        low = asyncio.create_task(pool.run(stamp_after, 0, priority=PRIORITY_LOW))
        high = asyncio.create_task(pool.run(stamp_after, 0, priority=PRIORITY_HIGH))
        await asyncio.sleep(0.05)
        with pytest.raises(PoolBusy):
            await pool.run(add, 1, 1, nowait=True)
        await blocker
        assert await high < await low  # the high-priority job overtook


async def test_cancelling_caller_kills_running_job() -> None:
    async with WorkerPool(size=1) as pool:
        [pid] = pool.worker_pids()
        task = asyncio.create_task(pool.run(pid_after, 60))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await wait_dead(pid)
        assert await pool.run(add, 2, 2) == 4


async def test_close_is_idempotent_and_leaves_no_processes() -> None:
    pool = WorkerPool(size=2)
    await pool.start()
    pids = pool.worker_pids()
    assert len(pids) == 2 and all(alive(p) for p in pids)
    running = asyncio.create_task(pool.run(pid_after, 60))
    queued = [asyncio.create_task(pool.run(add, i, i)) for i in range(3)]
    await asyncio.sleep(0.2)
    await asyncio.gather(pool.close(), pool.close())
    await pool.close()
    for pid in pids:
        assert not alive(pid)
    for task in [running, *queued]:
        try:
            await task
        except PoolClosed:
            pass  # queued/running jobs fail cleanly (some may have finished first)
    with pytest.raises(PoolClosed):
        await pool.run(add, 1, 1)


async def test_event_loop_stays_responsive_during_long_render(tmp_path: Path) -> None:
    """A render that takes ~11 s of CPU (killed at 2.5 s) must not stall the loop."""
    pdf = corpus.make_many_paths_pdf(tmp_path)
    lags: list[float] = []
    loop = asyncio.get_running_loop()

    async def probe() -> None:
        while True:
            before = loop.time()
            await asyncio.sleep(0.005)
            lags.append(loop.time() - before - 0.005)

    async with WorkerPool(size=2) as pool:
        prober = asyncio.create_task(probe())
        spec = raster.RasterSpec()
        renders = [
            pool.run(render.render_page_jpeg, str(pdf), 0, spec, [], 0.15, timeout=2.5)
            for _ in range(2)  # both workers busy: the worst case on 2 cores
        ]
        results = await asyncio.gather(*renders, return_exceptions=True)
        prober.cancel()
        assert all(isinstance(r, JobTimeout) for r in results)
        assert await pool.run(add, 1, 1) == 2
    lags.sort()
    p99 = lags[int(len(lags) * 0.99)]
    assert len(lags) > 200
    # Rendering on the loop (or in a thread, holding the GIL) would stall it for the whole
    # 2.5 s render. These bounds only catch that, robustly on a busy CI machine; the 20 ms
    # p99 target is measured by bench/documents.py, not by a timed test.
    assert p99 < 0.100, f"p99 loop lag {p99 * 1000:.1f} ms"
    assert lags[-1] < 0.500, f"max loop lag {lags[-1] * 1000:.1f} ms"


@pytest.mark.parametrize("outcome", ["hang", "crash", "fail", "cancel"])
async def test_files_of_a_job_that_does_not_succeed_are_removed(outcome: str,
                                                               tmp_path: Path) -> None:
    path = tmp_path / "out.tmp-x"
    async with WorkerPool(size=1) as pool:
        job = asyncio.ensure_future(pool.run(write_then, str(path), outcome, timeout=1.0,
                                             cleanup=[path]))
        if outcome == "cancel":
            for _ in range(100):  # until the worker has written it
                if path.exists():
                    break
                await asyncio.sleep(0.02)
            job.cancel()
        with pytest.raises((JobTimeout, WorkerCrashed, OSError, asyncio.CancelledError)):
            await job
        for _ in range(100):  # a cancelled caller returns before the worker is killed
            if not path.exists():
                break
            await asyncio.sleep(0.02)
        assert not path.exists()
        assert await pool.run(write_then, str(path), "ok", cleanup=[path]) == str(path)
        assert path.read_bytes() == b"partial"  # a successful job's files are its own


class LosesOneCancel(WorkerPool):
    """A pool whose respawn loses the cancel of its close, as 3.11's wait_for does when the
    new worker's hello arrives together with it."""

    async def _spawn(self) -> Any:
        worker = await super()._spawn()
        if self.stats.spawned > 1:
            try:
                await asyncio.sleep(0.5)
            except asyncio.CancelledError:
                pass
        return worker


async def test_close_ends_a_slot_whose_cancel_was_lost_while_it_respawned() -> None:
    pool = LosesOneCancel(size=1)
    await pool.run(add, 1, 2)
    job = asyncio.ensure_future(pool.run(pid_after, 30))
    await asyncio.sleep(1.0)
    job.cancel()  # its worker is killed and the slot spawns a new one
    while pool.stats.spawned < 2:
        await asyncio.sleep(0.05)
    async with asyncio.timeout(15):  # hung forever before: the slot waited for a job
        await pool.close()
