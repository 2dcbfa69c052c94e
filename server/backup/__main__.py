"""`python -m server.backup {backup,verify,restore,migrate}` (docs/backup.md).

Reads the same configuration as the server (--data-dir / --database-url /
--ballot-key-file, or HOPSO_DATA_DIR / HOPSO_DATABASE_URL / HOPSO_BALLOT_KEY_FILE).
Exit status: 0 done, 1 refused (one line on stderr saying why; nothing was changed),
2 usage.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from server.backup import commands
from server.backup.archive import BackupRefused
from server.core.settings import ConfigError, parse_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m server.backup",
                                     description="Back up, verify, restore or migrate Hopso.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", default=os.environ.get("HOPSO_DATA_DIR"),
                        help="the server's data directory [HOPSO_DATA_DIR]")
    common.add_argument("--database-url", default=os.environ.get("HOPSO_DATABASE_URL"),
                        help="PostgreSQL URL instead of SQLite [HOPSO_DATABASE_URL]")
    common.add_argument("--ballot-key-file", default=os.environ.get("HOPSO_BALLOT_KEY_FILE"),
                        help="the ballot key, if not ballot.key in the data directory")
    sub = parser.add_subparsers(dest="command", required=True)
    made = sub.add_parser("backup", parents=[common],
                          help="copy the database and documents while the server runs")
    made.add_argument("--out", required=True, type=Path, help="the backup file to write")
    made.add_argument("--no-recordings", action="store_true",
                      help="leave <data dir>/recordings out (copied some other way)")
    checked = sub.add_parser("verify", help="check a backup file whole, without restoring")
    checked.add_argument("file", type=Path)
    back = sub.add_parser("restore", parents=[common],
                          help="restore a backup onto a fresh data directory")
    back.add_argument("file", type=Path)
    sub.add_parser("migrate", parents=[common],
                   help="upgrade the schema to this release (servers stopped)")
    return parser


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    try:
        settings = parse_settings(
            [f"--{k.replace('_', '-')}={v}" for k in ("data_dir", "database_url",
                                                      "ballot_key_file")
             if (v := getattr(args, k, None))], env={})
    except ConfigError as exc:
        print(f"backup: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "backup":
            done = commands.backup(settings, args.out, recordings=not args.no_recordings)
            print(f"backup: wrote {args.out}: installation {done.header.installation_id}, "
                  f"{done.header.database} schema {','.join(done.header.schema)}, "
                  f"{done.files} files, {done.bytes} bytes")
        elif args.command == "verify":
            done = commands.verify(args.file)
            print(f"backup: {args.file} verifies: installation {done.header.installation_id}, "
                  f"made {done.header.created_at}, {done.files} files, {done.bytes} bytes")
        elif args.command == "restore":
            done = commands.restore(settings, args.file)
            print(f"backup: restored installation {done.header.installation_id} "
                  f"({done.files} files) into {settings.data_dir}; start the server on it")
        else:
            heads = commands.migrate(settings)
            print(f"backup: the schema is at {', '.join(heads)}")
    except BackupRefused as exc:
        print(f"backup: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    except (OSError, sqlite3.Error) as exc:  # a disk full, a permission: one line, no traceback
        print(f"backup: {args.command} failed: {type(exc).__name__}: {exc}".splitlines()[0],
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
