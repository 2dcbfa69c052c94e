"""The video conference through the real app: aiortc clients signal over socket.io (media:*
events) and send/receive media through the SFU, on loopback only."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from datetime import UTC, datetime, timedelta

from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci

from media import Want
from server.conference.keys import MEDIA
from testkit.aiortc_clients import EncodedMedia, wait_for
from tests.conftest import Harness
from tests.server.core.test_realtime import demo_meeting_id
from tests.server.media_support import MediaClient, candidate_addresses, media_client


async def open_meeting(h: Harness) -> int:
    meeting_id = await demo_meeting_id(h)
    chair = await h.login("chutri")
    status, body = await chair.call("POST", f"/api/meetings/{meeting_id}/open")
    assert status == 200, body
    return meeting_id


async def person(h: Harness, clients: list[MediaClient], name: str, meeting_id: int,
                 join: bool = True) -> MediaClient:
    client = await media_client(h, name, meeting_id)
    clients.append(client)
    if join:
        await client.join()
    return client


def assert_loopback(sdps: list[str]) -> None:
    addresses = [a for sdp in sdps for a in candidate_addresses(sdp)]
    assert addresses, "no ICE candidates at all"
    assert all(ipaddress.ip_address(a).is_loopback for a in addresses), addresses


async def test_publish_list_subscribe_decode_stats_and_metrics(
        hopso_media: Harness, clients: list[MediaClient], media: EncodedMedia) -> None:
    h = hopso_media
    meeting_id = await open_meeting(h)
    delegate = await person(h, clients, "daibieu", meeting_id)
    chair = await person(h, clients, "chutri", meeting_id)
    assert delegate.joined["can_publish"] and not delegate.joined["can_chair"]
    assert chair.joined["can_chair"] and chair.joined["rtc_configuration"] == {
        "iceServers": [], "bundlePolicy": "max-bundle", "rtcpMuxPolicy": "require"}
    await delegate.wait_for("media:peer-joined", lambda e: e["peer"]["name"] == "Nguyễn Văn Hùng")

    # The chair publishes camera + mic; the delegate hears of it and subscribes.
    publisher = await chair.publish(media)
    assert sorted(p.raw["source"] for p in publisher.result.added) == ["camera", "mic"]
    added = await delegate.wait_for("media:producer-added",
                                    lambda e: e["producer"]["kind"] == "video")
    listed = (await delegate.ok("media:producers"))["producers"]
    assert {(p["kind"], p["source"], p["name"], p["site"], p["role"]) for p in listed} == {
        ("audio", "mic", "Nguyễn Văn Hùng", "Điểm cầu chính UBND tỉnh", "chair"),
        ("video", "camera", "Nguyễn Văn Hùng", "Điểm cầu chính UBND tỉnh", "chair")}
    assert added["producer"]["peer_id"] == chair.joined["peer_id"]
    await delegate.subscribe(*[p["id"] for p in listed])
    sub = delegate.receiver()
    await wait_for(lambda: sub.frames("video") >= 10 and sub.frames("audio") >= 20, timeout=8)
    assert (WIDTH_HEIGHT := {s for t in sub.tracks for s in t.sizes}) == {(320, 240)}, WIDTH_HEIGHT

    # Every candidate either side announced is loopback.
    assert_loopback(chair.peer.sdps + delegate.peer.sdps)
    assert_loopback([publisher.pc.localDescription.sdp, sub.pc.localDescription.sdp])

    # Stats: chair and secretary only; non-members see no meeting at all.
    await asyncio.sleep(1.2)  # a few RTCP/stat ticks
    status, stats = await chair.http.call("GET", f"/api/meetings/{meeting_id}/media/stats")
    assert status == 200
    by_name = {p["name"]: p for p in stats["peers"]}
    assert by_name["Lê Minh Tuấn"]["forwarded_packets"] > 50
    assert by_name["Nguyễn Văn Hùng"]["received_packets"] > 50
    assert by_name["Lê Minh Tuấn"]["rtt_ms"] is not None
    assert by_name["Nguyễn Văn Hùng"]["quality"] == "good"
    assert set(by_name["Lê Minh Tuấn"]) >= {"bitrate_in_bps", "bitrate_out_bps", "loss_up",
                                             "loss_down", "jitter_ms", "consumers"}
    secretary = await h.login("thuky")
    assert (await secretary.call("GET", f"/api/meetings/{meeting_id}/media/stats"))[0] == 200
    assert (await delegate.http.call("GET", f"/api/meetings/{meeting_id}/media/stats"))[0] == 403
    admin = await h.login("quantri")
    assert (await admin.call("GET", f"/api/meetings/{meeting_id}/media/stats"))[0] == 404
    pushed = await chair.wait_for("media:stats", lambda e: len(e["peers"]) == 2)
    assert pushed["meeting_id"] == meeting_id and "media:stats" not in delegate.heard
    quality = await delegate.wait_for("media:quality", lambda e: len(e["peers"]) == 2)
    assert set(quality["peers"]) == {chair.joined["peer_id"], delegate.joined["peer_id"]}

    status, text = await admin.call("GET", "/metrics")
    assert re.search(r"^hopso_media_peers 2\.0$", text, re.MULTILINE), text
    assert re.search(r'^hopso_media_producers\{kind="video"\} 1\.0$', text, re.MULTILINE)
    forwarded = re.search(r"^hopso_media_forwarded_packets_total (\S+)$", text, re.MULTILINE)
    assert forwarded and float(forwarded.group(1)) > 50
    # Simulcast publishers' faults (none here): every series is there from the start.
    for fault in ("unknown_rid", "unbound", "ssrc_change"):
        assert re.search(rf'^hopso_media_publisher_faults_total\{{fault="{fault}"\}} 0\.0$',
                         text, re.MULTILINE), text


async def test_chair_mute_is_enforced_until_allowed(
        hopso_media: Harness, clients: list[MediaClient], media: EncodedMedia) -> None:
    h = hopso_media
    meeting_id = await open_meeting(h)
    chair = await person(h, clients, "chutri", meeting_id)
    delegate = await person(h, clients, "daibieu", meeting_id)
    publisher = await delegate.publish(media)
    audio_id = publisher.producer_id("audio")
    await chair.subscribe(*[p.id for p in publisher.result.added])
    sub = chair.receiver()
    await wait_for(lambda: sub.frames("audio") >= 20 and sub.frames("video") >= 5, timeout=8)

    # Only the chair may mute others.
    assert await delegate.error("media:chair-mute", user_id=chair.http.user["id"]) == "forbidden"
    muted = await chair.ok("media:chair-mute", user_id=delegate.http.user["id"])
    assert muted["producer_ids"] == [audio_id]
    event = await delegate.wait_for("media:producer-paused", lambda e: e["paused"])
    assert event == {"meeting_id": meeting_id, "producer_id": audio_id,
                     "peer_id": delegate.joined["peer_id"], "paused": True, "paused_by": "chair"}
    await delegate.wait_for("media:lock", lambda e: e["locked"] and e["kind"] == "audio")
    await asyncio.sleep(0.3)  # packets in flight
    frames = sub.frames("audio")
    video = sub.frames("video")
    await asyncio.sleep(1.0)
    assert sub.frames("audio") == frames, "the chair still hears a muted delegate"
    assert sub.frames("video") > video  # only the audio was muted

    # The owner cannot undo it...
    assert await delegate.error("media:unmute", producer_id=audio_id) == "muted_by_chair"
    # ...not even by publishing again from a new device.
    again = await person(h, clients, "daibieu", meeting_id)
    second = await again.publish(media, video=None)
    info = (await again.wait_for("media:producer-added",
                                 lambda e: e["producer"]["id"] == second.producer_id("audio")))
    assert info["producer"]["paused"] and info["producer"]["locked"]
    assert await again.error("media:unmute", producer_id=second.producer_id("audio")) \
        == "muted_by_chair"

    # Once the chair allows it, the owner unmutes and the chair hears them again.
    allowed = await chair.ok("media:chair-allow", user_id=delegate.http.user["id"])
    assert allowed["user_ids"] == [delegate.http.user["id"]]
    assert (await delegate.ok("media:unmute", producer_id=audio_id))["paused"] is False
    await wait_for(lambda: sub.frames("audio") > frames + 10, timeout=5)

    # Own mute is reversible by the owner; another person's producer is not theirs to touch.
    assert (await delegate.ok("media:mute", producer_id=audio_id))["paused"] is True
    paused = await chair.wait_for("media:producer-paused",
                                  lambda e: e["paused"] and e["paused_by"] == "self")
    assert paused["producer_id"] == audio_id
    assert await chair.error("media:unmute", producer_id=audio_id) == "forbidden"
    assert (await delegate.ok("media:unmute", producer_id=audio_id))["paused"] is False

    # Mute all and stop video: everyone but the chair.
    everyone = await chair.ok("media:mute-all")
    assert everyone["user_ids"] == [delegate.http.user["id"]]
    stopped = await chair.ok("media:chair-mute", user_id=delegate.http.user["id"], kind="video")
    assert stopped["producer_ids"] == [publisher.producer_id("video")]
    await asyncio.sleep(0.3)
    video = sub.frames("video")
    await asyncio.sleep(0.8)
    assert sub.frames("video") == video

    # Muting a site mutes whoever joins from it.
    site_id = chair.joined["me"]["site_id"]
    assert site_id is not None
    result = await chair.ok("media:chair-mute", site_id=site_id)
    assert result["user_ids"] == [chair.http.user["id"]]
    assert await chair.error("media:chair-mute", user_id=987654) == "not_found"
    assert await chair.error("media:chair-mute", user_id=1, site_id=1) == "invalid"


async def test_floor_removal_and_procedure_hook(
        hopso_media: Harness, clients: list[MediaClient], media: EncodedMedia) -> None:
    h = hopso_media
    meeting_id = await open_meeting(h)
    chair = await person(h, clients, "chutri", meeting_id)
    delegate = await person(h, clients, "daibieu", meeting_id)
    uid = delegate.http.user["id"]

    # The chair gives the floor directly...
    holder = (await chair.ok("media:floor", user_id=uid))["holder"]
    assert holder["user_id"] == uid and holder["peer_ids"] == [delegate.joined["peer_id"]]
    await delegate.wait_for("media:floor", lambda e: (e["holder"] or {}).get("user_id") == uid)
    # Their video comes first in every subscriber's bandwidth allocation (docs/media.md).
    router = h.server.app[MEDIA].router(meeting_id)
    assert router is not None
    assert router.priority_peers == {delegate.joined["peer_id"]}
    await chair.ok("media:floor", user_id=None)
    await delegate.wait_for("media:floor", lambda e: e["holder"] is None)
    assert router.priority_peers == frozenset()

    # ...or through the procedure's floor queue (floor:changed drives media:floor).
    assert (await delegate.sio.call("meeting:join", {"meeting_id": meeting_id}))["ok"]
    ack = await delegate.sio.call("attendance:check_in", {"meeting_id": meeting_id,
                                                          "mode": "online"}, timeout=5)
    assert ack["ok"], ack
    ack = await delegate.sio.call("floor:request", {"meeting_id": meeting_id}, timeout=5)
    assert ack["ok"], ack
    ack = await chair.sio.call("floor:grant", {"meeting_id": meeting_id,
                                               "request_id": ack["result"]["request_id"]},
                               timeout=5)
    assert ack["ok"], ack
    event = await chair.wait_for("media:floor",
                                 lambda e: (e["holder"] or {}).get("user_id") == uid)
    assert event["holder"]["name"] == "Lê Minh Tuấn"

    # Removal: the peer is closed, the person cannot come back until readmitted.
    publisher = await delegate.publish(media, video=None)
    assert (await chair.ok("media:remove", user_id=uid))["peer_ids"] == [
        delegate.joined["peer_id"]]
    closed = await delegate.wait_for("media:closed")
    assert closed["reason"] == "removed"
    await chair.wait_for("media:producer-closed",
                         lambda e: e["producer_id"] == publisher.producer_id("audio"))
    assert await delegate.error("media:join") == "removed"
    assert await delegate.error("media:readmit", user_id=uid) == "forbidden"
    assert await chair.error("media:remove", user_id=chair.http.user["id"]) == "invalid"
    await chair.ok("media:readmit", user_id=uid)
    await delegate.join()


async def test_access_checks_and_bad_input(
        hopso_media: Harness, clients: list[MediaClient], media: EncodedMedia) -> None:
    h = hopso_media
    meeting_id = await demo_meeting_id(h)
    delegate = await person(h, clients, "daibieu", meeting_id, join=False)
    assert await delegate.error("media:join") == "meeting_not_open"
    meeting_id = await open_meeting(h)
    admin = await person(h, clients, "quantri", meeting_id, join=False)  # not a member
    assert await admin.error("media:join") == "not_found"
    assert await admin.error("media:config") == "not_found"
    assert await delegate.error("media:publish", sdp="v=0") == "not_joined"
    await delegate.join()

    # Another meeting, with its own producers: invisible from this one.
    chair_http = await h.login("chutri")
    status, other = await chair_http.call("POST", "/api/meetings", {
        "title": "Họp riêng", "unit_id": chair_http.user["unit_id"],
        "starts_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()})
    assert status == 201, other
    assert (await chair_http.call("POST", f"/api/meetings/{other['id']}/open"))[0] == 200
    outsider = await person(h, clients, "chutri", other["id"])
    foreign = await outsider.publish(media, video=None)
    foreign_id = foreign.producer_id("audio")
    assert await delegate.error("media:subscribe", producer_ids=[foreign_id]) == "not_found"
    delegate.peer.meeting_id = other["id"]
    assert await delegate.error("media:subscribe", producer_ids=[foreign_id]) == "not_found"
    assert await delegate.error("media:join") == "not_found"
    delegate.peer.meeting_id = meeting_id

    # Observers-to-be: a publisher in this meeting, and bad SDP that changes nothing.
    chair = await person(h, clients, "chutri", meeting_id)
    publisher = await chair.publish(media)
    await delegate.subscribe(*[p.id for p in publisher.result.added])
    sub = delegate.receiver()
    await wait_for(lambda: sub.frames("video") >= 5, timeout=8)
    assert await chair.error("media:publish", sdp="v=0\r\nnonsense") == "bad_sdp"
    h264_only = publisher.pc.localDescription.sdp.replace("VP8/90000", "VP9/90000").replace(
        "opus/48000/2", "G722/8000")
    assert await chair.error("media:publish", sdp=h264_only) in ("unsupported_codec", "bad_sdp")
    assert await chair.error("media:publish", sdp="x" * 300_000) == "invalid"
    assert await chair.error("media:publish", sdp="v=0", sources={"0": "webcam"}) == "invalid"
    assert await delegate.error("media:answer", sdp="v=0\r\n") in ("negotiation", "bad_sdp")
    assert await delegate.error("media:unsubscribe", consumer_id="nope") == "not_found"
    assert await delegate.error("media:mute", producer_id=publisher.producer_id("audio")) \
        == "forbidden"
    frames = sub.frames("video")
    await wait_for(lambda: sub.frames("video") > frames + 5, timeout=5)  # untouched

    # Subscribe floods: a burst is allowed, then rate limited; id lists are capped.
    ids = [p.id for p in publisher.result.added]
    started = time.monotonic()
    codes = await asyncio.gather(*(delegate.error("media:subscribe", producer_ids=["missing"])
                                   for _ in range(30)))
    refilled = 2 * (time.monotonic() - started)  # the bucket: 10 at once, then 2/s
    assert set(codes) == {"not_found", "rate_limited"}, codes
    assert codes.count("not_found") <= 10 + refilled + 1, (codes, refilled)
    assert await delegate.error("media:subscribe", producer_ids=ids * 40) == "invalid"
    assert h.server.app[MEDIA].router(meeting_id) is not None


async def test_disconnect_and_ice_timeout_clean_up(
        hopso_media: Harness, clients: list[MediaClient], media: EncodedMedia) -> None:
    h = hopso_media
    hub = h.server.app[MEDIA]
    meeting_id = await open_meeting(h)
    chair = await person(h, clients, "chutri", meeting_id)
    delegate = await person(h, clients, "daibieu", meeting_id)
    publisher = await delegate.publish(media)
    await chair.subscribe(*[p.id for p in publisher.result.added])
    await wait_for(lambda: chair.receiver().frames("video") >= 3, timeout=8)
    assert len(hub.members) == 2

    await delegate.sio.disconnect()
    gone = await chair.wait_for("media:peer-closed")
    assert gone["peer_id"] == delegate.joined["peer_id"]
    await chair.wait_for("media:producer-closed",
                         lambda e: e["producer_id"] == publisher.producer_id("video"))
    router = hub.router(meeting_id)
    assert router is not None and [p.id for p in router.peers] == [chair.joined["peer_id"]]
    assert router.producers() == [] and next(iter(hub.members.values())).name == "Nguyễn Văn Hùng"

    # A client that publishes but never completes ICE is closed after the ICE timeout.
    silent = await person(h, clients, "thuky", meeting_id)
    from aiortc import RTCPeerConnection

    from testkit.aiortc_clients import CLIENT_CONFIG, audio_track

    pc = RTCPeerConnection(CLIENT_CONFIG)
    pc.addTransceiver(audio_track(media.opus), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    await silent.ok("media:publish", sdp=pc.localDescription.sdp)  # the answer is never applied
    closed = await silent.wait_for("media:closed", timeout=8)
    assert closed["reason"] == "ice-timeout"
    await pc.close()
    assert await silent.error("media:producers") == "not_joined"
    assert [p.id for p in router.peers] == [chair.joined["peer_id"]]

    # The last one out frees the meeting's router.
    await chair.ok("media:leave")
    await wait_for(lambda: hub.router(meeting_id) is None, timeout=3)


async def test_closing_the_meeting_ends_its_media(
        hopso_media: Harness, clients: list[MediaClient]) -> None:
    h = hopso_media
    meeting_id = await open_meeting(h)
    delegate = await person(h, clients, "daibieu", meeting_id)
    chair = await h.login("chutri")
    assert (await chair.call("POST", f"/api/meetings/{meeting_id}/close"))[0] == 200
    closed = await delegate.wait_for("media:closed", timeout=5)
    assert closed == {"meeting_id": meeting_id, "peer_id": delegate.joined["peer_id"],
                      "reason": "meeting-closed"}
    assert await delegate.error("media:join") == "meeting_not_open"
    assert h.server.app[MEDIA].router(meeting_id) is None


async def test_a_tile_asks_for_a_layer_and_bad_requests_get_error_acks(
        hopso_media: Harness, clients: list[MediaClient], media: EncodedMedia) -> None:
    h = hopso_media
    meeting_id = await open_meeting(h)
    chair = await person(h, clients, "chutri", meeting_id)
    delegate = await person(h, clients, "daibieu", meeting_id, join=False)
    publisher = await chair.publish(media)
    video_id = publisher.producer_id("video")
    assert await delegate.error("media:layers", producer_id=video_id, want="low") \
        == "not_joined"
    await delegate.join()
    # Not subscribed yet: nothing to choose a layer of.
    assert await delegate.error("media:layers", producer_id=video_id, want="low") \
        == "not_found"
    await delegate.subscribe(*[p.id for p in publisher.result.added])
    sub = delegate.receiver()
    await wait_for(lambda: sub.frames("video") >= 5, timeout=8)

    for want in ("low", "off", "high"):
        result = await delegate.ok("media:layers", producer_id=video_id, want=want)
        assert result == {"producer_id": video_id, "want": want}
        router = h.server.app[MEDIA].router(meeting_id)
        assert router is not None
        [peer] = [p for p in router.peers
                  if any(c.producer.id == video_id for c in p.consumers)]
        [consumer] = [c for c in peer.consumers if c.producer.id == video_id]
        assert peer.wanted_layer(consumer.id) is Want(want)

    assert await delegate.error("media:layers", producer_id=video_id, want="ultra") \
        == "invalid"
    assert await delegate.error("media:layers", producer_id=video_id) == "invalid"
    assert await delegate.error("media:layers", producer_id="x" * 65, want="low") == "invalid"
    assert await delegate.error("media:layers", producer_id="nope", want="low") == "not_found"
    frames = sub.frames("video")
    await wait_for(lambda: sub.frames("video") > frames + 5, timeout=5)  # untouched

    # A REMB of 0 (absurd) from the subscriber is refused and counted in /metrics.
    [receiver] = [t.receiver for t in sub.pc.getTransceivers() if t.kind == "video"]
    await receiver._send_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0,
                                             fci=pack_remb_fci(0, [consumer.ssrc])))
    await wait_for(lambda: peer.downlink_stats().remb_absurd == 1, timeout=5)
    admin = await h.login("quantri")

    async def counted() -> bool:
        text = (await admin.call("GET", "/metrics"))[1]
        return re.search(r'^hopso_media_downlink_events_total\{event="remb_absurd"\} 1\.0$',
                         text, re.MULTILINE) is not None

    for _ in range(20):
        if await counted():
            break
        await asyncio.sleep(0.25)
    assert await counted()
