"""`python run.py` as a newcomer runs it: clear configuration errors, first start, TLS."""

import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from testkit.processes import ROOT, free_port, run_py, start_server


@pytest.mark.parametrize("args, env, message", [
    (["--port", "eighty"], {}, "--port must be a whole number, got 'eighty'"),
    (["--port", "70000"], {}, "--port must be between 0 and 65535, got 70000"),
    ([], {"HOPSO_DATABASE_URL": "mysql://x"}, "HOPSO_DATABASE_URL must start with postgresql://"),
    ([], {"HOPSO_REDIS_URL": "http://x"}, "HOPSO_REDIS_URL must start with redis://"),
    (["--tls-cert", "/nonexistent.pem"], {}, "--tls-cert and --tls-key must be given together"),
    (["--ice-addresses", "not-an-ip"], {}, "--ice-addresses must be an IP address"),
])
def test_invalid_configuration_stops_with_one_clear_line(args: list[str], env: dict[str, str],
                                                         message: str) -> None:
    result = run_py(*args, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_unreachable_database_is_one_line_too(tmp_path: Path) -> None:
    result = run_py("--data-dir", str(tmp_path),
                    env={"HOPSO_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("hopso: cannot start:")


def test_first_start_prints_an_admin_password_once(tmp_path: Path) -> None:
    first = start_server("--data-dir", str(tmp_path))
    first.stop()
    assert any(line.startswith("First start: administrator login  admin / ")
               for line in first.output), first.output
    second = start_server("--data-dir", str(tmp_path))
    second.stop()
    assert not any("administrator login" in line for line in second.output)


def test_tls_serves_https_with_a_generated_certificate(tmp_path: Path) -> None:
    server = start_server("--data-dir", str(tmp_path), "--tls", scheme="https")
    try:
        context = ssl.create_default_context(cafile=str(tmp_path / "tls" / "cert.pem"))
        with urllib.request.urlopen(server.base.replace("127.0.0.1", "localhost") + "/healthz",
                                    context=context, timeout=5) as r:
            assert r.status == 200
    finally:
        server.stop()
    assert any(line.startswith("Hopso is running: https://") for line in server.output)


def test_running_line_comes_once_the_port_accepts_connections(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-u", "run.py", "--port", str(port), "--data-dir", str(tmp_path)],
        cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert process.stdout is not None
        for line in process.stdout:  # blocks per line; the timeout is pytest's or the pipe's end
            if line.startswith("Hopso is running"):
                break
        else:
            pytest.fail(f"run.py ended without the running line (exit {process.wait()})")
        # At once, no retry: the line promises the port is listening and the app started.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert r.status == 200
    finally:
        process.terminate()
        process.wait(10)
