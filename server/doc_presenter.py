"""Who presents which page in each meeting, so followers turn with them and late joiners can
ask. One presenter per meeting; the state lives in this server process."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rooms.errors import Conflict
from rooms.models import utcnow

POINTERS_PER_SECOND = 30


class NotPresenter(Conflict):
    code = "not_presenter"


@dataclass
class Presentation:
    user_id: int
    name: str
    document_id: int
    version: int
    page: int
    zoom: float
    scroll_x: float
    scroll_y: float
    at: str
    pointers: deque[float] = field(default_factory=deque)


class PresenterBoard:
    def __init__(self) -> None:
        self._live: dict[int, Presentation] = {}
        self._seq: dict[int, int] = {}

    def get(self, meeting_id: int) -> dict[str, Any]:
        return self._state(meeting_id)

    def update(self, meeting_id: int, *, user_id: int, name: str, document_id: int,
               version: int, page: int, zoom: float, scroll_x: float, scroll_y: float
               ) -> dict[str, Any]:
        current = self._live.get(meeting_id)
        pointers = current.pointers if current and current.user_id == user_id else deque()
        self._live[meeting_id] = Presentation(user_id, name, document_id, version, page, zoom,
                                              scroll_x, scroll_y, utcnow().isoformat(), pointers)
        return self._bump(meeting_id)

    def stop(self, meeting_id: int) -> dict[str, Any]:
        self._live.pop(meeting_id, None)
        return self._bump(meeting_id)

    def presenting(self, meeting_id: int, user_id: int, document_id: int) -> Presentation:
        current = self._live.get(meeting_id)
        if current is None or current.user_id != user_id or current.document_id != document_id:
            raise NotPresenter("only the current presenter of this document may point")
        return current

    def pointer_allowed(self, presentation: Presentation) -> bool:
        now, stamps = time.monotonic(), presentation.pointers
        while stamps and stamps[0] <= now - 1.0:
            stamps.popleft()
        if len(stamps) >= POINTERS_PER_SECOND:
            return False
        stamps.append(now)
        return True

    def _bump(self, meeting_id: int) -> dict[str, Any]:
        self._seq[meeting_id] = self._seq.get(meeting_id, 0) + 1
        return self._state(meeting_id)

    def _state(self, meeting_id: int) -> dict[str, Any]:
        p = self._live.get(meeting_id)
        state: dict[str, Any] = {"meeting_id": meeting_id, "active": p is not None,
                                 "seq": self._seq.get(meeting_id, 0)}
        if p is None:
            state.update(presenter=None, document_id=None, version=None, page=None, zoom=None,
                         scroll_x=None, scroll_y=None, at=None)
        else:
            state.update(presenter={"user_id": p.user_id, "name": p.name},
                         document_id=p.document_id, version=p.version, page=p.page,
                         zoom=p.zoom, scroll_x=p.scroll_x, scroll_y=p.scroll_y, at=p.at)
        return state
