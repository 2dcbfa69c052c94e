"""CloseOnce: the idempotent teardown the SFU and its routers close with."""

from __future__ import annotations

import asyncio

from media.closing import CloseOnce


async def test_concurrent_closes_run_the_teardown_once_and_all_wait_for_it() -> None:
    closing = CloseOnce()
    release = asyncio.Event()
    runs: list[str] = []

    async def teardown() -> None:
        runs.append("run")
        await release.wait()

    first = asyncio.create_task(closing.run(teardown))
    second = asyncio.create_task(closing.run(teardown))
    await asyncio.sleep(0.01)
    assert closing.started
    assert not first.done() and not second.done()  # the second waits for the first's teardown
    release.set()
    await asyncio.gather(first, second)
    await closing.run(teardown)
    assert runs == ["run"]


async def test_a_cancelled_waiter_does_not_cancel_the_teardown() -> None:
    closing = CloseOnce()
    release = asyncio.Event()
    finished: list[bool] = []

    async def teardown() -> None:
        await release.wait()
        finished.append(True)

    first = asyncio.create_task(closing.run(teardown))
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(closing.run(teardown))
    await asyncio.sleep(0.01)
    waiter.cancel()
    await asyncio.sleep(0.01)
    release.set()
    await first
    assert finished == [True]


async def test_a_failed_teardown_still_releases_the_waiters() -> None:
    closing = CloseOnce()

    async def teardown() -> None:
        raise RuntimeError("transport gone")

    first = asyncio.create_task(closing.run(teardown))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(closing.run(teardown))
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.wait_for(waiter, 1)
    assert first.exception() is not None
