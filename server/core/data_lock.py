"""The data directory's lock: one SQLite server (or one restore) per data directory.

`run.py` takes it at start-up and holds it until the process ends (the kernel drops an
flock with its process, so a killed server never leaves a stale lock). A SQLite server
takes it exclusively: two processes on one SQLite file would each scrub secret ballots and
rebuild annotation logs behind the other's back. Processes of one PostgreSQL deployment may
share a data directory (its documents): they take it shared, so they exclude a SQLite
server, a restore and a `migrate` (exclusive), but not each other.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

LOCK_NAME = "hopso.lock"


class DataDirBusy(Exception):
    """Another process holds the data directory; the message is one line."""


def hold_data_dir(data_dir: Path, *, shared: bool = False) -> IO[str]:
    """Lock `data_dir` (made if missing) or raise DataDirBusy at once, never waiting.
    Keep the returned file open for as long as the lock is wanted."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / LOCK_NAME, "a+")  # noqa: SIM115 - held open: that is the lock
    try:
        fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise DataDirBusy(f"data directory {data_dir} is in use by another Hopso "
                          f"process{who}: refused, nothing changed") from None
    handle.seek(0)
    handle.truncate()
    if not shared:  # only a sole holder can say who it is
        handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
