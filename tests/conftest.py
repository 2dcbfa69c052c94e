"""Shared fixtures: a real Hopso app on a loopback port, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import shutil
import socket
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# run.py processes the tests start read it (Settings.fast_hash); in-process apps get it below.
os.environ.setdefault("HOPSO_FAST_HASH", "1")
from aiohttp.test_utils import TestServer

from rooms.db import Database
from rooms.demo import DemoLogin
from server.app import create_app
from server.core import keys
from server.core.bootstrap import seed_demo
from server.core.migrate import upgrade
from server.core.passwords import password_hasher
from server.core.settings import Settings
from testkit.http import Client

PG_HOST, PG_PORT, REDIS_PORT = "127.0.0.1", 5432, 6379
IN_CI = os.environ.get("CI") == "true"
ROOT = Path(__file__).resolve().parents[1]

# scripts/test.sh runs the suite on two workers (pytest-xdist, --dist loadgroup). These tests
# compare a latency or a rate with a bound or with a baseline taken in the same test, which
# another worker's load would blur: marked `serial`, they run alone afterwards.
SERIAL = (
    "tests/server/core/test_socket_flood.py",
    "tests/server/core/test_login_limit.py::test_parallel_wrong_logins_are_refused_past_the_"
    "limit_and_healthz_stays_fast",
    "tests/server/core/test_login_limit.py::test_a_spray_over_many_usernames_is_hashed_off_the_"
    "event_loop",
    "tests/server/core/test_passwords.py::test_hashing_runs_beside_the_event_loop",
    "tests/server/core/test_passwords.py::test_missing_and_unusable_hashes_take_as_long_as_a_"
    "real_one",
    "tests/media/test_peer.py::test_late_joiner_decodes_within_one_second",
    "tests/e2e/test_video_browser.py::test_two_browsers_see_each_other_and_the_chair_mutes_one",
    "tests/e2e/test_meeting_screen_browser.py",
    # measured rates, delays and audio gaps in a namespace of their own (testkit/netem.py)
    "tests/testkit/test_netem.py",
    "tests/testkit/test_weak_links.py",
    "tests/e2e/test_weak_link_browser.py",  # Chromium subscribers on shaped links, freezes
    # a Chromium publisher's uplink (frames an aiortc subscriber decodes in 10 s), and the
    # probes' recovery within 10 s: both missed beside the other worker's load in CI
    "tests/e2e/test_uplink_browser.py",
    "tests/media/test_subscriber_twcc_e2e.py",
    # a page turn's time to every node's tablets, each journal's commits stalled on purpose
    "tests/server/cascade/test_hops_live.py",
)
# These run whole server processes with time bounds of seconds, or share Redis's one
# socket.io channel: one worker takes them all, one after another (tests/scheduling.py).
ONE_AT_A_TIME = (
    "tests/server/test_sigkill_durability.py",
    "tests/server/test_scale_out.py",
    "tests/server/test_upgrade.py",
    "tests/server/recording/test_timeline_sigkill.py",
    "tests/server/test_scale_out_presenter.py",
    "tests/server/core/test_login_limit.py::test_the_limit_is_shared_by_processes_through_redis",
    # Redis pub/sub channels are shared by every test that uses Redis: one at a time, or a
    # test's servers hear another's events (a meeting closed elsewhere arrived as closed).
    "tests/server/core/test_bus_bridge.py",
    "tests/server/core/test_health.py::test_redis_is_checked_when_configured",
    "tests/server/cascade/test_servers.py",
    "tests/server/cascade/test_rehearsal.py",
    "tests/server/cascade/test_documents_servers.py",
    "tests/media/test_cascade_processes.py",
    "tests/media/test_browser_simulcast.py",  # Chromium in a namespace (issue 15)
    "tests/deploy/test_proxy.py",
    "tests/server/conference/test_turn_credentials.py::test_coturn_accepts_the_credential_"
    "and_refuses_it_expired",
)
# The browser tests (a server and Chromium each): one after another on one worker, beside the
# group above on the other (together they would take longer than everything else).
BROWSERS = ("tests/e2e/",)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for listed in SERIAL + ONE_AT_A_TIME + BROWSERS:  # a moved or renamed file keeps its mark
        assert (ROOT / listed.split("::")[0]).exists(), f"tests/conftest.py lists {listed}"
    for item in items:
        if item.nodeid.startswith(SERIAL):
            item.add_marker(pytest.mark.serial)


def xdist_group(nodeid: str) -> str | None:
    if nodeid.startswith(ONE_AT_A_TIME):
        return "one-at-a-time"
    return "browsers" if nodeid.startswith(BROWSERS) else None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """scripts/test.sh's `--dist loadgroup`, with ONE_AT_A_TIME and BROWSERS as its groups
    (xdist's markers group nothing on pytest 9: tests/scheduling.py)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from tests.scheduling import GroupScheduling

    return GroupScheduling(config, log, xdist_group)


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """A failure that pytest-rerunfailures runs again (scripts/test.sh's serial pass) keeps
    its reason in the output: the rerun summary names the test only."""
    if report.outcome == "rerun" and report.longrepr is not None:
        print(f"\nRERUN REASON {report.nodeid} ({report.when}):\n"
              f"{report.longreprtext[-3000:]}", file=sys.stderr, flush=True)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def need_service(name: str, port: int) -> None:
    """Scale-out tests use the real service; without it they skip (locally) or fail (CI)."""
    if port_open(port):
        return
    message = f"{name} is not running on 127.0.0.1:{port}"
    if IN_CI:
        pytest.fail(f"{message}, but CI must test the scale-out path")
    pytest.skip(f"{message}: scale-out test skipped")


def postgres_address(name: str) -> str:
    return f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}"


