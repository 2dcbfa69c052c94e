"""TURN credentials in media:config (coturn's TURN REST API: use-auth-secret): per user,
time-limited, on turn:/turns: URLs only, computed as coturn checks them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.render import Site, render
from rooms.users import find_user
from server.conference.turn import client_ice_servers, turn_credential
from server.core import keys
from server.core.settings import ConfigError, Settings, parse_settings
from server.core.trusted_proxy import parse_networks
from tests.conftest import Harness, start_harness
from tests.server.core.test_realtime import demo_meeting_id
from tests.server.media_support import media_client

SECRET = "north-coast-relay-0123456789"
URLS = ("stun:hop.example.vn:3478", "turn:hop.example.vn:3478?transport=udp",
        "turns:hop.example.vn:5349?transport=tcp")


def coturn_password(secret: str, username: str) -> str:
    """What coturn computes for use-auth-secret (base64 of HMAC-SHA1 over the username)."""
    mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def test_the_credential_is_coturns_hmac_and_expires_after_the_ttl() -> None:
    username, credential = turn_credential(SECRET, 42, 3600, now=1_800_000_000)
    assert username == "1800003600:42"
    assert credential == coturn_password(SECRET, username)
    assert credential != coturn_password(SECRET + "x", username)  # another secret: refused


def test_stun_urls_carry_nothing_turn_urls_a_per_user_credential() -> None:
    settings = Settings(ice_servers=URLS, turn_secret=SECRET, turn_ttl_s=600)
    now = time.time()
    servers = client_ice_servers(settings, 7, now=now)
    assert servers[0] == {"urls": ["stun:hop.example.vn:3478"]}
    turn = servers[1]
    assert turn["urls"] == list(URLS[1:])
    expiry, user = turn["username"].split(":")
    assert user == "7" and int(expiry) == int(now) + 600
    assert turn["credential"] == coturn_password(SECRET, turn["username"])
    other = client_ice_servers(settings, 8, now=now)[1]
    assert other["username"] != turn["username"] and other["credential"] != turn["credential"]
    assert SECRET not in repr(settings)
    assert client_ice_servers(Settings(ice_servers=URLS[:1]), 7) == [
        {"urls": ["stun:hop.example.vn:3478"]}]
    assert client_ice_servers(Settings(), 7) == []


@pytest.mark.parametrize("env, message", [
    ({"HOPSO_TURN_SECRET": "short"}, "--turn-secret must be 16-256"),
    ({"HOPSO_TURN_SECRET": "sixteen chars with space"}, "--turn-secret must be 16-256"),
    ({"HOPSO_ICE_SERVERS": URLS[1]}, "need --turn-secret"),
    ({"HOPSO_TURN_SECRET": SECRET, "HOPSO_TURN_TTL_S": "5"}, "--turn-ttl must be between"),
])
def test_settings_refuse(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_settings([], env)


def test_settings_accept() -> None:
    settings = parse_settings([], {"HOPSO_ICE_SERVERS": ",".join(URLS),
                                   "HOPSO_TURN_SECRET": SECRET, "HOPSO_TURN_TTL_S": "7200"})
    assert settings.turn_secret == SECRET and settings.turn_ttl_s == 7200
    assert parse_settings([], {}).turn_ttl_s == 12 * 3600


def test_the_rendered_site_gives_browsers_credentials_coturn_accepts(tmp_path: Path) -> None:
    """deploy/templates: hopso.env parses into settings whose TURN credentials are made with
    the static-auth-secret of the rendered turnserver.conf; nginx's address is trusted."""
    render(Site(server_name="hop.example.vn", cert="/etc/ssl/c.pem", key="/etc/ssl/k.pem",
                public_ip="203.0.113.10"), tmp_path)
    env = dict(line.split("=", 1) for line in
               (tmp_path / "etc/hopso/hopso.env").read_text().splitlines()
               if line and not line.startswith("#"))
    env["HOPSO_DATA_DIR"] = str(tmp_path / "data")
    coturn_secret = next(line.split("=", 1)[1] for line in
                         (tmp_path / "etc/turnserver.conf").read_text().splitlines()
                         if line.startswith("static-auth-secret="))
    settings = parse_settings([], env)
    assert settings.turn_secret == coturn_secret
    assert settings.trusted_proxies == parse_networks("127.0.0.1,::1")
    stun, turn = client_ice_servers(settings, 5)
    assert stun == {"urls": ["stun:hop.example.vn:3478"]}
    assert turn["urls"] == ["turn:hop.example.vn:3478?transport=udp",
                            "turn:hop.example.vn:3478?transport=tcp",
                            "turns:hop.example.vn:5349?transport=tcp"]
    assert turn["credential"] == coturn_password(coturn_secret, turn["username"])


