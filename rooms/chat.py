"""Meeting chat ("ý kiến"): messages to everyone, and private notes to the chair and the
secretariat. Stored with the meeting, so they are part of its record (exported with it);
the chair may hide a message (kept, flagged, and written to the audit chain).

Who sees what: a message `to="all"` is seen by every member; `to="chair"` only by its
sender, the chair(s) and the secretaries. A hidden message's text is withheld from
everyone but the chair and secretaries (members see that something was hidden, by whom).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Column, String
from sqlmodel import Field, SQLModel, col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import audit
from rooms.errors import Conflict, Invalid, NotFound
from rooms.meetings import MeetingAccess
from rooms.models import MeetingMember, MeetingRole, MeetingStatus, utcnow

MAX_TEXT = 2000  # characters; a message is a remark, not a document
STAFF = frozenset({MeetingRole.chair, MeetingRole.secretary})
HISTORY_LIMIT = 200


class Audience(str, enum.Enum):
    all = "all"  # every member of the meeting
    chair = "chair"  # the chair and the secretariat (and the sender)


class ChatMessage(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="meeting.id", index=True)
    sender_id: int = Field(foreign_key="user.id")
    sender_name: str = Field(max_length=200)  # as it was when written (the record)
    audience: str = Field(sa_column=Column(String(16), nullable=False))
    text: str = Field(max_length=MAX_TEXT)
    at: datetime = Field(default_factory=utcnow)
    hidden: bool = False
    hidden_by: int | None = Field(default=None, foreign_key="user.id")
    hidden_at: datetime | None = None


def clean_text(text: str) -> str:
    """Strip, and refuse empty or oversized text and control characters other than line
    breaks and tabs (they would garble an exported record)."""
    text = text.strip()
    if not text:
        raise Invalid("text: the message is empty", "empty")
    if len(text) > MAX_TEXT:
        raise Invalid(f"text: at most {MAX_TEXT} characters", "too_long")
    if any((ord(c) < 32 and c not in "\n\t") or ord(c) == 127 for c in text):
        raise Invalid("text: control characters are not allowed")
    return text


async def post(session: AsyncSession, access: MeetingAccess, audience: Audience,
               text: str) -> ChatMessage:
    if access.meeting.status == MeetingStatus.closed:
        raise Conflict("the meeting is closed; its chat is read-only", "meeting_closed")
    message = ChatMessage(meeting_id=access.meeting.id,  # type: ignore[arg-type]
                          sender_id=access.user.id,  # type: ignore[arg-type]
                          sender_name=access.user.full_name[:200], audience=audience.value,
                          text=clean_text(text))
    session.add(message)
    await session.flush()
    return message


def may_read(access: MeetingAccess, message: ChatMessage) -> bool:
    return (message.audience == Audience.all.value or access.role in STAFF
            or message.sender_id == access.user.id)


def message_dict(message: ChatMessage, viewer: MeetingAccess | None = None) -> dict[str, Any]:
    """The wire and export form; `viewer` given: what that member may see of it."""
    withhold = (message.hidden and viewer is not None and viewer.role not in STAFF)
    return {"id": message.id, "meeting_id": message.meeting_id,
            "sender_id": message.sender_id, "sender": message.sender_name,
            "to": message.audience, "text": "" if withhold else message.text,
            "at": message.at.isoformat(), "hidden": message.hidden,
            "hidden_at": message.hidden_at.isoformat() if message.hidden_at else None}


async def history(session: AsyncSession, access: MeetingAccess, before_id: int | None = None,
                  limit: int = HISTORY_LIMIT) -> list[ChatMessage]:
    """The newest `limit` messages the member may read (older than `before_id`), oldest first."""
    query = select(ChatMessage).where(ChatMessage.meeting_id == access.meeting.id)
    if access.role not in STAFF:
        query = query.where(or_(col(ChatMessage.audience) == Audience.all.value,
                                col(ChatMessage.sender_id) == access.user.id))
    if before_id is not None:
        query = query.where(col(ChatMessage.id) < before_id)
    rows = await session.exec(query.order_by(col(ChatMessage.id).desc())
                              .limit(max(1, min(limit, HISTORY_LIMIT))))
    return list(reversed(rows.all()))


async def record(session: AsyncSession, meeting_id: int) -> Sequence[ChatMessage]:
    """Every message of the meeting (the export: hidden and private ones included)."""
    rows = await session.exec(select(ChatMessage).where(ChatMessage.meeting_id == meeting_id)
                              .order_by(col(ChatMessage.id)))
    return rows.all()


async def hide(session: AsyncSession, access: MeetingAccess, message_id: int) -> ChatMessage:
    """The chair hides a message: kept in the record, withheld from members, audited."""
    message = await session.get(ChatMessage, message_id)
    if message is None or message.meeting_id != access.meeting.id:
        raise NotFound(f"message {message_id} not found")
    if not message.hidden:
        message.hidden, message.hidden_by, message.hidden_at = True, access.user.id, utcnow()
        session.add(message)
        await audit.record(session, access.meeting.id, access.user.id,  # type: ignore[arg-type]
                           "chat_hidden", {"message_id": message_id,
                                           "sender_id": message.sender_id})
    return message


async def staff_ids(session: AsyncSession, meeting_id: int) -> list[int]:
    """The chair(s) and secretaries of a meeting: who receives private messages."""
    rows = await session.exec(select(MeetingMember.user_id).where(
        MeetingMember.meeting_id == meeting_id,
        col(MeetingMember.role).in_([r.value for r in STAFF]),
        col(MeetingMember.user_id).is_not(None)))
    return [uid for uid in rows.all() if uid is not None]

