"""Simulcast end to end: a browser-like simulcast publisher (testkit/simulcast_publisher.py,
real VP8 on three SSRCs over DTLS/SRTP) through the SFU to a real aiortc subscriber that
decodes every layer it is switched to."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from media import SFU, ConsumerLayers, MediaError, Router
from testkit.aiortc_clients import Subscriber, wait_for
from testkit.encoded_cache import cached
from testkit.simulcast_publisher import SIZES, SimulcastMedia, SimulcastPublisher, encode_simulcast

from .conftest import make_config


@pytest.fixture(scope="module")
def layers() -> SimulcastMedia:
    return cached(encode_simulcast, seconds=2.0)


class Meeting:
    def __init__(self, sfu: SFU, layers: SimulcastMedia) -> None:
        self.config = make_config()
        self.router: Router = sfu.router("m")
        self.publisher = SimulcastPublisher(self.router.add_peer("alice"), layers, self.config)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.publisher.publish()
        self.task = asyncio.ensure_future(self.publisher.run(60))
        producer = self.router.get_producer(self.publisher.producer_id)
        await wait_for(lambda: all(s.ssrc is not None for s in producer.streams), 5)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.publisher.close()


@pytest.fixture
async def meeting(sfu: SFU, layers: SimulcastMedia) -> AsyncIterator[Meeting]:
    m = Meeting(sfu, layers)
    yield m
    await m.close()


async def test_each_layer_is_bound_by_its_rid(meeting: Meeting) -> None:
    await meeting.start()
    producer = meeting.router.get_producer(meeting.publisher.producer_id)
    assert producer.simulcast
    assert [(s.rid, s.ssrc) for s in producer.streams] == [
        (layer.rid, layer.ssrc) for layer in meeting.publisher.layers]
    # The server's receiver reports acknowledge each SSRC: the publisher stops naming them.
    await wait_for(lambda: all(layer.ssrc in layer.acked
                               for layer in meeting.publisher.layers), 5)
    stats = producer.stats()
    assert [layer.rid for layer in stats.layers] == ["r0", "r1", "r2"]
    assert stats.unbound_packets == stats.unknown_rid_packets == stats.ssrc_changes == 0


async def test_lost_packets_come_back_as_rtx_bound_by_repaired_rid(meeting: Meeting) -> None:
    await meeting.start()
    producer = meeting.router.get_producer(meeting.publisher.producer_id)
    publishing = meeting.publisher.peer._publishing  # the send transport's packet handler
    on_rtp = publishing.on_rtp
    top = meeting.publisher.layers[2]
    dropped: list[int] = []

    def lossy(transport, data: bytes, now: float) -> None:  # type: ignore[no-untyped-def]
        if int.from_bytes(data[8:12], "big") == top.ssrc and len(dropped) < 5 \
                and int.from_bytes(data[2:4], "big") % 7 == 0:
            dropped.append(1)
            return
        on_rtp(transport, data, now)

    publishing.on_rtp = lossy  # type: ignore[method-assign]
    await wait_for(lambda: producer.streams[2].packets_recovered >= 3, 5)
    assert producer.streams[2].rtx_ssrc == top.rtx_ssrc
    assert producer.streams[0].packets_recovered == producer.streams[1].packets_recovered == 0


async def test_subscriber_decodes_continuously_across_layer_switches(meeting: Meeting) -> None:
    await meeting.start()
    producer_id = meeting.publisher.producer_id
    bob = meeting.router.add_peer("bob")
    sub = Subscriber(bob)
    await sub.subscribe(producer_id)
    [consumer] = bob.consumers
    [track] = [t for t in sub.tracks if t.kind == "video"]
    await wait_for(lambda: SIZES[2] in track.sizes and track.frames >= 5, 10)
    assert consumer.current_layer == 2  # the top layer by default
    for wanted in (0, 1, 2):
        layers = bob.set_preferred_layers(consumer.id, wanted)
        assert isinstance(layers, ConsumerLayers) and layers.target == wanted
        track.sizes.clear()
        # Decoding never stops: frames keep coming in every 0.5 s window of the switch.
        for _ in range(4):
            before = track.frames
            await asyncio.sleep(0.5)
            assert track.frames > before, f"no frame decoded while switching to {wanted}"
        assert consumer.current_layer == wanted
        assert SIZES[wanted] in track.sizes
    stats = consumer.stats()
    assert stats.layer_switches == 3 and stats.current_layer == 2
    # The C fan-out carried the forwarded packets, not the Python path.
    assert bob.transports[0].leg_path.cdata.packets_sent > stats.packets_sent // 2
    with pytest.raises(MediaError):
        bob.set_preferred_layers(consumer.id, -1)
    await sub.close()


async def test_faulty_publisher_is_counted_and_others_unaffected(meeting: Meeting) -> None:
    publisher = meeting.publisher
    publisher.sending[1] = False  # announced, never sent
    publisher.rid_on_wire[0] = "zz"  # an rid the offer did not announce
    await meeting.publisher.publish()
    meeting.task = asyncio.ensure_future(publisher.run(60))
    producer = meeting.router.get_producer(publisher.producer_id)
    await wait_for(lambda: producer.streams[2].ssrc is not None, 5)
    bob = meeting.router.add_peer("bob")
    sub = Subscriber(bob)
    await sub.subscribe(producer.id)
    [consumer] = bob.consumers
    [track] = [t for t in sub.tracks if t.kind == "video"]
    await wait_for(lambda: track.frames >= 5, 10)
    # Asked for layer 1 (never sent): the nearest one sent below it is layer 0 (unbound,
    # so not sent either): the lowest one sent above, layer 2.
    bob.set_preferred_layers(consumer.id, 1)
    await asyncio.sleep(1.0)
    assert consumer.current_layer == 2
    stats = producer.stats()
    assert stats.unknown_rid_packets > 0
    # A new SSRC mid-call on layer 2: rebound by its rid, the subscriber decodes on.
    publisher.new_ssrc(2)
    publisher.layers[2].acked.clear()
    before = track.frames
    await wait_for(lambda: producer.stats().ssrc_changes == 1, 5)
    await wait_for(lambda: track.frames > before + 10, 5)
    assert producer.streams[2].ssrc == publisher.layers[2].ssrc
    await wait_for(lambda: producer.stats().layers_never_sent == 2, 8)  # r0 (zz) and r1
    await sub.close()


async def test_hostile_rid_packets_raise_nothing_and_stay_bounded(sfu: SFU) -> None:
    """Random packets at a simulcast producer's send transport: unknown, repeated and
    changing SSRCs, rids that were not offered, broken extension blocks, RTX without a
    repaired rid. Nothing raises; what cannot be bound is counted; routes stay bounded."""
    import random
    import struct
    import time

    from media.publishing import MAX_LEARNED_SSRCS

    from .browser_sdp import simulcast_offer

    router = sfu.router("m")
    alice = router.add_peer("alice")
    result = await alice.publish(simulcast_offer())
    [video] = [p for p in result.added if p.kind.value == "video"]
    producer = router.get_producer(video.id)
    publishing = alice._publishing
    transport = alice.transports[0]
    rng = random.Random(15)
    rids = [b"r0", b"r1", b"r2", b"zz", b"\xff\xfe", b"", b"r0" * 8]
    now = time.monotonic()
    for i in range(3000):
        elements = []
        if rng.random() < 0.8:
            elements.append((4, rng.choice([b"1", b"0", b"\x80", b"9"])))
        if rng.random() < 0.8:
            elements.append((rng.choice([10, 11]), rng.choice(rids)))
        body = b"".join(bytes(((n << 4) | max(0, len(v) - 1),)) + v[:16] for n, v in elements)
        body += b"\x00" * (-len(body) % 4)
        if rng.random() < 0.05:
            body = bytes(rng.getrandbits(8) for _ in range(8))  # garbage elements
        ext = struct.pack("!HH", 0xBEDE, len(body) // 4) + body
        payload = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))
        header = struct.pack("!BBHII", 0x90, rng.choice([96, 97, 111, 0x80 | 96]),
                             rng.getrandbits(16), rng.getrandbits(32),
                             rng.choice([1, 2, 3, 4, 5]) if rng.random() < 0.7
                             else rng.getrandbits(32))
        publishing.on_rtp(transport, header + ext + payload, now + i * 0.001)
    assert len(publishing._routes) <= MAX_LEARNED_SSRCS
    stats = producer.stats()
    assert stats.unknown_rid_packets > 0 and stats.unbound_packets > 0
    assert all(s.ssrc is None or s.rid is not None for s in producer.streams)


async def test_a_reoffer_changing_the_layers_is_refused_and_changes_nothing(sfu: SFU) -> None:
    from media import NegotiationError

    from .browser_sdp import simulcast_offer

    router = sfu.router("m")
    alice = router.add_peer("alice")
    first = simulcast_offer()
    await alice.publish(first)
    before = router.producers()
    reoffer = first.replace("a=rid:r2 send\r\n", "a=rid:r3 send\r\n").replace(
        "r0;r1;r2", "r0;r1;r3")
    with pytest.raises(NegotiationError):
        await alice.publish(reoffer)
    assert router.producers() == before
    assert (await alice.publish(first)).added == []  # the same layers: accepted, unchanged
