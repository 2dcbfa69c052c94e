"""testkit/province.py's waits: bounded even when what they await never returns."""

from __future__ import annotations

import asyncio
import time

import pytest

from testkit.province import until, within


async def test_until_fails_naming_what_it_awaited_when_a_probe_hangs() -> None:
    async def hangs() -> bool:
        await asyncio.Event().wait()  # an HTTP call to a handler that never answers
        return True

    started = time.monotonic()
    with pytest.raises(AssertionError, match="the document at the ward"):
        await until(hangs, 0.3, "the document at the ward")
    assert time.monotonic() - started < 5


async def test_until_returns_what_the_probe_found() -> None:
    calls: list[int] = []

    async def third() -> int | None:
        calls.append(1)
        return len(calls) if len(calls) == 3 else None

    assert await until(third, 5, "the third call", every=0.01) == 3


async def test_within_names_the_block_that_overran_and_leaves_other_timeouts_alone() -> None:
    with pytest.raises(AssertionError, match=r"page 1 served at the ward: not within 0\.1 s"):
        async with within(0.1, "page 1 served at the ward"):
            await asyncio.Event().wait()
    with pytest.raises(TimeoutError):  # raised inside, not the block's bound
        async with within(5, "quick"):
            raise TimeoutError
