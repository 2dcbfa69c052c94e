"""/healthz: liveness apart from readiness (database, document workers, Redis, free disk), and
/metrics on its own address (docs/operations.md, "Health and metrics")."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
import pytest

from server.core import keys
from server.core.health import RedisCheck
from server.core.settings import ConfigError, parse_settings
from server.documents.keys import DOCUMENTS
from testkit.processes import free_port
from tests.conftest import REDIS_PORT, Harness, need_service, start_harness

TOKEN = "scrape-token-0123456789"
ROOT = Path(__file__).resolve().parents[3]


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict | str]:
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers or {}) as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body


async def test_ready_lists_every_check_and_live_asks_nothing(hopso: Harness) -> None:
    status, body = await get(hopso.base + "/healthz")
    assert status == 200 and body["status"] == "ok" and body["probe"] == "ready"
    assert body["database"] is True and "reason" not in body
    checks = body["checks"]
    assert {"database", "document_workers", "disk"} <= set(checks)
    assert all(check["ok"] for check in checks.values())
    assert checks["disk"]["data_free_mb"] >= checks["disk"]["min_free_mb"] == 512
    assert (await get(hopso.base + "/healthz/ready"))[1]["checks"].keys() == checks.keys()
    for path in ("/healthz/live", "/healthz?probe=live"):
        status, body = await get(hopso.base + path)
        assert status == 200 and body == {"status": "ok", "probe": "live"}, path
    status, body = await get(hopso.base + "/healthz?probe=nonsense")
    assert status == 400 and body["error"]["code"] == "bad_request"
    assert (await get(hopso.base + "/healthz/other"))[0] == 404


async def test_unreachable_database_fails_readiness_not_liveness(tmp_path: Path) -> None:
    h = await start_harness(tmp_path, None)
    try:
        # The SQLite file's directory goes away and the pooled connections are dropped: the
        # next connection cannot open the database.
        await h.server.app[keys.DB].engine.dispose()
        h.settings.data_dir.rename(tmp_path / "moved")
        status, body = await get(h.base + "/healthz")
        assert status == 503 and body["status"] == "unavailable"
        assert body["database"] is False and body["checks"]["database"]["ok"] is False
        assert "database unreachable" in body["reason"]
        status, body = await get(h.base + "/healthz/live")
        assert status == 200 and body["status"] == "ok"
        (tmp_path / "moved").rename(h.settings.data_dir)
        assert (await get(h.base + "/healthz"))[0] == 200
    finally:
        await h.close()
        await h.server.close()


async def test_low_disk_fails_readiness_with_the_figures(tmp_path: Path) -> None:
    h = await start_harness(tmp_path, None, min_free_disk_mb=10**7)  # 10 TB: more than free
    try:
        status, body = await get(h.base + "/healthz")
        assert status == 503 and body["status"] == "unavailable"
        disk = body["checks"]["disk"]
        assert disk["ok"] is False and disk["min_free_mb"] == 10**7
        assert disk["data_free_mb"] < 10**7 and "documents_free_mb" in disk
        assert "disk space low" in body["reason"] and "10000000 MB" in body["reason"]
        assert body["checks"]["database"]["ok"] is True  # only the disk is named
        assert (await get(h.base + "/healthz?probe=live"))[0] == 200
    finally:
        await h.close()
        await h.server.close()


async def test_recordings_on_a_fuller_disk_of_their_own_fail_readiness(tmp_path: Path) -> None:
    """Recordings on another disk (here a symbolic link to /dev/shm, as an operator mounts
    one) are measured there: below the floor, readiness fails naming them, not the data."""
    shm = Path("/dev/shm")
    data_free = shutil.disk_usage(tmp_path).free // 2**20
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another file system than the test's directory")
    elsewhere = Path(tempfile.mkdtemp(prefix="hopso-recordings-", dir=shm))
    try:
        shm_free = shutil.disk_usage(elsewhere).free // 2**20
        if abs(shm_free - data_free) < 64:
            pytest.skip(f"/dev/shm and {tmp_path} have the same free space ({data_free} MB)")
        if shm_free > data_free:
            pytest.skip(f"/dev/shm has more free space ({shm_free} MB) than {tmp_path}")
        floor = (shm_free + data_free) // 2  # the data's disk passes, the recordings' not
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "recordings").symlink_to(elsewhere)
        h = await start_harness(tmp_path, None, min_free_disk_mb=floor)
        try:
            status, body = await get(h.base + "/healthz")
            assert status == 503, body
            disk = body["checks"]["disk"]
            assert disk["ok"] is False and abs(disk["recordings_free_mb"] - shm_free) < 64
            assert disk["data_free_mb"] >= floor and disk["documents_free_mb"] >= floor
            assert "disk space low: recordings" in body["reason"], body["reason"]
            assert "data " not in body["reason"] and "documents" not in body["reason"]
        finally:
            await h.close()
            await h.server.close()
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)


async def test_document_workers_that_died_fail_readiness(hopso_sqlite: Harness) -> None:
    pool = hopso_sqlite.server.app[DOCUMENTS].pool
    body = (await get(hopso_sqlite.base + "/healthz"))[1]
    assert body["checks"]["document_workers"]["ok"] is True  # idle until the first job
    await pool.start()
    body = (await get(hopso_sqlite.base + "/healthz"))[1]
    assert body["checks"]["document_workers"]["running"] == pool.size
    for worker in list(pool._workers.values()):
        worker.proc.kill()
        await worker.proc.wait()
    status, body = await get(hopso_sqlite.base + "/healthz")
    assert status == 503 and "document workers: none of" in body["reason"]


async def test_metrics_on_their_own_address_with_the_token(tmp_path: Path) -> None:
    port = free_port()
    h = await start_harness(tmp_path, None, metrics_addr=("127.0.0.1", port),
                            metrics_token=TOKEN)
    try:
        side = f"http://127.0.0.1:{port}/metrics"
        status, text = await get(side)
        assert status == 401 and "not_authenticated" in str(text)
        assert (await get(side, {"Authorization": "Bearer wrong-token-0123456789"}))[0] == 401
        status, text = await get(side, {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and "hopso_http_requests_total" in str(text)
        # Moved off the main port: not there, even for an administrator or with the token.
        assert (await get(h.base + "/metrics", {"Authorization": f"Bearer {TOKEN}"}))[0] == 404
        admin = await h.login("quantri")
        assert (await admin.call("GET", "/metrics"))[0] == 404
    finally:
        await h.close()
        await h.server.close()
    with pytest.raises(aiohttp.ClientConnectionError):  # closed with the app
        await get(side)


async def test_metrics_address_without_a_token_answers_whoever_reaches_it(tmp_path: Path
                                                                          ) -> None:
    port = free_port()
    h = await start_harness(tmp_path, None, metrics_addr=("127.0.0.1", port))
    try:
        status, text = await get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "hopso_socket_clients" in str(text)
    finally:
        await h.close()
        await h.server.close()


@pytest.mark.parametrize("value", ["9464", "host:", ":9464", "127.0.0.1:0", "127.0.0.1:70000",
                                   "127.0.0.1:port"])
def test_a_bad_metrics_address_stops_start_up(value: str) -> None:
    with pytest.raises(ConfigError, match="metrics-addr"):
        parse_settings(["--metrics-addr", value], {})


def test_metrics_address_and_disk_floor_from_the_environment() -> None:
    settings = parse_settings([], {"HOPSO_METRICS_ADDR": "[::1]:9464",
                                   "HOPSO_MIN_FREE_DISK_MB": "2048"})
    assert settings.metrics_addr == ("::1", 9464) and settings.min_free_disk_mb == 2048
    with pytest.raises(ConfigError, match="min-free-disk-mb"):
        parse_settings(["--min-free-disk-mb", "-1"], {})


@pytest.mark.redis
async def test_redis_is_checked_when_configured(tmp_path: Path) -> None:
    need_service("Redis", REDIS_PORT)
    h = await start_harness(tmp_path, None, redis_url=f"redis://127.0.0.1:{REDIS_PORT}/0")
    try:
        status, body = await get(h.base + "/healthz")
        assert status == 200 and body["redis"] is True and body["checks"]["redis"]["ok"] is True
    finally:
        await h.close()
        await h.server.close()
    # The same check against a port nobody listens on: a real refused connection.
    check = RedisCheck(f"redis://127.0.0.1:{free_port()}/0")
    try:
        result = await check()
    finally:
        await check.close()
    assert result.ok is False and result.reason.startswith("redis unreachable")


def test_a_taken_metrics_address_stops_start_up_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "run.py", "--data-dir", str(tmp_path / "data"), "--port", "0",
             "--metrics-addr", f"127.0.0.1:{port}", "--fast-hash"],
            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "Hopso is running" not in result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        f"hopso: cannot start: --metrics-addr 127.0.0.1:{port}: error while attempting to bind "
        f"on address ('127.0.0.1', {port}): address already in use"), result.stderr
