"""Ballots of a vote cast at other cascade nodes, as the owner node counts them
(docs/cascade.md, "Votes across nodes").

A vote opened at the meeting's owner opens on every mirror for the people eligible there;
each mirror reports its own ballots (`RemoteVoteTally`, one row per vote and reporting node,
replaced by each newer revision) and the owner's `votes.tally` adds them in (`part`). Open
votes carry the voters' names; secret votes carry only their turnout while open, and their
counts once, after the mirror closed its part of the vote, so no table of any node keeps a
sequence of counts that the order of casting could be read from.

The checks a report passes are the cascade's (server/cascade/topic/votes.py); this module
only stores and adds up what passed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import attendance
from rooms.attendance import Headcount
from rooms.models import Meeting, utcnow


class RemoteVoteTally(SQLModel, table=True):
    """What one node reported of its own ballots for a vote (the latest revision)."""

    vote_id: int = Field(foreign_key="vote.id", primary_key=True)
    origin: str = Field(primary_key=True, max_length=64)  # the node where the ballots are
    via: str = Field(max_length=64)  # the child link it came through
    revision: int = 0
    members: int = 0  # voting members there (the base's share)
    present: int = 0
    cast: int = 0
    not_voted: int = 0
    # Per option: open votes always; secret votes only once final (else "[]").
    counts_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    # Open votes: [{"name", "option", "site"}] and pending [{"name"}]; secret: "null".
    names_json: str = Field(default="null", sa_column=Column(Text, nullable=False))
    final: bool = False  # a secret vote's counts arrived (after the close)
    late: int = 0  # ballots that arrived after the vote closed: reported, never counted
    at: datetime = Field(default_factory=utcnow)


@dataclass
class RemotePart:
    """Every node's share of a vote, added up."""

    counts: list[int]
    members: int = 0
    present: int = 0
    cast: int = 0
    not_voted: int = 0
    nodes: list[dict[str, Any]] = field(default_factory=list)

    def heads(self, local: Headcount) -> Headcount:
        return Headcount(local.node, local.members + self.members, local.present + self.present)

    def turnout(self, local: tuple[int, int, int]) -> tuple[int, int, int]:
        cast, present, not_voted = local
        return cast + self.cast, present + self.present, not_voted + self.not_voted


async def rows_of(session: AsyncSession, vote_id: int) -> list[RemoteVoteTally]:
    rows = await session.exec(select(RemoteVoteTally).where(RemoteVoteTally.vote_id == vote_id)
                              .order_by(col(RemoteVoteTally.origin)))
    return list(rows.all())


def node_dict(row: RemoteVoteTally, secret: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"node": row.origin, "via": row.via, "members": row.members,
                           "present": row.present, "cast": row.cast,
                           "not_voted": row.not_voted, "late": row.late,
                           "counts": json.loads(row.counts_json) or None}
    if not secret:
        names = json.loads(row.names_json) or {}
        out["voters"], out["pending"] = names.get("voters", []), names.get("pending", [])
    return out


async def part(session: AsyncSession, vote: Any, n_options: int) -> RemotePart:
    """The other nodes' share of `vote` (a rooms.procedure_models.Vote) at the meeting's
    owner: their ballots as reported, and their members and present members as the quorum
    counts them (each child's subtree headcount, within its seats), so a node that has
    not reported (or cannot) is still in an all-members base. Nothing on a mirror: its
    result is the owner's."""
    assert vote.id is not None
    out = RemotePart([0] * n_options)
    meeting = await session.get(Meeting, vote.meeting_id)
    if meeting is None or meeting.cascade_key is not None:
        return out
    for head in await attendance.remote_headcounts(session, vote.meeting_id):
        out.members += head.members
        out.present += head.present
    for row in await rows_of(session, vote.id):
        counts = json.loads(row.counts_json)
        if len(counts) == n_options:
            out.counts = [a + b for a, b in zip(out.counts, counts)]
        out.cast += row.cast
        out.not_voted += row.not_voted
        out.nodes.append(node_dict(row, vote.secret))
    return out
