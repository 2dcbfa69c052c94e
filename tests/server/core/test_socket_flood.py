"""Issue 11, finding 1: one logged-in client sending 5,000 `present:get` a second starved
everyone (acks lost, sockets dropped, /healthz 19 s, 49,343 tracebacks).

A flooder in its own process sends `present:get` and `annotation:op` as fast as its
connection takes them, reconnecting whenever it is dropped, while three other members turn
pages, ask for the presenter's state and the procedure. Their p99 acknowledgement time must
stay within a small bound of the p99 measured without the flood in the same test (windows
of the same length, before and after); the flooder must be refused `rate_limited`, dropped,
and refused when it reconnects; /healthz must stay fast; nothing may be logged with a
traceback. The server runs the default SocketLimits."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from server.core import keys
from server.core.settings import SocketLimits
from testkit.processes import ROOT
from tests.conftest import Harness, start_harness
from tests.server.documents_support import Listener, demo_meeting_id, ink_op, make_pdf, upload_ready

FLOOD_S = 5.0
WINDOW_S = 4.0  # each measured window: quiet, flooded, quiet again


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await start_harness(tmp_path, None, socket_limits=SocketLimits())
    yield h
    await h.close()
    await h.server.close()


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def normal_use(members: dict[str, Listener], meeting_id: int, document_id: int,
                     until: float) -> list[float]:
    """Page turns by the presenter, the presenter's state and the procedure asked by the
    others, each at a person's pace; returns every acknowledgement's time in seconds."""
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def member(name: str) -> None:
        i = 0
        while loop.time() < until:
            i += 1
            if name == "chutri":
                event, payload = "present:update", {"document_id": document_id, "page": i % 3,
                                                    "zoom": 1.0, "scroll_x": 0.0,
                                                    "scroll_y": 0.0}
            elif i % 2:
                event, payload = "present:get", {"meeting_id": meeting_id}
            else:
                event, payload = "procedure:state", {"meeting_id": meeting_id}
            started = loop.time()
            ack = await members[name].sio.call(event, payload, timeout=10)
            times.append(loop.time() - started)
            assert ack["ok"], (name, event, ack)
            await asyncio.sleep(0.03)

    await asyncio.gather(*(member(name) for name in members))
    return times


def refused(h: Harness) -> float:
    """Events the server answered `rate_limited`, from its metrics."""
    return sum(sample.value for metric in h.server.app[keys.METRICS].socket_events.collect()
               for sample in metric.samples
               if sample.name.endswith("_total") and sample.labels["outcome"] == "rate_limited")


async def health_times(h: Harness, until: float) -> list[float]:
    client, loop, times = h.anonymous(), asyncio.get_running_loop(), []
    while loop.time() < until:
        started = loop.time()
        status, _ = await client.call("GET", "/healthz")
        times.append(loop.time() - started)
        assert status == 200
        await asyncio.sleep(0.1)
    return times


async def test_a_flooding_client_is_refused_and_dropped_while_everyone_else_is_unmoved(
        server: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    meeting_id = await demo_meeting_id(server)
    doc = await upload_ready(server, meeting_id, make_pdf(tmp_path, pages=3))
    members = {name: await Listener.open(server, await server.login(name), meeting_id)
               for name in ("chutri", "thuky", "daibieu2")}
    for listener in members.values():
        assert (await listener.call("document:subscribe", {"document_id": doc["id"]}))["ok"]
    flooder = await server.login("daibieu")
    loop = asyncio.get_running_loop()

    await normal_use(members, meeting_id, doc["id"], loop.time() + 1.0)  # warm-up
    quiet = await normal_use(members, meeting_id, doc["id"], loop.time() + WINDOW_S)

    ops = [["annotation:op", {"document_id": doc["id"], "version": 1, "op": ink_op()}]
           for _ in range(20)]
    frames = [["present:get", {"meeting_id": meeting_id}], *ops]
    # Niced: the flooder stands for a client on another machine, whose CPU is not the
    # server's (here they share two cores); it still sends thousands of events a second.
    process = await asyncio.create_subprocess_exec(
        "nice", "-n", "19", sys.executable, "-m", "testkit.raw_socket", server.base,
        flooder.cookie_header(), json.dumps(frames), "--seconds", str(FLOOD_S), "--reconnect",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        assert line.strip() == b"connected", line
        until = loop.time() + WINDOW_S
        loaded, health = await asyncio.gather(
            normal_use(members, meeting_id, doc["id"], until), health_times(server, until))
        out, _ = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    flood: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    # Quiet again: the machine's own load may have changed meanwhile (CI runs tests side by
    # side); the bound is taken from the worse of the two quiet windows.
    after = await normal_use(members, meeting_id, doc["id"], loop.time() + WINDOW_S)

    connected = flood["connections"]  # while connected, it sent as fast as it could
    rate = sum(c["sent"] for c in connected) / max(1e-3, sum(c["s"] for c in connected))
    quiet_p99, loaded_p99 = max(p99(quiet), p99(after)), p99(loaded)
    logging.getLogger(__name__).info(
        "flood: %.0f events/s, %s; others' p99 %.1f ms quiet, %.1f ms flooded "
        "(%d/%d acks); /healthz max %.1f ms", rate, flood, quiet_p99 * 1000,
        loaded_p99 * 1000, len(quiet), len(loaded), max(health) * 1000)
    assert rate > 1000, flood  # a flood indeed
    # Refused before it was cut (its own count misses the acks lost with the connection).
    assert refused(server) >= SocketLimits().flood_strikes, flood
    assert flood["drops"] >= 1 and flood["refused_connects"] >= 1, flood
    assert loaded_p99 <= 2 * quiet_p99 + 0.030, (quiet_p99, loaded_p99)
    assert max(health) < 0.5, health
    drops = [r for r in caplog.records if "dropped: flooding" in r.getMessage()]
    assert len(drops) == flood["drops"], [r.getMessage() for r in drops]
    assert not [r.getMessage() for r in caplog.records if r.exc_info]
