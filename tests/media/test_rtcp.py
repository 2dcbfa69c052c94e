from __future__ import annotations

from aiortc.rtp import RtcpPacket, RtcpPsfbPacket, RtcpRrPacket, RtcpRtpfbPacket, RtcpSdesPacket

from media import rtcp
from media.rtcp import RtcpSenderInfo, RtcpSrPacket


def test_nack_survives_sequence_wrap() -> None:
    lost = [65534, 65535, 65536, 65537, 65560]  # extended numbers across a wrap
    packets = RtcpPacket.parse(rtcp.build_nack(1, 2, lost))
    assert isinstance(packets[0], RtcpRrPacket)
    nack = packets[1]
    assert isinstance(nack, RtcpRtpfbPacket)
    assert [x & 0xFFFF for x in nack.lost] == [65534, 65535, 0, 1, 24]
    assert (nack.ssrc, nack.media_ssrc) == (1, 2)


def test_pli_is_compound_and_fir_fci_parsed() -> None:
    _, pli = RtcpPacket.parse(rtcp.build_pli(7, 8))
    assert isinstance(pli, RtcpPsfbPacket) and (pli.fmt, pli.media_ssrc) == (1, 8)
    fir = RtcpPsfbPacket(fmt=4, ssrc=1, media_ssrc=0,
                         fci=bytes.fromhex("0000000a01000000" "0000000b02000000"))
    assert rtcp.fir_ssrcs(fir) == [10, 11]


def test_sender_reports_are_chunked_with_cname() -> None:
    srs = [RtcpSrPacket(ssrc=i, sender_info=RtcpSenderInfo(1, 2, 3, 4)) for i in range(1, 11)]
    chunks = list(rtcp.build_sender_reports(srs, "cn", per_packet=4))
    assert len(chunks) == 3
    parsed = RtcpPacket.parse(chunks[0])
    assert [type(p) for p in parsed] == [RtcpSrPacket] * 4 + [RtcpSdesPacket]
    assert parsed[4].chunks[0].items == [(1, b"cn")]  # type: ignore[union-attr]
    assert RtcpPacket.parse(rtcp.build_receiver_reports(5, [])) == [RtcpRrPacket(ssrc=5)]
