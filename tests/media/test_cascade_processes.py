"""Three real node processes on loopback (province <- city <- ward): each runs
tests/media/cascade_node_proc.py (SFU + node link + aiortc clients)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from testkit.preimported import PreimportedProcess
from testkit.processes import ROOT, free_port, preimported_starts

SECRETS = {"city": "city-secret-0123456789", "ward": "ward-secret-0123456789"}


class NodeProc:
    def __init__(self, unit: str, port: int, *args: str) -> None:
        self.unit, self.port = unit, port
        argv = ["--unit", unit, "--port", str(port), *args]
        self.process: subprocess.Popen[str]
        if preimported_starts(True):  # forked with the server's imports done (aiortc, media)
            self.process = PreimportedProcess(argv, dict(os.environ), ROOT,
                                              module="tests.media.cascade_node_proc")
        else:
            self.process = subprocess.Popen(
                [sys.executable, "-u", "-m", "tests.media.cascade_node_proc", *argv],
                cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self.process.stdout is not None
        os.set_blocking(self.process.stdout.fileno(), False)
        self.output: list[str] = []
        wait(lambda: self._ready(), 40, f"{unit} did not start")

    def _ready(self) -> bool:
        assert self.process.stdout is not None
        for line in iter(self.process.stdout.readline, ""):
            self.output.append(line.rstrip())
        if self.process.poll() is not None:
            raise AssertionError(f"{self.unit} exited:\n" + "\n".join(self.output))
        return any(line == "node ready" for line in self.output)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/stats", timeout=5) as r:
            data: dict[str, Any] = json.loads(r.read())
            return data

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def wait(predicate: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.1)


@pytest.fixture
def procs() -> Iterator[dict[str, NodeProc]]:
    out: dict[str, NodeProc] = {}
    yield out
    for proc in out.values():
        proc.stop()


def start_city(province: NodeProc, port: int, subscribers: int) -> NodeProc:
    return NodeProc("city", port, "--parent-url", province.url, "--secret", SECRETS["city"],
                    "--child", f"ward={SECRETS['ward']}", "--watch", "pub-province",
                    "--subscribers", str(subscribers))


def link_rate(upper: NodeProc, link: str, window: float = 1.5) -> float:
    """Packets the link sent per packet the upper node's publisher sent."""
    a = upper.stats()
    time.sleep(window)
    b = upper.stats()
    sent = b["links"][link]["packets"] - a["links"][link]["packets"]
    published = b["published_packets"] - a["published_packets"]
    assert published > 0
    return float(sent / published)


def test_three_processes(procs: dict[str, NodeProc]) -> None:
    ports = {name: free_port() for name in ("province", "city", "ward")}
    procs["province"] = province = NodeProc(
        "province", ports["province"], "--child", f"city={SECRETS['city']}", "--publish",
        "--watch", "pub-ward", "--subscribers", "1")
    procs["city"] = city = start_city(province, ports["city"], 1)
    procs["ward"] = ward = NodeProc(
        "ward", ports["ward"], "--parent-url", city.url, "--secret", SECRETS["ward"],
        "--publish", "--watch", "pub-province", "--subscribers", "1")
    # A publisher at the province decoded at the city and the ward; the ward's
    # video decoded at the province.
    wait(lambda: min(ward.stats()["frames"] + city.stats()["frames"]
                     + province.stats()["frames"]) >= 3, 30, "media did not flow")
    top = province.stats()["published"]
    assert province.stats()["links"]["city"]["copies"] == {top: 1}
    assert city.stats()["links"]["ward"]["copies"] == {top: 1}
    one = link_rate(province, "city")

    # Kill -9 the city: the ward resumes within 5 s of its return, nobody rejoins.
    city.kill()
    before = ward.stats()["frames"][0]
    procs["city"] = city = start_city(province, ports["city"], 10)
    returned = time.monotonic()
    wait(lambda: ward.stats()["frames"][0] >= before + 2, 5, "ward did not resume in 5 s")
    resumed = time.monotonic() - returned
    wait(lambda: min(city.stats()["frames"]) >= 3, 20, "10 city subscribers did not decode")
    assert province.stats()["links"]["city"]["copies"] == {top: 1}
    ten = link_rate(province, "city")
    assert 0.9 <= one <= 1.1 and 0.9 <= ten <= 1.1, (one, ten)
    print(f"\nprocesses: link/published packets 1 sub {one:.3f}, 10 subs {ten:.3f}; "
          f"ward resumed {resumed:.2f} s after the city was back")
