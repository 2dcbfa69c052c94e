"""Cascade links carry simulcast layers (issue 15 item 4): a simulcast publisher at one node,
real aiortc subscribers at another node over a real DTLS link, each decoding the layer it
asked for; each layer crosses the link once, whatever the number of subscribers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from media import SFU
from media.link import Cascade, LinkEnd, LinkLimits, connect_local
from server.cascade.schemas import LinkRequest
from testkit.aiortc_clients import Subscriber, TrackStats, wait_for
from testkit.encoded_cache import cached
from testkit.simulcast_publisher import SIZES, SimulcastMedia, SimulcastPublisher, encode_simulcast

from .conftest import make_config

MEETING = "m1"


@pytest.fixture(scope="module")
def layers() -> SimulcastMedia:
    return cached(encode_simulcast, seconds=2.0)


@pytest.fixture
async def nodes() -> AsyncIterator[dict[str, tuple[SFU, Cascade]]]:
    out = {}
    for name in ("province", "city", "ward"):
        sfu = SFU(make_config())
        out[name] = (sfu, Cascade(sfu.router(MEETING), name, LinkLimits(release_after_s=0.3)))
    yield out
    for sfu, cascade in out.values():
        await cascade.close()
        await sfu.close()
    await asyncio.sleep(0)


async def test_each_layer_crosses_once_and_ward_subscribers_choose_their_own(
        nodes: dict[str, tuple[SFU, Cascade]], layers: SimulcastMedia) -> None:
    (_, province), (_, ward) = nodes["province"], nodes["ward"]
    ward_up, province_down = connect_local(ward, province, "province", "ward")
    wire: list[tuple[str, dict[str, Any]]] = []
    request = province_down._request

    async def capture(op: str, data: dict[str, Any]) -> dict[str, Any]:
        wire.append((op, data))
        return await request(op, data)

    province_down._request = capture
    publisher = SimulcastPublisher(province.router.add_peer("alice"), layers, make_config())
    await publisher.publish()
    tasks = [asyncio.ensure_future(publisher.run(60))]
    publishers = [publisher]
    subs: list[Subscriber] = []
    try:
        video = publisher.producer_id
        origin = province.router.get_producer(video)
        await wait_for(lambda: all(s.ssrc is not None for s in origin.streams), 5)
        await wait_for(lambda: video in ward_up.remote_catalog, 5)
        await ward.ensure(video)
        # The ward's copy is a simulcast producer with the origin's layers.
        relayed = ward.router.get_producer(video)
        assert [s.rid for s in relayed.streams] == [s.rid for s in origin.streams]
        # The offer names each section's layer, and the server's link schema takes it.
        [offer] = [data for op, data in wire if op == "offer"]
        assert sorted(c["rid"] for c in offer["consumers"]) == ["r0", "r1", "r2"]
        LinkRequest.model_validate({"meeting": "ward/1", "op": "offer", "data": offer})
        for name, wanted in (("low", 0), ("high", None), ("low2", 0), ("mid", 1)):
            peer = ward.router.add_peer(name)
            sub = Subscriber(peer)
            await sub.subscribe(video)
            [consumer] = peer.consumers
            peer.set_preferred_layers(consumer.id, wanted)
            subs.append(sub)
        tracks = [next(t for t in s.tracks if t.kind == "video") for s in subs]
        await wait_for(lambda: all(t.frames >= 5 for t in tracks), 15)
        for track in tracks:
            track.sizes.clear()
        await wait_for(lambda: all(t.frames >= 5 and t.sizes for t in tracks), 5)
        before = [t.frames for t in tracks]
        await asyncio.sleep(1.0)
        # each decodes the layer it asked for, continuously, at the ward node
        assert all(t.frames > b for t, b in zip(tracks, before, strict=True))
        assert tracks[0].sizes == {SIZES[0]} and tracks[2].sizes == {SIZES[0]}, \
            [t.sizes for t in tracks]
        assert tracks[1].sizes == {SIZES[2]}, tracks[1].sizes
        assert tracks[3].sizes == {SIZES[1]}, tracks[3].sizes

        # Each layer crosses the link once: one link consumer per layer, each sending its
        # layer's packets (as many as the publisher sent of that layer), on its own SSRC.
        exports = [c for c in province_down.peer.consumers if c.producer.id == video]
        assert sorted(c.current_layer or 0 for c in exports) == [0, 1, 2]
        assert len({c.ssrc for c in exports}) == 3 and None not in [c.current_layer for c in exports]
        sent0 = {c.current_layer: c.stats().packets_sent for c in exports}
        got0 = [s.packets_received for s in origin.streams]
        recv0 = [s.packets_received for s in relayed.streams]
        await asyncio.sleep(1.0)
        sent = {c.current_layer: c.stats().packets_sent - sent0[c.current_layer]
                for c in exports}
        got = [s.packets_received - g for s, g in zip(origin.streams, got0, strict=True)]
        recv = [s.packets_received - r for s, r in zip(relayed.streams, recv0, strict=True)]
        print(f"per layer: publisher {got}, link sent {sent}, ward received {recv}")
        for layer in (0, 1, 2):
            assert got[layer] > 0
            assert 0.8 <= sent[layer] / got[layer] <= 1.2, (layer, sent, got)
            assert 0.8 <= recv[layer] / got[layer] <= 1.2, (layer, recv, got)
        # the province's own subscribers are untouched by the ward's choice
        assert all(c.preferred_spatial in (None, c.current_layer) for c in exports)

        # A second simulcast camera pulled over the same link: the re-offer keeps the first
        # producer's layer sections as they are, and the second gets its own layers.
        bob = SimulcastPublisher(province.router.add_peer("bob"), layers, make_config())
        await bob.publish()
        tasks.append(asyncio.ensure_future(bob.run(60)))
        publishers.append(bob)
        second = province.router.get_producer(bob.producer_id)
        await wait_for(lambda: all(s.ssrc is not None for s in second.streams), 5)
        await wait_for(lambda: bob.producer_id in ward_up.remote_catalog, 5)
        await ward.ensure(bob.producer_id)
        copy = ward.router.get_producer(bob.producer_id)
        assert [s.rid for s in copy.streams] == ["r0", "r1", "r2"]
        assert ward.router.get_producer(video) is relayed and not relayed.closed
        await wait_for(lambda: all(s.packets_received > 0 for s in copy.streams), 5)
        before = [t.frames for t in tracks]
        await asyncio.sleep(0.5)
        assert all(t.frames > b for t, b in zip(tracks, before, strict=True))
        assert len(province_down.peer.consumers) == 6
    finally:
        for sub in subs:
            await sub.close()
        for other in tasks:
            other.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for pub in publishers:
            await pub.close()


def export_packets(end: LinkEnd, producer_id: str) -> dict[int, int]:
    """Packets sent so far by each layer's link consumer of a producer."""
    return {c.preferred_spatial if c.preferred_spatial is not None else -1:
            c.stats().packets_sent for c in end.peer.consumers if c.producer.id == producer_id}


