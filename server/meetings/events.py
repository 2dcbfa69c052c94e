"""What the meetings feature tells other features (through the app's Bus, server/core/bus.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MeetingClosed:
    """A meeting was closed (committed), in the process that closed it; meeting:updated has
    gone out to its members. With Redis, every other process's bus gets it too
    (server/core/bus_bridge.py)."""

    meeting_id: int
