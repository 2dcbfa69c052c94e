"""The Đồng Hới rehearsal's tree as real processes: the province node, Thành phố Đồng Hới
(the city) and its wards, each a `run.py --demo` with its own data directory and database,
every child linked to its parent through an emulated WAN link (testkit/wan.py). Used by the
rehearsal test (tests/server/cascade/test_rehearsal.py) and bench/province.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from testkit.http import Client
from testkit.processes import LoggedServer
from testkit.wan import Impairment, WanLink, loss_rule

T = TypeVar("T")
PROVINCE, CITY = "province", "city:dong-hoi"
WEAK = Impairment(rate_bps=1_000_000, rtt_ms=150, loss=0.03)  # one ward on a poor line
DEFAULT = Impairment()  # 4 Mbit/s, 40 ms RTT, 1 % loss


def ward_unit(n: int) -> str:
    return f"ward:dong-hoi-{n}"


def secret(unit: str) -> str:
    return f"{unit.replace(':', '-')}-secret-0123456789"


@dataclass
class Node:
    unit: str
    server: LoggedServer
    link: WanLink | None = None  # to its parent
    people: list[Client] = field(default_factory=list)
    tablets: list[Tablet] = field(default_factory=list)  # each one opened: closed with the tree

    @property
    def base(self) -> str:
        return self.server.base

    async def login(self, username: str) -> Client:
        http = Client.new(self.base)
        self.people.append(http)
        status, body = await http.call("POST", "/api/login", {
            "username": username, "password": self.server.logins[username]})
        assert status == 200, (self.unit, username, body)
        http.csrf, http.user = body["csrf_token"], body["user"]
        return http


@dataclass
class ProvinceTree:
    province: Node
    city: Node
    wards: list[Node]
    loss_applied: str | None = None  # why loss could not be applied, if it could not

    @property
    def nodes(self) -> list[Node]:
        return [self.province, self.city, *self.wards]

    async def close(self) -> None:
        for node in reversed(self.nodes):  # children first
            for tablet in node.tablets:  # their socket clients' own HTTP sessions too
                await tablet.close()
            for person in node.people:
                await person.close()
            if node.link is not None:
                await node.link.close()
            await asyncio.to_thread(node.server.stop)


async def start_tree(root: Path, wards: int, city_link: Impairment = DEFAULT,
                     ward_links: list[Impairment] | None = None,
                     env: dict[str, str] | None = None, preimported: bool = False
                     ) -> ProvinceTree:
    """Start every node at once (a child retries its parent link until it is up); each
    child's HOPSO_PARENT_URL is its WAN link, which forwards to the parent. `preimported`:
    as testkit/processes.start_server's (tests; a benchmark's servers start as deployed)."""
    links = ward_links or [WEAK if n == wards else DEFAULT for n in range(1, wards + 1)]
    ward_units = [ward_unit(n) for n in range(1, wards + 1)]
    base_env = {"HOPSO_FAST_HASH": "1", **(env or {})}

    def server(unit: str, extra: dict[str, str]) -> LoggedServer:
        data = root / unit.replace(":", "-")
        data.mkdir(parents=True, exist_ok=True)
        return LoggedServer(data, env={**base_env, "HOPSO_NODE_UNIT": unit, **extra},
                            preimported=preimported)

    province = Node(PROVINCE, server(PROVINCE, {
        "HOPSO_NODE_CHILDREN": f"{CITY}={secret(CITY)}"}))
    city_wan = await WanLink(province.server.port, city_link).start()
    city_server_port_env = {
        "HOPSO_PARENT_URL": city_wan.url, "HOPSO_NODE_SECRET": secret(CITY),
        "HOPSO_NODE_CHILDREN": ",".join(f"{u}={secret(u)}" for u in ward_units)}
    city = Node(CITY, server(CITY, city_server_port_env), city_wan)
    ward_nodes = []
    for unit, impairment in zip(ward_units, links, strict=True):
        wan = await WanLink(city.server.port, impairment).start()
        ward_nodes.append(Node(unit, server(unit, {
            "HOPSO_PARENT_URL": wan.url, "HOPSO_NODE_SECRET": secret(unit)}), wan))
    tree = ProvinceTree(province, city, ward_nodes)
    reasons = {loss_rule(n.link) for n in tree.nodes if n.link is not None}
    tree.loss_applied = next((r for r in reasons if r), None)
    try:
        # Each start imports the whole stack (~5 s of CPU): many at once on 2 shared cores.
        await asyncio.gather(*(n.server.ready(timeout=300) for n in tree.nodes))
    except BaseException:
        await tree.close()
        raise
    return tree


@asynccontextmanager
async def within(seconds: float, what: str) -> AsyncIterator[None]:
    """The block, failed with what it awaited if it takes over `seconds`: an HTTP call or
    a probe that never returns names itself instead of running into pytest's timeout."""
    timer = asyncio.timeout(seconds)
    try:
        async with timer:
            yield
    except TimeoutError:
        if timer.expired():
            raise AssertionError(f"{what}: not within {seconds} s") from None
        raise


