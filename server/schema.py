"""Imports every module that defines tables, so SQLModel.metadata is complete for Alembic."""

import rooms.models  # noqa: F401
import rooms.procedure_models  # noqa: F401
import documents.db_models  # noqa: F401
