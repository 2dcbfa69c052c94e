"""Imports every module that defines tables, so SQLModel.metadata is complete for Alembic."""

import rooms.models  # noqa: F401
