"""Chair locks of one meeting's media (owned by its `Room`): who may not resume which kind,
which sites are muted (people joining later from them are locked too), and who paused each
producer (``"self"`` or ``"chair"``: clients show it, and only the chair lifts its own)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from media import ProducerInfo, Router

Push = Callable[[str, dict[str, Any]], None]  # (event, data) to the meeting's channel


class ChairLocks:
    def __init__(self, router: Callable[[], Router | None], push: Push) -> None:
        self._router = router
        self._push = push
        self.users: dict[int, set[str]] = {}  # user -> kinds the owner may not resume
        self.sites: dict[int, set[str]] = {}  # site -> kinds locked for its people
        self.paused_by: dict[str, str] = {}  # producer id -> "self" | "chair"

    def is_locked(self, user_id: int | None, kind: str) -> bool:
        return user_id is not None and kind in self.users.get(user_id, ())

    def view(self) -> list[dict[str, Any]]:
        return [{"user_id": uid, "kinds": sorted(kinds)}
                for uid, kinds in self.users.items() if kinds]

    def joined(self, user_id: int, site_id: int | None) -> None:
        """Someone joined from a muted site: they are locked as its others are."""
        if site_id is not None:
            for kind in self.sites.get(site_id, set()):
                self.users.setdefault(user_id, set()).add(kind)

    def lock(self, user_ids: Iterable[int], kind: str) -> list[str]:
        """Chair mute / stop video: pause the users' producers of `kind`; their owners cannot
        resume them (nor new ones they publish) until `allow`. Returns producer ids paused."""
        users = set(user_ids)
        for uid in users:
            self.users.setdefault(uid, set()).add(kind)
            self._push("media:lock", {"user_id": uid, "kind": kind, "locked": True})
        router = self._router()
        paused: list[str] = []
        if router is None:
            return paused
        for info in router.producers():
            if info.kind.value == kind and info.app_data.get("user_id") in users:
                self._chair_pause(router, info)
                paused.append(info.id)
        return paused

    def _chair_pause(self, router: Router, info: ProducerInfo) -> None:
        was = self.paused_by.get(info.id)
        self.paused_by[info.id] = "chair"
        if info.paused and was != "chair":  # self-muted already: no SFU event, tell everyone
            self._push("media:producer-paused", {
                "producer_id": info.id, "peer_id": info.peer_id, "paused": True,
                "paused_by": "chair"})
        router.pause_producer(info.id)

    def allow(self, user_ids: Iterable[int], kind: str) -> list[int]:
        """Lift chair locks: the owners may resume (they are not unmuted by force)."""
        lifted = []
        for uid in set(user_ids):
            kinds = self.users.get(uid)
            if kinds and kind in kinds:
                kinds.discard(kind)
                lifted.append(uid)
                self._push("media:lock", {"user_id": uid, "kind": kind, "locked": False})
        return lifted

    def lock_site(self, site_id: int, users: set[int], kind: str) -> list[str]:
        self.sites.setdefault(site_id, set()).add(kind)
        return self.lock(users, kind)

    def allow_site(self, site_id: int, users: set[int], kind: str) -> list[int]:
        self.sites.get(site_id, set()).discard(kind)
        return self.allow(users, kind)

    def clear(self) -> None:
        self.users.clear()
        self.sites.clear()

