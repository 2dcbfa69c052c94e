"""Node links over real socket.io (server/cascade/link.py): province <- city <- ward,
each node an aiohttp + socket.io server with its own SFU on a loopback port."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import socketio
from aiohttp import web

from media import SFU
from media.link import Cascade, LinkLimits
from server.cascade.directory import OpenDirectory
from server.cascade.link import NodeCascade
from server.cascade.schemas import NAMESPACE
from server.cascade.tokens import make_token
from server.core.settings import NodeSettings
from testkit.aiortc_clients import EncodedMedia, Publisher, Subscriber, wait_for
from testkit.processes import free_port

from .conftest import make_config

MEETING = "province/42"  # a meeting key: "<owner unit>/<id>"
SECRETS = {"city": "city-secret-0123456789", "ward": "ward-secret-0123456789"}


@dataclass
class Node:
    node: NodeCascade
    runner: web.AppRunner | None
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def router(self):  # type: ignore[no-untyped-def]
        return self.node.cascade(MEETING).router


async def start_node(unit: str, parent: Node | None, children: dict[str, str],
                     port: int | None = None) -> Node:
    settings = NodeSettings(unit, parent.url if parent else None,
                            SECRETS.get(unit), children)
    node = NodeCascade(settings, SFU(make_config()), LinkLimits(release_after_s=0.5),
                       directory=OpenDirectory())
    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app)
    node.attach(sio)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    port = port or free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    link = node.start_parent_link()
    if link is not None:
        await link.join(MEETING)
        await link.wait_connected(10)
    return Node(node, runner, port)


async def stop_node(n: Node) -> None:
    await n.node.close()
    await n.node.sfu.close()
    if n.runner is not None:
        await n.runner.cleanup()
        n.runner = None


@pytest.fixture
async def tree() -> AsyncIterator[dict[str, Node]]:
    nodes: dict[str, Node] = {}
    nodes["province"] = await start_node("province", None, {"city": SECRETS["city"]})
    nodes["city"] = await start_node("city", nodes["province"], {"ward": SECRETS["ward"]})
    nodes["ward"] = await start_node("ward", nodes["city"], {})
    yield nodes
    for name in ("ward", "city", "province"):
        await stop_node(nodes[name])
    await asyncio.sleep(0)


async def subscribe(n: Node, producer_id: str, name: str, timeout: float = 5) -> Subscriber:
    cascade = n.node.cascade(MEETING)
    await wait_for(lambda: producer_id in cascade.available(), timeout=timeout)
    await cascade.ensure(producer_id)
    sub = Subscriber(cascade.router.add_peer(name))
    await sub.subscribe(producer_id)
    return sub


async def subscribe_in(cascade: Cascade, producer_id: str, name: str) -> Subscriber:
    await wait_for(lambda: producer_id in cascade.available(), timeout=5)
    await cascade.ensure(producer_id)
    sub = Subscriber(cascade.router.add_peer(name))
    await sub.subscribe(producer_id)
    return sub


def link_copies(n: Node, link: str, producer_id: str) -> int:
    end = n.node.cascade(MEETING).links[link]
    return sum(1 for c in end.peer.consumers if c.producer.id == producer_id)


async def test_three_nodes_media_both_ways_one_copy_per_link(
        tree: dict[str, Node], media: EncodedMedia) -> None:
    province, city, ward = tree["province"], tree["city"], tree["ward"]
    top = Publisher(province.router().add_peer("chair"), media, audio=False)
    await top.publish()
    low = Publisher(ward.router().add_peer("ward-user"), media, audio=False)
    await low.publish()
    top_id, low_id = top.producer_id("video"), low.producer_id("video")
    at_ward = [await subscribe(ward, top_id, f"w{i}") for i in range(3)]
    at_city = await subscribe(city, top_id, "c0")
    at_province = await subscribe(province, low_id, "p0")
    clients = [*at_ward, at_city, at_province]
    try:
        await wait_for(lambda: all(c.frames("video") >= 3 for c in clients), timeout=10)
        assert link_copies(province, "city", top_id) == 1
        assert link_copies(city, "ward", top_id) == 1
        assert link_copies(ward, "city", low_id) == 1
        assert link_copies(city, "province", low_id) == 1
        view = city.node.view()
        assert view["path"] == ["city", "province"]
        assert view["parent"]["state"] == "connected"
        assert [c["unit"] for c in view["children"]] == ["ward"]
        assert view["children"][0]["exported"] == 1
    finally:
        for client in clients:
            await client.close()
        await top.close()
        await low.close()


async def test_city_restart_ward_resumes_within_5s(
        tree: dict[str, Node], media: EncodedMedia) -> None:
    province, city, ward = tree["province"], tree["city"], tree["ward"]
    top = Publisher(province.router().add_peer("chair"), media, audio=False)
    await top.publish()
    local = Publisher(ward.router().add_peer("ward-user"), media, audio=False)
    await local.publish()
    top_id, local_id = top.producer_id("video"), local.producer_id("video")
    far = await subscribe(ward, top_id, "far")
    near = await subscribe(ward, local_id, "near")
    clients = [far, near]
    try:
        await wait_for(lambda: far.frames("video") >= 3 and near.frames("video") >= 3,
                       timeout=10)
        port = city.port
        await stop_node(city)  # "kill" the city
        before = near.frames("video")
        await wait_for(lambda: near.frames("video") >= before + 5, timeout=5)  # local goes on
        started = time.monotonic()
        tree["city"] = city = await start_node("city", province, {"ward": SECRETS["ward"]},
                                               port=port)
        # The ward reconnects, rejoins and re-pulls by itself; a subscriber there
        # (the client re-subscribes the same producer id when it reappears) decodes again.
        again = await subscribe(ward, top_id, "far-2", timeout=5)
        clients.append(again)
        await wait_for(lambda: again.frames("video") >= 2, timeout=5)
        resumed = time.monotonic() - started
        assert resumed < 5, resumed
        assert ward.node.parent is not None and ward.node.parent.reconnects >= 1
    finally:
        for client in clients:
            await client.close()
        await top.close()
        await local.close()


async def _connect(url: str, auth: dict[str, str]) -> dict[str, Any] | None:
    """None if connected, else the refusal's Error ({"code", "message"})."""
    client = socketio.AsyncClient(reconnection=False)
    refusals: list[dict[str, Any]] = []

    async def on_error(data: dict[str, Any]) -> None:
        refusals.append(data)

    client.on("connect_error", on_error, namespace=NAMESPACE)
    try:
        await client.connect(url, namespaces=[NAMESPACE], transports=["websocket"],
                             auth=auth, wait_timeout=3)
    except socketio.exceptions.ConnectionError as exc:
        assert len(refusals) == 1, exc
        assert refusals[0]["message"] == refusals[0]["data"]["message"]
        return refusals[0]["data"]
    await client.disconnect()
    return None