async def test_a_layer_nobody_below_needs_does_not_cross(
        nodes: dict[str, tuple[SFU, Cascade]], layers: SimulcastMedia) -> None:
    (_, province), (_, ward) = nodes["province"], nodes["ward"]
    ward_up, province_down = connect_local(ward, province, "province", "ward")
    publisher = SimulcastPublisher(province.router.add_peer("alice"), layers, make_config())
    await publisher.publish()
    task = asyncio.ensure_future(publisher.run(60))
    subs: list[Subscriber] = []
    request = ward_up._request

    async def checked(op: str, data: dict[str, Any]) -> dict[str, Any]:
        LinkRequest.model_validate({"meeting": "ward/1", "op": op, "data": data})
        return await request(op, data)

    ward_up._request = checked

    async def add(name: str, wanted: int | None) -> TrackStats:
        peer = ward.router.add_peer(name)
        sub = Subscriber(peer)
        await sub.subscribe(video)
        [consumer] = peer.consumers
        peer.set_preferred_layers(consumer.id, wanted)
        subs.append(sub)
        return next(t for t in sub.tracks if t.kind == "video")

    try:
        video = publisher.producer_id
        origin = province.router.get_producer(video)
        await wait_for(lambda: all(s.ssrc is not None for s in origin.streams), 5)
        await wait_for(lambda: video in ward_up.remote_catalog, 5)
        await ward.ensure(video)
        # Only a weak tablet at the ward: only the low layer crosses.
        low = await add("low", 0)
        await wait_for(lambda: low.frames >= 5 and ward_up.counters.layer_demands >= 1, 10)
        await asyncio.sleep(0.5)
        before = export_packets(province_down, video)
        await asyncio.sleep(1.0)
        after = export_packets(province_down, video)
        sent = {layer: after[layer] - before[layer] for layer in after}
        print(f"low only: link packets per layer {sent}")
        assert sent[0] > 5 and sent[1] == 0 and sent[2] == 0, sent
        # Bad demand is refused and changes nothing.
        for bad in ({"producer_id": video, "layers": [7]}, {"producer_id": video},
                    {"producer_id": 3, "layers": []}, {"producer_id": video, "layers": [True]}):
            assert "error" in await province_down.handle("layers", bad)
        for rid, rids in (("r9", ["r0"]), ("r0", ["r0", "r0"]), ("r0", "r0"), ("r0", None),
                          ("r0", ["r0", "r1", "r2", "r3"])):
            entry = {"mid": "9", "producer_id": "x", "producer_peer_id": "y",
                     "source": "camera", "rid": rid, "rids": rids}
            reply = await ward_up.handle("offer", {"sdp": "v=0", "consumers": [entry]})
            assert "relayed layer" in reply["error"], reply
        assert "x" not in ward_up.imported
        assert [c.paused for c in sorted(province_down.peer.consumers,
                                         key=lambda c: c.preferred_spatial or 0)] == [
            False, True, True]
        low.sizes.clear()
        await wait_for(lambda: low.sizes == {SIZES[0]}, 3)
        # A strong tablet joins: the top layer crosses again, the weak one keeps layer 0.
        high = await add("high", None)
        await wait_for(lambda: SIZES[2] in high.sizes, 10)
        before = export_packets(province_down, video)
        await asyncio.sleep(1.0)
        after = export_packets(province_down, video)
        sent = {layer: after[layer] - before[layer] for layer in after}
        print(f"low and high: link packets per layer {sent}")
        assert sent[0] > 5 and sent[2] > 5, sent
        low.sizes.clear()
        await wait_for(lambda: low.frames >= 1 and low.sizes == {SIZES[0]}, 3)
        # The province's own layers are untouched: the publisher still sends all three.
        assert all(s.active(time.monotonic()) for s in origin.streams)
    finally:
        for sub in subs:
            await sub.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await publisher.close()


