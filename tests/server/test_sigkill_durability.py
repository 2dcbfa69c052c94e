"""Durability under SIGKILL: a real `run.py` is killed at random moments while tablets send
annotation ops and delegates cast open and secret ballots (and, every other cycle, while the
chair closes the votes); after each restart every acknowledged op and ballot is there
exactly once.

Everything is checked through the protocol, as clients would: op ids (`replayed` on a resend,
`annotation:since` histories, snapshots), ballot `seq`s (a resent open ballot is `stale` once it
is stored; a secret one, sent with its client-made receipt, is answered again, `replayed`),
`procedure:state` (`me.voted`, tallies), receipts (`POST …/receipts/check`) and the
final results at close. What was in flight at a kill is unknown to its client, which resends
it after reconnecting (the protocol's ids make that safe); it must then count exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import socketio

from rooms.ballot_box import new_receipt
from testkit.processes import ServerProcess, start_server
from tests.conftest import Client
from tests.documents import corpus

KILLS = 4  # per database, during traffic (1.5-4 s of it each); 2 more during vote closes
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
        self.process = start_server(*self.args, *extra, port=self.port)
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


# --- the scenario ----------------------------------------------------------------------------


async def login(server: Server, username: str, password: str) -> Client:
    client = Client(aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)), server.base)
    status, body = await client.call("POST", "/api/login",
                                     {"username": username, "password": password})
    assert status == 200, body
    client.csrf, client.user = body["csrf_token"], body["user"]
    return client


async def rest(client: Client, method: str, path: str, body: Any = None,
               expect: int = 200) -> Any:
    status, answer = await client.call(method, path, body)
    assert status == expect, (method, path, status, answer)
    return answer


async def upload_ready(secretary: Client, meeting_id: int, tmp: Path) -> dict[str, Any]:
    pdf = corpus.make_text_pdf(tmp, pages=PAGES, name="to-trinh.pdf").read_bytes()
    form = aiohttp.FormData()
    form.add_field("file", pdf, filename="Tờ trình.pdf", content_type="application/pdf")
    async with secretary.session.post(f"{secretary.base}/api/meetings/{meeting_id}/documents",
                                      data=form, headers={"X-CSRF-Token": secretary.csrf}) as r:
        doc = await r.json()
        assert r.status == 202, doc
    for _ in range(300):
        details = await rest(secretary, "GET", f"/api/documents/{doc['id']}")
        if details["status"] in ("ready", "ready_with_warnings"):
            await rest(secretary, "POST", f"/api/documents/{doc['id']}/publish",
                       {"published": True})
            return dict(details)
        assert details["status"] == "processing", details
        await asyncio.sleep(0.1)
    raise AssertionError("the document did not become ready")


@dataclass
class Scenario:
    server: Server
    clients: list[Client]
    links: list[Link]
    tablets: list[Tablet]
    voters: list[Voter]
    chair: Link
    chair_http: Client
    meetings: tuple[int, int]  # the open votes are in the first, the secret ones in the second
    items: tuple[int, int]
    document_id: int
    version: int
    closed: dict[int, dict[str, Any]] = field(default_factory=dict)  # vote id -> final result
    receipts: list[tuple[Client, int, int, str | None, int | None]] = \
        field(default_factory=list)

    async def open_votes(self, cycle: int) -> None:
        votes = []
        for meeting_id, item_id, secret in zip(self.meetings, self.items, (False, True)):
            vote = await self.chair.ok("vote:open", {
                "meeting_id": meeting_id, "agenda_item_id": item_id, "secret": secret,
                "allow_change": True, "question": f"Thông qua tờ trình số {cycle}"})
            votes.append((meeting_id, vote["id"], secret))
        for voter in self.voters:
            voter.ballots = [Ballot(m, v, s, receipt=new_receipt() if s else None)
                             for m, v, s in votes]

    async def reconnect(self) -> None:
        limit = asyncio.Semaphore(10)

        async def one(link: Link) -> None:
            async with limit:
                await link.close()
                await link.open()
        await asyncio.gather(*(one(link) for link in self.links))


async def setup(server: Server, tmp: Path) -> Scenario:
    logins = server.process.logins() if server.process else {}
    clients: list[Client] = []

    async def person(name: str, password: str | None = None) -> Client:
        client = await login(server, name, password or logins[name])
        clients.append(client)
        return client

    admin, chair, secretary = [await person(n) for n in ("quantri", "chutri", "thuky")]
    (first,) = (await rest(chair, "GET", "/api/meetings"))["meetings"]
    second = await rest(chair, "POST", "/api/meetings", {
        "title": "Kỳ họp bỏ phiếu kín", "unit_id": first["unit_id"],
        "starts_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}, expect=201)
    meetings = (first["id"], second["id"])
    names = [f"daibieu-kt{n:02d}" for n in range(VOTERS)]
    for name in names:
        user = await rest(admin, "POST", "/api/users", {
            "username": name, "full_name": f"Đại biểu {name[-2:]}", "password": PASSWORD,
            "role": "delegate"}, expect=201)
        for m in meetings:
            await rest(chair, "POST", f"/api/meetings/{m}/members",
                       {"role": "delegate", "user_id": user["id"]}, expect=201)
    items = []
    for m in meetings:
        await rest(chair, "POST", f"/api/meetings/{m}/open")
        item = await rest(chair, "POST", f"/api/meetings/{m}/agenda",
                          {"title": "Thông qua tờ trình"}, expect=201)
        items.append(item["id"])
    document = await upload_ready(secretary, meetings[0], tmp)
    links: list[Link] = []

    def link_of(client: Client) -> Link:
        links.append(Link(server, client))
        return links[-1]

    chair_link = link_of(chair)
    await chair_link.open()
    for m in meetings:
        await chair_link.join("meeting:join", {"meeting_id": m})
        await chair_link.ok("attendance:check_in", {"meeting_id": m, "mode": "in_person"})
    tablets = []
    for name in ANNOTATOR_USERS:
        client = chair if name == "chutri" else secretary if name == "thuky" else \
            await person(name)
        for _ in range(TABLETS_PER_ANNOTATOR):
            link = link_of(client)
            await link.open()
            await link.join("meeting:join", {"meeting_id": meetings[0]})
            details = await link.join("document:subscribe", {"document_id": document["id"]})
            tablets.append(Tablet(str(client.user["id"]), link, document["id"],
                                  details["version"], details["page_sizes"]))
    voters = []
    for name in names:
        client = await person(name, PASSWORD)
        link = link_of(client)
        await link.open()
        for m in meetings:
            await link.join("meeting:join", {"meeting_id": m})
            await link.ok("attendance:check_in", {"meeting_id": m, "mode": "online"})
        voters.append(Voter(link, client))
    return Scenario(server, clients, links, tablets, voters, chair_link, chair, meetings,
                    (items[0], items[1]), document["id"], document["version"])


# --- checks after each restart ---------------------------------------------------------------


async def check_annotations(sc: Scenario, rnd: random.Random) -> int:
    """Every acknowledged op once, at its acknowledged seq; snapshots hold exactly the
    annotations the acknowledged ops leave; an acknowledged op resent is `replayed`."""
    acked: dict[str, tuple[int, int]] = {}
    live: dict[str, tuple[str, str]] = {}  # annotation id -> (author, visibility)
    for t in sc.tablets:
        acked.update(t.acked)
        live.update({a: (t.user_id, vis) for a, vis in t.live.items()})
    by_user: dict[str, list[Tablet]] = {}
    for t in sc.tablets:
        by_user.setdefault(t.user_id, []).append(t)

    async def user_view(user_id: str, tablets: list[Tablet]) -> None:
        link = tablets[0].link
        own = {op: at for t in tablets for op, at in t.acked.items()}
        seen: set[str] = set()
        for page in range(PAGES):
            since = await link.ok("annotation:since", {
                "document_id": sc.document_id, "version": sc.version, "page": page,
                "after_seq": 0})
            ops = [e["op_id"] for e in since["events"]]
            assert len(ops) == len(set(ops)), f"an op appears twice on page {page}"
            seqs = [e["seq"] for e in since["events"]]
            assert seqs == sorted(set(seqs)), seqs
            for event in since["events"]:
                # Only acknowledged ops, each at the seq its acknowledgement gave.
                assert acked.get(event["op_id"]) == (page, event["seq"]), event
            seen.update(ops)
        lost = set(own) - seen
        assert not lost, f"user {user_id}: acknowledged ops missing after restart: {lost}"
        snap = await link.ok("annotation:snapshot", {"document_id": sc.document_id,
                                                     "version": sc.version})
        ids = [a["id"] for p in snap["pages"] for a in p["annotations"]]
        assert len(ids) == len(set(ids)), "an annotation appears twice"
        presenter = user_id in {str(c.user["id"]) for c in sc.clients
                                if c.user["username"] in ("chutri", "thuky")}
        expected = {a for a, (author, vis) in live.items()
                    if author == user_id or vis == "meeting" or (vis == "presenter" and presenter)}
        assert set(ids) == expected, (f"user {user_id}: missing {expected - set(ids)}, "
                                      f"unexpected {set(ids) - expected}")

    await asyncio.gather(*(user_view(u, ts) for u, ts in by_user.items()))
    for t in sc.tablets:
        for op_id in rnd.sample(sorted(t.acked), min(2, len(t.acked))):
            result = await t.link.ok("annotation:op", {"document_id": sc.document_id,
                                                       "version": sc.version,
                                                       "op": t.sent[op_id]})
            assert result["replayed"] and (result["page"], result["seq"]) == t.acked[op_id]
    return len(acked)


async def check_votes(sc: Scenario) -> None:
    """Each voter's last acknowledged ballot is stored (resending it is `stale`, or for a
    secret one, answered again with its receipt), `me.voted`
    lists the vote, tallies and turnout count each voter once, receipts check out."""
    expected: dict[int, Counter[int]] = {}
    for voter in sc.voters:
        for b in voter.ballots:
            tally = expected.setdefault(b.vote_id, Counter())
            if b.option is not None:
                tally[b.option] += 1
    limit = asyncio.Semaphore(8)

    async def voter_view(voter: Voter) -> None:
        async with limit:
            for b in voter.ballots:
                if b.option is None or b.vote_id in sc.closed:
                    continue
                payload: dict[str, Any] = {"meeting_id": b.meeting_id, "vote_id": b.vote_id,
                                           "option": b.option, "seq": b.seq}
                if b.receipt is not None:
                    payload["receipt"] = b.receipt
                again = await voter.link.call("vote:cast", payload)
                if b.secret:  # answered again only if its sealed ballot holds that option
                    assert again.get("result") == {
                        "vote_id": b.vote_id, "option": b.option, "changed": False,
                        "receipt": b.receipt, "replayed": True}, \
                        f"an acknowledged ballot is not stored: {b} resent -> {again}"
                    continue
                assert not again["ok"] and again["error"]["code"] == "stale", \
                    f"an acknowledged ballot is not stored: {b} resent -> {again}"
            for m in sc.meetings:
                state = await voter.link.ok("procedure:state", {"meeting_id": m})
                current = {b.vote_id for b in voter.ballots
                           if b.meeting_id == m and b.vote_id not in sc.closed}
                mine = {b.vote_id for b in voter.ballots if b.vote_id in current
                        and b.option is not None}
                assert set(state["me"]["voted"]) & current == mine, (state["me"], mine)

    async def receipt(client: Client, m: int, vote_id: int, code: str | None,
                      option: int | None) -> None:
        async with limit:
            found = await rest(client, "POST", f"/api/meetings/{m}/receipts/check",
                               {"receipt": code})
        assert found["counted"] and found["vote_id"] == vote_id and found["option"] == option, \
            (found, vote_id, option)

    current = [(voter.client, b.meeting_id, b.vote_id, b.receipt, b.option)
               for voter in sc.voters for b in voter.ballots
               if b.secret and b.receipt is not None and b.option is not None
               and b.vote_id not in sc.closed]
    await asyncio.gather(*(voter_view(v) for v in sc.voters),
                         *(receipt(*r) for r in [*sc.receipts, *current]))
    for m in sc.meetings:
        state = await sc.chair.ok("procedure:state", {"meeting_id": m})
        for vote in state["votes"]:
            if vote["id"] in sc.closed:  # closed before an earlier kill: frozen since
                assert vote["final"] and vote["result"] == sc.closed[vote["id"]], vote
                continue
            tally = expected[vote["id"]]
            assert vote["turnout"]["cast"] == sum(tally.values()), (vote, tally)
            if not vote["secret"]:
                assert vote["result"]["counts"] == [tally[o] for o in range(OPTIONS)], vote
            else:
                assert vote["result"] is None  # no live counts for a secret vote


async def close_votes(sc: Scenario, kill_after: float | None, outcomes: Counter[str]) -> None:
    """Close this cycle's votes (both at once, as two chairs' consoles could); with
    `kill_after`, SIGKILL the server that many seconds after sending the closes, restart and
    resend them: a close that committed answers `vote_closed`. Either way the final counts
    are exactly the acknowledged ballots, and stay so."""
    current = list(sc.voters[0].ballots)
    closes = [asyncio.create_task(sc.chair.call("vote:close", {
        "meeting_id": b.meeting_id, "vote_id": b.vote_id})) for b in current]
    if kill_after is not None:
        await asyncio.sleep(kill_after)
        sc.server.kill()
        for task in closes:
            task.cancel()
        await asyncio.gather(*closes, return_exceptions=True)
        sc.server.start()
        await sc.reconnect()
        closes = [asyncio.create_task(sc.chair.call("vote:close", {
            "meeting_id": b.meeting_id, "vote_id": b.vote_id})) for b in current]
    states = {}
    for b0, task in zip(current, closes, strict=True):
        ack = await task
        if ack["ok"]:
            outcomes["closed after the kill" if kill_after is not None else "closed"] += 1
            vote = ack["result"]
        else:
            assert kill_after is not None and ack["error"]["code"] == "vote_closed", ack
            outcomes["closed before the kill"] += 1
            if b0.meeting_id not in states:
                states[b0.meeting_id] = await sc.chair.ok("procedure:state",
                                                          {"meeting_id": b0.meeting_id})
            (vote,) = [v for v in states[b0.meeting_id]["votes"] if v["id"] == b0.vote_id]
        mine = [b for v in sc.voters for b in v.ballots if b.vote_id == b0.vote_id]
        tally = Counter(b.option for b in mine if b.option is not None)
        result = vote["result"]
        assert vote["final"] and result["counts"] == [tally[o] for o in range(OPTIONS)], \
            (vote, tally)
        assert result["cast"] == sum(result["counts"]) == sum(tally.values()), result
        sc.closed[b0.vote_id] = result
    sc.receipts += [(v.client, b.meeting_id, b.vote_id, b.receipt, b.option)
                    for v in sc.voters for b in v.ballots
                    if b.secret and b.receipt is not None and b.option is not None]
    if kill_after is not None:
        await check_votes(sc)  # earlier results frozen, every receipt counted


async def test_acknowledged_ops_and_ballots_survive_sigkill_exactly_once(
        tmp_path: Path, database_url: str | None) -> None:
    seed = int(os.environ.get("HOPSO_DURABILITY_SEED", time.time_ns() % 1_000_000))
    rnd = random.Random(seed)
    print(f"HOPSO_DURABILITY_SEED={seed}")  # shown with a failure: replays the same choices
    args = ["--data-dir", str(tmp_path / "data")]
    if database_url:
        args += ["--database-url", database_url]
    server = Server(args)
    server.start("--demo")
    sc: Scenario | None = None
    try:
        sc = await setup(server, tmp_path)
        in_flight = 0
        closes: Counter[str] = Counter()
        for cycle in range(1, KILLS + 1):
            await sc.open_votes(cycle)
            runners = [asyncio.create_task(c.run(random.Random(rnd.random())))
                       for c in [*sc.tablets, *sc.voters]]
            await asyncio.sleep(rnd.uniform(1.5, 4.0))
            for task in runners:  # a runner only ends early on a failed assertion
                if task.done():
                    task.result()
            server.kill()  # at a random moment of the traffic, whatever is in flight
            for task in runners:
                task.cancel()
            outcomes = await asyncio.gather(*runners, return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException) and not isinstance(
                        outcome, (asyncio.CancelledError, Killed)):
                    raise outcome
            for c in [*sc.tablets, *sc.voters]:
                c.killed()
            in_flight += sum(len(t.queue) for t in sc.tablets) + sum(
                b.pending is not None for v in sc.voters for b in v.ballots)
            server.start()
            await sc.reconnect()
            for c in [*sc.tablets, *sc.voters]:
                await c.resolve()  # resend what was in flight, with its op id / seq
            await check_annotations(sc, rnd)
            await check_votes(sc)
            # Every other cycle the server is also killed while the two closes are in flight
            # (unsealing, counting and freezing a result is one transaction each).
            await close_votes(sc, rnd.uniform(0, 0.05) if cycle % 2 == 0 else None, closes)
        ops = sum(len(t.acked) for t in sc.tablets)
        ballots = sum(v.acks for v in sc.voters)
        resolved = sum((t.resolved for t in sc.tablets), Counter()) + sum(
            (v.resolved for v in sc.voters), Counter())
        drops = sum(link.unexpected_drops for link in sc.links)
        limited = sum(t.rate_limited for t in sc.tablets) + sum(v.rate_limited
                                                                for v in sc.voters)
        print(f"{KILLS + KILLS // 2} SIGKILLs, {ops} ops and {ballots} ballots acknowledged, "
              f"{in_flight} in flight at the kills ({dict(resolved)}), votes {dict(closes)}, "
              f"{limited} rate_limited, {drops} unexpected disconnects")
        assert ops > 100 and ballots > 100, (ops, ballots)
        assert drops == 0, f"{drops} connections dropped while the server was up"
        assert not server.tracebacks(), "\n".join(server.logs[-80:])
    finally:
        if sc is not None:
            for link in sc.links:
                await link.close()
            for client in sc.clients:
                await client.session.close()
        server.stop()
