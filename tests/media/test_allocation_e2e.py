"""Bandwidth allocation end to end: a browser-like simulcast publisher
(testkit/simulcast_publisher.py) and two real aiortc subscribers. One subscriber's downlink
is reported weak with crafted REMB sent from its own receiver (a 250 kbit/s link's
estimate, reacting to what the SFU sends it), the other strong (5 Mbit/s): aiortc's
own estimate cannot be set, and on this loaded loopback it wanders (90 kbit/s to 1 Mbit/s),
so it is switched off on these clients and the crafted REMB sent every 100 ms instead. The weak one is held
below the top layer while the other keeps the top layer; below the floor a subscriber falls
to audio only, with an event, and comes back by itself (only with loss in its receiver
reports besides: a link below the low layer loses packets; a REMB that collapses alone keeps
video flowing at the low layer).

The test publisher's layers are small (about 100, 180 and 400 kbit/s, SIZES), so "weak"
here is 250 kbit/s: the top layer needs 400k x 1.15 more than the low one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    pack_remb_fci,
)

from media import SFU, Consumer, DownlinkChanged, MediaEvent, Router
from testkit.aiortc_clients import Subscriber, wait_for
from testkit.simulcast_publisher import SIZES, SimulcastMedia, SimulcastPublisher, encode_simulcast

from .conftest import make_config


@pytest.fixture(scope="module")
def media() -> SimulcastMedia:
    return encode_simulcast(seconds=2.0)


@pytest.fixture
async def sfu() -> AsyncIterator[SFU]:
    unit = SFU(make_config(bandwidth_allocation=True))
    yield unit
    await unit.close()


# The start-up grace where a test waits past it (MediaConfig.allocation_startup_grace_s; the
# default's 10 s would only make it wait longer for the same behaviour).
GRACE_S = 1.0


@pytest.fixture
async def short_grace_sfu() -> AsyncIterator[SFU]:
    unit = SFU(make_config(bandwidth_allocation=True, allocation_startup_grace_s=GRACE_S))
    yield unit
    await unit.close()


ESTIMATOR = "_RTCRtpReceiver__remote_bitrate_estimator"  # aiortc's, name-mangled


class CraftedRemb:
    """Sends REMB for the subscriber's video every 100 ms from its own receiver: `bps`, or
    with `link` a receiver behind a link of `bps`: what a REMB estimator says there, 1.5x
    what arrives (its cap) up to the link rate, 0.7x the link rate once more is sent. With
    `loss`, a receiver report of that fraction lost goes with each REMB (a link that loses)."""

    def __init__(self, sub: Subscriber, consumer_ssrc: int, bps: int,
                 link: Consumer | None = None, loss: float = 0.0) -> None:
        self.bps = bps
        self.loss = loss
        self._link = link
        [self._receiver] = [t.receiver for t in sub.pc.getTransceivers()
                            if t.kind == "video"]
        self._ssrc = consumer_ssrc
        # The client's own estimate is switched off: one source of REMB per transport,
        # as a browser has (the client is the test's tool, not the thing under test).
        setattr(self._receiver, ESTIMATOR, None)
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            bps = self.bps
            if self._link is not None:
                sent = self._link.stats().bitrate_bps
                bps = int(0.7 * bps if sent > bps else min(bps, max(1.5 * sent, 100_000)))
            packet = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1234, media_ssrc=0,
                                    fci=pack_remb_fci(bps, [self._ssrc]))
            await self._receiver._send_rtcp(packet)
            if self.loss:
                block = RtcpReceiverInfo(ssrc=self._ssrc, fraction_lost=int(self.loss * 256),
                                         packets_lost=0, highest_sequence=0, jitter=0,
                                         lsr=0, dlsr=0)
                await self._receiver._send_rtcp(RtcpRrPacket(ssrc=1234, reports=[block]))
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def start(router: Router, media: SimulcastMedia) -> tuple[SimulcastPublisher,
                                                                 asyncio.Task[None]]:
    publisher = SimulcastPublisher(router.add_peer("alice"), media, make_config())
    await publisher.publish()
    task = asyncio.ensure_future(publisher.run(60))
    producer = router.get_producer(publisher.producer_id)
    await wait_for(lambda: all(s.ssrc is not None for s in producer.streams), 5)
    return publisher, task


async def stop(publisher: SimulcastPublisher, task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await publisher.close()


async def test_a_weak_subscriber_gets_a_lower_layer_while_a_strong_one_keeps_the_top(
        sfu: SFU, media: SimulcastMedia) -> None:
    router = sfu.router("m")
    publisher, task = await start(router, media)
    strong_peer, weak_peer = router.add_peer("province"), router.add_peer("ward")
    strong, weak = Subscriber(strong_peer), Subscriber(weak_peer)
    await strong.subscribe(publisher.producer_id)
    await weak.subscribe(publisher.producer_id)
    [strong_consumer], [weak_consumer] = strong_peer.consumers, weak_peer.consumers
    links = [CraftedRemb(weak, weak_consumer.ssrc, 250_000, link=weak_consumer),
             CraftedRemb(strong, strong_consumer.ssrc, 5_000_000)]
    [strong_track] = [t for t in strong.tracks if t.kind == "video"]
    [weak_track] = [t for t in weak.tracks if t.kind == "video"]
    # The strong one starts low and climbs a layer per hold (2 s).
    await wait_for(lambda: strong_consumer.current_layer == 2, 12)
    weak_top = 0
    for _ in range(12):  # the weak one keeps decoding, below the top layer but for tries
        before = weak_track.frames
        await asyncio.sleep(0.25)
        assert weak_track.frames > before
        weak_top += weak_consumer.current_layer == 2
        assert strong_consumer.current_layer == 2
    assert weak_top <= 3, "a try of the top layer lasts one estimate, then backs off"
    assert SIZES[2] in strong_track.sizes
    downlink = weak_peer.downlink()
    assert downlink is not None and downlink.estimate_bps is not None
    assert downlink.estimate_bps <= 250_000
    await asyncio.gather(*(link.stop() for link in links))
    await asyncio.gather(strong.close(), weak.close())
    await stop(publisher, task)


async def test_below_the_floor_video_goes_off_with_an_event_and_comes_back(
        short_grace_sfu: SFU, media: SimulcastMedia) -> None:
    sfu = short_grace_sfu
    router = sfu.router("m")
    events: list[DownlinkChanged] = []

    def listen(event: MediaEvent) -> None:
        if isinstance(event, DownlinkChanged):
            events.append(event)

    sfu.add_listener(listen)
    publisher, task = await start(router, media)
    peer = router.add_peer("ward")
    sub = Subscriber(peer)
    await sub.subscribe(publisher.producer_id)
    [consumer] = peer.consumers
    [track] = [t for t in sub.tracks if t.kind == "video"]
    await wait_for(lambda: track.frames >= 5, 10)
    absurd = CraftedRemb(sub, consumer.ssrc, 0)  # refused and counted, changes nothing
    await wait_for(lambda: peer.downlink_stats().remb_absurd >= 3, 5)
    await absurd.stop()
    assert events == []  # video never went off: nothing to tell (it would say "back")
    link = CraftedRemb(sub, consumer.ssrc, 40_000)
    await asyncio.sleep(GRACE_S + 1)  # past the start-up grace (after the first estimate):
    assert not any(e.video_off for e in events)  # a low REMB alone keeps video on
    assert consumer.allocated_layer == 0
    link.loss = 0.4  # the link loses what it cannot carry: audio only
    await wait_for(lambda: any(e.video_off for e in events), 5)
    assert events[-1] == DownlinkChanged("m", "ward", True, 40_000)
    await asyncio.sleep(0.6)  # what was in flight arrives
    before = track.frames
    await asyncio.sleep(1.5)
    assert track.frames == before  # nothing sent for video
    link.bps, link.loss = 1_000_000, 0.0
    await wait_for(lambda: not events[-1].video_off, 6)  # back after the hold
    await wait_for(lambda: track.frames > before + 5, 5)
    await link.stop()
    await sub.close()
    await stop(publisher, task)


async def test_a_node_links_half_is_not_allocated(sfu: SFU, media: SimulcastMedia) -> None:
    # A cascade link carries what the other node's subscribers need (their allocation is
    # done there): its half keeps the layer it asks for, with or without feedback, where a
    # subscriber's consumer starts on the low layer and climbs.
    router = sfu.router("m")
    publisher, task = await start(router, media)
    link_transport = sfu.link_transport(parent=True)
    link = router.add_peer("link:city", {"cascade_link": "city"})
    link.link_transport = link_transport
    await link.subscribe(publisher.producer_id)
    viewer = router.add_peer("viewer")
    await viewer.subscribe(publisher.producer_id)
    [exported], [viewed] = link.consumers, viewer.consumers
    assert (exported.allocated_layer, exported.target_layer) == (2, 2)
    assert (viewed.allocated_layer, viewed.target_layer) == (0, 0)
    await asyncio.sleep(2.5 * make_config().rtcp_interval_s)  # ticks pass, no feedback
    assert exported.allocated_layer == 2 and link.downlink() is None
    await link.close()
    await viewer.close()
    await link_transport.close()
    await stop(publisher, task)
