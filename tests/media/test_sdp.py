from __future__ import annotations

import dataclasses

import pytest
from aioice import Candidate
from aiortc import RTCDtlsFingerprint
from aiortc.sdp import SessionDescription

from media import sdp
from media.codecs import codec_info
from media.errors import SdpError, UnsupportedCodecError
from media.ice import IceParameters
from media.types import CodecInfo, Kind

from .browser_sdp import CHROME_OFFER
from .conftest import make_config

CONFIG = make_config()
FP = [RTCDtlsFingerprint("sha-256", "AA:BB")]
LOCAL_ICE = IceParameters("srv1", "serverpasswordserverpw", [Candidate(
    foundation="f", component=1, transport="udp", priority=100, host="127.0.0.1",
    port=40000, type="host")], True)


def answer_for(text: str) -> tuple[sdp.PublishOffer, SessionDescription]:
    offer = sdp.parse_publish_offer(text, CONFIG)
    answer = sdp.build_publish_answer(offer, LOCAL_ICE, FP, 1, 1, "client")
    return offer, SessionDescription.parse(answer)


def test_chrome_offer_selects_vp8_opus_and_answers_recvonly() -> None:
    offer, answer = answer_for(CHROME_OFFER)
    audio, video = offer.media
    assert (audio.codec.name, audio.ssrc, audio.sending) == ("opus", 1001, True)
    assert (video.codec.name, video.codec.payloadType, video.rtx and video.rtx.payloadType,
            video.ssrc, video.rtx_ssrc) == ("VP8", 96, 97, 2001, 2002)
    assert offer.mid_ext_id == 4 and offer.audio_level_ext_id == 1
    # mDNS and TCP candidates are skipped: a server cannot use them.
    assert [c.host for c in offer.transport.ice.candidates] == ["127.0.0.1"]
    a, v = answer.media
    assert (a.direction, v.direction) == ("recvonly", "recvonly")
    assert [c.payloadType for c in v.rtp.codecs] == [96, 97]
    assert {(f.type, f.parameter) for f in v.rtp.codecs[0].rtcpFeedback} == {
        ("goog-remb", None), ("ccm", "fir"), ("nack", None), ("nack", "pli"),
        ("transport-cc", None)}
    assert {e.uri for e in a.rtp.headerExtensions} == {
        "urn:ietf:params:rtp-hdrext:sdes:mid", "urn:ietf:params:rtp-hdrext:ssrc-audio-level"}
    assert [e.id for e in v.rtp.headerExtensions] == [3, 4]  # transport-cc, mid; no CVO
    assert answer.group[0].items == ["0", "1"]
    assert all(c.ip == "127.0.0.1" for m in answer.media for c in m.ice_candidates)
    assert a.dtls is not None and a.dtls.role == "client"  # a=setup:active
    assert a.rtp.codecs[0].parameters == {"minptime": 10, "useinbandfec": 1}


def test_transport_cc_is_answered_to_a_publishers_video_only() -> None:
    """A publisher's own GCC estimates its uplink from our transport-wide feedback: the
    answer's video takes the extension and the feedback type, its audio neither; the offers
    to subscribers keep REMB only; `transport_cc=False` answers as before."""
    offer, answer = answer_for(CHROME_OFFER)
    assert offer.twcc_ext_id == 3
    a, v = answer.media
    twcc = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
    assert [(e.id, e.uri) for e in v.rtp.headerExtensions if e.uri == twcc] == [(3, twcc)]
    assert ("transport-cc", None) in {(f.type, f.parameter)
                                      for f in v.rtp.codecs[0].rtcpFeedback}
    assert twcc not in {e.uri for e in a.rtp.headerExtensions}
    assert not any(f.type == "transport-cc" for c in a.rtp.codecs for f in c.rtcpFeedback)
    text = sdp.build_recv_offer([sdp.OfferSection(
        mid="0", kind=Kind.VIDEO, codec=codec_info(offer.media[1].codec),
        pt=96, rtx_pt=97, active=True, ssrc=5, rtx_ssrc=6, stream_id="s", track_id="t")],
        LOCAL_ICE, FP, "cname", 1, 1)
    assert "transport-cc" not in text and "transport-wide" not in text and "goog-remb" in text
    off = make_config(transport_cc=False)
    plain = sdp.parse_publish_offer(CHROME_OFFER, off)
    assert plain.twcc_ext_id == 0
    text = sdp.build_publish_answer(plain, LOCAL_ICE, FP, 1, 1, "client")
    assert "transport-cc" not in text and "transport-wide" not in text


