"""The bus across processes: with HOPSO_REDIS_URL, the events that every process must see are
also published on Redis and re-published on the bus of every other process
(docs/architecture.md (Server wiring)).

Scale-out runs several processes behind one address; the HTTP request that closes a meeting
reaches one of them, while the meeting's media may live in another. Only the event types
named when the bridge is made cross (an explicit allow-list); a message is JSON
``{"type", "origin", "event"}``, checked on receipt against that list and the event's fields
and types. One that is not is logged (one line) and dropped. The sender skips its own
messages: its bus has already delivered them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from server.core.bus import Bus

log = logging.getLogger(__name__)
# Waiting for the next message at most this long, so a closing bridge is never stuck in a read.
POLL_TIMEOUT_S = 1.0


class MalformedMessage(ValueError):
    """A message on the channel that is not one of the allowed events."""


class BusBridge:
    def __init__(self, bus: Bus, redis_url: str, channel: str,
                 events: Sequence[type]) -> None:
        self.bus, self.redis_url, self.channel = bus, redis_url, channel
        self._types: dict[str, type] = {t.__name__: t for t in events}
        self._adapters: dict[str, TypeAdapter[Any]] = {name: TypeAdapter(t) for name, t in self._types.items()}
        self._fields = {name: {f.name for f in dataclasses.fields(t)}
                        for name, t in self._types.items()}
        self.origin = uuid.uuid4().hex  # this process's bridge: its own messages come back
        self._redis: aioredis.Redis | None = None
        for event_type in events:  # local events only: a relayed one is not sent back
            bus.subscribe(event_type, self._forward)

    # -- sending --------------------------------------------------------------------------
    def encode(self, event: object) -> str:
        return json.dumps({"type": type(event).__name__, "origin": self.origin,
                           "event": dataclasses.asdict(event)})  # type: ignore[call-overload]

    async def _forward(self, event: object) -> None:
        if self._redis is None:
            return  # not started, or closed
        try:
            await self._redis.publish(self.channel, self.encode(event))
        except RedisError as exc:
            # This process has handled it; the others do not learn it (Redis is down).
            log.warning("bus bridge: %s not sent to other processes (%s)",
                        type(event).__name__, exc)

    # -- receiving ------------------------------------------------------------------------
    def decode(self, raw: bytes | str) -> tuple[str, object]:
        """(origin, event) of a message; MalformedMessage if it is not an allowed event."""
        try:
            message = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            raise MalformedMessage(f"not JSON: {exc}") from None
        if not isinstance(message, dict) or set(message) != {"type", "origin", "event"}:
            raise MalformedMessage("not {type, origin, event}")
        name, origin, fields = message["type"], message["origin"], message["event"]
        if not isinstance(origin, str) or not isinstance(fields, dict):
            raise MalformedMessage("origin is not a string or event not an object")
        if not isinstance(name, str) or name not in self._types:
            raise MalformedMessage(f"event type {str(name)[:40]!r} is not allowed")
        if set(fields) - self._fields[name]:
            raise MalformedMessage(f"{name}: unknown fields {sorted(set(fields) - self._fields[name])}")
        try:
            # JSON mode: strict types (no "3" for 3) with the fields given as an object.
            return origin, self._adapters[name].validate_json(json.dumps(fields), strict=True)
        except ValidationError as exc:
            raise MalformedMessage(f"{name}: {exc.error_count()} invalid field(s)") from None

    async def receive(self, raw: bytes | str) -> None:
        try:
            origin, event = self.decode(raw)
        except MalformedMessage as exc:
            log.warning("bus bridge: dropped a malformed message on %s: %s", self.channel, exc)
            return
        if origin != self.origin:
            await self.bus.publish(event, relayed=True)

    async def _listen(self, pubsub: Any) -> None:
        while True:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True,
                                                   timeout=POLL_TIMEOUT_S)
            except RedisError as exc:
                # redis-py reconnects and re-subscribes on the next read.
                log.warning("bus bridge: Redis read failed (%s); retrying", exc)
                await asyncio.sleep(POLL_TIMEOUT_S)
                continue
            if message is not None and message.get("type") == "message":
                await self.receive(message["data"])

    # -- lifespan -------------------------------------------------------------------------
    async def run(self) -> AsyncIterator[None]:
        """Subscribed before the app serves; unsubscribed and closed when it stops."""
        redis = aioredis.Redis.from_url(self.redis_url)
        pubsub = redis.pubsub()
        await pubsub.subscribe(self.channel)
        task = asyncio.create_task(self._listen(pubsub), name="bus-bridge")
        self._redis = redis
        try:
            yield
        finally:
            self._redis = None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            try:
                await pubsub.unsubscribe(self.channel)
            except RedisError:
                pass
            await pubsub.aclose()
            await redis.aclose()