async def postgres_admin() -> Any:
    import asyncpg

    return await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="postgres", database="test")


async def drop_databases(names: list[str], at_once: int = 8) -> None:
    """Several at a time: each DROP DATABASE waits for a checkpoint, which concurrent ones
    share (one by one, a worker's ~150 took 20 s idle and 90 s on a loaded box)."""
    slots = asyncio.Semaphore(at_once)

    async def drop(name: str) -> None:
        async with slots:
            admin = await postgres_admin()
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()
    await asyncio.gather(*(drop(name) for name in names))


@pytest.fixture(scope="session")
def postgres_to_drop() -> Iterator[list[str]]:
    """The databases the tests made, dropped together when the session ends: each DROP
    DATABASE waits for a checkpoint, which cost up to a second a test when run one by one
    (and next to nothing when they follow each other)."""
    names: list[str] = []
    yield names
    if names:
        with ThreadPoolExecutor(1) as apart:  # its own event loop
            apart.submit(asyncio.run, drop_databases(names)).result()


@pytest.fixture
async def postgres_url(postgres_to_drop: list[str]) -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for one test; whatever is still connected to it
    afterwards is disconnected, and it is dropped when the session ends."""
    need_service("PostgreSQL", PG_PORT)
    async with _test_database(postgres_to_drop) as url:
        yield url


@asynccontextmanager
async def _test_database(postgres_to_drop: list[str], template: str | None = None
                         ) -> AsyncIterator[str]:
    """A new database (a copy of `template`, if given) for one test: dropped when the session
    ends, and whatever is still connected to it is cut off when the test ends."""
    name = f"hopso_t_{uuid.uuid4().hex[:12]}"
    admin = await postgres_admin()
    try:
        copy = f' TEMPLATE "{template}"' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}"{copy}')
        postgres_to_drop.append(name)
        yield postgres_address(name)
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = $1", name)
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def postgres_migrated(postgres_to_drop: list[str]) -> str:
    """The name of an empty database at the latest revision, made once a session, which
    `migrated_postgres_url` copies (migrating from nothing cost 0.5-2 s a test)."""
    need_service("PostgreSQL", PG_PORT)
    name = f"hopso_m_{uuid.uuid4().hex[:12]}"

    async def make() -> None:
        admin = await postgres_admin()
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        await migrate(Settings(data_dir=Path("."),
                               database_url=postgres_address(name)).sqlalchemy_url)
    postgres_to_drop.append(name)
    with ThreadPoolExecutor(1) as apart:  # its own event loop, whatever the caller's is
        apart.submit(asyncio.run, make()).result()
    return name


@pytest.fixture
async def migrated_postgres_url(postgres_migrated: str, postgres_to_drop: list[str]
                                ) -> AsyncIterator[str]:
    """A copy of `postgres_migrated` for one test, like `postgres_url` otherwise."""
    async with _test_database(postgres_to_drop, template=postgres_migrated) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """An empty database at the latest revision: None (SQLite in the data directory, which
    start_harness fills with a migrated copy) or a PostgreSQL one."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("migrated_postgres_url"))


