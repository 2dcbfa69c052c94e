"""Cascade links between three in-process SFUs (province <- city <- ward):
real ICE/DTLS/SRTP legs on loopback, aiortc publishers and decoding subscribers."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from media import SFU
from media.errors import NegotiationError
from media.link import Cascade, LinkEnd, LinkError, LinkLimits, connect_local
from media.link_transport import LinkTransport
from media.types import Direction
from testkit.aiortc_clients import EncodedMedia, Publisher, Subscriber, wait_for

from .conftest import make_config

MEETING = "m1"


@dataclass
class Node:
    name: str
    sfu: SFU
    cascade: Cascade

    @property
    def router(self):  # type: ignore[no-untyped-def]
        return self.cascade.router


@pytest.fixture
async def nodes() -> AsyncIterator[dict[str, Node]]:
    out = {}
    for name in ("province", "city", "ward"):
        sfu = SFU(make_config())
        out[name] = Node(name, sfu, Cascade(sfu.router(MEETING), name,
                                            LinkLimits(release_after_s=0.3)))
    yield out
    for node in out.values():
        await node.cascade.close()
        await node.sfu.close()
    await asyncio.sleep(0)


def link(child: Node, parent: Node) -> tuple[LinkEnd, LinkEnd]:
    """(child's end, parent's end); each end is named after the other node."""
    return connect_local(child.cascade, parent.cascade, parent.name, child.name)


async def subscribe(node: Node, producer_id: str, name: str) -> Subscriber:
    await node.cascade.ensure(producer_id)
    sub = Subscriber(node.router.add_peer(name))
    await sub.subscribe(producer_id)
    return sub


def link_consumers(end: LinkEnd, producer_id: str) -> int:
    return sum(1 for c in end.peer.consumers if c.producer.id == producer_id)


def consumer_packets(end: LinkEnd) -> int:
    return sum(c.stats().packets_sent for c in end.peer.consumers)


async def test_one_copy_per_link_with_1_and_10_subscribers(
        nodes: dict[str, Node], media: EncodedMedia) -> None:
    province, city = nodes["province"], nodes["city"]
    city_up, province_down = link(city, province)
    pub = Publisher(province.router.add_peer("alice"), media)
    await pub.publish()
    video = pub.producer_id("video")
    await wait_for(lambda: video in city_up.remote_catalog)
    assert city.cascade.available()[video]["peer_id"] == "alice"
    subs = [await subscribe(city, video, "s0")]
    try:
        await wait_for(lambda: subs[0].frames("video") >= 3, timeout=8)
        # the relayed producer keeps the origin's id and publisher
        relayed = city.router.get_producer(video)
        assert relayed.peer_id == "alice" and relayed.app_data["cascade"]["via"] == "province"

        async def window() -> tuple[int, int]:
            producer = province.router.get_producer(video)
            link0, prod0 = consumer_packets(province_down), producer.packets_received
            await asyncio.sleep(1.0)
            return consumer_packets(province_down) - link0, producer.packets_received - prod0

        one_link, one_prod = await window()
        for i in range(1, 10):
            subs.append(await subscribe(city, video, f"s{i}"))
        await wait_for(lambda: all(s.frames("video") >= 3 for s in subs), timeout=10)
        ten_link, ten_prod = await window()
        print(f"link/publisher packets: 1 sub {one_link}/{one_prod}, 10 subs {ten_link}/{ten_prod}")
        assert link_consumers(province_down, video) == 1
        assert len(city.router.get_producer(video).consumers) == 10
        # One copy crosses the link: what the link sends is what the publisher sent.
        assert one_prod > 0 and ten_prod > 0
        assert 0.9 <= one_link / one_prod <= 1.1, (one_link, one_prod)
        assert 0.9 <= ten_link / ten_prod <= 1.1, (ten_link, ten_prod)
        # Nothing else was pulled: the audio producer was never asked for.
        assert pub.producer_id("audio") not in city_up.imported
    finally:
        for sub in subs:
            await sub.close()
        await pub.close()


async def test_three_levels_both_directions(nodes: dict[str, Node],
                                            media: EncodedMedia) -> None:
    province, city, ward = nodes["province"], nodes["city"], nodes["ward"]
    city_up, province_down = link(city, province)
    ward_up, city_down = link(ward, city)
    top = Publisher(province.router.add_peer("chair"), media, audio=False)
    await top.publish()
    low = Publisher(ward.router.add_peer("ward-user"), media, audio=False, video="H264")
    await low.publish()
    top_video, low_video = top.producer_id("video"), low.producer_id("video")
    # Catalogs are transitive both ways.
    await wait_for(lambda: top_video in ward.cascade.available()
                   and low_video in province.cascade.available())
    at_ward = await subscribe(ward, top_video, "w-sub")
    at_city = await subscribe(city, top_video, "c-sub")
    at_province = await subscribe(province, low_video, "p-sub")
    try:
        await wait_for(lambda: at_ward.frames("video") >= 3 and at_city.frames("video") >= 3
                       and at_province.frames("video") >= 3, timeout=10)
        # Each stream crosses each link once.
        assert link_consumers(province_down, top_video) == 1
        assert link_consumers(city_down, top_video) == 1
        assert link_consumers(city_up, low_video) == 1
        assert link_consumers(ward_up, low_video) == 1
        assert top_video in city_up.imported and top_video in ward_up.imported
        assert low_video in province_down.imported
    finally:
        for client in (at_ward, at_city, at_province):
            await client.close()
        await top.close()
        await low.close()


async def test_chair_mute_upstream_pauses_relayed_producers(
        nodes: dict[str, Node], media: EncodedMedia) -> None:
    province, city, ward = nodes["province"], nodes["city"], nodes["ward"]
    link(city, province)
    link(ward, city)
    pub = Publisher(province.router.add_peer("alice"), media, audio=False)
    await pub.publish()
    video = pub.producer_id("video")
    sub = await subscribe(ward, video, "w0")
    try:
        await wait_for(lambda: sub.frames("video") >= 2, timeout=8)
        province.router.pause_producer(video)
        await wait_for(lambda: ward.router.get_producer(video).paused
                       and city.router.get_producer(video).paused, timeout=3)
        assert ward.cascade.available()[video]["paused"] is True
        province.router.resume_producer(video)
        await wait_for(lambda: not ward.router.get_producer(video).paused, timeout=3)
        before = sub.frames("video")
        await wait_for(lambda: sub.frames("video") >= before + 3, timeout=5)
    finally:
        await sub.close()
        await pub.close()


async def test_unused_import_is_released(nodes: dict[str, Node], media: EncodedMedia) -> None:
    province, city = nodes["province"], nodes["city"]
    city_up, province_down = link(city, province)
    pub = Publisher(province.router.add_peer("alice"), media, audio=False)
    await pub.publish()
    video = pub.producer_id("video")
    await wait_for(lambda: video in city_up.remote_catalog)
    sub = await subscribe(city, video, "s0")
    try:
        await wait_for(lambda: sub.frames("video") >= 2, timeout=8)
        await city.router.close_peer("s0")
        await wait_for(lambda: link_consumers(province_down, video) == 0, timeout=5)
        await wait_for(lambda: video not in city_up.imported, timeout=5)
        assert video in city.cascade.available()  # still offered, just not carried
    finally:
        await sub.close()
        await pub.close()


async def test_link_loss_keeps_local_media_and_resumes(
        nodes: dict[str, Node], media: EncodedMedia) -> None:
    city, ward = nodes["city"], nodes["ward"]
    link(ward, city)
    remote = Publisher(city.router.add_peer("city-user"), media, audio=False)
    await remote.publish()
    local = Publisher(ward.router.add_peer("ward-user"), media, audio=False)
    await local.publish()
    remote_video, local_video = remote.producer_id("video"), local.producer_id("video")
    await wait_for(lambda: remote_video in ward.cascade.available())
    viewer = await subscribe(ward, local_video, "viewer")
    far = await subscribe(ward, remote_video, "viewer-far")
    try:
        await wait_for(lambda: viewer.frames("video") >= 2 and far.frames("video") >= 2,
                       timeout=8)
        # The city goes away: the ward keeps its local media.
        await ward.cascade.remove_link("city")
        await city.cascade.remove_link("ward")
        assert remote_video not in ward.cascade.available()
        before = viewer.frames("video")
        await wait_for(lambda: viewer.frames("video") >= before + 5, timeout=5)
        # The city returns: catalogs resync and media flows again within 5 s.
        started = asyncio.get_running_loop().time()
        link(ward, city)
        await wait_for(lambda: remote_video in ward.cascade.available(), timeout=5)
        again = await subscribe(ward, remote_video, "viewer-far-2")
        await wait_for(lambda: again.frames("video") >= 2, timeout=5)
        assert asyncio.get_running_loop().time() - started < 5
        await again.close()
    finally:
        for client in (viewer, far, local, remote):
            await client.close()


async def test_bad_link_input_is_refused_without_state_change(
        nodes: dict[str, Node], caplog: pytest.LogCaptureFixture) -> None:
    province, city = nodes["province"], nodes["city"]
    _city_up, province_down = link(city, province)
    await asyncio.sleep(0.05)
    caplog.set_level(logging.WARNING, logger="media.link")
    peers_before = [p.id for p in province.router.peers]
    assert "error" in await province_down.handle("pull", {"ids": ["nope"]})
    assert "error" in await province_down.handle("pull", {"ids": ["x"] * 1000})
    assert "error" in await province_down.handle("offer", {"sdp": "garbage", "consumers": []})
    assert "error" in await province_down.handle("frobnicate", {})
    assert "error" in await province_down.handle("catalog", {"producers": [{"id": 1}]})
    assert [p.id for p in province.router.peers if p.id != "link:city"] == [
        p for p in peers_before if p != "link:city"]
    assert "refused" in caplog.text
    # A flood is cut off by the per-link token bucket.
    flood = LinkLimits(rate_per_s=1, burst=5)
    province_down.limits = flood
    province_down._bucket.rate, province_down._bucket.tokens = 1, 5
    replies = [await province_down.handle("catalog", {"producers": []}) for _ in range(20)]
    assert sum("error" in r for r in replies) >= 14
    assert "rate limit" in caplog.text


async def test_controls_travel_down_the_tree_only(nodes: dict[str, Node],
                                                   media: EncodedMedia) -> None:
    province, city, ward = nodes["province"], nodes["city"], nodes["ward"]
    link(city, province)
    ward_up, _ = link(ward, city)
    heard: dict[str, list[dict[str, object]]] = {name: [] for name in nodes}
    for name, node in nodes.items():
        async def handler(data: dict[str, object], name: str = name) -> dict[str, object]:
            heard[name].append(data)
            return {"at": name}
        node.cascade.control_handler = handler
    top = Publisher(province.router.add_peer("chair"), media, audio=False)
    low = Publisher(ward.router.add_peer("ward-user"), media, audio=False)
    await top.publish()
    await low.publish()
    top_video, low_video = top.producer_id("video"), low.producer_id("video")
    try:
        await wait_for(lambda: low_video in province.cascade.available()
                       and top_video in ward.cascade.available())
        # Aimed at a producer: delivered where it is published, two links down.
        reply = await province.cascade.control({"producer_id": low_video, "action": "lock"})
        assert reply == {"at": "ward"} and heard["city"] == [] and heard["province"] == []
        # Never upward: not at a producer above, nor by a child writing to its parent.
        with pytest.raises(LinkError, match="upper node"):
            await ward.cascade.control({"producer_id": top_video, "action": "lock"})
        with pytest.raises(LinkError, match="parent node only"):
            await ward_up.request("control", {"action": "mute-all"})
        # Without a producer: here and on every node below.
        assert await province.cascade.control({"action": "mute-all"}) == {"at": "province"}
        await wait_for(lambda: len(heard["ward"]) == 2 and len(heard["city"]) == 1)
        assert heard["province"] == [{"action": "mute-all"}]
    finally:
        await top.close()
        await low.close()


async def test_one_transport_per_link_for_every_meeting_both_ways(media: EncodedMedia) -> None:
    """Two meetings over one city -> province link, media both ways in each: each
    link end has exactly one transport (one ICE session, one DTLS handshake), used
    by both halves of both meetings' link peers; SSRCs are unique on the link;
    closing one meeting's link keeps the transport and the other meeting's media."""
    sfus = {name: SFU(make_config()) for name in ("province", "city")}
    shared = {"province": LinkTransport(sfus["province"].config, sfus["province"].certificate,
                                        parent=True),
              "city": LinkTransport(sfus["city"].config, sfus["city"].certificate,
                                    parent=False)}
    cascades = {(node, m): Cascade(sfus[node].router(m), node, LinkLimits())
                for node in sfus for m in ("m1", "m2")}
    ends = {m: connect_local(cascades["city", m], cascades["province", m], "province", "city",
                             transports=(shared["city"], shared["province"]))
            for m in ("m1", "m2")}
    clients: list[Publisher | Subscriber] = []

    def listed(meeting: str, down: str, up: str) -> bool:
        return (down in cascades["city", meeting].available()
                and up in cascades["province", meeting].available())

    try:
        subs = {}
        for m in ("m1", "m2"):
            top = Publisher(cascades["province", m].router.add_peer(f"chair-{m}"), media,
                            audio=False)
            low = Publisher(cascades["city", m].router.add_peer(f"city-{m}"), media,
                            audio=False)
            clients += [top, low]
            await top.publish()
            await low.publish()
            down, up = top.producer_id("video"), low.producer_id("video")
            await wait_for(functools.partial(listed, m, down, up))
            for node, pid in (("city", down), ("province", up)):
                await cascades[node, m].ensure(pid)
                sub = Subscriber(cascades[node, m].router.add_peer(f"sub-{node}-{m}"))
                clients.append(sub)
                await sub.subscribe(pid)
                subs[node, m] = sub
        await wait_for(lambda: all(s.frames("video") >= 3 for s in subs.values()), timeout=10)

        for node, other in (("province", "city"), ("city", "province")):
            link_peers = [cascades[node, m].router.peer(f"link:{other}") for m in ("m1", "m2")]
            transports = {id(t): t for p in link_peers for t in p.transports}
            assert len(transports) == 1, f"{node}: {len(transports)} link transports"
            [transport] = transports.values()
            for peer in link_peers:  # both halves: imports and exports
                assert peer.transport(Direction.SEND) is transport
                assert peer.transport(Direction.RECV) is transport
                assert peer.producers and peer.consumers
            assert transport is shared[node].transport and transport.shared
            assert transport.handshakes == 1 and shared[node].transports_created == 1
            assert transport.stats().direction == "both"
            stats = shared[node].stats()
            assert (stats["transports"], stats["handshakes"]) == (1, 1)
            # SSRCs on the link: unique over its meetings and directions.
            ssrcs = [c.ssrc for p in link_peers for c in p.consumers]
            ssrcs += [c.rtx_ssrc for p in link_peers for c in p.consumers]
            ssrcs += [s for p in link_peers for pr in p.producers
                      for s in (pr.ssrc, pr.rtx_ssrc) if s is not None]
            assert len(ssrcs) == len(set(ssrcs)) == 8  # 2 meetings x (1 in + 1 out) x (media, rtx)
            assert shared[node].unrouted == 0

        # Every SDP on the link must describe its one transport: another ICE session
        # (here a browser-like offer) is refused, and nothing changes.
        stranger = Publisher(cascades["city", "m2"].router.peer("link:province"), media,
                             audio=False)
        clients.append(stranger)
        with pytest.raises(NegotiationError, match="one transport"):
            await stranger.publish()
        assert shared["city"].transport is not None
        assert shared["city"].transport.handshakes == 1 and shared["city"].unrouted == 0

        # One meeting's link peer closes at one end (its router closes there, say): the
        # other end's closes too, the transport and the other meeting stay.
        other_end = cascades["province", "m1"].router.peer("link:city")
        await cascades["city", "m1"].router.close_peer("link:province")
        await wait_for(lambda: other_end.closed, timeout=3)  # (lost imports re-pulled anew)
        assert not shared["province"].closed and not shared["city"].closed
        assert shared["province"].transport.handshakes == 1  # type: ignore[union-attr]
        # Closing one meeting's link leaves the transport and the other meeting.
        await cascades["city", "m1"].remove_link("province")
        await cascades["province", "m1"].remove_link("city")
        for end in shared.values():
            assert not end.closed and end.transport is not None and not end.transport.closed
        before = {k: s.frames("video") for k, s in subs.items() if k[1] == "m2"}
        await wait_for(lambda: all(subs[k].frames("video") >= n + 5
                                   for k, n in before.items()), timeout=5)
        for end in shared.values():
            assert end.transport is not None and end.transport.handshakes == 1
            assert end.attached == 2  # m2's two halves

        # The link's transport goes: everything over it closes, local media stays.
        for end in shared.values():
            await end.close()
        await wait_for(lambda: not ends["m2"][0].imported and not ends["m2"][1].imported,
                       timeout=5)
        for node in shared:
            router = cascades[node, "m2"].router
            assert [p.peer_id for p in router.producers()] == [
                "chair-m2" if node == "province" else "city-m2"]
    finally:
        for client in clients:
            await client.close()
        for cascade in cascades.values():
            await cascade.close()
        for end in shared.values():
            await end.close()
        for sfu in sfus.values():
            await sfu.close()