async def test_bad_credentials_and_loops_are_refused(
        tree: dict[str, Node], caplog: pytest.LogCaptureFixture) -> None:
    province, city = tree["province"], tree["city"]
    caplog.set_level(logging.WARNING, logger="server.cascade")
    before = dict(province.node.children)
    cases: list[tuple[dict[str, str], str, str]] = [
        ({"unit": "city", "token": make_token("city", "wrong-secret-0123456789")},
         "not_authenticated", "wrong credential"),
        ({"unit": "city", "token": make_token("city", SECRETS["city"], time.time() - 3600)},
         "not_authenticated", "stale token"),
        ({"unit": "elsewhere", "token": make_token("elsewhere", SECRETS["city"])},
         "not_authenticated", "not a child"),  # a node claiming a unit not its own
        ({"unit": "city", "token": make_token("city", SECRETS["city"])},
         "conflict", "already has a live link"),
    ]
    for auth, code, reason in cases:
        refused = await _connect(province.url, auth)
        assert refused is not None and refused["code"] == code, (auth, refused)
        assert reason in refused["message"]
        assert reason in caplog.text
    # A loop in configured parents: the city accepting the province as its child.
    city.node.credentials["province"] = "prov-secret-0123456789"
    refused = await _connect(city.url, {"unit": "province",
                                        "token": make_token("province",
                                                            "prov-secret-0123456789")})
    assert refused is not None and refused["code"] == "forbidden" and "loop" in refused["message"]
    assert province.node.children.keys() == before.keys()
    # Revocation drops the live link; the child cannot come back.
    province.node.revoke("city")
    await wait_for(lambda: not province.node.children, timeout=5)
    await asyncio.sleep(1.5)
    assert not province.node.children
    assert "unit is not a child" in caplog.text