async def test_demand_propagates_over_two_hops_and_a_recorder_keeps_the_top(
        nodes: dict[str, tuple[SFU, Cascade]], layers: SimulcastMedia) -> None:
    (_, province), (_, city), (_, ward) = nodes["province"], nodes["city"], nodes["ward"]
    _, province_down = connect_local(city, province, "province", "city")
    ward_up, city_down = connect_local(ward, city, "city", "ward")
    publisher = SimulcastPublisher(province.router.add_peer("alice"), layers, make_config())
    await publisher.publish()
    task = asyncio.ensure_future(publisher.run(60))
    sub = None
    try:
        video = publisher.producer_id
        origin = province.router.get_producer(video)
        await wait_for(lambda: all(s.ssrc is not None for s in origin.streams), 5)
        await wait_for(lambda: video in ward_up.remote_catalog, 5)
        await ward.ensure(video)
        assert [s.rid for s in city.router.get_producer(video).streams] == ["r0", "r1", "r2"]
        peer = ward.router.add_peer("low")
        sub = Subscriber(peer)
        await sub.subscribe(video)
        [consumer] = peer.consumers
        peer.set_preferred_layers(consumer.id, 0)
        track = next(t for t in sub.tracks if t.kind == "video")

        async def rates() -> tuple[dict[int, int], dict[int, int]]:
            before = export_packets(province_down, video), export_packets(city_down, video)
            await asyncio.sleep(1.0)
            after = export_packets(province_down, video), export_packets(city_down, video)
            return ({k: v - before[0][k] for k, v in after[0].items()},
                    {k: v - before[1][k] for k, v in after[1].items()})

        await wait_for(lambda: track.frames >= 5, 10)
        await asyncio.sleep(1.5)  # the ward's demand, then the city's, went up
        upper, lower = await rates()
        print(f"weak tablet only: province->city {upper}, city->ward {lower}")
        assert upper[0] > 5 and upper[1] == upper[2] == 0, upper
        assert lower[0] > 5 and lower[1] == lower[2] == 0, lower
        # A recorder at the ward taps the relayed producer's top layer: it crosses both hops.
        taps: list[int] = []
        ward.router.get_producer(video).tap = lambda fp: taps.append(fp.layer)
        await wait_for(lambda: len(taps) >= 20, 5)
        upper, lower = await rates()
        print(f"and a recorder: province->city {upper}, city->ward {lower}")
        assert upper[2] > 5 and lower[2] > 5 and upper[1] == lower[1] == 0, (upper, lower)
        assert set(taps) == {2}
    finally:
        if sub is not None:
            await sub.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await publisher.close()
