"""A meeting held on this node only: the conference's `Room` with no rest of the tree (a
cascade node uses server/cascade/room.py's `CascadedRoom` instead)."""

from __future__ import annotations

from typing import Any

from media import MediaEvent
from rooms.errors import NotFound
from server.conference.room import Room


class LocalRoom(Room):
    """A meeting held on this node only: there is no rest of the tree."""

    async def joined(self) -> None:
        pass

    def remote_entries(self) -> dict[str, dict[str, Any]]:
        return {}

    def remote_producers(self) -> list[dict[str, Any]]:
        return []

    def remote_peers(self) -> list[dict[str, Any]]:
        return []

    async def pull(self, producer_ids: list[str]) -> None:
        pass

    def is_remote(self, event: MediaEvent) -> bool:
        return False

    def sync(self) -> None:
        pass

    async def chair_remote_producer(self, producer_id: str, lock: bool
                                    ) -> dict[str, Any] | None:
        return None

    async def mute_all_below(self) -> dict[str, Any] | None:
        return None

    def give_floor_to_peer(self, peer_id: str) -> dict[str, Any]:
        raise NotFound(f"no one with peer id {peer_id} publishes in this meeting")

    def floor_down(self, holder: dict[str, Any] | None) -> None:
        pass

    def closed_hook(self) -> None:
        pass
