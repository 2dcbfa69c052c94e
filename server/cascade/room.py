"""A meeting's room on a cascade node: a conference `Room` (server/conference/room.py) whose
meeting spans nodes (server/cascade/node.py makes the hub use it).

It adds the meeting's `media.Cascade` (opened at the first local join), the remote
producers and people its clients were told about, and the chair controls and floor that go
down the tree. Producers of other nodes are listed from the cascade's catalogs: their
``user_id`` is another database's, so clients see them with ``remote: true`` and no local
ids; changes are announced by diffing the catalogs; a remote producer is pulled over its
link when someone here subscribes. A control from the parent (lock/allow a producer's
publisher, mute-all, the floor) is applied here as the owner's chair would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from media import (
    SFU,
    Cascade,
    LinkEnd,
    MediaEvent,
    ProducerAdded,
    ProducerClosed,
    ProducerPaused,
    relayed,
)
from rooms.errors import NotFound
from server.conference.outbox import Outbox
from server.conference.room import Room

OpenCascade = Callable[[int], Awaitable[Cascade]]


class CascadedRoom(Room):
    def __init__(self, meeting_id: int, sfu: SFU, outbox: Outbox,
                 open_cascade: OpenCascade) -> None:
        super().__init__(meeting_id, sfu, outbox)
        self.open_cascade = open_cascade
        self.cascade: Cascade | None = None  # attached at the first local join
        self.told: dict[str, dict[str, Any]] = {}  # remote producers clients know of
        self.told_peers: dict[str, dict[str, Any]] = {}  # remote people clients know of

    def live(self) -> Cascade | None:
        cascade = self.cascade
        return cascade if cascade is not None and not cascade.router.closed else None

    async def joined(self) -> None:
        """Open the cascade on the first local join (again if the router was freed), and
        tell the other nodes who is here."""
        cascade = self.live()
        if cascade is None:
            cascade = await self._attach()
        cascade.local_peers_changed()

    async def _attach(self) -> Cascade:
        cascade = self.cascade = await self.open_cascade(self.id)
        self.told, self.told_peers = {}, {}

        async def control(data: dict[str, Any]) -> dict[str, Any]:
            return self.apply_control(data)

        def link_added(end: LinkEnd) -> None:  # a child joins: tell it who has the floor
            if not end.upstream:
                cascade.send_control(end, _floor_control(self.floor))
        cascade.control_handler = control
        cascade.on_link_added(link_added)
        cascade.on_available_changed(self.sync)
        self.sync()
        return cascade

    def closed_hook(self) -> None:
        self.cascade = None
        self.told, self.told_peers = {}, {}

    # -- remote producers and people ---------------------------------------------------------
    def remote_entries(self) -> dict[str, dict[str, Any]]:
        cascade = self.live()
        if cascade is None:
            return {}
        local = {p.id for p in cascade.router.producers() if not relayed(p.app_data)}
        return {pid: e for pid, e in cascade.available().items() if pid not in local}

    def remote_producers(self) -> list[dict[str, Any]]:
        return [_remote_dict(e) for e in self.remote_entries().values()]

    def remote_peers(self) -> list[dict[str, Any]]:
        """People in the meeting's media at other nodes, as `Peer`s without local ids."""
        cascade = self.live()
        return [_remote_peer(p) for p in cascade.available_peers().values()] if cascade else []

    def is_remote(self, event: MediaEvent) -> bool:
        if self.cascade is None:
            return False
        if isinstance(event, ProducerAdded):
            return relayed(event.producer.app_data)
        if isinstance(event, (ProducerClosed, ProducerPaused)):
            return event.producer_id in self.told
        return False

    def sync(self) -> None:
        """Tell clients what changed among remote producers (catalogs or link loss)."""
        told, now = self.told, self.remote_entries()
        for pid, entry in now.items():
            before = told.get(pid)
            if before is None:
                self._push("media:producer-added", {"producer": _remote_dict(entry)})
            elif before["paused"] != entry["paused"]:
                self._push("media:producer-paused", {
                    "producer_id": pid, "peer_id": entry["peer_id"],
                    "paused": entry["paused"], "paused_by": None})
        for pid, entry in told.items():
            if pid not in now:
                self._push("media:producer-closed", {
                    "producer_id": pid, "peer_id": entry["peer_id"], "kind": entry["kind"],
                    "source": entry["source"], "reason": "unpublished"})
        self.told = dict(now)
        self._sync_peers()

    def _sync_peers(self) -> None:
        told = self.told_peers
        now = {p["peer_id"]: p for p in self.remote_peers()}
        for peer_id, peer in now.items():
            if told.get(peer_id) != peer:
                self._push("media:peer-joined", {"peer": peer})
        for peer_id in told.keys() - now.keys():
            self._push("media:peer-closed", {"peer_id": peer_id, "user_id": None,
                                             "reason": "left"})
        self.told_peers = now

    async def pull(self, producer_ids: list[str]) -> None:
        """Pull remote producers over their links (checked to exist by `ensure_producers`)."""
        cascade = self.live()
        for pid in producer_ids:
            if cascade is not None and pid in self.remote_entries():
                await cascade.ensure(pid)

    # -- controls down the tree -------------------------------------------------------------
    async def chair_remote_producer(self, producer_id: str, lock: bool
                                    ) -> dict[str, Any] | None:
        cascade = self.live()
        if cascade is None or producer_id not in self.remote_entries():
            return None
        return await cascade.control({"action": "lock" if lock else "allow",
                                      "producer_id": producer_id})

    async def mute_all_below(self) -> dict[str, Any] | None:
        cascade = self.live()
        return None if cascade is None else await cascade.control({"action": "mute-all"})

    def give_floor_to_peer(self, peer_id: str) -> dict[str, Any]:
        peer = next((p for p in self.remote_peers() if p["peer_id"] == peer_id), None)
        if peer is None:
            raise NotFound(f"no one with peer id {peer_id} is in this meeting's media")
        holder = {"user_id": None, "name": peer["name"], "site": peer["site"],
                  "peer_ids": [peer_id]}
        self.floor = holder
        self._push("media:floor", {"holder": holder})
        self.floor_down(holder)
        return holder

    def floor_down(self, holder: dict[str, Any] | None) -> None:
        cascade = self.live()
        if cascade is not None:
            cascade.send_down(_floor_control(holder))

    def apply_control(self, data: dict[str, Any]) -> dict[str, Any]:
        """A control from the parent node, or this node's own chair aiming below."""
        action = data.get("action")
        if action == "floor":
            return {"holder": self._floor_from_parent(data.get("holder"))}
        if action == "mute-all":
            return self.mute_all_here()
        info = self.local_producer(data.get("producer_id"))
        if info is None or action not in ("lock", "allow"):
            raise ValueError(f"cannot {action} producer {data.get('producer_id')!r} here")
        uid = int(info.app_data["user_id"])
        if action == "lock":
            self.locks.lock([uid], info.kind.value)
        else:
            self.locks.allow([uid], info.kind.value)
        return {"user_ids": [uid]}

    def _floor_from_parent(self, holder: Any) -> dict[str, Any] | None:
        """The parent's floor holder; a person of this node among them gets their
        microphone lock lifted, as at the owner. Cascade.control passes it on below."""
        if holder is not None:
            peer_ids = holder.get("peer_ids") if isinstance(holder, dict) else None
            if not isinstance(peer_ids, list) or not all(isinstance(p, str) for p in peer_ids):
                raise ValueError("floor holder needs peer_ids")
            here = [m for m in self.members.values() if m.peer_id in peer_ids]
            holder = {"user_id": here[0].user_id if here else None,
                      "name": str(holder.get("name") or ""), "site": holder.get("site"),
                      "peer_ids": peer_ids[:16]}
            if here:
                self.locks.allow([here[0].user_id], "audio")
        self.floor = holder
        self._push("media:floor", {"holder": holder})
        return holder


def _floor_control(holder: dict[str, Any] | None) -> dict[str, Any]:
    """The floor as sent down a link: local user ids mean nothing on another node."""
    return {"action": "floor", "holder": None if holder is None else
            {k: v for k, v in holder.items() if k != "user_id"}}


def _remote_peer(entry: dict[str, Any]) -> dict[str, Any]:
    app = entry.get("app_data") or {}
    return {"peer_id": entry["id"], "user_id": None, "site_id": None, "name": app.get("name"),
            "site": app.get("site"), "role": app.get("role"), "remote": True}


def _remote_dict(entry: dict[str, Any]) -> dict[str, Any]:
    """A producer of another node, as clients see it: names, no local ids."""
    app = entry.get("app_data") or {}
    return {"id": entry["id"], "peer_id": entry["peer_id"], "kind": entry["kind"],
            "source": entry["source"], "codec": entry["codec"], "paused": entry["paused"],
            "user_id": None, "site_id": None, "name": app.get("name"),
            "site": app.get("site"), "role": app.get("role"), "paused_by": None,
            "locked": False, "remote": True, "hops": entry.get("hops", 0)}
