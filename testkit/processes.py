"""Start real `python run.py` processes: for tests that need whole servers, and for
benchmarks that run one for minutes or hours."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
LOGIN_LINE = re.compile(r"^\s+\w+\s+(\S+)\s+(\S+)\s+\(", re.MULTILINE)  # --demo's table


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    port: int
    scheme: str = "http"
    output: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def logins(self) -> dict[str, str]:
        return dict(LOGIN_LINE.findall("\n".join(self.output)))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def run_py(*args: str, env: dict[str, str] | None = None, timeout: float = 60
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def preimported_starts(wanted: bool) -> bool:
    """Whether a start asked `preimported` forks: HOPSO_TEST_PREIMPORTED=0 makes every start
    a plain `python -u run.py` again (to compare, or to rule the forking out)."""
    return wanted and os.environ.get("HOPSO_TEST_PREIMPORTED", "1") != "0"


def python_m(module: str, *args: str, env: dict[str, str], timeout: float = 120
             ) -> subprocess.CompletedProcess[str]:
    """`python -m module args` from ROOT with exactly `env`, its output captured as text;
    forked preimported (testkit/preimported.run_module) unless HOPSO_TEST_PREIMPORTED=0."""
    if preimported_starts(True):
        from testkit.preimported import run_module
        return run_module(module, *args, env=env, timeout=timeout)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def start_server(*args: str, env: dict[str, str] | None = None, scheme: str = "http",
                 ready_timeout: float = 90, port: int | None = None,
                 preimported: bool = False) -> ServerProcess:
    """`run.py` with `args`, once its /healthz answers. Importing and migrating take a few
    seconds of CPU, many more on a loaded 2-core CI box: a start is waited for as long as
    LoggedServer's. `preimported`: forked from a process that imported the server already
    (testkit/preimported.py), for tests about what the server does, not how it starts."""
    port = port or free_port()
    argv = ["--port", str(port), *args]
    process: subprocess.Popen[str]
    if preimported_starts(preimported):
        from testkit.preimported import PreimportedProcess
        process = PreimportedProcess(argv, {**os.environ, **(env or {})}, ROOT)
    else:
        process = subprocess.Popen(
            [sys.executable, "-u", "run.py", *argv], cwd=ROOT, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})})
    server = ServerProcess(process, port, scheme)
    deadline = time.monotonic() + ready_timeout
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line:
            server.output.append(line.rstrip("\n"))
            if line.startswith("Hopso is running") and _wait_healthy(server, deadline):
                return server
        elif process.poll() is not None:
            break
        else:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError("server did not start:\n" + "\n".join(server.output))


def _wait_healthy(server: ServerProcess, deadline: float) -> bool:
    import ssl
    context = ssl._create_unverified_context()  # the self-signed certificate under test
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(server.base + "/healthz", timeout=2,
                                        context=context) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.1)
    return False


class LoggedServer:
    """`run.py --demo` writing to `data_dir/server.log`, not a pipe: a benchmark's hours of
    output never fill a pipe nobody reads, and the log is there to read afterwards."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None,
                 preimported: bool = False) -> None:
        self.port = free_port()
        self.log = (data_dir / "server.log").open("w+")
        argv = ["--demo", "--port", str(self.port), "--data-dir", str(data_dir / "data"), *args]
        self.proc: subprocess.Popen[str]
        if preimported_starts(preimported):  # as start_server's
            from testkit.preimported import PreimportedProcess
            self.proc = PreimportedProcess(argv, {**os.environ, **(env or {})}, ROOT,
                                           output=self.log.fileno())
        else:
            self.proc = subprocess.Popen(
                [sys.executable, "-u", "run.py", *argv], cwd=ROOT, stdout=self.log,
                stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})
        self.base = f"http://127.0.0.1:{self.port}"
        self.logins: dict[str, str] = {}

    async def ready(self, timeout: float = 90) -> None:
        """Wait for the start-up line and a healthy /healthz; read the demo logins."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text()
            if "Hopso is running" in text:
                self.logins = dict(LOGIN_LINE.findall(text))
                try:
                    async with aiohttp.ClientSession() as s, s.get(self.base + "/healthz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
            if self.proc.poll() is not None:
                break
            await asyncio.sleep(0.1)
        raise RuntimeError("server did not start:\n" + self.log_text()[-3000:])

    def log_text(self) -> str:
        return Path(self.log.name).read_text()

    def stop(self, timeout: float = 20) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
