"""Session descriptions: validate what clients send, write what they get.

aiortc's parser and serializer do the syntax; this module decides what is
acceptable (bounded size, BUNDLE, rtcp-mux, one codec per m-section) and
maps between SDP and the server's model. Nothing here has side effects, so a
bad description is rejected before any transport or producer exists.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

from aioice import Candidate
from aiortc import (
    RTCDtlsFingerprint,
    RTCIceCandidate,
    RTCIceParameters,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
)
from aiortc.rtcdtlstransport import RTCDtlsParameters
from aiortc.rtcrtpparameters import RTCRtcpFeedback
from aiortc.sdp import GroupDescription, MediaDescription, SessionDescription, SsrcDescription

from .codecs import VIDEO_FEEDBACK, select_codec
from .config import MediaConfig
from .errors import SdpError
from .ice import IceParameters
from .rtp import (
    EXT_ABS_SEND_TIME,
    EXT_AUDIO_LEVEL,
    EXT_TRANSPORT_CC,
    URI_ABS_SEND_TIME,
    URI_AUDIO_LEVEL,
    URI_MID,
)
from .simulcast_sdp import URI_REPAIRED_RID, URI_RID, answer_lines, offered_rids, section_attributes
from .twcc import URI_TRANSPORT_CC
from .types import CodecInfo, Kind

RTP_PROFILE = "UDP/TLS/RTP/SAVPF"
SENDING = ("sendonly", "sendrecv")
RECEIVING = ("recvonly", "sendrecv")
# Publishers (their answer): their own GCC estimates the uplink from our feedback; and
# subscribers' offers with MediaConfig.subscriber_transport_cc (media/bwe.py).
TRANSPORT_CC = ("transport-cc", None)


@dataclass
class RemoteTransport:
    ice: IceParameters
    fingerprints: list[RTCDtlsFingerprint]
    setup: str  # aiortc's role words: "auto" (actpass), "client", "server"


@dataclass
class PublishedMedia:
    """One m-section of a client's send-transport offer."""

    index: int
    mid: str
    kind: Kind
    sending: bool
    codec: RTCRtpCodecParameters
    rtx: RTCRtpCodecParameters | None
    ssrc: int | None
    rtx_ssrc: int | None
    feedback: list[RTCRtcpFeedback] = field(default_factory=list)
    rids: tuple[str, ...] = ()  # simulcast layers offered, low to high (simulcast_sdp.py)


@dataclass
class PublishOffer:
    session: SessionDescription
    transport: RemoteTransport
    media: list[PublishedMedia]  # accepted m-sections (sending or not)
    mid_ext_id: int = 0
    audio_level_ext_id: int = 0
    rid_ext_id: int = 0
    repaired_rid_ext_id: int = 0
    twcc_ext_id: int = 0  # transport-wide-cc, answered on video sections (0: none)
    ext_by_mid: dict[str, list[RTCRtpHeaderExtensionParameters]] = field(default_factory=dict)


@dataclass
class OfferSection:
    """One m-section of a server offer for a receive transport.

    `active` sends (a=sendonly); an inactive section has no consumer. A
    `rejected` one (port 0, JSEP section 5.2.2) frees its index: once the
    client has answered an offer rejecting it, a new section with a new mid
    may take that index.
    """

    mid: str
    kind: Kind
    codec: CodecInfo
    pt: int
    rtx_pt: int | None
    active: bool
    ssrc: int = 0
    rtx_ssrc: int = 0
    stream_id: str = ""
    track_id: str = ""
    rejected: bool = False


@dataclass
class AnsweredMedia:
    accepted: bool
    pt: int = 0
    rtx_pt: int | None = None
    nack: bool = False
    transport_cc: bool = False  # video: the answer kept our transport-wide-cc extension


@dataclass
class RecvAnswer:
    transport: RemoteTransport
    media: dict[str, AnsweredMedia]


