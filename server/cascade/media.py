"""The media hub's side of a cascade (server/cascade/node.py wires it on a node).

For each meeting that spans nodes: its `media.link.Cascade`, the remote producers its
clients were told about, and the chair controls and floor that go down the tree. Producers
of other nodes are listed from the cascade's catalogs: their ``user_id`` is another
database's, so clients see them with ``remote: true`` and no local ids; changes are
announced by diffing the catalogs; a remote producer is pulled over its link when someone
here subscribes. A control from the parent (lock/allow a producer's publisher, mute-all,
the floor) is applied here through the hub, as the owner's chair would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from media import Cascade, LinkEnd, MediaEvent, ProducerAdded, ProducerClosed, ProducerPaused
from rooms.errors import NotFound
from rooms.permissions import MEETING_PERMISSIONS, Action

if TYPE_CHECKING:
    from server.conference.hub import MediaHub

OpenCascade = Callable[[int], Awaitable[Cascade]]


class HubCascades:
    def __init__(self, hub: MediaHub, open_cascade: OpenCascade) -> None:
        self.hub = hub
        self.open_cascade = open_cascade
        self.cascades: dict[int, Cascade] = {}
        self.told: dict[int, dict[str, dict[str, Any]]] = {}  # meeting -> remote producers
        self.told_peers: dict[int, dict[str, dict[str, Any]]] = {}  # meeting -> remote people

    def live(self, meeting_id: int) -> Cascade | None:
        cascade = self.cascades.get(meeting_id)
        return cascade if cascade is not None and not cascade.router.closed else None

    async def joined(self, meeting_id: int) -> None:
        """A local participant joined the meeting's media: open its cascade on the first,
        and tell the other nodes who is here."""
        cascade = self.live(meeting_id)
        if cascade is None:
            cascade = await self._attach(meeting_id)
        cascade.local_peers_changed()

    async def _attach(self, meeting_id: int) -> Cascade:
        cascade = self.cascades[meeting_id] = await self.open_cascade(meeting_id)
        self.told[meeting_id], self.told_peers[meeting_id] = {}, {}

        async def control(data: dict[str, Any]) -> dict[str, Any]:
            return self.apply_control(meeting_id, data)

        def link_added(end: LinkEnd) -> None:  # a child joins: tell it who has the floor
            if not end.upstream:
                cascade.send_control(end, _floor_control(self.hub.floor.get(meeting_id)))
        cascade.control_handler = control
        cascade.on_link_added(link_added)
        cascade.on_available_changed(lambda: self.sync(meeting_id))
        self.sync(meeting_id)
        return cascade

    def forget(self, meeting_id: int) -> None:
        for table in (self.cascades, self.told, self.told_peers):
            table.pop(meeting_id, None)

    # -- remote producers -----------------------------------------------------------------
    def entries(self, meeting_id: int) -> dict[str, dict[str, Any]]:
        """Producers of other nodes this meeting's clients may subscribe to."""
        cascade = self.live(meeting_id)
        if cascade is None:
            return {}
        local = {p.id for p in cascade.router.producers() if not relayed(p.app_data)}
        return {pid: e for pid, e in cascade.available().items() if pid not in local}

    def producers(self, meeting_id: int) -> list[dict[str, Any]]:
        return [_remote_dict(e) for e in self.entries(meeting_id).values()]

    def peers(self, meeting_id: int) -> list[dict[str, Any]]:
        """People in the meeting's media at other nodes, as `Peer`s without local ids."""
        cascade = self.live(meeting_id)
        return [_remote_peer(p) for p in cascade.available_peers().values()] if cascade else []

    def is_remote(self, meeting_id: int, event: MediaEvent) -> bool:
        """An SFU event about a relayed producer: catalogs, not the router, speak for it."""
        if meeting_id not in self.cascades:
            return False
        if isinstance(event, ProducerAdded):
            return relayed(event.producer.app_data)
        if isinstance(event, (ProducerClosed, ProducerPaused)):
            return event.producer_id in self.told.get(meeting_id, {})
        return False

    def sync(self, meeting_id: int) -> None:
        """Tell clients what changed among remote producers (catalogs or link loss)."""
        told = self.told.setdefault(meeting_id, {})
        now = self.entries(meeting_id)
        for pid, entry in now.items():
            before = told.get(pid)
            if before is None:
                self.hub.to_room(meeting_id, "media:producer-added",
                                 {"producer": _remote_dict(entry)})
            elif before["paused"] != entry["paused"]:
                self.hub.to_room(meeting_id, "media:producer-paused", {
                    "producer_id": pid, "peer_id": entry["peer_id"],
                    "paused": entry["paused"], "paused_by": None})
        for pid, entry in told.items():
            if pid not in now:
                self.hub.to_room(meeting_id, "media:producer-closed", {
                    "producer_id": pid, "peer_id": entry["peer_id"], "kind": entry["kind"],
                    "source": entry["source"], "reason": "unpublished"})
        self.told[meeting_id] = dict(now)
        self._sync_peers(meeting_id)

    def _sync_peers(self, meeting_id: int) -> None:
        told = self.told_peers.setdefault(meeting_id, {})
        now = {p["peer_id"]: p for p in self.peers(meeting_id)}
        for peer_id, peer in now.items():
            if told.get(peer_id) != peer:
                self.hub.to_room(meeting_id, "media:peer-joined", {"peer": peer})
        for peer_id in told.keys() - now.keys():
            self.hub.to_room(meeting_id, "media:peer-closed",
                             {"peer_id": peer_id, "user_id": None, "reason": "left"})
        self.told_peers[meeting_id] = now

    async def pull(self, meeting_id: int, producer_ids: list[str]) -> None:
        """Pull remote producers over their links (checked to exist by the hub)."""
        cascade = self.live(meeting_id)
        for pid in producer_ids:
            if cascade is not None and pid in self.entries(meeting_id):
                await cascade.ensure(pid)

    # -- controls down the tree -------------------------------------------------------------
    async def chair_producer(self, meeting_id: int, producer_id: str, lock: bool
                             ) -> dict[str, Any] | None:
        """Lock/allow the publisher of a remote producer on their own node; None if the
        producer is not remote."""
        cascade = self.live(meeting_id)
        if cascade is None or producer_id not in self.entries(meeting_id):
            return None
        return await cascade.control({"action": "lock" if lock else "allow",
                                      "producer_id": producer_id})

    async def mute_all(self, meeting_id: int) -> dict[str, Any] | None:
        cascade = self.live(meeting_id)
        return None if cascade is None else await cascade.control({"action": "mute-all"})

    def give_floor(self, meeting_id: int, peer_id: str) -> dict[str, Any]:
        """The floor to a person at a node below (known by their peer id)."""
        peer = next((p for p in self.peers(meeting_id) if p["peer_id"] == peer_id), None)
        if peer is None:
            raise NotFound(f"no one with peer id {peer_id} is in this meeting's media")
        holder = {"user_id": None, "name": peer["name"], "site": peer["site"],
                  "peer_ids": [peer_id]}
        self.hub.floor[meeting_id] = holder
        self.hub.to_room(meeting_id, "media:floor", {"holder": holder})
        self.floor_down(meeting_id, holder)
        return holder

    def floor_down(self, meeting_id: int, holder: dict[str, Any] | None) -> None:
        cascade = self.live(meeting_id)
        if cascade is not None:
            cascade.send_down(_floor_control(holder))

    def apply_control(self, meeting_id: int, data: dict[str, Any]) -> dict[str, Any]:
        """A control from the parent node, or this node's own chair aiming below."""
        hub, action = self.hub, data.get("action")
        if action == "floor":
            return {"holder": self._floor_from_parent(meeting_id, data.get("holder"))}
        if action == "mute-all":
            return hub.mute_all_here(meeting_id)
        router = hub.router(meeting_id)
        info = next((p for p in router.producers() if p.id == data.get("producer_id")
                     and not relayed(p.app_data)), None) if router else None
        if info is None or action not in ("lock", "allow"):
            raise ValueError(f"cannot {action} producer {data.get('producer_id')!r} here")
        uid = int(info.app_data["user_id"])
        if action == "lock":
            hub.lock(meeting_id, [uid], info.kind.value)
        else:
            hub.allow(meeting_id, [uid], info.kind.value)
        return {"user_ids": [uid]}

    def _floor_from_parent(self, meeting_id: int, holder: Any) -> dict[str, Any] | None:
        """The parent's floor holder; a person of this node among them gets their
        microphone lock lifted, as at the owner. Cascade.control passes it on below."""
        hub = self.hub
        if holder is not None:
            peer_ids = holder.get("peer_ids") if isinstance(holder, dict) else None
            if not isinstance(peer_ids, list) or not all(isinstance(p, str) for p in peer_ids):
                raise ValueError("floor holder needs peer_ids")
            here = [m for m in hub.members_of(meeting_id) if m.peer_id in peer_ids]
            holder = {"user_id": here[0].user_id if here else None,
                      "name": str(holder.get("name") or ""), "site": holder.get("site"),
                      "peer_ids": peer_ids[:16]}
            if here:
                hub.allow(meeting_id, [here[0].user_id], "audio")
            hub.floor[meeting_id] = holder
        else:
            hub.floor.pop(meeting_id, None)
        hub.to_room(meeting_id, "media:floor", {"holder": holder})
        return holder


def mute_all_targets(hub: MediaHub, meeting_id: int) -> set[int]:
    """Everyone in the meeting's media here but those who may chair."""
    return {m.user_id for m in hub.members_of(meeting_id)
            if Action.chair_media not in MEETING_PERMISSIONS[m.role]}


def relayed(app_data: dict[str, Any]) -> bool:
    """A producer imported over a cascade link (its publisher is on another node)."""
    return "cascade" in app_data


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
