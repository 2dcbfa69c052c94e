"""The clients of tests/server/test_sigkill_durability.py: the `run.py` killed and started
again, a client's socket.io link, tablets sending annotation ops and delegates casting ballots,
each knowing what the server acknowledged and what was in flight at a kill."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import socketio

from testkit.processes import ServerProcess, start_server
from tests.conftest import Client

# Per database, during traffic (1.5-4 s of it each); 1 more during the second cycle's vote
# closes. Two cycles hold every case: a kill in traffic, votes closed unkilled then checked
# frozen after a later kill, a kill during closes (4 cycles took twice as long, ~75 s).
KILLS = 2
VOTERS = 20
ANNOTATOR_USERS = ("chutri", "thuky", "daibieu", "daibieu2", "daibieu3")
TABLETS_PER_ANNOTATOR = 2  # two connections (tablet + laptop) for each of them
PAGES = 3
OPTIONS = 3  # agree / disagree / abstain
PASSWORD = "durability-pass-1"
# Refusals that apply nothing and that a client retries later (docs/protocol.md, socket.io).
NOT_ACKED = ("rate_limited", "busy")


class Killed(Exception):
    """The client lost its connection because the test killed the server."""


@dataclass
class Server:
    """One data directory or database, served by successive `run.py` processes."""

    args: list[str]
    process: ServerProcess | None = None
    port: int | None = None
    logs: list[str] = field(default_factory=list)
    killed: bool = False

    def start(self, *extra: str) -> None:
        self.process = start_server(*self.args, *extra, port=self.port, preimported=True)
        self.port, self.killed = self.process.port, False
        self.logs.extend(self.process.output)
        stdout = self.process.process.stdout
        assert stdout is not None
        os.set_blocking(stdout.fileno(), True)
        # Keep reading the log, or a chatty server would block on a full pipe.
        threading.Thread(target=lambda: self.logs.extend(line.rstrip("\n") for line in stdout),
                         daemon=True).start()

    @property
    def base(self) -> str:
        assert self.process is not None
        return self.process.base

    def kill(self) -> None:
        assert self.process is not None
        self.killed = True
        os.kill(self.process.process.pid, signal.SIGKILL)
        self.process.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def tracebacks(self) -> list[str]:
        return [line for line in self.logs if "Traceback" in line]


class Link:
    """A client's socket.io connection, opened again (same session cookie) after a restart."""

    def __init__(self, server: Server, client: Client) -> None:
        self.server, self.client = server, client
        self.sio: socketio.AsyncClient | None = None
        self.joins: list[tuple[str, dict[str, Any]]] = []
        self.unexpected_drops = 0

    async def open(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        await self.sio.connect(self.server.base, headers={"Cookie": self.client.cookie_header()},
                               transports=["websocket"], wait_timeout=10)
        for event, payload in self.joins:
            await self.ok(event, payload)

    async def join(self, event: str, payload: dict[str, Any]) -> Any:
        self.joins.append((event, payload))
        return await self.ok(event, payload)

    async def call(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        assert self.sio is not None
        try:
            ack: dict[str, Any] = await self.sio.call(event, payload, timeout=20)
            return ack
        except (socketio.exceptions.SocketIOError, ConnectionError) as exc:
            if not self.server.killed:
                self.unexpected_drops += 1
            raise Killed(str(exc)) from exc

    async def ok(self, event: str, payload: dict[str, Any]) -> Any:
        ack = await self.call(event, payload)
        assert ack["ok"], (event, payload, ack)
        return ack["result"]

    async def close(self) -> None:
        if self.sio is not None:
            with contextlib.suppress(Exception):  # the server may be gone already
                await asyncio.wait_for(self.sio.disconnect(), 3)
            self.sio = None


# --- tablets: annotation ops -----------------------------------------------------------------


@dataclass
class Tablet:
    """One connection sending annotation ops. Like the browser's offline queue, an op stays
    queued (and is resent with the same op id) until the server acknowledges it."""

    user_id: str
    link: Link
    document_id: int
    version: int
    sizes: list[list[float]]
    queue: list[dict[str, Any]] = field(default_factory=list)
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)
    acked: dict[str, tuple[int, int]] = field(default_factory=dict)  # op id -> (page, seq)
    live: dict[str, str] = field(default_factory=dict)  # annotation id -> visibility
    deletable: list[tuple[str, int]] = field(default_factory=list)
    unsure: set[str] = field(default_factory=set)  # in flight at a kill, or refused to retry
    resolved: Counter[str] = field(default_factory=Counter)  # how unsure ops turned out
    rate_limited: int = 0

    def new_op(self, rnd: random.Random) -> dict[str, Any]:
        op_id = str(uuid.uuid4())
        if self.deletable and rnd.random() < 0.2:  # the eraser, on one of my own strokes
            ann_id, page = self.deletable.pop(rnd.randrange(len(self.deletable)))
            return {"op_id": op_id, "type": "delete", "page": page, "ids": [ann_id]}
        page = rnd.randrange(PAGES)
        w, h = self.sizes[page]
        x, y = rnd.uniform(20, w - 120), rnd.uniform(20, h - 120)
        points = [[round(x + i * 3.0, 1), round(y + rnd.uniform(0, 80), 1)]
                  for i in range(rnd.randint(8, 40))]
        visibility = rnd.choice(("private", "meeting", "meeting", "presenter"))
        return {"op_id": op_id, "type": "add", "page": page, "annotation": {
            "id": str(uuid.uuid4()), "kind": "ink", "visibility": visibility,
            "data": {"points": points, "color": "#1565c0", "width": 2.0}}}

    async def send_head(self) -> None:
        op = self.queue[0]
        self.sent[op["op_id"]] = op
        ack = await self.link.call("annotation:op", {"document_id": self.document_id,
                                                     "version": self.version, "op": op})
        if not ack["ok"]:
            assert ack["error"]["code"] in NOT_ACKED, \
                f"{'resent' if op['op_id'] in self.unsure else 'new'} op refused: {ack} {op}"
            self.rate_limited += 1
            self.unsure.add(op["op_id"])
            await asyncio.sleep(1.0)
            return
        result = ack["result"]
        assert result["op_id"] == op["op_id"] and result["page"] == op["page"], (op, result)
        if op["op_id"] in self.unsure:
            self.unsure.discard(op["op_id"])
            self.resolved["already stored" if result["replayed"] else "stored on resend"] += 1
        else:
            assert not result["replayed"], (op, result)
        self.acked[op["op_id"]] = (result["page"], result["seq"])
        if op["type"] == "add":
            ann = op["annotation"]
            self.live[ann["id"]] = ann["visibility"]
            self.deletable.append((ann["id"], op["page"]))
        else:
            for ann_id in op["ids"]:
                del self.live[ann_id]
        self.queue.pop(0)

    async def run(self, rnd: random.Random) -> None:
        while True:
            if not self.queue:
                self.queue.append(self.new_op(rnd))
            await self.send_head()
            await asyncio.sleep(rnd.uniform(0.05, 0.15))  # a stroke every ~100 ms

    def killed(self) -> None:
        self.unsure.update(op["op_id"] for op in self.queue)

    async def resolve(self) -> None:
        for _ in range(50):
            if not self.queue:
                return
            await self.send_head()
        raise AssertionError(f"ops still queued: {self.queue}")


# --- delegates: ballots ----------------------------------------------------------------------


@dataclass
class Ballot:
    """One delegate's ballot on one vote, as their client knows it."""

    meeting_id: int
    vote_id: int
    secret: bool
    seq: int = 0  # the voter's counter: the last seq sent
    option: int | None = None  # the option of the last acknowledged ballot
    receipt: str | None = None  # secret: made by the client before its first ballot
    pending: int | None = None  # option sent with `seq`, not acknowledged yet
    unsure: bool = False  # `pending` was in flight at a kill (or refused to retry)


@dataclass
class Voter:
    link: Link
    client: Client
    ballots: list[Ballot] = field(default_factory=list)
    resolved: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    acks: int = 0

    async def send(self, b: Ballot) -> None:
        payload: dict[str, Any] = {"meeting_id": b.meeting_id, "vote_id": b.vote_id,
                                   "option": b.pending, "seq": b.seq}
        if b.receipt is not None:
            payload["receipt"] = b.receipt
        ack = await self.link.call("vote:cast", payload)
        if ack["ok"]:
            r = ack["result"]
            assert r["option"] == b.pending and r["receipt"] == b.receipt, (b, r)
            if r.get("replayed"):  # stored before the kill: its ack, receipt and all, again
                assert b.secret and b.unsure, (b, r)
                self.resolved["secret, answered again"] += 1
            else:
                assert r["changed"] == (b.option is not None), (b, r)
                if b.unsure:
                    self.resolved["stored on resend"] += 1
        elif ack["error"]["code"] == "stale" and b.unsure and not b.secret:
            # Stored before the kill (its seq is there already): only the ack was lost.
            self.resolved["already stored"] += 1
        else:
            assert ack["error"]["code"] in NOT_ACKED, f"ballot refused: {ack} {b}"
            self.rate_limited += 1
            b.unsure = True
            await asyncio.sleep(1.0)
            return
        self.acks += 1
        b.option, b.pending, b.unsure = b.pending, None, False

    async def run(self, rnd: random.Random) -> None:
        while True:
            b = rnd.choice(self.ballots)
            if b.pending is None:
                b.seq += 1
                b.pending = rnd.randrange(OPTIONS)
            if b.pending is not None:
                await self.send(b)
            await asyncio.sleep(rnd.uniform(0.2, 0.6))

    def killed(self) -> None:
        for b in self.ballots:
            b.unsure = b.unsure or b.pending is not None

    async def resolve(self) -> None:
        for b in self.ballots:
            for _ in range(20):
                if b.pending is None:
                    break
                await self.send(b)
            assert b.pending is None, b

