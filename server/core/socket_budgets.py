"""The budgets of socket.io events (docs/security.md (Socket events)), kept by the guard
(server/core/socket_guard.py) for every connection:

* token buckets per connection and per principal (a user, bound by the namespace's connect
  handler; else the connection itself); namespaces outside `budgeted` spend none;
* at most `in_flight` handlers of one connection run at once, at most `queued` more wait;
* strikes: refusals a connection may collect before it is dropped, and the cool-down its
  principal then waits before reconnecting.

A principal outlives its connections until its budget would be full again, so reconnecting
does not buy a fresh one.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from media import TokenBucket
from server.core.settings import SocketLimits

_SWEEP_EVERY_S = 30.0


@dataclass
class Principal:
    """Who is behind connections (a user): their shared budget and flood penalty."""

    bucket: TokenBucket
    connections: int = 0
    blocked_until: float = 0.0
    idle_since: float = 0.0


@dataclass
class Pending:
    """An event waiting for one of its connection's workers."""

    eio_sid: str
    ack_id: int | None
    event: str
    args: list[Any]


@dataclass
class Connection:
    key: str  # the principal's
    principal: Principal
    bucket: TokenBucket | None  # None: a namespace without budgets (in-flight bound only)
    strikes: TokenBucket
    in_flight: int
    queued: int
    pending: deque[Pending] = field(default_factory=deque)
    running: int = 0
    closed: bool = False

    def spend(self) -> bool:
        """Take one event from the connection's and the principal's buckets (if budgeted)."""
        return self.bucket is None or (self.bucket.take() and self.principal.bucket.take())

    def strike(self, cooldown_s: float) -> bool:
        """Count a refusal; False once too many: the connection is closed and its principal
        blocked for `cooldown_s`."""
        if self.strikes.take():
            return True
        self.principal.blocked_until = time.monotonic() + cooldown_s
        self.close()
        return False

    def close(self) -> None:
        self.closed = True
        self.pending.clear()


class Budgets:
    """The connections and principals of one socket.io server."""

    def __init__(self, limits: SocketLimits, budgeted: frozenset[str]) -> None:
        self.limits = limits
        self.budgeted = budgeted  # namespaces whose events spend the token buckets
        self._connections: dict[tuple[str, str], Connection] = {}
        self._principals: dict[str, Principal] = {}
        self._swept = time.monotonic()

    def bind(self, namespace: str, sid: str, principal: str) -> None:
        """Count this connection's events against `principal` from now on."""
        self.forget(namespace, sid)
        self._connections[(namespace, sid)] = self._new_connection(namespace, principal)

    def blocked_for(self, principal: str) -> float:
        """Seconds `principal` must still wait after being dropped for flooding (0: none)."""
        found = self._principals.get(principal)
        return max(0.0, found.blocked_until - time.monotonic()) if found else 0.0

    def connection(self, namespace: str, sid: str) -> Connection:
        """The connection's budgets; one that bound no principal is its own."""
        conn = self._connections.get((namespace, sid))
        if conn is None:
            conn = self._connections[(namespace, sid)] = self._new_connection(
                namespace, f"{namespace}#{sid}")
        return conn

    def forget(self, namespace: str, sid: str) -> None:
        conn = self._connections.pop((namespace, sid), None)
        if conn is not None:
            conn.close()
            conn.principal.connections -= 1
            conn.principal.idle_since = time.monotonic()

    def _new_connection(self, namespace: str, key: str) -> Connection:
        limits, now = self.limits, time.monotonic()
        if now - self._swept > _SWEEP_EVERY_S:
            self._sweep(now)
        principal = self._principals.get(key)
        if principal is None:
            principal = self._principals[key] = Principal(
                TokenBucket(limits.user_rate_per_s, limits.user_burst))
        principal.connections += 1
        bucket = (TokenBucket(limits.rate_per_s, limits.burst)
                  if namespace in self.budgeted else None)
        strikes = TokenBucket(limits.flood_strikes / limits.flood_window_s, limits.flood_strikes)
        if bucket is None:
            return Connection(key, principal, None, strikes, limits.link_in_flight,
                              limits.link_queued)
        return Connection(key, principal, bucket, strikes, limits.in_flight, limits.queued)

    def _sweep(self, now: float) -> None:
        """Forget principals without connections once their budget would be full again and
        their penalty is over (until then a reconnect does not buy a fresh budget)."""
        self._swept = now
        refill_s = self.limits.user_burst / self.limits.user_rate_per_s
        for key, p in list(self._principals.items()):
            if p.connections == 0 and now > max(p.blocked_until, p.idle_since + refill_s):
                del self._principals[key]
