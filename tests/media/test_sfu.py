"""Lifecycle: vanished peers, ICE timeouts, cascading idempotent close."""

from __future__ import annotations

import asyncio

import aioice.ice
import pytest

from media import (
    SFU,
    CloseReason,
    ConsumerClosed,
    MediaEvent,
    PeerClosed,
    ProducerClosed,
    TransportState,
)
from testkit.aiortc_clients import EncodedMedia, Publisher, Subscriber, wait_for

from .conftest import make_config


async def settle() -> set[asyncio.Task]:
    await asyncio.sleep(0.1)
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def test_vanished_peer_is_cleaned_up(media: EncodedMedia,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # Consent freshness (RFC 7675) is what notices a silent peer (~30 s in
    # production); make it ~3 s, yet tolerant of a loaded event loop.
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.2)
    monkeypatch.setattr(aioice.ice, "CONSENT_FAILURES", 4)
    sfu = SFU(make_config())
    router = sfu.router("m")
    events: list[MediaEvent] = []
    sfu.add_listener(events.append)
    pub = Publisher(router.add_peer("alice"), media, audio=False)
    await pub.publish()
    bob = router.add_peer("bob")
    sub = Subscriber(bob)
    await sub.subscribe(pub.producer_id("video"))
    await wait_for(lambda: sub.frames("video") >= 2, 5)
    [bob_transport] = bob.transports
    # Bob's machine drops off the network: no DTLS alert, no RTCP, nothing.
    client_ice = sub.pc.getTransceivers()[0].receiver.transport.transport._connection
    for protocol in client_ice._protocols:
        protocol.transport.abort()
    [consumer] = bob.consumers
    producer = router.get_producer(pub.producer_id("video"))

    def bob_closed() -> list[PeerClosed]:
        return [e for e in events if isinstance(e, PeerClosed) and e.peer_id == "bob"]

    await wait_for(lambda: bool(bob_closed()), 10)
    assert bob_closed()[0].reason is CloseReason.TRANSPORT_CLOSED
    assert "bob" not in [p.id for p in router.peers]
    assert bob_transport.closed and bob_transport.state is TransportState.CLOSED
    assert consumer.closed and consumer not in producer.consumers
    # (alice is not asserted on: the shortened consent timers are global and
    # a heavily loaded machine can expire her too.)
    await sub.close()
    await pub.close()
    await sfu.close()
    assert await settle() == set()


async def test_client_that_never_connects_is_closed(media: EncodedMedia) -> None:
    sfu = SFU(make_config(ice_timeout_s=0.5))
    router = sfu.router("m")
    events: list[MediaEvent] = []
    sfu.add_listener(events.append)
    pub = Publisher(router.add_peer("ghost"), media, audio=False)
    await pub.pc.setLocalDescription(await pub.pc.createOffer())
    await router.peer("ghost").publish(pub.pc.localDescription.sdp)
    await pub.pc.close()  # never applies the answer, never answers checks
    await wait_for(lambda: any(isinstance(e, PeerClosed) for e in events), 3)
    assert [(e.peer_id, e.reason) for e in events if isinstance(e, PeerClosed)] == [
        ("ghost", CloseReason.ICE_TIMEOUT)]
    assert router.peers == [] and router.producers() == []
    await sfu.close()
    assert await settle() == set()


async def test_close_cascades_and_is_idempotent(media: EncodedMedia) -> None:
    before = await settle()
    sfu = SFU(make_config())
    events: list[MediaEvent] = []
    sfu.add_listener(events.append)
    clients = []
    for meeting in ("m1", "m2"):
        router = sfu.router(meeting)
        pub = Publisher(router.add_peer("alice"), media)
        await pub.publish()
        sub = Subscriber(router.add_peer("bob"))
        await sub.subscribe(*[p.id for p in router.producers()])
        clients += [pub, sub]
    await wait_for(lambda: all(c.frames("video") >= 2 for c in clients
                               if isinstance(c, Subscriber)), 8)
    peers = [p for r in sfu.routers for p in r.peers]
    transports = [t for p in peers for t in p.transports]
    await asyncio.gather(sfu.close(), sfu.close())
    await sfu.close()
    assert sfu.routers == []
    assert all(p.closed for p in peers) and all(t.closed for t in transports)
    assert len([e for e in events if isinstance(e, PeerClosed)]) == 4
    assert len([e for e in events if isinstance(e, ProducerClosed)]) == 4
    assert len([e for e in events if isinstance(e, ConsumerClosed)]) == 4
    assert {e.reason for e in events if isinstance(e, PeerClosed)} == {CloseReason.ROUTER_CLOSED}
    await peers[0].close()  # closing a closed peer is a no-op
    for client in clients:
        await client.close()
    assert await settle() == before