@pytest.fixture(scope="session")
def postgres_seeded(postgres_migrated: str, postgres_to_drop: list[str]) -> str:
    """A copy of `postgres_migrated` with the Quảng Bình demo in it, made once a session,
    which `harness_database_url` copies: seeding from nothing cost ~1 s a harness start
    (~70 statements, each a round trip to the server), giving fresh passwords ~0.03 s."""
    name = f"hopso_s_{uuid.uuid4().hex[:12]}"

    async def make() -> None:
        admin = await postgres_admin()
        try:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_migrated}"')
        finally:
            await admin.close()
        db = Database(Settings(data_dir=Path("."),
                               database_url=postgres_address(name)).sqlalchemy_url)
        try:
            await seed_demo(db, password_hasher(fast=True))
        finally:
            await db.close()  # a template takes no copy while a connection is open
    postgres_to_drop.append(name)
    with ThreadPoolExecutor(1) as apart:  # its own event loop, whatever the caller's is
        apart.submit(asyncio.run, make()).result()
    return name


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def harness_database_url(request: pytest.FixtureRequest, postgres_to_drop: list[str]
                               ) -> AsyncIterator[str | None]:
    """`database_url` for start_harness: None (a copy of `seeded_sqlite`) or a copy of
    `postgres_seeded`, the demo in both already (start_harness's seed_demo then only gives
    its people fresh passwords). run.py and the migrations take `database_url`'s empty one."""
    if request.param == "sqlite":
        yield None
        return
    template = request.getfixturevalue("postgres_seeded")
    async with _test_database(postgres_to_drop, template=template) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest) -> str | None:
    """The same with nothing in it, not even the schema (for tests of the migrations)."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("postgres_url"))


@dataclass
class Harness:
    server: TestServer
    settings: Settings
    logins: dict[str, DemoLogin]
    clients: list[Client] = field(default_factory=list)

    @property
    def base(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    def anonymous(self) -> Client:
        client = Client.new(self.base)
        self.clients.append(client)
        return client

    async def login(self, username: str) -> Client:
        client = self.anonymous()
        status, body = await client.call("POST", "/api/login", {
            "username": username, "password": self.logins[username].password})
        assert status == 200, body
        client.csrf, client.user = body["csrf_token"], body["user"]
        return client

    async def close(self) -> None:
        await disconnect_socket_clients(self.base)
        for client in self.clients:
            await client.close()


async def disconnect_socket_clients(base: str) -> None:
    """Disconnects the socket.io clients a test left connected to `base`: an aiohttp server
    closing with one still connected waits for its ping timeout (45 s) or a close (5 s)."""
    import engineio.base_client

    prefix = base.replace("http", "ws", 1) + "/"
    for client in list(engineio.base_client.connected_clients):
        if client.base_url.startswith(prefix):
            await client.disconnect()


def sqlite_file(settings: Settings) -> Path:
    return Path(settings.sqlalchemy_url.split(":///", 1)[1])


async def migrate(url: str) -> None:
    db = Database(url)
    try:
        await upgrade(db)
    finally:
        await db.close()


@functools.cache
def migrated_sqlite() -> Path:
    """An empty SQLite database at the latest revision, made once a session: a harness starts
    on a copy instead of migrating from nothing (0.13 s a start). Migrating from nothing is
    still tested: here, in tests/server/core/test_migrate.py and by every run.py test."""
    directory = Path(tempfile.mkdtemp(prefix="hopso-migrated-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    settings = Settings(data_dir=directory)
    with ThreadPoolExecutor(1) as apart:  # its own event loop, whatever the caller's is
        apart.submit(asyncio.run, migrate(settings.sqlalchemy_url)).result()
    return sqlite_file(settings)


@functools.cache
def seeded_sqlite() -> Path:
    """A copy of `migrated_sqlite` with the Quảng Bình demo in it, made once a session: a
    harness starts on a copy of it, and seed_demo then only gives the demo's people fresh
    passwords (creating the demo cost ~0.1 s of CPU a start, in ~700 starts). Creating it is
    still tested: here, and by every run.py --demo test (a fresh data directory)."""
    directory = Path(tempfile.mkdtemp(prefix="hopso-seeded-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    settings = Settings(data_dir=directory)
    shutil.copyfile(migrated_sqlite(), sqlite_file(settings))

    async def seed() -> None:
        db = Database(settings.sqlalchemy_url)
        try:
            await seed_demo(db, password_hasher(fast=True))
        finally:
            await db.close()  # the last connection closed: the WAL is in the file itself
    with ThreadPoolExecutor(1) as apart:  # its own event loop, whatever the caller's is
        apart.submit(asyncio.run, seed()).result()
    return sqlite_file(settings)


async def start_harness(tmp_path: Path, database_url: str | None, **overrides: Any
                        ) -> Harness:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url,
                        **{"fast_hash": True, **overrides})
    if database_url is None and not sqlite_file(settings).exists():  # a restart keeps its own
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(seeded_sqlite(), sqlite_file(settings))
    app = create_app(settings)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    # Seeded cheaply whatever the app's profile (argon2 verifies with the hash's own).
    logins = {login.username: login
              for login in await seed_demo(app[keys.DB], password_hasher(fast=True))}
    return Harness(server, settings, logins)


@pytest.fixture
async def hopso(tmp_path: Path, harness_database_url: str | None) -> AsyncIterator[Harness]:
    """A running Hopso on SQLite and PostgreSQL, seeded with the Quảng Bình demo."""
    harness = await start_harness(tmp_path, harness_database_url)
    yield harness
    await harness.close()
    await harness.server.close()


@pytest.fixture
async def hopso_sqlite(tmp_path: Path) -> AsyncIterator[Harness]:
    """The same on SQLite only, for tests about the HTTP/socket layer rather than storage."""
    harness = await start_harness(tmp_path, None)
    yield harness
    await harness.close()
    await harness.server.close()