# --- parsing ------------------------------------------------------------------

def parse(text: str, config: MediaConfig) -> SessionDescription:
    """Parse with size and section bounds; any parser failure is an SdpError."""
    if not isinstance(text, str):
        raise SdpError("SDP must be a string")
    if len(text) > config.max_sdp_bytes:
        raise SdpError(f"SDP is {len(text)} bytes, the limit is {config.max_sdp_bytes}")
    if not text.lstrip().startswith("v=0"):
        raise SdpError("SDP must start with v=0")
    if text.count("\nm=") > config.max_media_sections:
        raise SdpError(f"SDP has more than {config.max_media_sections} m-sections")
    try:
        session = SessionDescription.parse(text)
    except Exception as exc:  # noqa: BLE001 - aiortc raises assert/Value/Key/Index/...
        raise SdpError(f"malformed SDP: {type(exc).__name__}: {exc}") from None
    if not session.media:
        raise SdpError("SDP has no m-section")
    return session


def remote_transport(session: SessionDescription,
                     sections: Sequence[MediaDescription]) -> RemoteTransport:
    """ICE and DTLS parameters of the BUNDLE transport described by `sections`."""
    first = sections[0]
    if first.ice is None or not first.ice.usernameFragment or not first.ice.password:
        raise SdpError("ICE ufrag or pwd is missing")
    if first.dtls is None or not first.dtls.fingerprints:
        raise SdpError("DTLS fingerprint or setup is missing")
    candidates: list[Candidate] = []
    end = False
    for media in sections:
        if (media.ice is None or media.ice.usernameFragment != first.ice.usernameFragment
                or media.ice.password != first.ice.password):
            raise SdpError(f"m-section {media.rtp.muxId!r} has other ICE credentials "
                           "than the BUNDLE group")
        end = end or media.ice_candidates_complete
        for c in media.ice_candidates:
            # mDNS names cannot be resolved by a server; checks from the
            # client teach us its address as a peer-reflexive candidate.
            if (c.component != 1 or c.protocol.lower() != "udp"
                    or c.ip.endswith(".local") or c.type not in ("host", "srflx", "relay")):
                continue
            candidates.append(Candidate(
                foundation=c.foundation, component=1, transport="udp", priority=c.priority,
                host=c.ip, port=c.port, type=c.type, related_address=c.relatedAddress,
                related_port=c.relatedPort))
    ice = IceParameters(first.ice.usernameFragment, first.ice.password, candidates, end)
    return RemoteTransport(ice, list(first.dtls.fingerprints), first.dtls.role or "auto")


def _bundle(session: SessionDescription) -> list[str]:
    group = next((g for g in session.group if g.semantic == "BUNDLE"), None)
    return [str(item) for item in group.items] if group else []


def _ext_id(sections: Sequence[MediaDescription], uri: str) -> int:
    ids = {e.id for m in sections for e in m.rtp.headerExtensions if e.uri == uri}
    if len(ids) > 1:
        raise SdpError(f"header extension {uri} has several ids in one BUNDLE group")
    return ids.pop() if ids else 0


