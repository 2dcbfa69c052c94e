"""Simulcast in the publish offer/answer (media/simulcast_sdp.py, media/sdp.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media import sdp
from media.errors import SdpError
from media.simulcast_sdp import URI_REPAIRED_RID, URI_RID

from .browser_sdp import CHROME_OFFER, simulcast_offer
from .test_sdp import CONFIG, FP, LOCAL_ICE
from .test_sdp_fuzz import FUZZ


def answer_text(offer_text: str, layers: dict[str, tuple[str, ...]] | None = None) -> str:
    offer = sdp.parse_publish_offer(offer_text, CONFIG)
    if layers is None:
        layers = {m.mid: m.rids for m in offer.media if m.rids}
    return sdp.build_publish_answer(offer, LOCAL_ICE, FP, 1, 1, "client", layers)


def video_section(answer: str) -> str:
    return answer.split("m=video", 1)[1]


def test_chrome_simulcast_offer_gives_layers_low_to_high() -> None:
    offer = sdp.parse_publish_offer(simulcast_offer(), CONFIG)
    audio, video = offer.media
    assert audio.rids == () and video.rids == ("r0", "r1", "r2")
    assert (video.ssrc, video.rtx_ssrc) == (None, None)  # learnt from the rid extension
    assert (offer.rid_ext_id, offer.repaired_rid_ext_id) == (10, 11)


def test_answer_accepts_every_layer_with_rid_and_mid_extensions() -> None:
    video = video_section(answer_text(simulcast_offer()))
    assert "a=rid:r0 recv\r\na=rid:r1 recv\r\na=rid:r2 recv\r\n" in video
    assert "a=simulcast:recv r0;r1;r2\r\n" in video
    for line in ("a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
                 f"a=extmap:10 {URI_RID}", f"a=extmap:11 {URI_REPAIRED_RID}"):
        assert line in video
    assert "a=recvonly" in video


def test_screen_share_is_answered_with_its_top_layer_only() -> None:
    video = video_section(answer_text(simulcast_offer(), {"1": ("r2",)}))
    assert "a=rid:r2 recv\r\na=simulcast:recv r2\r\n" in video
    assert "a=rid:r0" not in video and "a=rid:r1" not in video


def test_single_layer_offer_gets_no_rid_lines_nor_rid_extensions() -> None:
    video = video_section(answer_text(CHROME_OFFER))
    assert "a=rid" not in video and "a=simulcast" not in video and URI_RID not in video


def test_paused_layers_and_alternatives_take_the_first_rid() -> None:
    text = simulcast_offer(rid_lines="a=rid:a send\na=rid:b send\na=rid:c send\n"
                                     "a=rid:d send\n").replace(
        "a=simulcast:send r0;r1;r2", "a=simulcast:send a,d;~b;c")
    assert sdp.parse_publish_offer(text, CONFIG).media[1].rids == ("a", "b", "c")


def test_rid_lines_without_simulcast_announce_no_layers() -> None:
    text = simulcast_offer().replace("a=simulcast:send r0;r1;r2\r\n", "")
    assert sdp.parse_publish_offer(text, CONFIG).media[1].rids == ()


@pytest.mark.parametrize("text", [
    simulcast_offer(rid_lines="a=rid:r0 send\na=rid:r1 send\na=rid:r!2 send\n"),  # not a token
    simulcast_offer(rid_lines="a=rid:r0 send\na=rid:r1 send\na=rid:r2 recv\n"),  # wrong way
    simulcast_offer(rid_lines="a=rid:r0 send\na=rid:r1 send\n"),  # r2 undeclared
    simulcast_offer(rid_lines="a=rid:r0 send\na=rid:r0 send\na=rid:r1 send\na=rid:r2 send\n"),
    simulcast_offer(rid_lines="a=rid:r0\na=rid:r1 send\na=rid:r2 send\n"),  # no direction
    simulcast_offer(rids=("r0", "r1", "r2", "r3")),  # more layers than taken
    simulcast_offer(rids=("r0", "r0")),
    simulcast_offer(extra="a=simulcast:send r0\n"),  # twice
    simulcast_offer().replace("a=simulcast:send r0;r1;r2", "a=simulcast:recv r0;r1;r2"),
    simulcast_offer().replace("a=simulcast:send r0;r1;r2", "a=simulcast:send"),
    simulcast_offer().replace("a=simulcast:send r0;r1;r2", "a=simulcast:send r0;;r2"),
    simulcast_offer().replace("a=simulcast:send r0;r1;r2", "a=simulcast:send " + "x" * 40),
    simulcast_offer(rid_lines="".join(f"a=rid:q{i} send\n" for i in range(40))
                    + "a=rid:r0 send\na=rid:r1 send\na=rid:r2 send\n"),
    simulcast_offer().replace(f"a=extmap:10 {URI_RID}\r\n", ""),  # no rid extension
], ids=["token", "recv-rid", "undeclared", "duplicate-rid", "no-direction", "four-layers",
        "duplicate-layer", "two-simulcast", "recv-simulcast", "empty-list", "empty-layer",
        "long-rid", "many-rid-lines", "no-rid-extension"])
def test_garbage_simulcast_is_refused_as_sdp_error(text: str) -> None:
    with pytest.raises(SdpError):
        sdp.parse_publish_offer(text, CONFIG)


def test_simulcast_on_audio_is_refused() -> None:
    text = CHROME_OFFER.replace("a=mid:0\r\n", "a=mid:0\r\na=rid:a send\r\na=simulcast:send a\r\n")
    with pytest.raises(SdpError):
        sdp.parse_publish_offer(text, CONFIG)


RID_SPLICES = ["a=rid:", "a=rid:r0", "a=rid:r0 send pt=96;max-width=", "a=rid:é send",
               "a=rid:\x00 send", "a=rid:r9 send", "a=rid:" + "r" * 300 + " send",
               "a=simulcast:", "a=simulcast:send", "a=simulcast:send ;", "a=simulcast:send ~",
               "a=simulcast:send r0,,r1", "a=simulcast:send r0;r1;r2;r9", "a=simulcast: send r0",
               "a=simulcast:send r0 recv r1", "a=simulcast:send ~r0;~r1;~r2",
               "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", "m=video 9 x 96",
               "a=mid:1", "a=rid:r0 send", "a=rid:r1 send", "a=simulcast:send r0;r1"]


@settings(FUZZ, max_examples=200)
@given(st.data())
def test_mutated_simulcast_offers_answer_or_raise_sdp_error(data: st.DataObject) -> None:
    """Lines of a simulcast offer dropped, repeated or replaced with hostile rid/simulcast
    lines: the offer is answered (layers a subset of its rids) or refused as SdpError."""
    lines = simulcast_offer().split("\r\n")
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(lines) - 1))
        action = data.draw(st.sampled_from(["drop", "repeat", "splice", "cut"]))
        if action == "drop":
            del lines[i]
        elif action == "repeat":
            lines.insert(i, lines[i])
        elif action == "splice":
            lines.insert(i, data.draw(st.sampled_from(RID_SPLICES)))
        else:
            lines[i] = lines[i][:data.draw(st.integers(0, len(lines[i])))]
    text = "\r\n".join(lines)
    try:
        offer = sdp.parse_publish_offer(text, CONFIG)
    except SdpError:
        return
    layers = {m.mid: m.rids for m in offer.media if m.rids}
    for m in offer.media:
        assert len(m.rids) <= 3 and len(set(m.rids)) == len(m.rids)
    answer = sdp.build_publish_answer(offer, LOCAL_ICE, FP, 1, 1, "client", layers)
    sdp.parse(answer, CONFIG)  # what we answer parses
