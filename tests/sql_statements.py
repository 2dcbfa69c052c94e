"""What a block of code asks the database: every SQL statement an engine runs meanwhile, for
tests that bound the work of a hot path (N+1 queries, reads under a lock)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from rooms.db import Database


class Statements(list[str]):
    def reading(self, table: str) -> list[str]:
        """The SELECTs whose FROM names `table` (quoted or not, as each dialect writes it)."""
        pattern = re.compile(rf'\bFROM\s+"?{re.escape(table)}"?(\s|$)', re.IGNORECASE)
        return [s for s in self if s.lstrip().upper().startswith("SELECT")
                and pattern.search(s)]


@contextmanager
def statements(db: Database) -> Iterator[Statements]:
    seen = Statements()

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)
    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)
