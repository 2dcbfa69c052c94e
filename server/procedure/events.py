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


@dataclass(frozen=True, slots=True)
class FloorQueueChanged:
    """The floor queue, holder or speaking totals changed, committed (after floor:changed
    went out): the cascade journals the owner's floor down and escalates a mirror's new
    requests up (server/cascade/topic/floor.py). In-process only."""

    meeting_id: int
    seq: int = 0  # the change's procedure seq (0: not said)


@dataclass(frozen=True, slots=True)
class VoteUpdated:
    """A vote was opened, its live tally pushed, or it closed (after vote:updated went out):
    the cascade journals an owner's vote down and reports a mirror's tally up
    (server/cascade/topic/votes.py), in the process where it happened; with Redis the
    recording's timeline in another process hears it too (subscribed `relayed`)."""

    meeting_id: int
    vote_id: int
    status: str  # "open" | "closed"


@dataclass(frozen=True, slots=True)
class BallotsCast:
    """Ballots (or a site's counts) were stored in an open vote, committed, before the
    voter's ack: a mirror reports its tally up at once rather than at the next tally push."""

    meeting_id: int
    vote_id: int


@dataclass(frozen=True, slots=True)
class AttendanceChanged:
    """Someone checked in, was recorded, or a site answered the roll call (after
    attendance:changed went out): a mirror reports its people's attendance to the meeting's
    owner, for its minutes (server/cascade/topic/minutes.py). In-process only."""

    meeting_id: int


@dataclass(frozen=True, slots=True)
class AgendaChanged:
    """The agenda or its current item changed, committed (after agenda:changed went out): the
    recording's timeline notes a new current item (server/recording/timeline.py), in
    whichever process records the meeting (with Redis: server/core/bus_bridge.py)."""

    meeting_id: int
