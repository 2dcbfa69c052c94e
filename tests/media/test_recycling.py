"""m-section recycling on the receive transport, through real aiortc clients.

A closed consumer's m-section is rejected (port 0, out of BUNDLE) in the next
offer; once the client has answered that offer, a new consumer takes the same
index with a new mid. The first m-section (the BUNDLE transport) only goes
inactive. So the SDP stays bounded however many consumers a session creates.
"""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCSessionDescription
from aiortc.sdp import SessionDescription

from media import SFU, LimitError, ServerOffer
from testkit.aiortc_clients import EncodedMedia, Publisher, Subscriber, wait_for

from .conftest import make_config


def layout(offer: ServerOffer) -> list[tuple[str, str, bool]]:
    """(mid, kind, rejected) per m-section, in order."""
    return [(m.rtp.muxId, m.kind, m.port == 0) for m in SessionDescription.parse(offer.sdp).media]


def bundle(offer: ServerOffer) -> list[str]:
    return [str(x) for x in SessionDescription.parse(offer.sdp).group[0].items]


class Recorder(Subscriber):
    """A Subscriber that keeps every offer it applied."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.applied: list[ServerOffer] = []

    async def apply(self, offer: ServerOffer | None) -> None:
        while offer is not None:
            self.applied.append(offer)
            self.offers += 1
            self._forget_recycled(offer.sdp)
            await self.pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            await self._stop_rejected(offer.sdp)
            offer = await self.peer.set_answer(self.pc.localDescription.sdp)


async def test_a_rejected_section_is_reused_only_after_the_answer(
        sfu: SFU, media: EncodedMedia) -> None:
    router = sfu.router("m")
    alice = Publisher(router.add_peer("alice"), media)
    await alice.publish()
    carol = Publisher(router.add_peer("carol"), media, audio=False)
    await carol.publish()
    mic, camera = alice.producer_id("audio"), alice.producer_id("video")
    other = carol.producer_id("video")
    bob = router.add_peer("bob")
    sub = Recorder(bob)
    first = await sub.subscribe(mic, camera)
    by_producer = {c.producer_id: c for c in first.consumers}
    assert layout(sub.applied[-1]) == [("0", "audio", False), ("1", "video", False)]

    # Bob drops the camera: its m-section is rejected, out of the BUNDLE group...
    rejecting = await bob.unsubscribe(by_producer[camera].id)
    assert rejecting is not None
    assert layout(rejecting) == [("0", "audio", False), ("1", "video", True)]
    assert bundle(rejecting) == ["0"]
    # ...but until bob answers that offer, a new consumer cannot take it.
    assert bob.media_sections_needed(1) == 3
    pending = await bob.subscribe(other)
    assert pending.offer is None and [c.mid for c in pending.consumers] == ["2"]
    await sub.apply(rejecting)  # answers, then applies the offer that piled up
    assert layout(sub.applied[-1]) == [("0", "audio", False), ("1", "video", True),
                                       ("2", "video", False)]
    assert bundle(sub.applied[-1]) == ["0", "2"]

    # Answered: the camera comes back in the rejected m-section, with a new mid.
    assert bob.media_sections_needed(1) == 3 and bob.media_sections_needed(2) == 4
    again = await sub.subscribe(camera)
    assert [c.mid for c in again.consumers] == ["3"]
    assert layout(sub.applied[-1]) == [("0", "audio", False), ("3", "video", False),
                                       ("2", "video", False)]
    assert bundle(sub.applied[-1]) == ["0", "3", "2"]
    await wait_for(lambda: sub.tracks[-1].frames >= 3, 5)

    # The first m-section carries the BUNDLE transport: it only goes inactive, and a
    # new consumer does not take it.
    offer = await bob.unsubscribe(by_producer[mic].id)
    assert offer is not None and layout(offer)[0] == ("0", "audio", False)
    assert "a=inactive" in offer.sdp.split("m=video")[0] and bundle(offer)[0] == "0"
    await sub.apply(offer)
    mic_again = await sub.subscribe(mic)
    assert [c.mid for c in mic_again.consumers] == ["4"]
    assert [m for m, _, _ in layout(sub.applied[-1])] == ["0", "3", "2", "4"]
    await wait_for(lambda: sub.tracks[-1].frames >= 5, 5)

    # A consumer that took a rejected m-section and closed before being offered gives
    # it back as it was: the client never sees its mid.
    offer = await bob.unsubscribe(again.consumers[0].id)  # index 1 rejected again (mid 3)
    await sub.apply(offer)
    out = await bob.unsubscribe(pending.consumers[0].id)  # index 2 rejected, not answered
    assert out is not None
    ghost = await bob.subscribe(camera)  # takes index 1 while that offer is out
    assert ghost.offer is None and ghost.consumers[0].mid == "5"
    assert await bob.unsubscribe(ghost.consumers[0].id) is None
    await sub.apply(out)
    seen = [m for offer in sub.applied for m, _, _ in layout(offer)]
    assert "5" not in seen
    assert layout(sub.applied[-1]) == [("0", "audio", False), ("3", "video", True),
                                       ("2", "video", True), ("4", "audio", False)]
    last = await sub.subscribe(camera, other)
    assert [c.mid for c in last.consumers] == ["6", "7"]  # mids are never reused
    assert [m for m, _, _ in layout(sub.applied[-1])] == ["0", "6", "7", "4"]
    await wait_for(lambda: all(t.frames >= 3 for t in sub.tracks[-2:]), 5)
    await asyncio.gather(alice.close(), carol.close(), sub.close())


async def test_three_hundred_consumers_one_after_another_stay_bounded(
        sfu: SFU, media: EncodedMedia) -> None:
    router = sfu.router("m")
    alice = Publisher(router.add_peer("alice"), media)
    await alice.publish()
    carol = Publisher(router.add_peer("carol"), media)
    await carol.publish()
    bob = router.add_peer("bob")
    sub = Subscriber(bob)
    await sub.subscribe(alice.producer_id("audio"))  # kept all along: the first m-section
    # Audio and video alternate in the recycled m-section.
    cycle = [alice.producer_id("video"), carol.producer_id("audio"), carol.producer_id("video")]
    sizes, sections, mids = [], [], set()
    for i in range(300):
        subscription = await bob.subscribe(cycle[i % len(cycle)])
        assert subscription.offer is not None
        sizes.append(len(subscription.offer.sdp))
        sections.append(subscription.offer.sdp.count("\nm="))
        [consumer] = subscription.consumers
        mids.add(consumer.mid)
        await sub.apply(subscription.offer)
        if i % 50 == 49:  # the consumer in the recycled m-section decodes
            track = sub.tracks[-1]
            await wait_for(lambda t=track: t.frames >= 3, 5)
        offer = await bob.unsubscribe(consumer.id)
        assert offer is not None
        sizes.append(len(offer.sdp))
        sections.append(offer.sdp.count("\nm="))
        await sub.apply(offer)
    assert len(mids) == 300  # a new mid each time
    assert max(sections) == 2 and bob.media_sections_needed() == 2
    assert max(sizes) < 4000
    assert len(sub.pc.getTransceivers()) == 301
    assert sum(1 for t in sub.pc.getTransceivers() if not t.stopped) == 1  # the first
    audio = sub.tracks[0]
    before = audio.frames
    await wait_for(lambda: audio.frames > before + 10, 5)  # the first m-section still plays
    last = await sub.subscribe(alice.producer_id("video"))
    assert last.offer is None or last.offer.sdp.count("\nm=") == 2
    await wait_for(lambda: sub.tracks[-1].kind == "video" and sub.tracks[-1].frames >= 3, 5)
    await asyncio.gather(alice.close(), carol.close(), sub.close())


async def test_the_section_limit_counts_rejections_not_answered_yet(
        media: EncodedMedia) -> None:
    sfu = SFU(make_config(max_media_sections=2))
    try:
        router = sfu.router("m")
        alice = Publisher(router.add_peer("alice"), media)
        await alice.publish()
        mic, camera = alice.producer_id("audio"), alice.producer_id("video")
        bob = router.add_peer("bob")
        sub = Subscriber(bob)
        first = await sub.subscribe(mic, camera)
        [video] = [c for c in first.consumers if c.producer_id == camera]
        rejecting = await bob.unsubscribe(video.id)
        assert rejecting is not None and bob.media_sections_needed(1) == 3
        with pytest.raises(LimitError, match="limit is 2"):
            await bob.subscribe(camera)  # would need a third m-section
        assert len(bob.consumers) == 1  # nothing changed
        await sub.apply(rejecting)
        assert bob.media_sections_needed(1) == 2
        again = await sub.subscribe(camera)  # reuses the rejected m-section
        assert [c.mid for c in again.consumers] == ["2"]
        await wait_for(lambda: sub.tracks[-1].frames >= 3, 5)
        await asyncio.gather(alice.close(), sub.close())
    finally:
        await sfu.close()