@pytest.fixture
async def hopso_turn(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await start_harness(tmp_path, None, ice_servers=URLS, turn_secret=SECRET,
                                  turn_ttl_s=900)
    yield harness
    await harness.close()
    await harness.server.close()


async def test_media_config_hands_each_user_their_own_credential(hopso_turn: Harness,
                                                                 caplog: Any) -> None:
    h = hopso_turn
    meeting_id = await demo_meeting_id(h)
    seen: dict[str, dict[str, Any]] = {}
    for name in ("daibieu", "chutri"):
        client = await media_client(h, name, meeting_id)
        try:
            before = int(time.time())
            config = await client.ok("media:config")
            after = int(time.time())
        finally:
            await client.close()
        stun, turn = config["rtc_configuration"]["iceServers"]
        assert stun == {"urls": [URLS[0]]}
        async with h.server.app[keys.DB].session() as s:
            user = await find_user(s, name)
        assert user is not None
        expiry, user_id = turn["username"].split(":")
        assert user_id == str(user.id) and before + 900 <= int(expiry) <= after + 900
        assert turn["credential"] == coturn_password(SECRET, turn["username"])
        seen[name] = turn
    assert seen["daibieu"]["username"] != seen["chutri"]["username"]
    assert SECRET not in caplog.text


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """A real coturn on 127.0.0.1 with SECRET as static-auth-secret, and coturn's UDP echo
    peer to relay to: (TURN port, peer port). Skipped where Debian's coturn is missing (it is
    not in setup.sh: operators install it, docs/operations.md)."""
    if not (shutil.which("turnserver") and shutil.which("turnutils_uclient")):
        pytest.skip("coturn is not installed (apt-get install coturn)")
    port, peer_port = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    relay = 45000 + port % 200 * 50
    log = tmp_path / "turnserver.log"
    procs = [subprocess.Popen(
        ["turnserver", "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
         f"--listening-port={port}", f"--min-port={relay}", f"--max-port={relay + 49}",
         "--use-auth-secret", f"--static-auth-secret={SECRET}", "--realm=hop.test",
         "--no-tls", "--no-dtls", "--allow-loopback-peers", "--no-cli", "--simple-log",
         f"--log-file={log}", f"--pidfile={tmp_path / 'turnserver.pid'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen(["turnutils_peer", "-L", "127.0.0.1", "-p", str(peer_port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # coturn listens on TCP too once it is ready
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield port, peer_port
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def relays(port: int, peer_port: int, username: str, credential: str) -> bool:
    """coturn's own client allocates with these credentials and echoes 5 packets through."""
    done = subprocess.run(
        ["turnutils_uclient", "-p", str(port), "-e", "127.0.0.1", "-r", str(peer_port),
         "-u", username, "-w", credential, "-n", "5", "-m", "1", "-l", "100", "127.0.0.1"],
        capture_output=True, text=True, timeout=30)
    return done.returncode == 0 and "tot_recv_msgs=10" in done.stdout + done.stderr


def test_coturn_accepts_the_credential_and_refuses_it_expired(coturn: tuple[int, int]) -> None:
    port, peer_port = coturn
    settings = Settings(ice_servers=URLS, turn_secret=SECRET, turn_ttl_s=600)
    turn = client_ice_servers(settings, 42)[1]
    assert relays(port, peer_port, turn["username"], turn["credential"])
    expired = turn_credential(SECRET, 42, 600, now=time.time() - 610)
    assert not relays(port, peer_port, *expired)
    forged = turn_credential(SECRET[::-1], 42, 600)  # another secret
    assert not relays(port, peer_port, *forged)