async def test_flooding_child_is_cut_off(tree: dict[str, Node]) -> None:
    province, city = tree["province"], tree["city"]
    link = next(iter(province.node.children.values()))
    link.bucket.rate, link.bucket.tokens = 1.0, 3.0
    parent = city.node.parent
    assert parent is not None and parent._client is not None
    replies = [await parent._client.call("link", {"meeting": MEETING, "op": "catalog",
                                                  "data": {"producers": []}},
                                         namespace=NAMESPACE) for _ in range(20)]
    refused = [r for r in replies if "rate limit" in str(r.get("error", ""))]
    assert len(refused) >= 15



async def test_one_media_transport_per_node_link_for_two_meetings(
        tree: dict[str, Node], media: EncodedMedia, caplog: pytest.LogCaptureFixture) -> None:
    """Two meetings over the province <- city socket.io link, media both ways in each:
    the link has one WebRTC transport at each end (one ICE session, one DTLS handshake)."""
    province, city = tree["province"], tree["city"]
    assert city.node.parent is not None
    caplog.set_level(logging.WARNING, logger="server.cascade")
    await city.node.parent.join("province/43")
    clients: list[Publisher | Subscriber] = []

    def offered(cascade: Cascade, producer_id: str) -> bool:
        return producer_id in cascade.available()

    try:
        for meeting in (MEETING, "province/43"):
            top = Publisher(province.node.cascade(meeting).router.add_peer(f"chair-{meeting}"),
                            media, audio=False)
            low = Publisher(city.node.cascade(meeting).router.add_peer(f"city-{meeting}"),
                            media, audio=False)
            clients += [top, low]
            await top.publish()
            await low.publish()
            for node, pid in ((city, top.producer_id("video")),
                              (province, low.producer_id("video"))):
                cascade = node.node.cascade(meeting)
                await wait_for(functools.partial(offered, cascade, pid), timeout=5)
                await cascade.ensure(pid)
                sub = Subscriber(cascade.router.add_peer(f"sub-{meeting}"))
                clients.append(sub)
                await sub.subscribe(pid)
        subs = [c for c in clients if isinstance(c, Subscriber)]
        await wait_for(lambda: all(s.frames("video") >= 3 for s in subs), timeout=10)
        up = city.node.view()["parent"]
        down = next(c for c in province.node.view()["children"] if c["unit"] == "city")
        for end in (up, down):
            assert (end["imported"], end["exported"]) == (2, 2), end
            assert (end["media_transports"], end["dtls_handshakes"]) == (1, 1), end
            assert end["directions"] == ["export", "import"], end
        assert sorted(down["meetings"]) == [MEETING, "province/43"]
        assert city.node.parent.transport is not None
        assert city.node.parent.transport.transports_created == 1
        assert city.node.parent.transport.unrouted == 0

        # The media transport fails under a live socket (here: the province's end
        # closes it): the city drops the link and links again with a new transport;
        # lost imports are re-pulled and a new subscriber decodes again.
        reconnects = city.node.parent.reconnects
        old = city.node.parent.transport
        child = next(c for c in province.node.children.values() if c.unit == "city")
        assert child.transport.transport is not None
        await child.transport.transport.close()
        await wait_for(lambda: city.node.parent is not None
                       and city.node.parent.reconnects > reconnects
                       and city.node.parent.state == "connected", timeout=10)
        assert old.closed and city.node.parent.transport is not old
        top_id = next(p.id for p in province.node.cascade("province/43").router.producers()
                      if p.peer_id == "chair-province/43")
        again = await subscribe_in(city.node.cascade("province/43"), top_id, "again-43")
        clients.append(again)
        await wait_for(lambda: again.frames("video") >= 3, timeout=10)
        up = city.node.view()["parent"]
        assert (up["media_transports"], up["dtls_handshakes"]) == (1, 1), up

        # The same from the other side: the city's end closes, the province drops the link.
        reconnects = city.node.parent.reconnects
        current = city.node.parent.transport
        assert current is not None and current.transport is not None
        await current.transport.close()
        await wait_for(lambda: city.node.parent is not None
                       and city.node.parent.reconnects > reconnects
                       and city.node.parent.state == "connected", timeout=10)
        assert any("media transport lost" in line for line in caplog.messages)
        again = await subscribe_in(city.node.cascade("province/43"), top_id, "again-43-2")
        clients.append(again)
        await wait_for(lambda: again.frames("video") >= 3, timeout=10)
    finally:
        for client in clients:
            await client.close()
