"""What a block of code asks the database: every SQL statement an engine runs meanwhile (and
where it commits), for tests that bound the work of a hot path (N+1 queries, reads under a
lock)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from rooms.db import Database
from rooms.votes import UPKEEP

COMMIT = "COMMIT"  # where a transaction was committed, among the statements


class Statements(list[str]):
    def locked(self, first_write: str) -> list[str]:
        """The statements of each transaction from the one starting with `first_write` (the
        write that takes SQLite's writer lock) to its commit."""
        out, inside = [], False
        for statement in self:
            if statement.lstrip().startswith(first_write):
                inside = True
            elif statement == COMMIT:
                inside = False
            if inside:
                out.append(statement)
        return out

    def reading(self, table: str) -> list[str]:
        """The SELECTs whose FROM names `table` (quoted or not, as each dialect writes it)."""
        pattern = re.compile(rf'\bFROM\s+"?{re.escape(table)}"?(\s|$)', re.IGNORECASE)
        return [s for s in self if s.lstrip().upper().startswith("SELECT")
                and pattern.search(s)]


@contextmanager
def statements(db: Database) -> Iterator[Statements]:
    seen = Statements()

    # The engine's upkeep on a connection of its own (the secret-vote scrub's WAL
    # checkpoint or VACUUM, retried in the background: rooms.votes.UPKEEP) is not what the
    # block under test asks: one landing in the window had failed counts in CI.
    def record(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not _upkeep(conn):
            seen.append(statement)

    def committed(conn: Any) -> None:
        if not _upkeep(conn):
            seen.append(COMMIT)
    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    event.listen(db.engine.sync_engine, "commit", committed)
    try:
        yield seen
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)
        event.remove(db.engine.sync_engine, "commit", committed)


def _upkeep(conn: Any) -> bool:
    options = conn.get_execution_options()
    return all(options.get(k) == v for k, v in UPKEEP.items())
