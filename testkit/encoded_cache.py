"""Pre-encoded test media, encoded once per machine rather than once per fixture.

The tests' aiortc publishers send media encoded before the call (testkit/aiortc_clients.py,
testkit/simulcast_publisher.py): 1-4 s of CPU per encoding on a quiet box, 2-3 times that on
a loaded CI one, and the same encoding was made by every module (and each xdist worker, and
the serial pass again) that asked for it. `cached(encode, *args)` keeps the result in a file
under the temporary directory, named by the function, its arguments and a digest of the
source of the module defining it plus the codec library's version, so an edited encoder or
another PyAV makes a new file rather than reading a stale one. Two processes asking at once
(the two workers) encode once: the second waits on the first's lock and reads its file.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import os
import pickle
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import av

T = TypeVar("T")


def cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"hopso-encoded-media-{os.getuid()}"


def key(encode: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """What names one encoding: the function, its arguments, PyAV's version and the source
    of its module and of the testkit modules that module uses (encode_simulcast draws its
    frames with testkit/aiortc_clients.py's)."""
    module = sys.modules[encode.__module__]
    used = {encode.__module__} | {
        name for value in vars(module).values()
        if isinstance(name := getattr(value, "__module__", None), str)
        and name.startswith("testkit.") and name in sys.modules}
    sources = [inspect.getsource(sys.modules[name]) for name in sorted(used)]
    parts = (encode.__module__, encode.__qualname__, repr(args), repr(sorted(kwargs.items())),
             av.__version__, *sources)
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def cached(encode: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`encode(*args, **kwargs)`, read from this machine's cache when it was made before."""
    folder = cache_dir()
    folder.mkdir(mode=0o700, exist_ok=True)
    if folder.stat().st_uid != os.getuid():  # pickles are only read from our own folder
        raise RuntimeError(f"{folder} belongs to another user")
    name = key(encode, *args, **kwargs)
    path = folder / f"{name}.pkl"
    with (folder / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one encodes, the other waits and reads its file
        if path.exists():
            with path.open("rb") as f:
                value: T = pickle.load(f)  # our own file, in a folder only we can write
            return value
        value = encode(*args, **kwargs)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        with partial.open("wb") as f:
            pickle.dump(value, f)
        partial.replace(path)  # whole or absent: a killed run leaves no half file
        return value