def parse_publish_offer(text: str, config: MediaConfig) -> PublishOffer:
    """Validate a client's offer for its send transport and pick codecs."""
    session = parse(text, config)
    rtp_sections = [m for m in session.media if m.kind in ("audio", "video") and m.port != 0]
    if not rtp_sections:
        raise SdpError("the offer has no audio or video m-section")
    mids = [m.rtp.muxId for m in rtp_sections]
    if any(not mid for mid in mids) or len(set(mids)) != len(mids):
        raise SdpError("every m-section needs a unique a=mid")
    bundle = _bundle(session)
    if len(rtp_sections) > 1 and not set(mids) <= set(bundle):
        raise SdpError("audio/video m-sections must all be in one BUNDLE group")
    transport = remote_transport(session, rtp_sections)
    offer = PublishOffer(session, transport, [],
                         mid_ext_id=_ext_id(rtp_sections, URI_MID),
                         audio_level_ext_id=_ext_id(
                             [m for m in rtp_sections if m.kind == "audio"], URI_AUDIO_LEVEL),
                         rid_ext_id=_ext_id(rtp_sections, URI_RID),
                         repaired_rid_ext_id=_ext_id(rtp_sections, URI_REPAIRED_RID))
    if config.transport_cc:
        offer.twcc_ext_id = _ext_id([m for m in rtp_sections if m.kind == "video"],
                                    URI_TRANSPORT_CC)
    raw = section_attributes(text)
    for index, media in enumerate(session.media):
        if media not in rtp_sections:
            continue
        if not media.rtcp_mux:
            raise SdpError(f"m-section {media.rtp.muxId!r} lacks a=rtcp-mux")
        kind = Kind(media.kind)
        sending = (media.direction or "sendrecv") in SENDING
        codec, rtx = select_codec(kind, media.rtp.codecs, config.video_codecs)
        ssrc, rtx_ssrc = _ssrcs(media)
        wanted = {(t, p) for t, p in VIDEO_FEEDBACK} if kind is Kind.VIDEO else set()
        if kind is Kind.VIDEO and offer.twcc_ext_id:
            wanted.add(TRANSPORT_CC)
        feedback = [f for f in codec.rtcpFeedback if (f.type, f.parameter) in wanted]
        rids = offered_rids(raw[index], media.rtp.muxId) if index < len(raw) else ()
        if rids and (kind is not Kind.VIDEO or not offer.rid_ext_id):
            raise SdpError(f"m-section {media.rtp.muxId!r}: simulcast needs video and the "
                           "rtp-stream-id header extension")
        offer.media.append(PublishedMedia(index, media.rtp.muxId, kind, sending, codec,
                                          rtx, ssrc, rtx_ssrc, feedback, rids))
        uris = {URI_MID} | ({URI_AUDIO_LEVEL} if kind is Kind.AUDIO else set())
        if rids:
            uris |= {URI_RID, URI_REPAIRED_RID}
        if kind is Kind.VIDEO and offer.twcc_ext_id:
            uris.add(URI_TRANSPORT_CC)
        offer.ext_by_mid[media.rtp.muxId] = [
            e for e in media.rtp.headerExtensions if e.uri in uris]
    return offer


def _ssrcs(media: MediaDescription) -> tuple[int | None, int | None]:
    fid = next((g for g in media.ssrc_group if g.semantic == "FID" and len(g.items) == 2), None)
    if fid is not None:
        return int(fid.items[0]), int(fid.items[1])
    if media.ssrc:
        return media.ssrc[0].ssrc, None
    return None, None


def parse_recv_answer(text: str, offered: Sequence[OfferSection],
                      config: MediaConfig) -> RecvAnswer:
    """Validate a client's answer to a server offer for its receive transport."""
    session = parse(text, config)
    got = [(m.kind, m.rtp.muxId) for m in session.media]
    want = [(s.kind.value, s.mid) for s in offered]
    if got != want:
        raise SdpError("the answer's m-sections do not match the offer")
    live = [m for m in session.media if m.port != 0]
    if not live:
        raise SdpError("the answer rejects every m-section")
    transport = remote_transport(session, live)
    if transport.setup not in ("client", "server"):
        raise SdpError("the answer's a=setup must be active or passive")
    result: dict[str, AnsweredMedia] = {}
    for section, media in zip(offered, session.media):
        result[section.mid] = _answered(section, media)
    return RecvAnswer(transport, result)


