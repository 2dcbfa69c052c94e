"""The login limiter: locks a username after repeated failures, slows an address that fails
a lot, and bounds how many logins one address has in flight. Shared across server processes
through Redis when HOPSO_REDIS_URL is set. Design and reasons: docs/security.md (Login)."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from rooms.errors import DomainError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoginPolicy:
    user_failures: int = 10  # failed attempts on one username per window, then it is locked
    window_s: float = 300.0  # the counting window, and how long a lock lasts
    ip_failures: int = 100  # failures from one address per window before it is slowed
    ip_delay_s: float = 1.0  # the slowdown: each attempt from that address waits this long
    ip_concurrent: int = 16  # attempts of one address checked at once (per process) ...
    ip_waiting: int = 256  # ... and waiting for their turn, beyond which: 429


class LoginThrottled(DomainError):
    """429 with a Retry-After: the username is locked, or its address has too many waiting."""

    status = 429

    def __init__(self, message: str, code: str, retry_after_s: float) -> None:
        super().__init__(message, code)
        self.retry_after = max(1, math.ceil(retry_after_s))


class Store(Protocol):
    """Expiring counters. `reserve` must be atomic: check and increment in one step."""

    async def reserve(self, key: str, limit: int, window_s: float) -> float:
        """Count one attempt unless `limit` are counted already; returns 0 when counted, else
        the seconds until the counter expires. Reaching `limit` restarts the expiry."""
        ...

    async def release(self, key: str) -> None:
        """Uncount one reserved attempt that was never checked."""
        ...

    async def clear(self, key: str) -> None: ...

    async def add(self, key: str, window_s: float) -> int:
        """Count one event (the window starts at the first); returns the count."""
        ...

    async def count(self, key: str) -> int: ...

    async def close(self) -> None: ...


class MemoryStore:
    """One process's counters: the store when no Redis is configured."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._counters: dict[str, tuple[int, float]] = {}  # key -> (count, expires at)
        self._prune_at = 1024

    def _get(self, key: str) -> tuple[int, float]:
        found = self._counters.get(key)
        if found is None or found[1] <= self.clock():
            self._counters.pop(key, None)
            return 0, 0.0
        return found

    def _set(self, key: str, count: int, expires: float) -> None:
        self._counters[key] = (count, expires)
        if len(self._counters) >= self._prune_at:  # amortised: expired keys are dropped
            now = self.clock()
            self._counters = {k: v for k, v in self._counters.items() if v[1] > now}
            self._prune_at = max(1024, 2 * len(self._counters))

    async def reserve(self, key: str, limit: int, window_s: float) -> float:
        count, expires = self._get(key)
        now = self.clock()
        if count >= limit:
            return expires - now
        count += 1
        self._set(key, count, now + window_s if count == 1 or count >= limit else expires)
        return 0.0

    async def release(self, key: str) -> None:
        count, expires = self._get(key)
        if count > 0:
            self._set(key, count - 1, expires)

    async def clear(self, key: str) -> None:
        self._counters.pop(key, None)

    async def add(self, key: str, window_s: float) -> int:
        count, expires = self._get(key)
        self._set(key, count + 1, expires if count else self.clock() + window_s)
        return count + 1

    async def count(self, key: str) -> int:
        return self._get(key)[0]

    async def close(self) -> None:
        pass


# Each script runs atomically in Redis: no other client's command runs between its steps.
_RESERVE = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
local limit = tonumber(ARGV[1])
if n >= limit then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]); ttl = tonumber(ARGV[2]) end
  return ttl
