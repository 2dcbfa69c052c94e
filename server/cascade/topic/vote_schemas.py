"""The data of the vote topics (server/cascade/topic/votes.py), strict: it crosses node
links. Limits follow rooms.votes (options, question) and rooms.meeting_nodes (seats)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, model_validator

from server.cascade.schemas import NodeSchema

MAX_PEOPLE = 10_000  # rooms.meeting_nodes.MAX_SEATS: no node reports more voters
MAX_OPTIONS = 12  # rooms.votes.MAX_OPTIONS
MIN_TIME_LIMIT_S, MAX_TIME_LIMIT_S = 10, 3 * 3600  # rooms.votes' bounds
STANDARD_OPTIONS = ["agree", "disagree", "abstain"]  # rooms.votes.STANDARD_OPTIONS
Count = Field(ge=0, le=MAX_PEOPLE)
Option = Annotated[str, Field(min_length=1, max_length=200)]


class VoteOpenedData(NodeSchema):
    """Down: the owner opened a vote (its id at the owner), with its rules: the kind, the
    base and the threshold its result is decided by, and its time limit (counted from the
    owner's `opened_at`), so a mirror's tablets show the same question form, countdown and
    result wording. Every field is required and checked for consistency: a rule set a
    mirror cannot check opens nothing there."""

    vote: int = Field(ge=1)
    item: int = Field(ge=1)  # the owner's agenda item
    item_title: str = Field(min_length=1, max_length=300)
    question: str = Field(min_length=1, max_length=500)
    options: list[Option] = Field(min_length=2, max_length=MAX_OPTIONS)
    custom_options: bool
    secret: bool
    allow_change: bool
    kind: Literal["motion", "election"]
    base: Literal["all_members", "present"]
    threshold: Literal["majority", "two_thirds"]
    opened_at: AwareDatetime
    time_limit_s: int | None = Field(ge=MIN_TIME_LIMIT_S, le=MAX_TIME_LIMIT_S)

    @model_validator(mode="after")
    def _consistent(self) -> VoteOpenedData:
        if self.custom_options:
            if len(set(self.options)) != len(self.options):
                raise ValueError("options must be distinct")
        elif self.options != STANDARD_OPTIONS:
            raise ValueError("a vote without custom options has the standard ones")
        if self.kind == "election" and not self.custom_options:
            raise ValueError("an election's options are its candidates")
        return self


class VoteClosedData(NodeSchema):
    """Down: the owner's vote closed, with its result (again, with a secret vote's later
    counts, as they arrive)."""

    vote: int = Field(ge=1)
    result: dict[str, Any]
    revision: int = Field(ge=0)


class Voter(NodeSchema):
    user: int = Field(ge=1)  # the person's id at the reporting node
    name: str = Field(max_length=200)
    option: int = Field(ge=0, lt=MAX_OPTIONS)
    site: str = Field(default="", max_length=200)


class Pending(NodeSchema):
    user: int = Field(ge=1)
    name: str = Field(max_length=200)


class VoteTallyData(NodeSchema):
    """Up: one node's own ballots for a vote (not its children's: they report their own, so
    nothing is counted twice). `revision` grows with every snapshot the node makes (its
    procedure seq); an older or equal one is refused `stale`. Open votes carry the voters'
    names and the counts; a secret vote carries its turnout only, and its counts once,
    `final`, after the node closed its part."""

    vote: int = Field(ge=1)  # the owner's vote id
    revision: int = Field(ge=0)
    secret: bool
    final: bool = False
    members: int = Count
    present: int = Count
    cast: int = Count
    not_voted: int = Count
    counts: list[int] | None = Field(default=None, max_length=MAX_OPTIONS)
    voters: list[Voter] | None = Field(default=None, max_length=MAX_PEOPLE)
    pending: list[Pending] | None = Field(default=None, max_length=MAX_PEOPLE)
