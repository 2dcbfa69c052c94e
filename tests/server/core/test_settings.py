from pathlib import Path

import pytest

from media import MediaConfig
from server.core.settings import ConfigError, MediaTimings, Settings, parse_settings


def test_defaults_are_the_embedded_sqlite_setup() -> None:
    settings = parse_settings([], env={})
    assert settings.port == 8080 and settings.redis_url is None and not settings.tls
    assert settings.sqlalchemy_url.startswith("sqlite+aiosqlite:///")
    assert settings.sqlalchemy_url.endswith("hopso-data/hopso.sqlite3")
    assert settings.ice_addresses == ("127.0.0.1",)


def test_environment_is_read_and_flags_win() -> None:
    env = {"HOPSO_PORT": "9000", "HOPSO_DATABASE_URL": "postgresql://u@127.0.0.1/db",
           "HOPSO_DEMO": "1", "HOPSO_ICE_ADDRESSES": "127.0.0.1, 127.0.0.2"}
    settings = parse_settings(["--port", "9100"], env=env)
    assert settings.port == 9100 and settings.demo
    assert settings.sqlalchemy_url == "postgresql+asyncpg://u@127.0.0.1/db"
    assert settings.ice_addresses == ("127.0.0.1", "127.0.0.2")


@pytest.mark.parametrize("argv, fragment", [
    (["--session-ttl", "5"], "--session-ttl must be between"),
    (["--ice-servers", "http://x"], "--ice-servers entries must start with stun:"),
    (["--timezone", "Mars/Olympus"], "--timezone is not a known time zone"),
    (["--announced-address", "example.org"], "--announced-address must be an IP address"),
])
def test_bad_values_name_the_option(argv: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_settings(argv, env={})


def test_office_without_sandbox_is_an_explicit_choice() -> None:
    assert not parse_settings([], env={}).office_without_sandbox
    assert parse_settings(["--office-without-sandbox"], env={}).office_without_sandbox
    assert parse_settings([], env={"HOPSO_OFFICE_WITHOUT_SANDBOX": "1"}).office_without_sandbox


def test_data_dir_must_be_a_directory(tmp_path: Path) -> None:
    file = tmp_path / "f"
    file.write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        parse_settings(["--data-dir", str(file)], env={})


def test_the_ballot_key_file_defaults_to_the_data_dir() -> None:
    assert parse_settings(["--data-dir", "d"], env={}).ballot_key_path == Path("d/ballot.key")
    env = {"HOPSO_BALLOT_KEY_FILE": "/etc/hopso/ballot.key"}
    assert parse_settings([], env=env).ballot_key_path == Path("/etc/hopso/ballot.key")


def test_the_environment_is_read_when_settings_are_parsed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOPSO_PORT", "9123")
    assert parse_settings([]).port == 9123
    monkeypatch.setenv("HOPSO_PORT", "9124")
    assert parse_settings([]).port == 9124


def test_media_timings_default_to_the_sfus_own() -> None:
    sfu = MediaConfig(ice_addresses=("127.0.0.1",))
    timings = Settings().media_timings
    assert (timings.ice_timeout_s, timings.rtcp_interval_s) == (sfu.ice_timeout_s,
                                                                sfu.rtcp_interval_s)


def test_a_media_timing_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="stats_interval_s must be positive"):
        MediaTimings(stats_interval_s=0)


def test_bandwidth_allocation_is_on_unless_turned_off() -> None:
    from server.conference.config import media_config

    assert parse_settings([], env={}).bandwidth_allocation
    assert media_config(parse_settings([], env={})).bandwidth_allocation
    assert media_config(parse_settings([], env={"HOPSO_BANDWIDTH_ALLOCATION": "on"})
                        ).bandwidth_allocation
    off = parse_settings([], env={"HOPSO_BANDWIDTH_ALLOCATION": "off"})
    assert not off.bandwidth_allocation and not media_config(off).bandwidth_allocation
    assert not parse_settings(["--bandwidth-allocation", "0"], env={}).bandwidth_allocation
    assert parse_settings(["--bandwidth-allocation", "on"],
                          env={"HOPSO_BANDWIDTH_ALLOCATION": "off"}).bandwidth_allocation
    with pytest.raises(ConfigError, match="--bandwidth-allocation must be on or off"):
        parse_settings(["--bandwidth-allocation", "maybe"], env={})


def test_subscriber_transport_cc_is_on_unless_turned_off() -> None:
    from server.conference.config import media_config

    assert media_config(parse_settings([], env={})).subscriber_transport_cc
    off = parse_settings([], env={"HOPSO_SUBSCRIBER_TRANSPORT_CC": "off"})
    assert not off.subscriber_transport_cc and not media_config(off).subscriber_transport_cc
    assert parse_settings(["--subscriber-transport-cc", "on"],
                          env={}).subscriber_transport_cc
    assert not parse_settings(["--subscriber-transport-cc", "off"],
                              env={"HOPSO_SUBSCRIBER_TRANSPORT_CC": "on"}
                              ).subscriber_transport_cc
    with pytest.raises(ConfigError, match="--subscriber-transport-cc must be on or off"):
        parse_settings(["--subscriber-transport-cc", "maybe"], env={})
