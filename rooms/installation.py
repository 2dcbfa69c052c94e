"""The installation's identity: one row, made by migration 0014_installation with a random
id. A backup records it and a restore refuses a target holding another one
(server/backup/, docs/backup.md); a copy of the database is the same installation."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, String
from sqlmodel import Field, SQLModel


class Installation(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)  # always 1
    installation_id: str = Field(sa_column=Column(String(32), nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime, nullable=False))
