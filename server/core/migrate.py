"""Bring the database schema to the latest Alembic revision at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text

from rooms.db import Database

if TYPE_CHECKING:
    from alembic.config import Config
# Alembic (~0.2 s of CPU to import) is imported by the functions that migrate or read the
# scripts: a backup that only copies never needs it (docs/architecture.md (Start-up)).

MIGRATIONS = Path(__file__).parents[1] / "migrations"
# pg_advisory_xact_lock's key for "migrating Hopso's schema" (any constant shared by the
# processes of one deployment; "hopso" in ASCII).
MIGRATION_LOCK = 0x686F70736F


class SchemaTooNew(Exception):
    """The database is at a revision this code does not know (a newer release migrated it)."""


def alembic_config(url: str) -> Config:
    from alembic.config import Config
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    return config


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory
    scripts = ScriptDirectory.from_config(alembic_config(""))
    return {script.revision for script in scripts.walk_revisions()}


def check_known(revisions: set[str] | list[str] | tuple[str, ...]) -> None:
    """Refuse a schema this code cannot migrate: alembic alone would stop with "Can't locate
    revision", and an older server must never write to a newer schema."""
    unknown = sorted(set(revisions) - known_revisions())
    if unknown:
        raise SchemaTooNew(
            f"the database is at schema revision {', '.join(unknown)}, which this Hopso does "
            f"not know (a newer release migrated it): run that release, or restore the backup "
            f"taken before the upgrade (docs/backup.md); nothing changed")


async def upgrade(db: Database) -> None:
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    config = alembic_config(db.url)

    def run(connection) -> None:  # type: ignore[no-untyped-def]
        check_known(MigrationContext.configure(connection).get_current_heads())
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")  # feature branches of the schema may run in parallel

    async with db.engine.begin() as conn:
        if not db.is_sqlite:
            # Processes of one deployment starting together (hopso-web@PORT units) would
            # otherwise create the same tables at once; the lock lasts until this transaction
            # commits, and whoever waited then reads the new revision and has nothing to do.
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": MIGRATION_LOCK})
        await conn.run_sync(run)