def test_h264_preference_and_data_channel_rejected() -> None:
    config = make_config(video_codecs=("H264", "VP8"))
    text = CHROME_OFFER.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 1 2") + (
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
        "a=ice-ufrag:Ch1m\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
        "a=fingerprint:sha-256 6B:8B\r\na=setup:actpass\r\na=mid:2\r\na=sctp-port:5000\r\n")
    offer = sdp.parse_publish_offer(text, config)
    assert offer.media[1].codec.payloadType == 35  # constrained baseline over 42001f
    answer = SessionDescription.parse(
        sdp.build_publish_answer(offer, LOCAL_ICE, FP, 1, 1, "client"))
    assert answer.media[2].port == 0 and answer.group[0].items == ["0", "1"]


@pytest.mark.parametrize("text, message", [
    ("", "v=0"),
    ("hello", "v=0"),
    ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n", "no m-section"),
    ("v=0\r\nm=audio x RTP 1\r\n", "malformed"),
    (CHROME_OFFER.replace("a=setup:actpass", "a=setup:bogus"), "malformed"),
    (CHROME_OFFER.replace("a=fmtp:97 apt=96", "a=fmtp:199 apt=96"), "malformed"),
    (CHROME_OFFER.replace("a=rtcp-mux\r\n", ""), "rtcp-mux"),
    (CHROME_OFFER.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0"), "BUNDLE"),
    (CHROME_OFFER.replace("a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n", ""), "ICE"),
    (CHROME_OFFER.replace("a=mid:1", "a=mid:0"), "unique"),
    ("v=0\r\n" + "m=audio 9 RTP 0\r\n" * 40, "m-sections"),
    ("v=0\r\n" + "a=x\r\n" * 20000, "limit"),
])
def test_malformed_offers_raise_sdp_error(text: str, message: str) -> None:
    with pytest.raises(SdpError, match=message):
        sdp.parse_publish_offer(text, CONFIG)


def test_unsupported_codecs() -> None:
    no_opus = CHROME_OFFER.replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 speex/48000/2")
    with pytest.raises(UnsupportedCodecError, match="Opus"):
        sdp.parse_publish_offer(no_opus, CONFIG)
    vp9_only = make_config(video_codecs=("VP8",))
    text = CHROME_OFFER.replace("VP8/90000", "VP7/90000")
    with pytest.raises(UnsupportedCodecError, match="VP8"):
        sdp.parse_publish_offer(text, vp9_only)


def section(mid: str, kind: Kind, active: bool = True) -> sdp.OfferSection:
    codec = (CodecInfo("video/VP8", 90000, rtcp_feedback=(("nack", None),))
             if kind is Kind.VIDEO else CodecInfo("audio/opus", 48000, 2))
    return sdp.OfferSection(mid, kind, codec, 96 if kind is Kind.VIDEO else 100,
                            97 if kind is Kind.VIDEO else None, active, 11, 12, "p-av", "t")


def test_recv_offer_lists_ssrcs_and_inactive_sections() -> None:
    sections = [section("0", Kind.AUDIO), section("1", Kind.VIDEO), section("2", Kind.VIDEO,
                                                                            False)]
    text = sdp.build_recv_offer(sections, LOCAL_ICE, FP, "cname", 1, 2)
    parsed = SessionDescription.parse(text)
    audio, video, gone = parsed.media
    assert audio.direction == "sendonly" and video.msid == "p-av t"
    assert [s.ssrc for s in video.ssrc] == [11, 12] and video.ssrc_group[0].semantic == "FID"
    assert gone.direction == "inactive" and gone.ssrc == []
    assert parsed.group[0].items == ["0", "1", "2"]
    assert audio.dtls is not None and audio.dtls.role == "auto"  # a=setup:actpass


def test_recv_answer_must_match_offer() -> None:
    sections = [section("0", Kind.AUDIO), section("1", Kind.VIDEO)]
    offer = sdp.build_recv_offer(sections, LOCAL_ICE, FP, "cname", 1, 2)
    answer = (offer.replace("a=sendonly", "a=recvonly").replace("a=setup:actpass",
                                                                 "a=setup:active"))
    parsed = sdp.parse_recv_answer(answer, sections, CONFIG)
    assert parsed.media["1"].accepted and parsed.media["1"].rtx_pt == 97
    assert parsed.media["1"].nack and parsed.transport.setup == "client"
    with pytest.raises(SdpError, match="match"):
        sdp.parse_recv_answer(answer, sections[:1], CONFIG)
    with pytest.raises(SdpError, match="active or passive"):
        sdp.parse_recv_answer(answer.replace("a=setup:active", "a=setup:actpass"), sections,
                              CONFIG)
    rejected = answer.replace("m=video 40000", "m=video 0")
    assert not sdp.parse_recv_answer(rejected, sections, CONFIG).media["1"].accepted


def test_recv_offer_rejects_closed_sections_out_of_bundle() -> None:
    gone = dataclasses.replace(section("1", Kind.VIDEO), active=False, rejected=True)
    sections = [section("0", Kind.AUDIO), gone, section("2", Kind.AUDIO)]
    text = sdp.build_recv_offer(sections, LOCAL_ICE, FP, "cname", 1, 2)
    parsed = SessionDescription.parse(text)
    audio, rejected, other = parsed.media
    assert rejected.port == 0 and rejected.rtp.muxId == "1"
    # JSEP: port 0 and no a=msid; we also drop SSRCs and extensions. a=inactive, the codecs,
    # ICE and rtcp-mux stay (aiortc 1.16 cannot answer without them, like mediasoup).
    assert rejected.msid is None and rejected.ssrc == [] and rejected.ssrc_group == []
    assert rejected.rtp.headerExtensions == [] and rejected.direction == "inactive"
    assert [c.mimeType for c in rejected.rtp.codecs] == ["video/VP8", "video/rtx"]
    assert rejected.rtcp_mux and rejected.ice is not None and rejected.ice.usernameFragment
    assert "m=video 0 " in text and text.count("a=msid:") == 2
    assert parsed.group[0].items == ["0", "2"]  # a rejected m-section is in no BUNDLE group
    assert audio.port == other.port != 0

    # A browser answers a rejected m-section with port 0 and little else.
    answer = (text.replace("a=sendonly", "a=recvonly").replace("a=setup:actpass",
                                                                "a=setup:active"))
    head, video = answer.split("m=video")
    _, tail = video.split("m=audio")
    chrome = "m=video 0 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\n"
    parsed_answer = sdp.parse_recv_answer(head + chrome + "m=audio" + tail, sections, CONFIG)
    assert not parsed_answer.media["1"].accepted
    assert parsed_answer.media["0"].accepted and parsed_answer.media["2"].accepted
    with pytest.raises(SdpError, match="match"):  # the mid at that index must be the offer's
        sdp.parse_recv_answer(answer.replace("a=mid:1", "a=mid:9"), sections, CONFIG)


def test_subscriber_offers_carry_transport_cc_on_video_when_asked() -> None:
    """`transport_cc=True` (MediaConfig.subscriber_transport_cc): the video sections offer the
    extension (EXT_TRANSPORT_CC) and the feedback type, audio neither; an answer that keeps
    the extension at our id says so, one that drops it does not."""
    twcc = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
    sections = [section("0", Kind.AUDIO), section("1", Kind.VIDEO)]
    offer = sdp.build_recv_offer(sections, LOCAL_ICE, FP, "cname", 1, 2, transport_cc=True)
    audio, video = SessionDescription.parse(offer).media
    assert [(e.id, e.uri) for e in video.rtp.headerExtensions if e.uri == twcc] == [(4, twcc)]
    assert ("transport-cc", None) in {(f.type, f.parameter)
                                      for f in video.rtp.codecs[0].rtcpFeedback}
    assert twcc not in {e.uri for e in audio.rtp.headerExtensions}
    assert not any(f.type == "transport-cc" for c in audio.rtp.codecs for f in c.rtcpFeedback)
    answer = (offer.replace("a=sendonly", "a=recvonly").replace("a=setup:actpass",
                                                                 "a=setup:active"))
    parsed = sdp.parse_recv_answer(answer, sections, CONFIG)
    assert parsed.media["1"].transport_cc and not parsed.media["0"].transport_cc
    dropped = answer.replace(f"a=extmap:4 {twcc}\r\n", "")
    assert not sdp.parse_recv_answer(dropped, sections, CONFIG).media["1"].transport_cc
    plain = sdp.build_recv_offer(sections, LOCAL_ICE, FP, "cname", 1, 2)
    assert "transport-cc" not in plain and "transport-wide" not in plain
    assert not sdp.parse_recv_answer(
        plain.replace("a=sendonly", "a=recvonly").replace("a=setup:actpass", "a=setup:active"),
        sections, CONFIG).media["1"].transport_cc