end
n = redis.call('INCR', KEYS[1])
if n == 1 or n >= limit then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then redis.call('DECR', KEYS[1]) end
return 0
"""
_ADD = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""


class RedisStore:
    """Counters in Redis, shared by every server process using it. If Redis cannot be
    reached, each process falls back to its own counters (logged) rather than refusing all
    logins or letting them through unlimited."""

    def __init__(self, url: str, prefix: str = "hopso:login:") -> None:
        self.prefix = prefix
        self._redis = aioredis.Redis.from_url(url, socket_timeout=2.0,
                                              socket_connect_timeout=2.0)
        self._reserve = self._redis.register_script(_RESERVE)
        self._release = self._redis.register_script(_RELEASE)
        self._add = self._redis.register_script(_ADD)
        self._local = MemoryStore()
        self._warned_at = -math.inf

    def _fallback(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at > 60:
            self._warned_at = now
            log.warning("login limiter: Redis unavailable (%s); counting in this process",
                        type(exc).__name__)

    async def reserve(self, key: str, limit: int, window_s: float) -> float:
        try:
            ms = await self._reserve(keys=[self.prefix + key], args=[limit, int(window_s * 1000)])
            return int(ms) / 1000
        except (RedisError, OSError) as exc:
            self._fallback(exc)
            return await self._local.reserve(key, limit, window_s)

    async def release(self, key: str) -> None:
        try:
            await self._release(keys=[self.prefix + key])
        except (RedisError, OSError) as exc:
            self._fallback(exc)
            await self._local.release(key)

    async def clear(self, key: str) -> None:
        try:
            await self._redis.delete(self.prefix + key)
        except (RedisError, OSError) as exc:
            self._fallback(exc)
        await self._local.clear(key)

    async def add(self, key: str, window_s: float) -> int:
        try:
            return int(await self._add(keys=[self.prefix + key], args=[int(window_s * 1000)]))
        except (RedisError, OSError) as exc:
            self._fallback(exc)
            return await self._local.add(key, window_s)

    async def count(self, key: str) -> int:
        try:
            value: Any = await self._redis.get(self.prefix + key)
            return int(value or 0)
        except (RedisError, OSError) as exc:
            self._fallback(exc)
            return await self._local.count(key)

    async def close(self) -> None:
        await self._redis.aclose()


def address_scope(remote: str | None) -> str:
    """The unit an address-wide limit applies to: an IPv4 address, or an IPv6 /64 (what one
    customer line usually gets, so hopping within it does not escape the limit)."""
    try:
        ip = ipaddress.ip_address(remote or "")
    except ValueError:
        return remote or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _key(kind: str, value: str) -> str:
    # Fixed-size keys whatever the client sent (usernames are not limited in length here).
    return f"{kind}:{hashlib.sha256(value.encode('utf-8', 'surrogatepass')).hexdigest()[:32]}"


class Attempt:
    """One login attempt inside `LoginLimiter.attempt`: report how it ended."""

    def __init__(self, limiter: LoginLimiter, user_key: str, ip_key: str) -> None:
        self._limiter, self._user_key, self._ip_key = limiter, user_key, ip_key
        self.settled = False

    async def failed(self) -> None:
        """Wrong password (or no such user): the reservation stays, counted as a failure."""
        self.settled = True
        await self._limiter.store.add(self._ip_key, self._limiter.policy.window_s)

    async def succeeded(self) -> None:
        self.settled = True
        await self._limiter.store.clear(self._user_key)


class LoginLimiter:
    """Usernames are locked after `user_failures` failures; addresses are only slowed.

    Every attempt reserves its place in the username's counter *before* the password is
    checked, atomically, so N parallel attempts cannot all pass a check made before any of
    them failed (issue 11, finding 2: 40 parallel wrong logins all got 401). A success clears
    the username's counter; a failure leaves its reservation counted; an attempt that ended
    otherwise (hashing busy, database error) gives its reservation back.
    """

    def __init__(self, policy: LoginPolicy, store: Store) -> None:
        self.policy, self.store = policy, store
        self._lines: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}  # ip:… or user:… key -> its line

    @asynccontextmanager
    async def _turn(self, line: str, at_once: int, waiting_max: int) -> AsyncIterator[None]:
        """At most `at_once` attempts of one line (an address, a username) at once in this
        process; up to `waiting_max` more wait their turn, beyond which: 429."""
        slots, waiting = self._lines.setdefault(line, (asyncio.Semaphore(at_once), [0]))
        if waiting[0] >= waiting_max:
            raise LoginThrottled("too many logins at once; retry shortly", "rate_limited", 1)
        waiting[0] += 1
        try:
            async with slots:
                yield
        finally:
            waiting[0] -= 1
            if waiting[0] == 0:
                del self._lines[line]

    @asynccontextmanager
    async def attempt(self, remote: str | None, username: str) -> AsyncIterator[Attempt]:
        """Raises LoginThrottled when the username is locked; else yields an Attempt whose
        `failed`/`succeeded` the caller calls once the password has been checked."""
        policy, address = self.policy, address_scope(remote)
        user_key, ip_key = _key("user", username.strip().lower()), _key("ip", address)
        # One address cannot fill the hashing queue everyone shares; one username's attempts
        # are checked one after another, so in one process N parallel logins of a username
        # each see the counter the ones before them left (11 parallel right passwords all
        # get in; 40 parallel wrong ones stop at the limit). The store's reservation keeps
        # the count exact across processes.
        async with self._turn(ip_key, policy.ip_concurrent, policy.ip_waiting), \
                self._turn(user_key, 1, policy.ip_waiting):
            if await self.store.count(ip_key) >= policy.ip_failures:
                # Password spraying from this address: slow it, never refuse it, so people
                # behind the same NAT still get in with their right passwords.
                await asyncio.sleep(policy.ip_delay_s)
            wait = await self.store.reserve(user_key, policy.user_failures, policy.window_s)
            if wait > 0:
                raise LoginThrottled("too many failed logins for this username; try again later",
                                     "too_many_attempts", wait)
            attempt = Attempt(self, user_key, ip_key)
            try:
                yield attempt
            finally:
                if not attempt.settled:
                    await self.store.release(user_key)
