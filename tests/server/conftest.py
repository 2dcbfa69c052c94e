"""Fixtures of the server tests that run real media through the app: aiortc clients on
loopback only, pre-encoded media, a harness with short media timings, media clients closed
after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aioice.ice
import pytest

from testkit.aiortc_clients import EncodedMedia, encode_media
from testkit.encoded_cache import cached
from tests.conftest import Harness, start_harness
from tests.server.media_support import MEDIA_TIMINGS, MediaClient


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiortc test clients gather on 127.0.0.1 only (aioice skips loopback and would
    otherwise use the LAN; the server binds 127.0.0.1 itself)."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses",
                        lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"])


@pytest.fixture(scope="session")
def media() -> EncodedMedia:
    return cached(encode_media, seconds=2.0)


@pytest.fixture
async def hopso_media(tmp_path: Path) -> AsyncIterator[Harness]:
    """The app on SQLite with MEDIA_TIMINGS (a lost peer is noticed in seconds)."""
    harness = await start_harness(tmp_path, None, media_timings=MEDIA_TIMINGS)
    yield harness
    await harness.close()
    await harness.server.close()


@pytest.fixture
async def clients() -> AsyncIterator[list[MediaClient]]:
    """Media clients a test makes; closed after it."""
    made: list[MediaClient] = []
    yield made
    for client in made:
        await client.close()
