"""Backup, restore and schema migration of an installation: `python -m server.backup`.

`archive.py` is the file format (a tar with a manifest of hashes), `database.py` the
database's side (SQLite's online backup API, or pg_dump/pg_restore), `commands.py` the
backup, verify, restore and migrate steps, `__main__.py` the command line (docs/backup.md).
"""
