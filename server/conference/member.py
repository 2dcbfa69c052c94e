"""A member of a meeting's media: one socket.io connection's peer in the meeting's router
(a person on two devices is two members). The peer's ``app_data`` carries the person."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from media import TokenBucket
from rooms.models import MeetingRole
from server.conference.config import SUBSCRIBE_BURST, SUBSCRIBE_PER_S, MediaFailure


@dataclass
class MediaMember:
    """One connection's media session in one meeting."""

    sid: str
    meeting_id: int
    peer_id: str
    user_id: int
    name: str
    role: MeetingRole
    site_id: int | None
    site: str | None
    subscribes: TokenBucket = field(
        default_factory=lambda: TokenBucket(SUBSCRIBE_PER_S, SUBSCRIBE_BURST))

    def app_data(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "name": self.name, "site_id": self.site_id,
                "site": self.site, "role": self.role.value}

    def peer_dict(self) -> dict[str, Any]:
        return {"peer_id": self.peer_id, **self.app_data()}


def not_joined() -> MediaFailure:
    return MediaFailure("your media session has ended; join again", code="not_joined")
