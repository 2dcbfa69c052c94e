from __future__ import annotations

import av
import pytest
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from media.codecs import codec_info, h264_keyframe, select_codec, vp8_keyframe
from media.errors import UnsupportedCodecError
from media.types import Kind
from testkit.aiortc_clients import VIDEO_TIME_BASE, EncodedMedia


def c(mime: str, pt: int, clock: int = 90000, **params: object) -> RTCRtpCodecParameters:
    return RTCRtpCodecParameters(mimeType=mime, clockRate=clock, payloadType=pt,
                                 parameters=dict(params))  # type: ignore[arg-type]


def test_select_prefers_configured_video_codec_and_its_rtx() -> None:
    offered = [c("video/H264", 102, **{"packetization-mode": "1", "profile-level-id": "42e01f"}),
               c("video/rtx", 103, apt=102), c("video/VP8", 96), c("video/rtx", 97, apt=96)]
    codec, rtx = select_codec(Kind.VIDEO, offered, ("VP8", "H264"))
    assert (codec.payloadType, rtx and rtx.payloadType) == (96, 97)
    codec, rtx = select_codec(Kind.VIDEO, offered, ("H264",))
    assert (codec.payloadType, rtx and rtx.payloadType) == (102, 103)


def test_h264_needs_mode_1_and_baseline() -> None:
    offered = [c("video/H264", 100, **{"packetization-mode": "0", "profile-level-id": "42e01f"}),
               c("video/H264", 101, **{"packetization-mode": "1", "profile-level-id": "640c1f"}),
               c("video/H264", 102, **{"packetization-mode": "1", "profile-level-id": "42001f"}),
               c("video/H264", 103, **{"packetization-mode": "1", "profile-level-id": "42e01f"})]
    codec, rtx = select_codec(Kind.VIDEO, offered, ("H264",))
    assert codec.payloadType == 103 and rtx is None  # constrained baseline first
    info = codec_info(codec)
    assert info.fmtp()["profile-level-id"] == "42e01f"
    with pytest.raises(UnsupportedCodecError, match=r"H\.264"):
        select_codec(Kind.VIDEO, offered[:2], ("H264", "VP8"))


def test_unsupported_codecs_name_what_was_offered() -> None:
    with pytest.raises(UnsupportedCodecError, match="audio/PCMU"):
        select_codec(Kind.AUDIO, [c("audio/PCMU", 0, 8000)], ("VP8",))
    with pytest.raises(UnsupportedCodecError, match="video/VP9"):
        select_codec(Kind.VIDEO, [c("video/VP9", 98)], ("VP8", "H264"))


def pkt(data: bytes) -> av.Packet:
    packet = av.Packet(data)
    packet.pts, packet.time_base = 0, VIDEO_TIME_BASE
    return packet


def test_keyframe_detection_on_real_packetised_frames(media: EncodedMedia) -> None:
    vp8 = Vp8Encoder()
    key_payloads = vp8.pack(pkt(media.vp8.frames[0]))[0]
    delta_payloads = vp8.pack(pkt(media.vp8.frames[1]))[0]
    assert vp8_keyframe(key_payloads[0])
    assert not any(vp8_keyframe(p) for p in key_payloads[1:])  # not a frame start
    assert not any(vp8_keyframe(p) for p in delta_payloads)
    h264 = H264Encoder()
    key = h264.pack(pkt(media.h264.frames[0]))[0]
    delta = h264.pack(pkt(media.h264.frames[1]))[0]
    assert h264_keyframe(key[0])
    assert not any(h264_keyframe(p) for p in delta)


def test_keyframe_detection_edge_cases() -> None:
    assert not vp8_keyframe(b"")
    assert not vp8_keyframe(b"\x90")  # X set but truncated
    assert vp8_keyframe(b"\x90\x80\x81\x02\x00")  # 15-bit picture id, then P=0
    assert not vp8_keyframe(b"\x90\x80\x81\x02\x01")
    assert h264_keyframe(bytes([24, 0, 2, 0x67, 0x42]))  # STAP-A with SPS
    assert not h264_keyframe(bytes([24, 0, 0]))
    assert h264_keyframe(bytes([28, 0x85]))  # FU-A start of IDR
    assert not h264_keyframe(bytes([28, 0x05]))  # FU-A continuation
