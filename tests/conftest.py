"""Shared fixtures: a real Hopso app on a loopback port, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

# run.py processes the tests start read it (Settings.fast_hash); in-process apps get it below.
os.environ.setdefault("HOPSO_FAST_HASH", "1")
from aiohttp.test_utils import TestServer

from rooms.demo import DemoLogin
from server.app import create_app
from server.core import keys
from server.core.bootstrap import seed_demo
from server.core.passwords import password_hasher
from server.core.settings import Settings

PG_HOST, PG_PORT, REDIS_PORT = "127.0.0.1", 5432, 6379
IN_CI = os.environ.get("CI") == "true"


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


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    need_service("PostgreSQL", PG_PORT)
    import asyncpg

    name = f"hopso_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="postgres", database="test")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}"
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("postgres_url"))


@dataclass
class Client:
    """A logged-in browser-like HTTP client (cookie jar + CSRF header)."""

    session: aiohttp.ClientSession
    base: str
    csrf: str = ""
    user: dict[str, Any] = field(default_factory=dict)

    async def call(self, method: str, path: str, json: Any = None, **kw: Any
                   ) -> tuple[int, Any]:
        headers = {"X-CSRF-Token": self.csrf, "Accept": "application/json", **kw.pop("headers", {})}
        async with self.session.request(method, self.base + path, json=json, headers=headers,
                                        allow_redirects=False, **kw) as r:
            body = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, body

    def cookie_header(self) -> str:
        return "; ".join(f"{c.key}={c.value}" for c in self.session.cookie_jar)


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
        jar = aiohttp.CookieJar(unsafe=True)
        client = Client(aiohttp.ClientSession(cookie_jar=jar), self.base)
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
            await client.session.close()


async def disconnect_socket_clients(base: str) -> None:
    """Disconnects the socket.io clients a test left connected to `base`: an aiohttp server
    closing with one still connected waits for its ping timeout (45 s) or a close (5 s)."""
    import engineio.base_client

    prefix = base.replace("http", "ws", 1) + "/"
    for client in list(engineio.base_client.connected_clients):
        if client.base_url.startswith(prefix):
            await client.disconnect()


async def start_harness(tmp_path: Path, database_url: str | None, **overrides: Any
                        ) -> Harness:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url,
                        **{"fast_hash": True, **overrides})
    app = create_app(settings)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    # Seeded cheaply whatever the app's profile (argon2 verifies with the hash's own).
    logins = {login.username: login
              for login in await seed_demo(app[keys.DB], password_hasher(fast=True))}
    return Harness(server, settings, logins)


@pytest.fixture
async def hopso(tmp_path: Path, database_url: str | None) -> AsyncIterator[Harness]:
    """A running Hopso on SQLite and PostgreSQL, seeded with the Quảng Bình demo."""
    harness = await start_harness(tmp_path, database_url)
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
