from __future__ import annotations

import pytest

from media import ConfigError, IceServer, MediaConfig


def test_lists_become_tuples_and_client_ice_servers() -> None:
    config = MediaConfig(ice_addresses=["127.0.0.1"], ice_servers=[
        IceServer(("turn:turn.example.org:3478",), "u", "p")])
    assert config.ice_addresses == ("127.0.0.1",)
    assert config.client_ice_servers() == [
        {"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "p"}]


@pytest.mark.parametrize("kwargs", [
    {"ice_addresses": []},
    {"ice_addresses": ["localhost"]},
    {"ice_addresses": ["127.0.0.1"], "announced_address": "example.org"},
    {"ice_addresses": ["127.0.0.1"], "ice_timeout_s": 0},
    {"ice_addresses": ["127.0.0.1"], "max_bitrate_bps": 10},
    {"ice_addresses": ["127.0.0.1"], "video_codecs": ("VP9",)},
    {"ice_addresses": ["127.0.0.1"], "allocation_startup_grace_s": -1.0},
])
def test_invalid(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        MediaConfig(**kwargs)
