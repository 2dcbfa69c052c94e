"""Start real `python run.py` processes for tests that need whole servers."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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
        found = {}
        for line in self.output:
            m = re.match(r"\s+\w+\s+(\S+)\s+(\S+)\s+\(", line)
            if m:
                found[m.group(1)] = m.group(2)
        return found

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


def start_server(*args: str, env: dict[str, str] | None = None, scheme: str = "http",
                 ready_timeout: float = 40, port: int | None = None) -> ServerProcess:
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-u", "run.py", "--port", str(port), *args], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
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