def _answered(section: OfferSection, media: MediaDescription) -> AnsweredMedia:
    if not section.active or media.port == 0 or (media.direction or "sendrecv") not in RECEIVING:
        return AnsweredMedia(False)
    name = section.codec.mime_type.lower()
    codec = next((c for c in media.rtp.codecs if c.mimeType.lower() == name
                  and c.clockRate == section.codec.clock_rate), None)
    if codec is None or codec.payloadType is None:
        return AnsweredMedia(False)
    rtx = next((c for c in media.rtp.codecs if c.name.lower() == "rtx"
                and c.parameters.get("apt") == codec.payloadType), None)
    nack = any(f.type == "nack" and not f.parameter for f in codec.rtcpFeedback)
    twcc = section.kind is Kind.VIDEO and any(
        e.uri == URI_TRANSPORT_CC and e.id == EXT_TRANSPORT_CC
        for e in media.rtp.headerExtensions)
    return AnsweredMedia(True, codec.payloadType, rtx.payloadType if rtx else None, nack,
                         twcc)


# --- writing --------------------------------------------------------------------

def _candidates(ice: IceParameters) -> list[RTCIceCandidate]:
    return [RTCIceCandidate(component=c.component, foundation=c.foundation, ip=c.host,
                            port=c.port, priority=c.priority, protocol=c.transport,
                            type=c.type) for c in ice.candidates]


def _transport_lines(media: MediaDescription, ice: IceParameters,
                     fingerprints: list[RTCDtlsFingerprint], role: str) -> None:
    media.ice = RTCIceParameters(usernameFragment=ice.ufrag, password=ice.pwd)
    media.ice_candidates = _candidates(ice)
    media.ice_candidates_complete = True
    if media.ice_candidates and media.port != 0:
        media.host, media.port = media.ice_candidates[0].ip, media.ice_candidates[0].port
    else:
        media.host = "0.0.0.0"
    media.dtls = RTCDtlsParameters(fingerprints=list(fingerprints), role=role)


def _session(kind: str, session_id: int, version: int) -> SessionDescription:
    session = SessionDescription()
    session.origin = f"- {session_id} {version} IN IP4 0.0.0.0"
    session.msid_semantic.append(GroupDescription(semantic="WMS", items=["*"]))
    session.type = kind
    return session


class _SimulcastMedia(MediaDescription):
    """An answer's m-section with a=rid / a=simulcast lines (aiortc writes neither)."""

    extra: list[str]

    def __str__(self) -> str:
        text = super().__str__()
        mid_line = f"a=mid:{self.rtp.muxId}\r\n"
        return text.replace(mid_line, mid_line + "".join(f"{x}\r\n" for x in self.extra), 1)


def build_publish_answer(offer: PublishOffer, ice: IceParameters,
                         fingerprints: list[RTCDtlsFingerprint],
                         session_id: int, version: int, role: str,
                         layers: dict[str, tuple[str, ...]] | None = None) -> str:
    """role: our DTLS role, kept from the first answer ("client" = active); layers: the
    simulcast rids taken per mid (a subset of those offered; none: single layer)."""
    layers = layers or {}
    session = _session("answer", session_id, version)
    accepted = {m.index: m for m in offer.media}
    bundle: list[str | int] = []
    for index, theirs in enumerate(offer.session.media):
        pub = accepted.get(index)
        if pub is None:  # data channel, port 0 or unknown: reject
            media = MediaDescription(theirs.kind, 0, theirs.profile, theirs.fmt)
            media.rtp.muxId = theirs.rtp.muxId
            _transport_lines(media, ice, fingerprints, role)
            session.media.append(media)
            continue
        codecs = [copy.deepcopy(pub.codec)]
        codecs[0].rtcpFeedback = list(pub.feedback)
        if pub.rtx is not None:
            codecs.append(copy.deepcopy(pub.rtx))
        media = _SimulcastMedia(theirs.kind, 9, RTP_PROFILE, [c.payloadType for c in codecs])
        media.direction = "recvonly" if pub.sending else "inactive"
        taken = layers.get(pub.mid, ())
        media.extra = answer_lines(taken)
        extensions = [e for e in offer.ext_by_mid[pub.mid]
                      if taken or e.uri not in (URI_RID, URI_REPAIRED_RID)]
        media.rtp = RTCRtpParameters(codecs=codecs, headerExtensions=extensions,
                                     muxId=pub.mid)
        media.rtcp_host, media.rtcp_port, media.rtcp_mux = "0.0.0.0", 9, True
        _transport_lines(media, ice, fingerprints, role)
        session.media.append(media)
        bundle.append(pub.mid)
    session.group.append(GroupDescription(semantic="BUNDLE", items=bundle))
    return str(session)


