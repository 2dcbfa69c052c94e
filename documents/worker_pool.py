"""Asyncio-facing pool of sandboxed worker processes for PyMuPDF jobs.

Why processes: PyMuPDF holds the GIL for a whole render and MuPDF has no
render time limit, so a job must run where it cannot freeze the event loop
and where it can be SIGKILLed. Each worker:

* is a fresh interpreter (``python -m documents._worker_main``: spawn
  semantics without multiprocessing re-importing the server's __main__),
  never a fork of the event-loop process;
* gets RLIMIT_AS (memory cap), no core dumps, a lower CPU priority so the
  server stays responsive, and dies with its parent (PR_SET_PDEATHSIG);
* runs one job at a time, is killed and replaced on timeout or crash, and is
  recycled after ``max_jobs_per_worker`` jobs (MuPDF caches/fragmentation).

Files a job may leave half-written are the caller's to name and the pool's to
remove: ``run(..., cleanup=paths)`` deletes them whenever the job does not
succeed (error, timeout, crash, cancellation, pool closing), after the worker
has answered or been killed, so nothing can write them afterwards.

IPC is a socketpair with length-prefixed pickles, read with asyncio streams,
so the loop never blocks on a worker. Jobs are named by import path
("module:function"), so only importable, module-level functions can run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import shutil
import socket
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Self

from documents import _worker_main as child
from documents._worker_main import JobError

__all__ = ["JobError", "JobTimeout", "PoolBusy", "PoolClosed", "PoolConfig", "PoolError", "WorkerCrashed", "WorkerPool", "job_ref"]

log = logging.getLogger(__name__)

PRIORITY_HIGH = 0  # first page of an upload, on-demand views
PRIORITY_NORMAL = 10
PRIORITY_LOW = 20  # sanitising, text extraction


class PoolError(Exception):
    pass


class PoolClosed(PoolError):
    pass


class PoolBusy(PoolError):
    """The bounded queue is full (only raised with ``nowait=True``)."""


class JobTimeout(PoolError, TimeoutError):
    pass


class WorkerCrashed(PoolError):
    """The worker died mid-job (segfault, abort, OOM kill) or could not start."""


class RemoteTraceback(Exception):
    """Set as ``__cause__`` of exceptions re-raised from a worker."""

    def __str__(self) -> str:
        return "\n" + str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class PoolConfig:
    size: int = 2
    max_jobs_per_worker: int = 200
    memory_limit: int | None = 1536 * 1024 * 1024  # RLIMIT_AS bytes; None = unlimited
    default_timeout: float = 30.0
    max_queue: int = 256
    python: str = sys.executable
    nice: int = 10
    startup_timeout: float = 30.0
    preload: tuple[str, ...] = ("documents.jobs", "documents.mupdf")  # imported before "ready"


@dataclass
class PoolStats:
    spawned: int = 0
    completed: int = 0
    failed: int = 0
    timeouts: int = 0
    crashes: int = 0
    recycled: int = 0


@dataclass(eq=False)
class _Job:
    ref: str
    args: tuple[Any, ...]
    timeout: float
    future: asyncio.Future[Any]
    cleanup: tuple[str, ...] = ()


@dataclass(eq=False)
class _Worker:
    proc: asyncio.subprocess.Process
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    jobs_done: int = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def request(self, message: Any) -> Any:
        try:
            self.writer.write(child.encode(message))
            await self.writer.drain()
            header = await self.reader.readexactly(child.HEADER.size)
            (length,) = child.HEADER.unpack(header)
            return child.decode(await self.reader.readexactly(length))
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            code = await self._exit_code(1.0)
            raise WorkerCrashed(f"worker {self.pid} died (exit status {code})") from exc

    async def stop(self, grace: float) -> None:
        """Ask politely (EOF on its socket), then SIGKILL after ``grace`` seconds."""
        self.writer.close()
        if await self._exit_code(grace) is None:
            await self.kill()

    async def kill(self) -> None:
        self.writer.close()
        if self.proc.returncode is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        await self._exit_code(5.0)

    async def _exit_code(self, timeout: float) -> int | None:
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            return None


def job_ref(func: Callable[..., Any] | str) -> str:
    """'module:qualname' for a module-level function (or pass such a string)."""
    if isinstance(func, str):
        if ":" not in func:
            raise ValueError("job reference must look like 'package.module:function'")
        return func
    qualname = getattr(func, "__qualname__", "")
    if "<" in qualname or not getattr(func, "__module__", None):
        raise ValueError(f"{func!r} is not an importable module-level function")
    return f"{func.__module__}:{qualname}"


class WorkerPool:
    """``async with WorkerPool() as pool: await pool.run(jobs.render_page, ...)``."""

    def __init__(self, config: PoolConfig | None = None, **overrides: Any) -> None:
        self.config = dataclasses.replace(config or PoolConfig(), **overrides)
        if self.config.size < 1:
            raise ValueError("pool size must be >= 1")
        self.stats = PoolStats()
        self._queue: asyncio.PriorityQueue[tuple[int, int, _Job]] | None = None
        self._seq = itertools.count()
        self._slots: list[asyncio.Task[None]] = []
        self._workers: dict[int, _Worker] = {}
        self._start_lock: asyncio.Lock | None = None
        self._close_task: asyncio.Task[None] | None = None

    @property
    def size(self) -> int:
        return self.config.size

    @property
    def closed(self) -> bool:
        return self._close_task is not None

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue else 0

    def worker_pids(self) -> list[int]:
        return [w.pid for w in self._workers.values()]

    @property
    def started(self) -> bool:
        """Workers were spawned (the pool starts on its first job)."""
        return bool(self._slots)

    def running_workers(self) -> int:
        """Workers whose process is running now (readiness: server/documents/feature.py). A
        worker that died idle counts as gone until its slot spawns a new one."""
        return sum(1 for w in self._workers.values() if w.proc.returncode is None)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Spawn all workers and wait until they are ready (idempotent)."""
        if self.closed:
            raise PoolClosed("pool is closed")
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._slots:
                return
            self._queue = asyncio.PriorityQueue(self.config.max_queue)
            workers = await asyncio.gather(
                *(self._spawn() for _ in range(self.config.size)), return_exceptions=True
            )
            for slot, worker in enumerate(workers):
                initial = worker if isinstance(worker, _Worker) else None
                if initial is None:
                    log.error("document worker failed to start: %r", worker)
                else:
                    self._workers[slot] = initial
                self._slots.append(asyncio.create_task(self._slot_loop(slot, initial)))

    async def run(
        self,
        func: Callable[..., Any] | str,
        *args: Any,
        timeout: float | None = None,
        priority: int = PRIORITY_NORMAL,
        nowait: bool = False,
        cleanup: Iterable[str | os.PathLike[str]] = (),
    ) -> Any:
        """Run ``func(*args)`` in a worker and return its result.

        ``timeout`` is wall-clock from the moment a worker takes the job (queue
        time excluded); on expiry the worker is killed and JobTimeout raised.
        Cancelling the caller also kills a worker that is running the job.
        With ``nowait`` a full queue raises PoolBusy instead of waiting.
        ``cleanup``: files (or directories) the job may write, removed unless it succeeds.
        """
        ref = job_ref(func)
        if self.closed:
            raise PoolClosed("pool is closed")
        await self.start()
        assert self._queue is not None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        job = _Job(ref, args, timeout or self.config.default_timeout, future,
                   tuple(os.fspath(p) for p in cleanup))
        item = (priority, next(self._seq), job)
        if nowait:
            try:
                self._queue.put_nowait(item)
            except asyncio.QueueFull:
                raise PoolBusy("document worker queue is full") from None
        else:
            await self._queue.put(item)
        return await future

    async def close(self) -> None:
        """Stop all workers; queued and running jobs fail with PoolClosed. Idempotent."""
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._close())
        await asyncio.shield(self._close_task)

    async def _close(self) -> None:
        for task in self._slots:
            task.cancel()
        await asyncio.gather(*self._slots, return_exceptions=True)
        while self._queue is not None and not self._queue.empty():
            _, _, job = self._queue.get_nowait()
            _discard(job)
            _fail(job, PoolClosed("pool closed"))

    # --- internals ---------------------------------------------------------------

    async def _spawn(self) -> _Worker:
        parent_sock, child_sock = socket.socketpair()
        cfg = child.ChildConfig(
            child_sock.fileno(), self.config.memory_limit, self.config.nice, self.config.preload
        )
        env = dict(os.environ)
        # Same import path as this process (pytest's pythonpath, editable installs).
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        try:
            proc = await asyncio.create_subprocess_exec(
                self.config.python, "-m", "documents._worker_main", cfg.to_argv(),
                pass_fds=(child_sock.fileno(),), stdin=asyncio.subprocess.DEVNULL,
                env=env, start_new_session=True,
            )  # fmt: skip
        except BaseException:
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        reader, writer = await asyncio.open_connection(sock=parent_sock)
        worker = _Worker(proc, reader, writer)
        try:
            hello = await asyncio.wait_for(worker.request(None), self.config.startup_timeout)
            if hello != ("ready", worker.pid):
                raise WorkerCrashed(f"unexpected handshake {hello!r}")
        except BaseException:
            await worker.kill()
            raise
        self.stats.spawned += 1
        return worker

    async def _slot_loop(self, slot: int, worker: _Worker | None) -> None:
        assert self._queue is not None
        backoff = 0.5
        try:
            while True:
                if worker is None:
                    try:
                        worker = await self._spawn()
                        backoff = 0.5
                    except (OSError, WorkerCrashed, TimeoutError) as exc:
                        log.error("document worker failed to start: %r", exc)
                        await self._fail_next(WorkerCrashed(f"worker failed to start: {exc!r}"))
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, 10.0)
                        continue
                self._workers[slot] = worker
                if self.closed:  # its cancel was lost: Python 3.11's wait_for returns a
                    break  # result that arrived with the cancel (the new worker's hello)
                _, _, job = await self._queue.get()
                if job.future.done():
                    continue  # caller gave up while the job was queued
                worker = await self._execute_safely(worker, job)
                if worker is None:
                    self._workers.pop(slot, None)
        except asyncio.CancelledError:
            pass
        finally:
            self._workers.pop(slot, None)
            if worker is not None:
                await worker.stop(grace=2.0)

    async def _fail_next(self, exc: Exception) -> None:
        assert self._queue is not None
        if not self._queue.empty():
            _fail(self._queue.get_nowait()[2], exc)

    async def _execute_safely(self, worker: _Worker, job: _Job) -> _Worker | None:
        try:
            return await self._execute(worker, job)
        except Exception as exc:  # a bug here must not wedge the slot
            log.exception("document worker job %s failed unexpectedly", job.ref)
            await worker.kill()
            _discard(job)
            _fail(job, WorkerCrashed(repr(exc)))
            return None

    async def _execute(self, worker: _Worker, job: _Job) -> _Worker | None:
        """Run one job; return the worker if it may be reused, else None."""
        reply = asyncio.ensure_future(worker.request((job.ref, job.args)))
        try:
            done, _ = await asyncio.wait(
                {reply, job.future}, timeout=job.timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:  # pool closing
            reply.cancel()
            await worker.kill()
            _discard(job)
            _fail(job, PoolClosed("pool closed while the job was running"))
            raise
        if reply not in done:
            reply.cancel()
            await worker.kill()
            _discard(job)
            if not job.future.done():
                self.stats.timeouts += 1
                _fail(job, JobTimeout(f"{job.ref} exceeded {job.timeout:.1f}s; worker killed"))
            return None
        try:
            ok, payload, recycle, tb = reply.result()
        except Exception as exc:  # died, or sent something undecodable
            self.stats.crashes += 1
            await worker.kill()
            _discard(job)
            _fail(job, exc if isinstance(exc, WorkerCrashed) else WorkerCrashed(repr(exc)))
            return None
        if not ok:
            _discard(job)
        self._settle(job, ok, payload, tb)
        worker.jobs_done += 1
        if recycle or worker.jobs_done >= self.config.max_jobs_per_worker:
            self.stats.recycled += 1
            await worker.stop(grace=2.0)
            return None
        return worker

    def _settle(self, job: _Job, ok: bool, payload: Any, tb: str) -> None:
        if job.future.done():
            return
        if ok:
            self.stats.completed += 1
            job.future.set_result(payload)
        else:
            self.stats.failed += 1
            payload.__cause__ = RemoteTraceback(tb)
            job.future.set_exception(payload)


def _discard(job: _Job) -> None:
    """Remove what a job that did not succeed may have left (see the module docstring)."""
    for path in job.cleanup:
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove %s after a failed job: %r", path, exc)


def _fail(job: _Job, exc: BaseException) -> None:
    if not job.future.done():
        job.future.set_exception(exc)
