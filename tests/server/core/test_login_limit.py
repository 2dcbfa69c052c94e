"""The login limiter over HTTP and its stores (docs/security.md, Login)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rooms.users import find_user
from server.core import keys
from server.core.login_limit import MemoryStore, RedisStore, Store, address_scope
from server.core.passwords import password_hasher
from tests.conftest import REDIS_PORT, Harness, need_service, start_harness

REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/0"


class Address:
    """An HTTP client whose connections come from one loopback address (127.0.0.0/8 is all
    ours on Linux), so the server sees distinct clients without a proxy."""

    def __init__(self, base: str, ip: str) -> None:
        self.base = base
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(ip, 0), limit=0),
            cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def login(self, username: str, password: str) -> tuple[int, Any, dict[str, str]]:
        async with self.session.post(self.base + "/api/login", json={
                "username": username, "password": password}) as r:
            return r.status, await r.json(), dict(r.headers)

    async def close(self) -> None:
        await self.session.close()


@pytest.fixture
async def addresses() -> AsyncIterator[Callable[[str, str], Address]]:
    made: list[Address] = []

    def make(base: str, ip: str) -> Address:
        made.append(Address(base, ip))
        return made[-1]
    yield make
    for address in made:
        await address.close()


@pytest.fixture
async def real_hash(tmp_path: Path) -> AsyncIterator[Harness]:
    """A Hopso hashing with argon2id's production profile (64 MiB, t=3), daibieu's password
    too: the cost that stalled the event loop when it ran there."""
    harness = await start_harness(tmp_path, None, fast_hash=False)
    async with harness.server.app[keys.DB].session() as s:
        user = await find_user(s, "daibieu")
        assert user is not None
        user.password_hash = password_hasher().hash(harness.logins["daibieu"].password)
        s.add(user)
    yield harness
    await harness.close()
    await harness.server.close()


async def healthz_while(base: str, work: Awaitable[Any]) -> tuple[Any, float, int]:
    """Runs `work` while polling /healthz back to back; returns its result, the slowest
    /healthz answer in seconds, and how many were made."""
    task = asyncio.ensure_future(work)
    slowest, polls = 0.0, 0
    async with aiohttp.ClientSession() as s:
        while not task.done() or polls < 3:
            started = time.perf_counter()
            async with s.get(base + "/healthz") as r:
                assert r.status == 200
            slowest, polls = max(slowest, time.perf_counter() - started), polls + 1
            await asyncio.sleep(0.01)
    return await task, slowest, polls


def retry_after(headers: dict[str, str]) -> int:
    value = int(headers["Retry-After"])
    assert 1 <= value <= 300
    return value


async def test_parallel_wrong_logins_are_refused_past_the_limit_and_healthz_stays_fast(
        real_hash: Harness, addresses: Callable[[str, str], Address]) -> None:
    h, limit = real_hash, real_hash.settings.login_attempts_per_5min
    attacker = addresses(h.base, "127.0.0.2")
    answers, slowest, polls = await healthz_while(h.base, asyncio.gather(*(
        attacker.login("daibieu", f"wrong-{n}") for n in range(40))))
    statuses = Counter(status for status, _, _ in answers)
    assert statuses == {401: limit, 429: 40 - limit}, statuses
    for status, body, headers in answers:
        if status == 429:
            assert body["error"]["code"] == "too_many_attempts"
            retry_after(headers)
    print(f"40 parallel wrong logins: slowest /healthz {slowest * 1000:.0f} ms of {polls}")
    assert slowest < 1.0  # on the event loop: 3.4 s
    # Locked for everyone: the right password too, until Retry-After has passed.
    status, body, headers = await addresses(h.base, "127.0.0.3").login(
        "daibieu", h.logins["daibieu"].password)
    assert status == 429 and retry_after(headers) > 250


async def test_parallel_right_logins_of_one_username_all_get_in(
        hopso_sqlite: Harness, addresses: Callable[[str, str], Address]) -> None:
    # Reservations once made the attempts in flight count against the limit: the 11th of 11
    # parallel right passwords was answered 429 too_many_attempts.
    h = hopso_sqlite
    n = h.settings.login_attempts_per_5min + 5
    room = addresses(h.base, "127.0.0.2")
    answers = await asyncio.gather(*(room.login("daibieu", h.logins["daibieu"].password)
                                     for _ in range(n)))
    assert Counter(status for status, _, _ in answers) == {200: n}


async def test_a_spray_over_many_usernames_is_hashed_off_the_event_loop(
        real_hash: Harness, addresses: Callable[[str, str], Address]) -> None:
    h = real_hash
    sprayer = addresses(h.base, "127.0.0.2")
    started = time.perf_counter()
    answers, slowest, polls = await healthz_while(h.base, asyncio.gather(*(
        sprayer.login(f"nobody{n}", "Password123") for n in range(20))))
    took = time.perf_counter() - started
    assert Counter(status for status, _, _ in answers) == {401: 20}
    print(f"20 parallel logins of unknown users ({took:.1f} s): slowest /healthz "
          f"{slowest * 1000:.0f} ms of {polls}")
    assert slowest < 1.0


async def test_an_attack_on_one_username_locks_nobody_else_behind_that_address(
        hopso_sqlite: Harness, addresses: Callable[[str, str], Address]) -> None:
    h = hopso_sqlite
    nat = addresses(h.base, "127.0.0.2")  # a meeting room: everyone behind one address
    for _ in range(h.settings.login_attempts_per_5min + 5):
        await nat.login("thuky", "guess")
    status, _, headers = await nat.login("thuky", h.logins["thuky"].password)
    assert status == 429 and retry_after(headers)
    for name in ("daibieu", "chutri", "daibieu2"):
        status, body, _ = await nat.login(name, h.logins[name].password)
        assert status == 200, (name, body)
    # From elsewhere, the attacked username is locked too (docs/security.md says why) ...
    status, _, _ = await addresses(h.base, "127.0.0.3").login("thuky", h.logins["thuky"].password)
    assert status == 429
    # ... but nobody else is.
    status, _, _ = await addresses(h.base, "127.0.0.3").login("daibieu2",
                                                               h.logins["daibieu2"].password)
    assert status == 200


async def test_an_address_past_its_failure_budget_is_slowed_never_locked(
        tmp_path: Path, addresses: Callable[[str, str], Address]) -> None:
    h = await start_harness(tmp_path, None, login_ip_failures_per_5min=5)
    try:
        sprayer = addresses(h.base, "127.0.0.2")
        for n in range(5):  # five usernames, one guess each: a password spray
            status, _, _ = await sprayer.login(f"user{n}", "Password123")
            assert status == 401
        started = time.perf_counter()
        status, _, _ = await sprayer.login("daibieu", h.logins["daibieu"].password)
        slowed = time.perf_counter() - started
        assert status == 200 and slowed >= 1.0
        started = time.perf_counter()
        status, _, _ = await addresses(h.base, "127.0.0.3").login(
            "thuky", h.logins["thuky"].password)
        assert status == 200 and time.perf_counter() - started < 1.0
    finally:
        await h.close()
        await h.server.close()


async def test_a_success_clears_the_usernames_failures(hopso_sqlite: Harness) -> None:
    h = hopso_sqlite
    client = h.anonymous()
    for _ in range(3):
        for _ in range(h.settings.login_attempts_per_5min - 1):
            status, _ = await client.call("POST", "/api/login", {"username": "daibieu",
                                                                 "password": "x"})
            assert status == 401
        status, _ = await client.call("POST", "/api/login", {
            "username": "daibieu", "password": h.logins["daibieu"].password})
        assert status == 200


async def test_the_login_form_answers_429_with_retry_after(hopso_sqlite: Harness) -> None:
    h = hopso_sqlite
    client = h.anonymous()
    async with client.session.get(h.base + "/login") as r:
        token = (await r.text()).split('name="csrf_token" value="')[1].split('"')[0]
    for _n in range(h.settings.login_attempts_per_5min + 1):
        async with client.session.post(h.base + "/login", data={
                "username": "daibieu", "password": "x", "csrf_token": token,
                "next": "/meetings/1"}, allow_redirects=False) as r:
            page, status, headers = await r.text(), r.status, dict(r.headers)
    assert status == 429 and retry_after(headers)
    assert 'role="alert"' in page and 'name="next" value="/meetings/1"' in page


async def test_logins_beyond_the_hashing_queue_get_503_busy(
        hopso_sqlite: Harness) -> None:
    h = hopso_sqlite
    passwords = h.server.app[keys.PASSWORDS]
    gate = threading.Event()
    # Hold every thread and queue slot of the app's hashing pool.
    held = [asyncio.ensure_future(passwords._run(gate.wait))
            for _ in range(passwords.threads + passwords.max_waiting)]
    await asyncio.sleep(0.05)
    try:
        status, body = await h.anonymous().call("POST", "/api/login", {
            "username": "daibieu", "password": h.logins["daibieu"].password})
        assert status == 503 and body["error"]["code"] == "busy"
    finally:
        gate.set()
        await asyncio.gather(*held)
    # Refused for load, not counted as a failure: the limit is still whole.
    client = h.anonymous()
    for _ in range(h.settings.login_attempts_per_5min):
        assert (await client.call("POST", "/api/login", {"username": "daibieu",
                                                         "password": "x"}))[0] == 401


def test_address_scope_groups_ipv6_by_64_and_unwraps_mapped_ipv4() -> None:
    assert address_scope("192.0.2.7") == "192.0.2.7"
    assert address_scope("2001:db8:1:2:aaaa::1") == address_scope("2001:db8:1:2:bbbb::9")
    assert address_scope("2001:db8:1:2::1") != address_scope("2001:db8:1:3::1")
    assert address_scope("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_scope(None) == "unknown" and address_scope("garbage") == "garbage"


# -- the stores: one contract, in-process and Redis -----------------------------------------

@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    made: Store
    if request.param == "memory":
        made = MemoryStore()
    else:
        need_service("Redis", REDIS_PORT)
        made = RedisStore(REDIS_URL, f"hopso-test:{uuid.uuid4().hex}:")
    yield made
    await made.close()


async def test_store_reserves_up_to_the_limit_atomically(store: Store) -> None:
    results = await asyncio.gather(*(store.reserve("k", 10, 5.0) for _ in range(40)))
    assert sum(1 for wait in results if wait == 0) == 10
    assert all(0 < wait <= 5.0 for wait in results if wait)
    await store.release("k")
    assert await store.reserve("k", 10, 5.0) == 0 and await store.reserve("k", 10, 5.0) > 0
    await store.clear("k")
    assert await store.count("k") == 0 and await store.reserve("k", 10, 5.0) == 0


async def test_store_counters_expire_and_a_lock_restarts_its_window(store: Store) -> None:
    assert await store.reserve("u", 2, 1.0) == 0
    await asyncio.sleep(0.6)
    assert await store.reserve("u", 2, 1.0) == 0  # the limit: locked for 1 s from now
    await asyncio.sleep(0.6)
    assert await store.reserve("u", 2, 1.0) > 0  # the first window would have ended
    await asyncio.sleep(0.6)
    assert await store.reserve("u", 2, 1.0) == 0
    assert [await store.add("ip", 0.3) for _ in range(3)] == [1, 2, 3]
    await asyncio.sleep(0.4)
    assert await store.count("ip") == 0 and await store.add("ip", 0.3) == 1
    await store.release("nothing")  # never below zero
    assert await store.count("nothing") == 0


async def test_redis_store_falls_back_to_process_counters_when_redis_is_down(
        caplog: pytest.LogCaptureFixture) -> None:
    store = RedisStore("redis://127.0.0.1:1/0")
    with caplog.at_level(logging.WARNING):
        assert [await store.reserve("k", 2, 5.0) for _ in range(3)][-1] > 0
        assert await store.add("ip", 5.0) == 1
    assert sum("Redis unavailable" in r.message for r in caplog.records) == 1
    await store.close()


@pytest.mark.redis
async def test_the_limit_is_shared_by_processes_through_redis(
        tmp_path: Path, addresses: Callable[[str, str], Address]) -> None:
    need_service("Redis", REDIS_PORT)
    shared = {"redis_url": REDIS_URL, "login_redis_prefix": f"hopso-test:{uuid.uuid4().hex}:"}
    first = await start_harness(tmp_path / "a", None, **shared)
    second = await start_harness(tmp_path / "b", None, **shared)
    try:
        limit = first.settings.login_attempts_per_5min
        one, two = addresses(first.base, "127.0.0.2"), addresses(second.base, "127.0.0.2")
        # 40 parallel wrong attempts split over both processes: still only `limit` checked.
        answers = await asyncio.gather(*((one if n % 2 else two).login("thuky", f"x{n}")
                                         for n in range(40)))
        assert Counter(status for status, _, _ in answers) == {401: limit, 429: 40 - limit}
        status, _, headers = await two.login("thuky", second.logins["thuky"].password)
        assert status == 429 and retry_after(headers)
        # Another username on either process is untouched.
        status, _, _ = await one.login("daibieu", first.logins["daibieu"].password)
        assert status == 200
    finally:
        for h in (first, second):
            await h.close()
            await h.server.close()