async def until(probe: Callable[[], Awaitable[T | None]], timeout: float, what: str,
                every: float = 0.05) -> T:
    """Polls `probe` until it returns something true; AssertionError naming `what` after
    `timeout` s, also when one probe hangs (it is cancelled at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        async with within(max(deadline - time.monotonic(), 0.0) + every,
                          f"{what} (a probe hung)"):
            found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(every)


async def cascaded_meeting(tree: ProvinceTree, seats: dict[str, int]
                           ) -> tuple[Client, int, str, dict[str, int]]:
    """The province chair opens their first demo meeting and invites the city and every
    ward with their seats (a node's seats cover its whole subtree: the city's include its
    wards'); each node's secretary finds the mirror. (chair, meeting id, key, {unit:
    mirror id})."""
    chair = await tree.province.login("chutri")
    _, mine = await chair.call("GET", "/api/meetings")
    meeting_id = mine["meetings"][0]["id"]
    assert (await chair.call("POST", f"/api/meetings/{meeting_id}/open"))[0] == 200
    units = [tree.city.unit, *(w.unit for w in tree.wards)]
    status, body = await chair.call("PUT", f"/api/meetings/{meeting_id}/nodes", {
        "nodes": units, "seats": seats})
    assert status == 200, body
    key = f"{PROVINCE}/{meeting_id}"
    mirrors: dict[str, int] = {}

    async def mirrored(node: Node) -> None:
        secretary = await node.login("thuky")

        async def find() -> int | None:
            _, listed = await secretary.call("GET", "/api/meetings")
            return next((m["id"] for m in listed["meetings"] if m["cascade_key"] == key
                         and m["status"] == "open"), None)
        mirrors[node.unit] = await until(find, 30, f"the meeting mirrored at {node.unit}",
                                         every=0.2)
    await asyncio.gather(*(mirrored(n) for n in tree.nodes[1:]))
    return chair, meeting_id, key, mirrors


PASSWORD = "rehearsal-password-1"


async def seed_delegates(node: Node, meeting_id: int, count: int, prefix: str = "db"
                         ) -> list[str]:
    """`count` delegates made by the node's administrator and invited to its copy of the
    meeting by its secretary; all share PASSWORD. Usernames returned."""
    admin, secretary = await node.login("quantri"), await node.login("thuky")
    names = []
    for n in range(1, count + 1):
        username = f"{prefix}{n:03d}"
        status, user = await admin.call("POST", "/api/users", {
            "username": username, "full_name": f"Đại biểu {n} ({node.unit})",
            "password": PASSWORD, "role": "delegate", "unit_id": admin.user["unit_id"]})
        assert status == 201, (node.unit, user)
        status, body = await secretary.call("POST", f"/api/meetings/{meeting_id}/members",
                                            {"role": "delegate", "user_id": user["id"]})
        assert status == 201, (node.unit, body)
        node.server.logins[username] = PASSWORD
        names.append(username)
    return names


class Tablet:
    """A delegate's tablet at one node: logged in, in the meeting's live channel, keeping
    every event pushed to it with the monotonic time it arrived."""

    def __init__(self, node: Node, username: str, meeting_id: int) -> None:
        self.node, self.username, self.meeting_id = node, username, meeting_id
        self.http: Client | None = None
        self.sio: Any = None
        self.events: list[tuple[float, str, Any]] = []
        self._arrived = asyncio.Event()

    async def open(self) -> Tablet:
        import socketio  # the harness's own client library, as the browser's

        self.http = await self.node.login(self.username)
        self.sio = socketio.AsyncClient(reconnection=False)
        self.node.tablets.append(self)  # closed with the tree, even if this open fails

        async def any_event(event: str, data: Any = None) -> None:
            self.events.append((time.monotonic(), event, data))
            self._arrived.set()
        self.sio.on("*", any_event)
        await self.sio.connect(self.node.base, headers={"Cookie": self.http.cookie_header()},
                               transports=["websocket"], wait_timeout=10)
        await self.call("meeting:join", {"meeting_id": self.meeting_id})
        return self

    async def call(self, event: str, data: dict[str, Any], timeout: float = 10) -> Any:
        ack = await self.sio.call(event, data, timeout=timeout)
        if not (isinstance(ack, dict) and ack.get("ok")):
            raise AssertionError(f"{self.username}@{self.node.unit} {event}: {ack}")
        return ack.get("result", ack)

    async def wait_for(self, event: str, match: Callable[[Any], bool], timeout: float,
                       since: float = 0.0) -> tuple[float, Any]:
        """The first `event` since `since` (monotonic) whose data matches: (time, data)."""
        deadline = time.monotonic() + timeout
        while True:
            for at, name, data in self.events:
                if at >= since and name == event and match(data):
                    return at, data
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{event} not seen by {self.username}@{self.node.unit} "
                                     f"within {timeout} s")
            self._arrived.clear()
            try:
                async with asyncio.timeout(min(remaining, 0.5)):
                    await self._arrived.wait()
            except TimeoutError:
                pass

    async def close(self) -> None:
        """Disconnected, which closes the socket client's own aiohttp session (left open,
        it was reported "Unclosed client session" at exit); closing twice is harmless."""
        sio, self.sio = self.sio, None
        if sio is not None:
            await sio.disconnect()


def make_pdf(path: Path, pages: int = 30, size: int = 5_000_000) -> Path:
    """A `pages`-page PDF of about `size` bytes: each page's own big text (so a page can be
    told from another in a render or a search) and an incompressible image."""
    import os

    import pymupdf

    doc = pymupdf.open()
    per_page = max(1, size // pages - 2_000)
    for n in range(1, pages + 1):
        page = doc.new_page(width=595, height=842)
        page.insert_text((72, 120), f"Trang {n}: Nghi quyet ky hop thu {n}", fontsize=22)
        side = int((per_page / 3) ** 0.5)
        pixmap = pymupdf.Pixmap(pymupdf.csRGB, side, side, os.urandom(side * side * 3), False)
        page.insert_image(pymupdf.Rect(72, 200, 520, 648), stream=pixmap.tobytes("png"))
    doc.save(path, deflate=True)
    doc.close()
    return path
