"""The data of the floor's topics across the cascade (server/cascade/topic/floor.py):
`floor.request` and `floor.withdraw` up, `floor.state` down."""

from __future__ import annotations

from pydantic import Field

from rooms.procedure_models import FloorStatus
from server.cascade.schemas import NodeSchema

MAX_JOURNALED = 300  # the owner's latest requests in each floor.state entry


class FloorAskData(NodeSchema):
    request: int = Field(ge=1)  # the request's id at its origin node
    user: int = Field(ge=1)
    name: str = Field(min_length=1, max_length=200)
    site: str = Field(default="", max_length=200)
    unit: str = Field(default="", max_length=200)
    for_site: bool = False


class FloorWithdrawData(NodeSchema):
    request: int = Field(ge=1)


class FloorItem(NodeSchema):
    id: int = Field(ge=1)  # the owner's request id
    origin: str = Field(min_length=1, max_length=64)
    remote: int = Field(ge=0)  # its id at the origin node
    user: int = Field(ge=1)  # the person's id at the origin node
    name: str = Field(max_length=200)
    site: str = Field(default="", max_length=200)
    unit: str = Field(default="", max_length=200)
    for_site: bool = False
    status: FloorStatus
    requested_at: str = Field(max_length=40)
    granted_at: str | None = Field(default=None, max_length=40)
    ended_at: str | None = Field(default=None, max_length=40)
    limit_seconds: int | None = Field(default=None, ge=1, le=3600)
    spoken_seconds: int = Field(default=0, ge=0)


class FloorStateData(NodeSchema):
    holder: int | None = Field(default=None, ge=1)
    requests: list[FloorItem] = Field(max_length=MAX_JOURNALED)