def build_recv_offer(sections: Sequence[OfferSection], ice: IceParameters,
                     fingerprints: list[RTCDtlsFingerprint], cname: str,
                     session_id: int, version: int, transport_cc: bool = False) -> str:
    """`transport_cc`: video sections also offer transport-wide-cc (EXT_TRANSPORT_CC) and
    `a=rtcp-fb:<pt> transport-cc` (MediaConfig.subscriber_transport_cc, media/bwe.py)."""
    session = _session("offer", session_id, version)
    for s in sections:
        feedback = list(s.codec.rtcp_feedback)
        if transport_cc and s.kind is Kind.VIDEO:
            feedback.append(TRANSPORT_CC)
        codec = RTCRtpCodecParameters(
            mimeType=s.codec.mime_type, clockRate=s.codec.clock_rate,
            channels=s.codec.channels, payloadType=s.pt,
            rtcpFeedback=[RTCRtcpFeedback(type=t, parameter=p) for t, p in feedback],
            parameters=dict(s.codec.parameters))
        codecs = [codec]
        if s.rtx_pt is not None:
            codecs.append(RTCRtpCodecParameters(mimeType=f"{s.kind.value}/rtx",
                                                clockRate=s.codec.clock_rate,
                                                payloadType=s.rtx_pt,
                                                parameters={"apt": s.pt}))
        if s.kind is Kind.AUDIO:
            exts = [RTCRtpHeaderExtensionParameters(id=EXT_AUDIO_LEVEL, uri=URI_AUDIO_LEVEL)]
        else:
            exts = [RTCRtpHeaderExtensionParameters(id=EXT_ABS_SEND_TIME, uri=URI_ABS_SEND_TIME)]
            if transport_cc:
                exts.append(RTCRtpHeaderExtensionParameters(id=EXT_TRANSPORT_CC,
                                                            uri=URI_TRANSPORT_CC))
        port = 0 if s.rejected else 9
        media = MediaDescription(s.kind.value, port, RTP_PROFILE, [c.payloadType for c in codecs])
        # A rejected section keeps a=inactive, its codecs, ICE and rtcp-mux like
        # mediasoup's closed sections: JSEP only asks for port 0 and no a=msid, and
        # aiortc 1.16 cannot answer a section without a direction attribute.
        media.direction = "sendonly" if s.active else "inactive"
        media.rtp = RTCRtpParameters(codecs=codecs, headerExtensions=[] if s.rejected else exts,
                                     muxId=s.mid)
        media.rtcp_host, media.rtcp_port, media.rtcp_mux = "0.0.0.0", 9, True
        if s.active:
            msid = f"{s.stream_id} {s.track_id}"
            media.msid = msid
            media.ssrc = [SsrcDescription(ssrc=s.ssrc, cname=cname, msid=msid)]
            if s.rtx_pt is not None:
                media.ssrc.append(SsrcDescription(ssrc=s.rtx_ssrc, cname=cname, msid=msid))
                media.ssrc_group = [GroupDescription(semantic="FID",
                                                     items=[s.ssrc, s.rtx_ssrc])]
        _transport_lines(media, ice, fingerprints, "auto")
        session.media.append(media)
    # A rejected m-section is in no BUNDLE group (RFC 8843).
    session.group.append(GroupDescription(
        semantic="BUNDLE", items=[s.mid for s in sections if not s.rejected]))
    return str(session)
