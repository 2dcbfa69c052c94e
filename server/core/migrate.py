"""Bring the database schema to the latest Alembic revision at start-up."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from rooms.db import Database

MIGRATIONS = Path(__file__).parents[1] / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    return config


async def upgrade(db: Database) -> None:
    config = alembic_config(db.url)

    def run(connection) -> None:  # type: ignore[no-untyped-def]
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")  # feature branches of the schema may run in parallel

    async with db.engine.begin() as conn:
        await conn.run_sync(run)
