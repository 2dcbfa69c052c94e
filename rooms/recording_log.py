"""A meeting's recordings and their timeline (issue 16): which recordings a meeting has
(where the files are, from when to when) and, per recording, one ordered log of what
happened beside the tracks: agenda items, the floor, votes, the presented page, chat, and
the tracks themselves (which file is whose).

Every entry carries two times: `at` (UTC) and `offset_ms`, milliseconds since the
recording's time zero, the clock the media files are stamped on (the recorder's
time.monotonic() zero: media/recorder.py), so the replay seeks the video to `offset_ms`.
Entries are written as things happen, each in its own commit, so a restart loses none.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms.errors import NotFound

MAX_DATA = 4000  # characters of an entry's JSON (a chat message is at most 2000)


class Recording(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="meeting.id", index=True)
    directory: str = Field(max_length=64)  # <data dir>/recordings/<meeting id>/<directory>
    started_at: datetime
    stopped_at: datetime | None = None  # None: running, or its process died before stopping
    started_by: int | None = Field(default=None, foreign_key="user.id")


class TimelineEntry(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    recording_id: int = Field(foreign_key="recording.id", index=True)
    at: datetime  # UTC
    offset_ms: int  # since the recording's time zero (the media files' clock)
    kind: str = Field(max_length=32)
    data_json: str = Field(sa_column=Column(Text, nullable=False))


class Kind:
    """Entry kinds (docs/protocol.md, "Replay")."""

    started = "recording_started"
    stopped = "recording_stopped"
    track = "track"  # a file began: {file, kind, source, user_id, name, peer_id}
    agenda = "agenda"  # the current item: {item_id, title} (item_id null: none)
    floor = "floor"  # who has the floor: {user_id, name, site} (user_id null: nobody)
    vote_opened = "vote_opened"  # {vote_id, question}
    vote_closed = "vote_closed"  # {vote_id, question, result}
    presented = "presented"  # {active, document_id, version, page, title}
    chat = "chat"  # {message_id, sender_name, text}: messages to everyone only


async def open_recording(session: AsyncSession, meeting_id: int, directory: str,
                         started_at: datetime, by: int | None) -> Recording:
    row = Recording(meeting_id=meeting_id, directory=directory, started_at=started_at,
                    started_by=by)
    session.add(row)
    await session.flush()
    return row


async def close_recording(session: AsyncSession, recording_id: int, at: datetime) -> None:
    row = await session.get(Recording, recording_id)
    if row is not None and row.stopped_at is None:
        row.stopped_at = at
        session.add(row)


async def add(session: AsyncSession, recording_id: int, at: datetime, offset_ms: int,
              kind: str, data: dict[str, Any]) -> TimelineEntry:
    text = json.dumps(data, ensure_ascii=False, sort_keys=True)
    if len(text) > MAX_DATA:
        raise ValueError(f"timeline entry {kind} too large ({len(text)} characters)")
    row = TimelineEntry(recording_id=recording_id, at=at, offset_ms=max(0, offset_ms),
                        kind=kind, data_json=text)
    session.add(row)
    await session.flush()
    return row


async def recordings(session: AsyncSession, meeting_id: int) -> Sequence[Recording]:
    return (await session.exec(select(Recording).where(Recording.meeting_id == meeting_id)
                               .order_by(col(Recording.id)))).all()


async def get(session: AsyncSession, meeting_id: int, recording_id: int) -> Recording:
    row = await session.get(Recording, recording_id)
    if row is None or row.meeting_id != meeting_id:
        raise NotFound("no such recording")
    return row


async def entries(session: AsyncSession, recording_id: int) -> list[dict[str, Any]]:
    """The log in order: by offset, then by the order written (ids rise with each commit)."""
    rows = (await session.exec(select(TimelineEntry)
                               .where(TimelineEntry.recording_id == recording_id)
                               .order_by(col(TimelineEntry.offset_ms),
                                         col(TimelineEntry.id)))).all()
    return [entry_dict(r) for r in rows]


async def last_of(session: AsyncSession, recording_id: int, kind: str) -> dict[str, Any] | None:
    row = (await session.exec(select(TimelineEntry)
                              .where(TimelineEntry.recording_id == recording_id,
                                     TimelineEntry.kind == kind)
                              .order_by(col(TimelineEntry.id).desc()).limit(1))).first()
    return entry_dict(row) if row is not None else None


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def entry_dict(row: TimelineEntry) -> dict[str, Any]:
    return {"id": row.id, "kind": row.kind, "at": iso(row.at), "offset_ms": row.offset_ms,
            "data": json.loads(row.data_json)}


def recording_dict(row: Recording) -> dict[str, Any]:
    return {"id": row.id, "meeting_id": row.meeting_id, "started_at": iso(row.started_at),
            "stopped_at": iso(row.stopped_at) if row.stopped_at is not None else None}
