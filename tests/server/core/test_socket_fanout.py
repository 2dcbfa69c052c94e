"""FanoutManager: a room push reaches every member once, in one pass, skipping whom it is
told to skip, and a socket that fails does not keep the push from the others."""

import itertools
import json
from types import SimpleNamespace
from typing import Any

from engineio import packet as eio_packet
from socketio import packet

from server.core.socket_fanout import FanoutManager


class Sockets:
    """The manager's server: records what each Engine.IO socket is given; "gone" fails."""

    packet_class = packet.Packet

    def __init__(self) -> None:
        self.given: list[tuple[str, Any]] = []
        ids = itertools.count()
        self.eio = SimpleNamespace(generate_id=lambda: f"sid{next(ids)}")

    async def _send_eio_packet(self, eio_sid: str, pkt: eio_packet.Packet) -> None:
        if eio_sid == "gone":
            raise RuntimeError("socket is closed")
        self.given.append((eio_sid, pkt.data))


async def room_of(names: list[str]) -> tuple[FanoutManager, Sockets, dict[str, str]]:
    sockets = Sockets()
    manager = FanoutManager()
    manager.set_server(sockets)
    sids = {}
    for eio_sid in names:
        sid = await manager.connect(eio_sid, "/")
        await manager.enter_room(sid, "/", "meeting:1")
        sids[eio_sid] = sid
    return manager, sockets, sids


def decoded(data: str) -> Any:
    assert data.startswith("2")  # a socket.io EVENT on the default namespace
    return json.loads(data[1:])


async def test_a_room_push_reaches_every_member_once_with_the_same_packet() -> None:
    manager, sockets, _ = await room_of(["a", "b", "c"])
    await manager.emit("vote:updated", {"final": True}, "/", room="meeting:1")
    assert sorted(sid for sid, _ in sockets.given) == ["a", "b", "c"]
    assert {data for _, data in sockets.given} == {sockets.given[0][1]}
    assert decoded(sockets.given[0][1]) == ["vote:updated", {"final": True}]


async def test_skip_sid_and_other_rooms_hear_nothing() -> None:
    manager, sockets, sids = await room_of(["a", "b"])
    outsider = await manager.connect("x", "/")
    await manager.enter_room(outsider, "/", "meeting:2")
    await manager.emit("floor:changed", None, "/", room="meeting:1", skip_sid=sids["a"])
    assert [(sid, decoded(data)) for sid, data in sockets.given] == [("b", ["floor:changed"])]


async def test_a_failing_socket_does_not_stop_the_push_to_the_others() -> None:
    manager, sockets, _ = await room_of(["a", "gone", "c"])
    await manager.emit("vote:updated", ({"n": 1}, 2), "/", room="meeting:1")
    assert sorted(sid for sid, _ in sockets.given) == ["a", "c"]
    assert decoded(sockets.given[0][1]) == ["vote:updated", {"n": 1}, 2]
