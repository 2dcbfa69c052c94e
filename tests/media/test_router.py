"""Server controls and router-level behaviour, end to end."""

from __future__ import annotations

import asyncio
import fractions
import math
import struct
import time

import av
import pytest
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from media import (
    SFU,
    ActiveSpeakerChanged,
    ClosedError,
    MediaError,
    MediaEvent,
    NotFoundError,
    ProducerClosed,
    ProducerPaused,
)
from testkit.aiortc_clients import EncodedMedia, Publisher, Subscriber, wait_for


async def test_keyframe_requests_reaching_the_publisher_are_rate_limited(
        sfu: SFU, media: EncodedMedia) -> None:
    router = sfu.router("m")
    pub = Publisher(router.add_peer("alice"), media, audio=False)
    await pub.publish()
    producer = router.get_producer(pub.producer_id("video"))
    bob = router.add_peer("bob")
    sub = Subscriber(bob)
    await sub.subscribe(producer.id)
    await wait_for(lambda: sub.frames("video") >= 2, 5)
    await asyncio.sleep(0.6)  # let the join's own request age out
    receiver = sub.pc.getReceivers()[0]
    [consumer] = bob.consumers
    before = pub.video.keyframe_requests
    start = time.monotonic()
    for _ in range(40):  # a subscriber spamming PLIs, ~50/s
        await receiver._send_rtcp_pli(consumer.ssrc)
        await asyncio.sleep(0.02)
    await wait_for(lambda: consumer.keyframe_requests_received == 40, 3)
    elapsed = time.monotonic() - start
    forwarded = pub.video.keyframe_requests - before
    # <= 1 per second per subscriber (media/consumer.py), <= 1 per 500 ms per producer
    assert 1 <= forwarded <= 1 + elapsed / 1.0
    suppressed = consumer.keyframe_requests_suppressed + producer.keyframe_requests_suppressed
    assert suppressed >= 40 - forwarded - 1
    await pub.close()
    await sub.close()


async def test_chair_mute_stops_packets_and_resume_restarts(sfu: SFU, media: EncodedMedia) -> None:
    router = sfu.router("m")
    events: list[MediaEvent] = []
    sfu.add_listener(events.append)
    pub = Publisher(router.add_peer("alice"), media)
    await pub.publish()
    bob = router.add_peer("bob")
    sub = Subscriber(bob)
    await sub.subscribe(*[p.id for p in router.producers()])
    await wait_for(lambda: sub.frames("video") >= 3 and sub.frames("audio") >= 10, 5)
    for info in router.producers():
        router.pause_producer(info.id)
        router.pause_producer(info.id)  # idempotent
    assert all(p.paused for p in router.producers())
    await asyncio.sleep(0.2)  # in flight
    sent = {c.id: c.packets_sent for c in bob.consumers}
    frames = sub.frames("video"), sub.frames("audio")
    await asyncio.sleep(0.6)
    assert {c.id: c.packets_sent for c in bob.consumers} == sent
    assert (sub.frames("video"), sub.frames("audio")) == frames
    # The client re-publishing does not undo a chair mute.
    await pub.pc.setLocalDescription(await pub.pc.createOffer())
    await router.peer("alice").publish(pub.pc.localDescription.sdp)
    assert all(p.paused for p in router.producers())
    requests = pub.video.keyframe_requests
    for info in router.producers():
        router.resume_producer(info.id)
    await wait_for(lambda: sub.frames("video") > frames[0] + 3, 3)
    assert pub.video.keyframe_requests > requests  # video restarts at a keyframe
    paused = [e for e in events if isinstance(e, ProducerPaused)]
    assert [e.paused for e in paused] == [True, True, False, False]
    await pub.close()
    await sub.close()


async def test_close_producer_control(sfu: SFU, media: EncodedMedia) -> None:
    router = sfu.router("m")
    events: list[MediaEvent] = []
    router.add_listener(events.append)
    pub = Publisher(router.add_peer("alice"), media, audio=False)
    await pub.publish()
    [info] = router.producers()
    sub = Subscriber(router.add_peer("bob"))
    await sub.subscribe(info.id)
    router.close_producer(info.id)
    router.get_producer  # noqa: B018
    with pytest.raises(NotFoundError):
        router.close_producer(info.id)
    assert router.producers() == [] and router.peer("bob").consumers == []
    assert [e.producer_id for e in events if isinstance(e, ProducerClosed)] == [info.id]
    with pytest.raises(MediaError):
        router.add_peer("bob")  # already there
    await pub.close()
    await sub.close()


class ToneTrack(MediaStreamTrack):
    """Live audio frames; aiortc encodes them and writes RFC 6464 levels."""

    kind = "audio"

    def __init__(self, amplitude: float) -> None:
        super().__init__()
        self.amplitude = amplitude
        self._count = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._count * 0.02 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        amp = self.amplitude * 32767
        samples = [int(amp * math.sin(2 * math.pi * 300 * n / 48000)) for n in range(960)]
        frame = av.AudioFrame(format="s16", layout="mono", samples=960)
        frame.planes[0].update(struct.pack("<960h", *samples))
        frame.sample_rate = 48000
        frame.pts = self._count * 960
        frame.time_base = fractions.Fraction(1, 48000)
        self._count += 1
        return frame


async def test_active_speaker_from_audio_levels(sfu: SFU, media: EncodedMedia) -> None:
    router = sfu.router("m")
    changes: list[ActiveSpeakerChanged] = []
    router.add_listener(lambda e: changes.append(e) if isinstance(e, ActiveSpeakerChanged)
                        else None)
    loud = Publisher(router.add_peer("loud"), media, video=None, audio_track_=ToneTrack(0.5))
    quiet = Publisher(router.add_peer("quiet"), media, video=None,
                      audio_track_=ToneTrack(0.0003))
    await loud.publish()
    await quiet.publish()
    await wait_for(lambda: bool(changes), 4)
    assert (changes[0].peer_id, changes[0].producer_id) == ("loud", loud.producer_id("audio"))
    assert changes[0].level_dbov is not None and changes[0].level_dbov < 20
    assert router.stats().active_speaker_peer_id == "loud"
    # Chair-muting the speaker clears it at once.
    router.pause_producer(loud.producer_id("audio"))
    assert changes[-1].peer_id is None and router.active_speaker is None
    await asyncio.sleep(1.0)
    assert all(c.peer_id != "quiet" for c in changes)  # below the threshold
    await loud.close()
    await quiet.close()


async def test_sfu_router_registry(sfu: SFU) -> None:
    router = sfu.router("a", max_bitrate_bps=500_000)
    assert sfu.router("a") is router and router.max_bitrate_bps == 500_000
    assert sfu.get_router("a") is router
    with pytest.raises(NotFoundError):
        sfu.get_router("b")
    assert sfu.client_configuration()["iceServers"] == []
    await sfu.close_router("a")
    assert sfu.routers == [] and router.closed
    with pytest.raises(ClosedError):
        router.add_peer("x")
