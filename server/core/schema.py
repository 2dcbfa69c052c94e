"""Imports every module that defines tables, so SQLModel.metadata is complete for Alembic."""

import documents.db_models  # noqa: F401
import rooms.cascade_models
import rooms.chat
import rooms.installation
import rooms.minutes_signing
import rooms.models
import rooms.procedure_models
import rooms.recording_log  # noqa: F401
