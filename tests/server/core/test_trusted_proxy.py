"""HOPSO_TRUSTED_PROXIES: X-Forwarded-For believed from trusted proxies only, so that behind
nginx the login limiter counts each client's address, and a spoofed header changes nothing."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from server.core.settings import ConfigError, parse_settings
from server.core.trusted_proxy import client_address, parse_networks
from tests.conftest import Harness, start_harness

PROXY, STRANGER = "127.0.0.2", "127.0.0.3"  # loopback addresses are all ours on Linux
TRUSTED = parse_networks(f"{PROXY}, ::1, 10.0.0.0/8")


@pytest.mark.parametrize("peer, header, expected", [
    (PROXY, ["198.51.100.7"], "198.51.100.7"),
    (PROXY, ["203.0.113.9, 198.51.100.7"], "198.51.100.7"),  # the left part is the client's say
    (PROXY, ["203.0.113.9", "198.51.100.7"], "198.51.100.7"),  # two header lines
    (PROXY, ["198.51.100.7, 10.1.2.3"], "198.51.100.7"),  # through a second trusted proxy
    (PROXY, ["10.1.2.3"], "10.1.2.3"),  # only proxies: the farthest one vouched for
    (PROXY, [], PROXY),
    (PROXY, ["not-an-ip"], PROXY),
    (PROXY, ["198.51.100.7, garbage"], PROXY),  # nothing past a malformed hop is believed
    (PROXY, ["198.51.100.7:4711"], "198.51.100.7"),
    (PROXY, ["[2001:db8::7]:4711"], "2001:db8::7"),
    ("::ffff:127.0.0.2", ["198.51.100.7"], "198.51.100.7"),
    (STRANGER, ["198.51.100.7"], STRANGER),  # an untrusted peer's header is ignored
    (STRANGER, [], STRANGER),
])
def test_client_address(peer: str, header: list[str], expected: str) -> None:
    assert client_address(peer, header, TRUSTED) == expected


def test_no_trusted_proxy_believes_no_header() -> None:
    assert client_address(PROXY, ["198.51.100.7"], ()) == PROXY


def test_settings() -> None:
    settings = parse_settings([], {"HOPSO_TRUSTED_PROXIES": "127.0.0.1, ::1,10.0.0.0/8"})
    assert settings.trusted_proxies == (ipaddress.ip_network("127.0.0.1/32"),
                                        ipaddress.ip_network("::1/128"),
                                        ipaddress.ip_network("10.0.0.0/8"))
    assert parse_settings([], {}).trusted_proxies == ()
    with pytest.raises(ConfigError, match="--trusted-proxies: not an address or network"):
        parse_settings(["--trusted-proxies", "127.0.0.1,nginx"], {})


@pytest.fixture
async def behind_proxy(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await start_harness(tmp_path, None, login_ip_failures_per_5min=3,
                            trusted_proxies=parse_networks(PROXY))
    yield h
    await h.close()
    await h.server.close()


async def login(h: Harness, source: str, username: str, password: str,
                forwarded_for: str | None = None) -> tuple[int, float]:
    """POST /api/login from the loopback address `source`; (status, seconds taken)."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as s:
        started = time.perf_counter()
        async with s.post(h.base + "/api/login", headers=headers,
                          json={"username": username, "password": password}) as r:
            await r.read()
            return r.status, time.perf_counter() - started


async def test_behind_the_proxy_each_client_has_its_own_budget(behind_proxy: Harness) -> None:
    h = behind_proxy
    for n in range(3):  # a password spray from one client through the proxy
        status, _ = await login(h, PROXY, f"user{n}", "Password123", "198.51.100.7")
        assert status == 401
    status, took = await login(h, PROXY, "daibieu", h.logins["daibieu"].password,
                               "198.51.100.8")
    assert status == 200 and took < 1.0  # another client through the same proxy: not slowed
    status, took = await login(h, PROXY, "thuky", h.logins["thuky"].password, "198.51.100.7")
    assert status == 200 and took >= 1.0  # the sprayer is


async def test_a_spoofed_header_from_an_untrusted_peer_changes_nothing(
        behind_proxy: Harness) -> None:
    h = behind_proxy
    for n in range(3):  # a new made-up address each time: still one budget, the peer's
        status, _ = await login(h, STRANGER, f"user{n}", "Password123", f"198.51.100.{n + 20}")
        assert status == 401
    status, took = await login(h, STRANGER, "daibieu", h.logins["daibieu"].password,
                               "198.51.100.99")
    assert status == 200 and took >= 1.0
    # Nor could the stranger spend a victim's budget by naming it.
    status, took = await login(h, PROXY, "thuky", h.logins["thuky"].password, "198.51.100.20")
    assert status == 200 and took < 1.0
