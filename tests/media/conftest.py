from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aioice.ice
import pytest

from media import SFU, MediaConfig
from testkit.aiortc_clients import EncodedMedia, encode_media
from testkit.encoded_cache import cached


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiortc test clients gather on 127.0.0.1 only (aioice skips loopback and
    would otherwise use the LAN). The SFU itself never calls this function."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses",
                        lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"])


@pytest.fixture(scope="session")
def media() -> EncodedMedia:
    return cached(encode_media, seconds=2.0)


def make_config(**overrides: object) -> MediaConfig:
    values: dict[str, object] = {"ice_addresses": ["127.0.0.1"], "ice_servers": [],
                                 "ice_timeout_s": 5.0, "rtcp_interval_s": 0.5}
    values.update(overrides)
    return MediaConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
async def sfu() -> AsyncIterator[SFU]:
    unit = SFU(make_config())
    yield unit
    await unit.close()
    await asyncio.sleep(0)
