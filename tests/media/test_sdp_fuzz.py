"""Fuzz the session descriptions clients send (media/sdp.py): a browser's offer and a valid
answer mutated line by line (lines dropped, repeated, cut short, hostile values spliced in:
huge numbers, odd ids, SSRC groups with words, NULs), lines drawn from the SDP vocabulary,
and plain text. Whatever arrives: the parser answers, or raises SdpError (a MediaError the
server answers as a clear error); what it answers, the server can answer in turn."""

from __future__ import annotations

from typing import Any

from aiortc.sdp import SessionDescription
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media import sdp
from media.errors import SdpError
from media.types import Kind

from .browser_sdp import CHROME_OFFER
from .test_sdp import CONFIG, FP, LOCAL_ICE, section

FUZZ = settings(max_examples=500, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SECTIONS = [section("0", Kind.AUDIO), section("1", Kind.VIDEO), section("2", Kind.VIDEO, False)]
ANSWER = (sdp.build_recv_offer(SECTIONS, LOCAL_ICE, FP, "cname", 1, 2)
          .replace("a=sendonly", "a=recvonly").replace("a=setup:actpass", "a=setup:active"))
SPLICES = ["x", "-1", "0", "99999999999999999999", "4294967296", " ", ":", "/", "\x00", "é",
           "a=ssrc-group:FID x y", "a=ssrc-group:FID 1", "a=ssrc:abc cname:x", "a=mid:",
           "a=extmap:999 urn:ietf:params:rtp-hdrext:sdes:mid", "a=rtpmap:96 VP8/0",
           "a=rtpmap:300 opus/48000/2", "a=fmtp:96 apt=", "m=video 9 UDP/TLS/RTP/SAVPF",
           "a=group:BUNDLE", "a=fingerprint:sha-256", "a=candidate:1 1 udp x 1.2.3.4 5 typ host",
           "a=setup:", "a=rtcp-fb:96", "c=IN IP4", "a=msid:", "a=rtcp:abc", "m=audio 70000 x 1"]
VOCABULARY = ["v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
              "m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
              "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "c=IN IP4 0.0.0.0",
              "a=mid:0", "a=mid:1", "a=sendonly", "a=recvonly", "a=inactive", "a=rtcp-mux",
              "a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuvwx", "a=setup:actpass",
              "a=fingerprint:sha-256 AA:BB", "a=rtpmap:111 opus/48000/2",
              "a=rtpmap:96 VP8/90000", "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96",
              "a=ssrc:1 cname:x", "a=ssrc:2 cname:x", "a=ssrc-group:FID 1 2",
              "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
              "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
              "a=candidate:1 1 udp 2122260223 127.0.0.1 40000 typ host", "a=end-of-candidates",
              "a=rtcp-fb:96 nack", "a=rtcp-fb:96 nack pli", "a=msid:s t"]


@st.composite
def mutated_lines(draw: Any, text: str) -> str:
    lines = text.split("\r\n")
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "repeat", "cut", "splice", "replace"]))
        if action == "drop" and len(lines) > 1:
            del lines[i]
        elif action == "repeat":
            lines.insert(draw(st.integers(0, len(lines))), lines[i])
        elif action == "cut":
            lines[i] = lines[i][:draw(st.integers(0, len(lines[i])))]
        elif action == "splice":
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(st.sampled_from(SPLICES)) + lines[i][at:]
        else:
            lines[i] = draw(st.sampled_from(SPLICES + VOCABULARY))
    return "\r\n".join(lines)


drawn_sdp = st.lists(st.sampled_from(VOCABULARY + SPLICES), max_size=30).map(
    lambda lines: "\r\n".join(["v=0", *lines]) + "\r\n")


@FUZZ
@given(st.one_of(mutated_lines(CHROME_OFFER), mutated_lines(CHROME_OFFER), drawn_sdp,
                 st.text(max_size=200)))
def test_a_publish_offer_is_answered_or_refused_with_sdp_error(text: str) -> None:
    try:
        offer = sdp.parse_publish_offer(text, CONFIG)
    except SdpError:
        return
    answer = sdp.build_publish_answer(offer, LOCAL_ICE, FP, 1, 1, "client")
    assert len(SessionDescription.parse(answer).media) == len(offer.session.media)


@FUZZ
@given(st.one_of(mutated_lines(ANSWER), drawn_sdp))
def test_a_receive_answer_is_read_or_refused_with_sdp_error(text: str) -> None:
    try:
        answer = sdp.parse_recv_answer(text, SECTIONS, CONFIG)
    except SdpError:
        return
    assert set(answer.media) == {s.mid for s in SECTIONS}
