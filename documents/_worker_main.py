"""Child side of documents.worker_pool: sandbox setup and the job loop.

Run as ``python -m documents._worker_main '<json config>'`` with the IPC
socket inherited as an fd. This is a fresh interpreter (spawn semantics)
that, unlike multiprocessing's spawn, never re-imports the server's
``__main__``. The wire format lives here so both sides share it.
"""

from __future__ import annotations

import ctypes
import importlib
import io
import json
import os
import pickle
import resource
import signal
import socket
import struct
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

HEADER = struct.Struct(">I")
MAX_FRAME = 512 * 1024 * 1024
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ChildConfig:
    fd: int  # inherited socket
    memory_limit: int | None
    nice: int
    preload: tuple[str, ...]

    def to_argv(self) -> str:
        return json.dumps([self.fd, self.memory_limit, self.nice, list(self.preload)])

    @classmethod
    def from_argv(cls, text: str) -> ChildConfig:
        fd, memory_limit, nice, preload = json.loads(text)
        return cls(int(fd), memory_limit, int(nice), tuple(preload))


class JobError(Exception):
    """Stands in for a worker exception that could not be pickled."""


def encode(obj: Any) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    if len(data) > MAX_FRAME:
        raise ValueError(f"message of {len(data)} bytes exceeds the frame limit")
    return HEADER.pack(len(data)) + data


def decode(data: bytes) -> Any:
    return pickle.loads(data)


def main(cfg: ChildConfig) -> None:
    """Entry point of a worker process."""
    sock = socket.socket(fileno=cfg.fd)
    _sandbox(cfg)
    for module in cfg.preload:
        importlib.import_module(module)
    stream = sock.makefile("rwb")
    while True:
        message = _read(stream)
        if message is _EOF:
            return  # parent closed the socket: orderly shutdown
        if message is None:
            reply: Any = ("ready", os.getpid())  # handshake / ping
        else:
            ref, args = message
            reply = _run(ref, args)
        try:
            frame = encode(reply)
        except Exception as exc:  # unpicklable or oversized result
            frame = encode((False, JobError(f"cannot send result: {exc!r}"), False, ""))
        stream.write(frame)
        stream.flush()


def _sandbox(cfg: ChildConfig) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if cfg.memory_limit:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = cfg.memory_limit if hard == resource.RLIM_INFINITY else min(hard, cfg.memory_limit)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    if cfg.nice:
        os.nice(cfg.nice)
    try:  # Linux: die with the parent instead of rendering for nobody
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


_EOF = object()


def _read(stream: io.BufferedIOBase) -> Any:
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return _EOF
    (length,) = HEADER.unpack(header)
    data = stream.read(length)
    if len(data) < length:
        return _EOF
    return decode(data)


def _resolve(ref: str) -> Callable[..., Any]:
    module_name, _, qualname = ref.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{ref} is not callable")
    return obj  # type: ignore[no-any-return]


def _run(ref: str, args: tuple[Any, ...]) -> tuple[bool, Any, bool, str]:
    """Return (ok, result-or-exception, recycle_worker, traceback_text)."""
    try:
        return True, _resolve(ref)(*args), False, ""
    except BaseException as exc:
        tb = traceback.format_exc()
        recycle = isinstance(exc, MemoryError) or _looks_like_oom(exc)
        return False, _portable(exc), recycle, tb


def _looks_like_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "malloc" in text or "out of memory" in text or "cannot allocate" in text


def _portable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return JobError(f"{type(exc).__qualname__}: {exc}")


if __name__ == "__main__":
    # Re-import under the real name so pickled classes (JobError) resolve in
    # the parent as documents._worker_main.*, not __main__.*.
    from documents import _worker_main

    _worker_main.main(_worker_main.ChildConfig.from_argv(sys.argv[1]))
