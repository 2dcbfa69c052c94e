"""What the chat feature tells other features (through the app's Bus, server/core/bus.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChatPosted:
    """A message to everyone was stored and pushed to the meeting (private ones are not
    published): the recording's timeline notes it, in whichever process records the meeting
    (with Redis: server/core/bus_bridge.py)."""

    meeting_id: int
    message_id: int
    sender_name: str
    text: str
