"""Signaling and forwarding through real aiortc clients on loopback."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import SessionDescription

from media import (
    SFU,
    ConsumerClosed,
    Kind,
    MediaEvent,
    NegotiationError,
    NotFoundError,
    ProducerAdded,
    ProducerClosed,
    RenegotiationNeeded,
    SdpError,
    Source,
    TransportState,
    TransportStateChanged,
    UnsupportedCodecError,
)
from media.rtp import RTP_HEADER, parse_rtp
from testkit.aiortc_clients import (
    CLIENT_CONFIG,
    EncodedMedia,
    Publisher,
    Subscriber,
    intercept_rtp,
    wait_for,
)


def candidate_ips(text: str) -> set[str]:
    return {c.ip for m in SessionDescription.parse(text).media for c in m.ice_candidates}


async def test_camera_and_mic_are_forwarded_and_decoded(sfu: SFU, media: EncodedMedia) -> None:
    router = sfu.router("m")
    events: list[MediaEvent] = []
    router.add_listener(events.append)
    pub = Publisher(router.add_peer("alice", {"name": "Alice"}), media)
    result = await pub.publish()
    assert candidate_ips(result.sdp) == {"127.0.0.1"}
    assert candidate_ips(pub.pc.localDescription.sdp) == {"127.0.0.1"}
    infos = router.producers()
    assert {(p.kind, p.source, p.codec) for p in infos} == {
        (Kind.AUDIO, Source.MIC, "OPUS"), (Kind.VIDEO, Source.CAMERA, "VP8")}
    assert all(p.app_data == {"name": "Alice"} for p in infos)
    assert [type(e) for e in events if isinstance(e, ProducerAdded)] == [ProducerAdded] * 2

    bob = router.add_peer("bob")
    sub = Subscriber(bob)
    subscription = await bob.subscribe(*[p.id for p in infos])
    assert subscription.offer is not None
    assert candidate_ips(subscription.offer.sdp) == {"127.0.0.1"}
    assert {c.stream_id for c in subscription.offer.consumers} == {"alice-av"}
    await sub.apply(subscription.offer)
    await wait_for(lambda: sub.frames("video") >= 15 and sub.frames("audio") >= 40, 8)
    assert {size for t in sub.tracks for size in t.sizes} == {(320, 240)}
    await asyncio.sleep(1.6)  # a few RTCP intervals
    stats = bob.stats()
    video = next(c for c in stats.consumers if c.kind == "video")
    assert video.packets_sent > 20 and video.bitrate_bps > 0 and video.rtt_ms is not None
    assert stats.transports[0].state == "connected"
    pstats = router.peer("alice").stats().producers
    assert all(p.packets_received > 0 and p.packets_lost == 0 for p in pstats)
    # aiortc receivers only start sending REMB after 3 s; until then the cap.
    assert next(p for p in pstats if p.kind == "video").remb_sent_bps == router.max_bitrate_bps
    await pub.close()
    await sub.close()


async def test_h264_for_safari(sfu: SFU, media: EncodedMedia) -> None:
    router = sfu.router("m")
    pub = Publisher(router.add_peer("ipad"), media, video="H264", audio=False)
    await pub.publish()
    [info] = router.producers()
    assert info.codec == "H264"
    sub = Subscriber(router.add_peer("bob"))
    await sub.subscribe(info.id)
    await wait_for(lambda: sub.frames("video") >= 10, 8)
    await pub.close()
    await sub.close()


async def test_late_joiner_decodes_within_one_second(sfu: SFU, media: EncodedMedia) -> None:
    router = sfu.router("m")
    pub = Publisher(router.add_peer("alice"), media, audio=False)
    await pub.publish()
    producer_id = pub.producer_id("video")
    # The publisher's only keyframe went out at the start, long before the join.
    await wait_for(lambda: router.get_producer(producer_id).packets_received > 30, 5)
    await asyncio.sleep(0.5)
    late = router.add_peer("late")
    sub = Subscriber(late)
    connected: list[float] = []
    router.add_listener(lambda e: connected.append(time.monotonic())
                        if isinstance(e, TransportStateChanged) and e.peer_id == "late"
                        and e.state is TransportState.CONNECTED else None)
    start = time.monotonic()
    await sub.subscribe(producer_id)
    await wait_for(lambda: sub.frames("video") >= 1, 5)
    first = sub.tracks[0].first_frame_at
    assert first is not None and connected
    print(f"join: connected after {connected[0] - start:.3f}s, "
          f"first frame {first - connected[0]:.3f}s later")
    # What the SFU controls: keyframe request -> keyframe -> decoded frame.
    assert first - connected[0] < 1.0
    assert first - start < 3.0  # the whole join, ICE and DTLS included
    assert pub.video.keyframe_requests >= 1  # the SFU asked for it
    await pub.close()
    await sub.close()


async def test_loss_on_consumer_leg_is_repaired_with_rtx(sfu: SFU, media: EncodedMedia) -> None:
    router = sfu.router("m")
    pub = Publisher(router.add_peer("alice"), media, audio=False)
    await pub.publish()
    bob = router.add_peer("bob")
    sub = Subscriber(bob)
    await sub.subscribe(pub.producer_id("video"))
    [consumer] = bob.consumers
    transport = bob.transports[0]
    rng = random.Random(7)
    seen: list[tuple[int, int]] = []
    dropped = 0

    def keep(data: bytes) -> bool:  # loses 5% of media packets on this leg
        nonlocal dropped
        _, b1, _, _, ssrc = RTP_HEADER.unpack_from(data, 0)
        seen.append((ssrc, b1 & 0x7F))
        if ssrc == consumer.ssrc and rng.random() < 0.05:
            dropped += 1
            return False
        return True

    intercept_rtp(transport, keep)
    await wait_for(lambda: sub.frames("video") >= 3, 5)
    frames_before = sub.frames("video")
    await asyncio.sleep(2.0)
    assert dropped >= 3
    assert consumer.retransmissions_sent >= dropped * 0.8
    assert sub.frames("video") - frames_before >= 24  # ~30 expected at 15 fps
    media_pts = {pt for ssrc, pt in seen if ssrc == consumer.ssrc}
    rtx_pts = {pt for ssrc, pt in seen if ssrc == consumer.rtx_ssrc}
    assert media_pts == {consumer.pt} and rtx_pts == {consumer.rtx_pt}
    await pub.close()
    await sub.close()


async def test_upstream_loss_is_nacked_and_rtx_not_forwarded_as_media(
        sfu: SFU, media: EncodedMedia) -> None:
    router = sfu.router("m")
    alice = router.add_peer("alice")
    pub = Publisher(alice, media, audio=False)
    await pub.publish()
    producer = router.get_producer(pub.producer_id("video"))
    rng = random.Random(3)
    publishing = alice._publishing  # the send transport's packet handler
    on_rtp = publishing.on_rtp

    def lossy(transport, data: bytes, now: float) -> None:  # type: ignore[no-untyped-def]
        pkt = parse_rtp(data)
        if pkt and pkt.ssrc == producer.ssrc and rng.random() < 0.05:
            return
        on_rtp(transport, data, now)

    publishing.on_rtp = lossy  # type: ignore[method-assign]
    bob = router.add_peer("bob")
    sub = Subscriber(bob)
    await sub.subscribe(producer.id)
    [consumer] = bob.consumers
    out: list[tuple[int, int]] = []
    intercept_rtp(bob.transports[0],
                  lambda d: out.append((RTP_HEADER.unpack_from(d, 0)[4], d[1] & 0x7F)) or True)
    await wait_for(lambda: sub.frames("video") >= 3, 5)
    before = sub.frames("video")
    await asyncio.sleep(2.0)
    assert producer.nacks_sent > 0 and producer.rtx_received > 0
    assert producer.packets_recovered > 0
    assert sub.frames("video") - before >= 24
    assert {pt for ssrc, pt in out if ssrc == consumer.ssrc} == {consumer.pt}
    await pub.close()
    await sub.close()


async def test_screen_share_added_then_removed_renegotiates(sfu: SFU, media: EncodedMedia) -> None:
    router = sfu.router("m")
    events: list[MediaEvent] = []
    router.add_listener(events.append)
    alice = router.add_peer("alice")
    pub = Publisher(alice, media, audio=False)
    await pub.publish()
    bob = router.add_peer("bob")
    sub = Subscriber(bob)
    await sub.subscribe(pub.producer_id("video"))
    await wait_for(lambda: sub.frames("video") >= 2, 5)

    # Alice shares her screen: a second video transceiver, re-offered.
    from testkit.aiortc_clients import _prefer, video_track
    screen = video_track(media.vp8)
    transceiver = pub.pc.addTransceiver(screen, direction="sendonly")
    _prefer(transceiver, "video", "VP8")
    transceiver.sender._send_keyframe = screen.request_keyframe
    await pub.pc.setLocalDescription(await pub.pc.createOffer())
    result = await alice.publish(pub.pc.localDescription.sdp, {transceiver.mid: "screen"})
    await pub.pc.setRemoteDescription(RTCSessionDescription(result.sdp, "answer"))
    [added] = result.added
    assert added.source is Source.SCREEN and result.removed == []
    subscription = await bob.subscribe(added.id)
    assert [c.stream_id for c in subscription.consumers] == ["alice-screen"]
    await sub.apply(subscription.offer)
    await wait_for(lambda: len(sub.tracks) == 2 and min(t.frames for t in sub.tracks) >= 5, 5)

    # She stops sharing: the m-section goes inactive, the producer closes.
    transceiver.direction = "inactive"
    await pub.pc.setLocalDescription(await pub.pc.createOffer())
    result = await alice.publish(pub.pc.localDescription.sdp)
    await pub.pc.setRemoteDescription(RTCSessionDescription(result.sdp, "answer"))
    assert result.removed == [added.id] and result.added == []
    closed = [e for e in events if isinstance(e, ProducerClosed)]
    assert [(e.producer_id, e.source) for e in closed] == [(added.id, Source.SCREEN)]
    assert any(isinstance(e, ConsumerClosed) and e.peer_id == "bob" for e in events)
    assert any(isinstance(e, RenegotiationNeeded) and e.peer_id == "bob" for e in events)
    offer = await bob.offer()
    assert offer is not None and "a=inactive" in offer.sdp
    await sub.apply(offer)
    assert await bob.offer() is None  # nothing left to negotiate
    camera = sub.frames("video")
    await asyncio.sleep(0.3)
    assert sub.frames("video") > camera  # the camera keeps flowing
    await pub.close()
    await sub.close()


async def test_offers_queue_while_one_is_out(sfu: SFU, media: EncodedMedia) -> None:
    router = sfu.router("m")
    pub = Publisher(router.add_peer("alice"), media)
    await pub.publish()
    audio, video = pub.producer_id("audio"), pub.producer_id("video")
    bob = router.add_peer("bob")
    first = await bob.subscribe(audio)
    assert first.offer is not None
    second = await bob.subscribe(video)
    assert second.offer is None  # folded into the next offer
    again = await bob.subscribe(audio)
    assert again.consumers[0].id == first.consumers[0].id  # idempotent
    with pytest.raises(NegotiationError):
        await bob.restart_ice()  # not connected yet
    sub = Subscriber(bob)
    await sub.apply(first.offer)  # set_answer returns the follow-up offer
    assert sub.offers == 2
    await wait_for(lambda: sub.frames("video") >= 3 and sub.frames("audio") >= 5, 5)
    with pytest.raises(NegotiationError):
        await bob.set_answer(sub.pc.localDescription.sdp)  # no offer pending
    await pub.close()
    await sub.close()


async def test_bad_offers_leave_the_router_untouched(sfu: SFU, media: EncodedMedia) -> None:
    router = sfu.router("m")
    alice = router.add_peer("alice")
    pc = RTCPeerConnection(CLIENT_CONFIG)
    pc.addTransceiver("audio", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    text = pc.localDescription.sdp
    await pc.close()
    await asyncio.sleep(0.05)
    tasks = asyncio.all_tasks()
    for bad in ("garbage", "v=0\r\n", "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96\r\n"):
        with pytest.raises(SdpError):
            await alice.publish(bad)
    with pytest.raises(UnsupportedCodecError, match="Opus"):
        await alice.publish(text.replace("opus/48000/2", "speex/48000/2"))
    with pytest.raises(UnsupportedCodecError):
        await alice.publish(text.replace("opus/48000/2", "PCMU/8000"))
    with pytest.raises(NotFoundError):
        await alice.subscribe("no-such-producer")
    assert router.producers() == [] and alice.transports == []
    assert asyncio.all_tasks() == tasks
    # The peer is still usable.
    pub = Publisher(alice, media, audio=False)
    await pub.publish()
    assert len(router.producers()) == 1
    await wait_for(lambda: alice.transports[0].state is TransportState.CONNECTED, 5)
    await pub.close()


async def test_server_initiated_ice_restart_keeps_media_flowing(
        sfu: SFU, media: EncodedMedia) -> None:
    from testkit.raw_media import RawSubscriber
    router = sfu.router("m")
    pub = Publisher(router.add_peer("alice"), media, video=None)
    await pub.publish()
    bob = router.add_peer("bob")
    raw = RawSubscriber(bob, sfu.config)
    subscription = await bob.subscribe(pub.producer_id("audio"))
    await raw.apply(subscription.offer)
    [consumer] = bob.consumers
    await wait_for(lambda: raw.packets[consumer.ssrc] >= 10, 5)
    [transport] = bob.transports
    port = transport.local_port
    offer = await bob.restart_ice()
    assert offer is not None
    await raw.apply(offer)
    await wait_for(lambda: transport.local_port != port and not transport.ice_restarting, 5)
    count = raw.packets[consumer.ssrc]
    await wait_for(lambda: raw.packets[consumer.ssrc] >= count + 10, 3)
    assert transport.state is TransportState.CONNECTED
    await raw.close()
    await pub.close()
