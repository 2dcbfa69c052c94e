"""What the procedure feature tells other features (through the app's Bus, server/core/bus.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FloorChanged:
    """The floor's holder changed, committed; published in the process that handled the
    change, right after floor:changed went out to the meeting (the conference makes the
    speaker everyone's main view). With Redis, every other process's bus gets it too
    (server/core/bus_bridge.py)."""

    meeting_id: int
    speaking: int | None  # the holder's user id (a site's operator for a site); None: nobody
    name: str | None = None  # the holder's name, as the floor queue shows it
    site: str | None = None  # the holder's site, if the request named one
