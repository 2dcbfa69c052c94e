"""Close once: an idempotent async teardown that concurrent callers all wait for."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class CloseOnce:
    """The first `run` does the teardown; every later or concurrent one waits for it
    (shielded: a caller cancelled while waiting does not cancel the teardown)."""

    def __init__(self) -> None:
        self._done: asyncio.Future[None] | None = None

    @property
    def started(self) -> bool:
        """True from the first `run` on (the owner counts as closed while it tears down)."""
        return self._done is not None

    async def run(self, teardown: Callable[[], Awaitable[None]]) -> None:
        if self._done is not None:
            await asyncio.shield(self._done)
            return
        self._done = asyncio.get_running_loop().create_future()
        try:
            await teardown()
        finally:
            self._done.set_result(None)
