"""Waiting for a push that a test's socket.io client records: `heard[event]` keeps every
payload, `changed` is set on each."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def first_heard(heard: dict[str, list[dict[str, Any]]], changed: asyncio.Event,
                      event: str, check: Callable[[dict[str, Any]], bool],
                      timeout: float) -> dict[str, Any]:
    """The first payload of `event` that passes `check`, heard already or within `timeout` s."""
    async def look() -> dict[str, Any]:
        while True:
            for payload in heard.get(event, []):
                if check(payload):
                    return payload
            changed.clear()
            await changed.wait()
    return await asyncio.wait_for(look(), timeout)
