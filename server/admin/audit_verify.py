"""Verify the audit hash chains: `python -m server.admin.audit_verify [--meeting ID]`.

Reads the same database as the server (--data-dir / --database-url, or HOPSO_DATA_DIR /
HOPSO_DATABASE_URL). Exit status: 0 every chain verifies, 1 a chain is broken,
2 the database cannot be read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rooms import audit
from rooms.db import Database
from server.core.settings import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m server.admin.audit_verify",
                                     description="Verify Hopso's audit log hash chains.")
    parser.add_argument("--data-dir", default=os.environ.get("HOPSO_DATA_DIR", "hopso-data"),
                        help="directory of the SQLite database [HOPSO_DATA_DIR]")
    parser.add_argument("--database-url", default=os.environ.get("HOPSO_DATABASE_URL"),
                        help="PostgreSQL URL instead of SQLite [HOPSO_DATABASE_URL]")
    parser.add_argument("--meeting", type=int, help="verify one meeting's chain only")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    return parser


async def verify(url: str, meeting_id: int | None) -> list[audit.ChainReport]:
    db = Database(url)
    try:
        async with db.session() as s:
            return await audit.verify_chain(s, meeting_id)
    finally:
        await db.close()


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    settings = Settings(data_dir=Path(args.data_dir), database_url=args.database_url)
    if settings.database_url is None and not (settings.data_dir / "hopso.sqlite3").is_file():
        print(f"audit_verify: no database in {settings.data_dir}", file=sys.stderr)
        return 2
    try:
        reports = asyncio.run(verify(settings.sqlalchemy_url, args.meeting))
    except Exception as exc:  # noqa: BLE001 - one clear line, not a traceback
        print(f"audit_verify: cannot read the audit log: {type(exc).__name__}: {exc}"
              .splitlines()[0], file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([r.as_dict() for r in reports], indent=2))
    else:
        for r in reports:
            state = "ok" if r.ok else f"BROKEN at entry {r.bad_seq}: {r.problem}"
            print(f"meeting {r.meeting_id}: {r.entries} entries, {state}")
        print(f"{sum(r.ok for r in reports)}/{len(reports)} chains verify")
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
