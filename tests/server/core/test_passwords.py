"""Password hashing: the profile is a visible setting, and the work runs off the event loop."""

import asyncio
import os
import time
from pathlib import Path

import pytest
from argon2 import PasswordHasher, profiles

from server.app import create_app
from server.core import keys
from server.core.passwords import UNUSABLE_HASH, Passwords, PasswordsBusy, password_hasher
from server.core.settings import Settings, parse_settings


def test_the_environment_alone_never_weakens_the_production_profile(tmp_path: Path) -> None:
    assert os.environ.get("HOPSO_FAST_HASH") == "1"  # tests/conftest.py sets it for run.py
    app = create_app(Settings(data_dir=tmp_path))
    try:
        hasher = app[keys.PASSWORDS].hasher
        assert (hasher.memory_cost, hasher.time_cost, hasher.parallelism) == (
            profiles.RFC_9106_LOW_MEMORY.memory_cost, profiles.RFC_9106_LOW_MEMORY.time_cost,
            profiles.RFC_9106_LOW_MEMORY.parallelism)
    finally:
        app[keys.PASSWORDS].close()


def test_fast_hash_is_a_setting_read_with_the_others() -> None:
    assert parse_settings([], {}).fast_hash is False
    assert parse_settings([], {"HOPSO_FAST_HASH": "1"}).fast_hash is True
    assert parse_settings(["--fast-hash"], {}).fast_hash is True
    assert password_hasher(fast=True).memory_cost == profiles.CHEAPEST.memory_cost


async def test_hashing_runs_beside_the_event_loop() -> None:
    passwords = Passwords(password_hasher())
    stored = password_hasher(fast=True).hash("right-password")
    expensive = passwords.hasher.hash("right-password")
    started = time.perf_counter()
    passwords.hasher.verify(expensive, "right-password")
    one = time.perf_counter() - started  # what one check blocks a loop it runs on
    gaps: list[float] = []

    async def tick() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
    ticker = asyncio.ensure_future(tick())
    try:
        results = await asyncio.gather(*(passwords.verify(expensive, "wrong") for _ in range(3)),
                                       passwords.verify(expensive, "right-password"),
                                       passwords.verify(stored, "right-password"),
                                       passwords.hash("another-password"))
    finally:
        ticker.cancel()
        passwords.close()
    assert results[:5] == [False] * 3 + [True, True] and results[5].startswith("$argon2id$")
    # On the loop, six argon2 runs would stop it for `one` each time; beside it, it ticks on.
    assert max(gaps) < one / 2, (max(gaps), one)


async def test_beyond_its_bound_the_queue_refuses_at_once() -> None:
    passwords = Passwords(PasswordHasher(time_cost=2, memory_cost=16384, parallelism=1),
                          threads=1, max_waiting=2)
    expensive = passwords.hasher.hash("x")
    try:
        results = await asyncio.gather(*(passwords.verify(expensive, "y") for _ in range(6)),
                                       return_exceptions=True)
    finally:
        passwords.close()
    assert results[:3] == [False] * 3
    assert all(isinstance(r, PasswordsBusy) and r.status == 503 for r in results[3:])
    assert passwords.queued == 0


async def test_missing_and_unusable_hashes_take_as_long_as_a_real_one() -> None:
    passwords = Passwords(PasswordHasher(time_cost=2, memory_cost=16384, parallelism=1))
    real = passwords.hasher.hash("right-password")

    async def timed(stored: str | None) -> float:
        started = time.perf_counter()
        assert await passwords.verify(stored, "right-password") is (stored == real)
        return time.perf_counter() - started
    try:
        await timed(real)  # the pool's thread starts at the first call: not part of a check
        # The fastest of five: other processes on the machine only ever add time.
        times = {name: min([await timed(stored) for _ in range(5)])
                 for name, stored in (("real", real), ("missing", None),
                                      ("unusable", UNUSABLE_HASH), ("garbage", "$argon2id$x"))}
    finally:
        passwords.close()
    assert all(t > times["real"] / 3 for t in times.values()), times


@pytest.mark.parametrize("stored", [None, UNUSABLE_HASH, "", "$argon2id$v=19$m=1,t=1,p=1$x$y",
                                    "plain-text"])
async def test_nothing_but_the_right_hash_verifies(stored: str | None) -> None:
    passwords = Passwords(PasswordHasher.from_parameters(profiles.CHEAPEST))
    try:
        assert await passwords.verify(stored, "hopso-dummy-password") is False
        assert await passwords.verify(stored, "") is False
    finally:
        passwords.close()
