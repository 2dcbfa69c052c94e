"""testkit/preimported.py: a forked start behaves as a plain `python run.py` / `python -m`
one for whoever holds it (its pid, its signals, its exit status, its output)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from testkit.preimported import run_module
from testkit.processes import ROOT, run_py, start_server


def test_a_command_answers_as_a_plain_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOPSO_")}
    args = ["verify", str(tmp_path / "missing.backup")]
    plain = subprocess.run([sys.executable, "-m", "server.backup", *args], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
    forked = run_module("server.backup", *args, env=env)
    assert (forked.returncode, forked.stdout, forked.stderr) == \
        (plain.returncode, plain.stdout, plain.stderr) == (1, "", plain.stderr)
    assert "no backup file" in plain.stderr
    helped = run_module("server.backup", "--help", env=env)  # stdout, status 0
    assert helped.returncode == 0 and "restore" in helped.stdout and helped.stderr == ""


def test_the_server_is_its_own_process_and_dies_by_its_signal(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server("--data-dir", str(data), preimported=True)
    try:
        with urllib.request.urlopen(server.base + "/healthz", timeout=5) as r:
            assert r.status == 200
        held = run_py("--data-dir", str(data))  # names the pid the test holds
        assert held.returncode == 1 and f"pid {server.process.pid}" in held.stderr, held.stderr
        assert server.process.poll() is None
        os.kill(server.process.pid, signal.SIGKILL)
        assert server.process.wait(10) == -signal.SIGKILL
    finally:
        server.stop()
    again = start_server("--data-dir", str(data), preimported=True)  # the lock went with it
    again.stop()
    assert again.process.returncode == 0  # SIGTERM: a graceful stop, as a plain run.py's
