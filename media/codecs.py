"""The codecs the SFU forwards, how to pick one from an offer, keyframes."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.sdp import H264Profile, parse_h264_profile_level_id

from .errors import UnsupportedCodecError
from .types import CodecInfo, Kind

# Feedback the server answers/offers: NACK (+RTX), PLI, FIR and REMB.
# transport-cc is left out on purpose: browsers then honour REMB.
VIDEO_FEEDBACK: tuple[tuple[str, str | None], ...] = (
    ("goog-remb", None),
    ("ccm", "fir"),
    ("nack", None),
    ("nack", "pli"),
)
H264_BASELINE = (H264Profile.PROFILE_CONSTRAINED_BASELINE, H264Profile.PROFILE_BASELINE)


def _h264_ok(codec: RTCRtpCodecParameters) -> bool:
    if str(codec.parameters.get("packetization-mode", "0")) != "1":
        return False
    try:
        profile, _ = parse_h264_profile_level_id(
            str(codec.parameters.get("profile-level-id", "42e01f")))
    except ValueError:
        return False
    # Every browser decodes (constrained) baseline; others would strand subscribers.
    return profile in H264_BASELINE


def _h264_rank(codec: RTCRtpCodecParameters) -> int:
    profile, _ = parse_h264_profile_level_id(
        str(codec.parameters.get("profile-level-id", "42e01f")))
    return 0 if profile is H264Profile.PROFILE_CONSTRAINED_BASELINE else 1


def select_codec(
    kind: Kind, offered: Sequence[RTCRtpCodecParameters], video_prefs: Sequence[str]
) -> tuple[RTCRtpCodecParameters, RTCRtpCodecParameters | None]:
    """Pick the codec (and its RTX) to receive from a publisher's m-section."""
    chosen: RTCRtpCodecParameters | None = None
    if kind is Kind.AUDIO:
        chosen = next((c for c in offered if c.mimeType.lower() == "audio/opus"
                       and c.clockRate == 48000), None)
        if chosen is None:
            names = sorted({c.mimeType for c in offered}) or ["none"]
            raise UnsupportedCodecError(
                f"audio needs Opus/48000/2; offered: {', '.join(names)}")
        return chosen, None
    for name in video_prefs:
        name = name.upper()
        candidates = [c for c in offered if c.mimeType.lower() == f"video/{name.lower()}"
                      and c.clockRate == 90000]
        if name == "H264":
            candidates = sorted((c for c in candidates if _h264_ok(c)), key=_h264_rank)
        if candidates:
            chosen = candidates[0]
            break
    if chosen is None:
        names = sorted({c.mimeType for c in offered if c.name.lower() != "rtx"}) or ["none"]
        raise UnsupportedCodecError(
            "video needs VP8 or H.264 (packetization-mode=1, baseline profile); "
            f"offered: {', '.join(names)}")
    rtx = next((c for c in offered if c.name.lower() == "rtx"
                and c.parameters.get("apt") == chosen.payloadType), None)
    return chosen, rtx


def codec_info(codec: RTCRtpCodecParameters) -> CodecInfo:
    """The server-side description of a chosen codec, independent of PT."""
    kind = Kind(codec.mimeType.split("/")[0].lower())
    if kind is Kind.AUDIO:
        # What we forward is what the publisher sent; FEC is kept in-band.
        return CodecInfo(mime_type="audio/opus", clock_rate=48000, channels=2,
                         parameters=(("minptime", "10"), ("useinbandfec", "1")))
    if codec.name.upper() == "H264":
        profile = str(codec.parameters.get("profile-level-id", "42e01f")).lower()
        params = (("level-asymmetry-allowed", "1"), ("packetization-mode", "1"),
                  ("profile-level-id", profile))
        return CodecInfo(mime_type="video/H264", clock_rate=90000, parameters=params,
                         rtcp_feedback=VIDEO_FEEDBACK)
    return CodecInfo(mime_type="video/VP8", clock_rate=90000, rtcp_feedback=VIDEO_FEEDBACK)


# --- keyframe detection (first packet of a keyframe only) -------------------

def vp8_keyframe(payload: bytes) -> bool:
    """RFC 7741: S=1, PID=0 and the P bit of the VP8 frame tag is 0."""
    size = len(payload)
    if size < 1:
        return False
    b0 = payload[0]
    if not (b0 & 0x10) or (b0 & 0x07):  # not the start of partition 0
        return False
    pos = 1
    if b0 & 0x80:  # X: extension byte
        if size < 2:
            return False
        x = payload[1]
        pos = 2
        if x & 0x80:  # I: picture id, 7 or 15 bits
            if size <= pos:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if x & 0x40:  # L: TL0PICIDX
            pos += 1
        if x & 0x30:  # T or K: TID/KEYIDX
            pos += 1
    return size > pos and not (payload[pos] & 0x01)


def h264_keyframe(payload: bytes) -> bool:
    """RFC 6184: an SPS or IDR NAL unit starts here (single, STAP-A or FU-A)."""
    if not payload:
        return False
    nal = payload[0] & 0x1F
    if nal in (5, 7):
        return True
    if nal == 24:  # STAP-A: 16-bit size + NAL unit, repeated
        pos = 1
        while pos + 2 < len(payload):
            size = (payload[pos] << 8) | payload[pos + 1]
            if size == 0:
                return False
            if payload[pos + 2] & 0x1F in (5, 7):
                return True
            pos += 2 + size
        return False
    if nal == 28 and len(payload) > 1:  # FU-A: start bit and type
        return bool(payload[1] & 0x80) and payload[1] & 0x1F in (5, 7)
    return False


def keyframe_detector(codec: CodecInfo) -> Callable[[bytes], bool] | None:
    name = codec.name
    if name == "VP8":
        return vp8_keyframe
    if name == "H264":
        return h264_keyframe
    return None
