"""Browser-shaped SDP (Chrome 12x layout) used to check parsing without a browser."""

CHROME_OFFER = """v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS stream1
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=candidate:1 1 udp 2113937151 127.0.0.1 50000 typ host generation 0 network-cost 999
a=candidate:2 1 udp 2113939711 abcdef01-2345-6789-abcd-ef0123456789.local 50001 typ host
a=candidate:3 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active
a=ice-ufrag:Ch1m
a=ice-pwd:abcdefghijklmnopqrstuvwx
a=ice-options:trickle
a=fingerprint:sha-256 6B:8B:5D:EA:59:04:20:23:29:C8:87:1C:CC:87:32:BE:DD:8C:66:A5:8E:50:55:EA:8C:D3:B6:5C:09:5E:D6:BC
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=sendonly
a=msid:stream1 audio1
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
a=ssrc:1001 cname:abc
a=ssrc:1001 msid:stream1 audio1
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 45 46 98 99 35 36 127 125
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:Ch1m
a=ice-pwd:abcdefghijklmnopqrstuvwx
a=ice-options:trickle
a=fingerprint:sha-256 6B:8B:5D:EA:59:04:20:23:29:C8:87:1C:CC:87:32:BE:DD:8C:66:A5:8E:50:55:EA:8C:D3:B6:5C:09:5E:D6:BC
a=setup:actpass
a=mid:1
a=extmap:14 urn:ietf:params:rtp-hdrext:toffset
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:13 urn:3gpp:video-orientation
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id
a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id
a=sendonly
a=msid:stream1 video1
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 goog-remb
a=rtcp-fb:96 transport-cc
a=rtcp-fb:96 ccm fir
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:102 H264/90000
a=rtcp-fb:102 goog-remb
a=rtcp-fb:102 transport-cc
a=rtcp-fb:102 ccm fir
a=rtcp-fb:102 nack
a=rtcp-fb:102 nack pli
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f
a=rtpmap:103 rtx/90000
a=fmtp:103 apt=102
a=rtpmap:45 AV1/90000
a=rtcp-fb:45 nack
a=rtpmap:46 rtx/90000
a=fmtp:46 apt=45
a=rtpmap:98 VP9/90000
a=fmtp:98 profile-id=0
a=rtpmap:99 rtx/90000
a=fmtp:99 apt=98
a=rtpmap:35 H264/90000
a=fmtp:35 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=rtpmap:36 rtx/90000
a=fmtp:36 apt=35
a=rtpmap:127 red/90000
a=rtpmap:125 ulpfec/90000
a=ssrc-group:FID 2001 2002
a=ssrc:2001 cname:abc
a=ssrc:2001 msid:stream1 video1
a=ssrc:2002 cname:abc
a=ssrc:2002 msid:stream1 video1
""".replace("\n", "\r\n")


def simulcast_offer(rids: tuple[str, ...] = ("r0", "r1", "r2"), extra: str = "",
                    rid_lines: str | None = None) -> str:
    """CHROME_OFFER with the camera published as simulcast, as Chrome offers
    `sendEncodings: [{rid: "r0", scaleResolutionDownBy: 4}, …]`: no a=ssrc lines for the
    video, a=rid send per encoding and a=simulcast:send (low to high). `extra` lines go
    after it; `rid_lines` replaces the a=rid lines."""
    text = CHROME_OFFER.replace("\r\n", "\n")
    head, video = text.split("m=video", 1)
    video = "\n".join(line for line in video.split("\n")
                      if not line.startswith(("a=ssrc:", "a=ssrc-group:")))
    if rid_lines is None:
        rid_lines = "".join(f"a=rid:{rid} send\n" for rid in rids)
    video = video.rstrip("\n") + "\n" + rid_lines + f"a=simulcast:send {';'.join(rids)}\n" + extra
    return (head + "m=video" + video).replace("\n", "\r\n")
