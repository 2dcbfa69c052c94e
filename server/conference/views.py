"""How the conference's media objects look on the wire (docs/protocol.md, "Media")."""

from __future__ import annotations

from typing import Any

from media import PeerStats, ServerOffer


def offer_dict(offer: ServerOffer | None) -> dict[str, Any] | None:
    if offer is None:
        return None
    return {"sdp": offer.sdp, "consumers": [
        {"id": c.id, "mid": c.mid, "producer_id": c.producer_id,
         "producer_peer_id": c.producer_peer_id, "kind": c.kind.value,
         "source": c.source.value, "stream_id": c.stream_id} for c in offer.consumers]}


def summarize(stats: PeerStats) -> dict[str, Any]:
    """The numbers a chair needs about one connection, and a quality level."""
    states = {t.direction: t.state for t in stats.transports}
    up_loss = max((p.fraction_lost for p in stats.producers), default=0.0)
    down_loss = max((c.fraction_lost for c in stats.consumers), default=0.0)
    rtts = [c.rtt_ms for c in stats.consumers if c.rtt_ms is not None]
    jitter = max([p.jitter_ms for p in stats.producers if p.kind == "audio"]
                 + [c.jitter_ms for c in stats.consumers if c.kind == "audio"], default=0.0)
    summary: dict[str, Any] = {
        "send_state": states.get("send"), "recv_state": states.get("recv"),
        "bitrate_in_bps": sum(p.bitrate_bps for p in stats.producers),
        "bitrate_out_bps": sum(c.bitrate_bps for c in stats.consumers),
        "loss_up": round(up_loss, 4), "loss_down": round(down_loss, 4),
        "packets_lost_up": sum(p.packets_lost for p in stats.producers),
        "packets_lost_down": sum(c.packets_lost for c in stats.consumers),
        "rtt_ms": round(max(rtts), 1) if rtts else None,
        "jitter_ms": round(jitter, 1),
        "received_packets": sum(p.packets_received for p in stats.producers),
        "forwarded_packets": sum(c.packets_sent for c in stats.consumers),
        "dropped_packets": sum(t.packets_dropped for t in stats.transports)
        + sum(c.packets_dropped for c in stats.consumers),
    }
    summary["quality"] = quality(summary)
    return summary


def quality(s: dict[str, Any]) -> str:
    """good / fair / poor from loss, RTT and jitter; `connecting` before any transport is up."""
    if "connected" not in (s["send_state"], s["recv_state"]):
        return "connecting"
    loss, rtt, jitter = max(s["loss_up"], s["loss_down"]), s["rtt_ms"] or 0.0, s["jitter_ms"]
    if loss >= 0.08 or rtt > 500 or jitter > 80:
        return "poor"
    if loss >= 0.02 or rtt > 250 or jitter > 40:
        return "fair"
    return "good"
