"""Password hashing (argon2id) off the event loop, and random secrets."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from rooms.errors import DomainError

T = TypeVar("T")
MIN_PASSWORD_LENGTH = 10
UNUSABLE_HASH = "!"  # never verifies: for accounts whose password is set later


def password_hasher(fast: bool = False) -> PasswordHasher:
    """argon2id with the library's vetted defaults (RFC 9106 low-memory: 64 MiB, t=3, p=4).

    `fast` is the `--fast-hash` setting (Settings.fast_hash), for tests and benchmarks only:
    argon2-cffi's CHEAPEST profile, still argon2id. Verifying always uses the parameters
    stored in the hash, so either profile verifies the other's hashes."""
    return PasswordHasher.from_parameters(profiles.CHEAPEST) if fast else PasswordHasher()


class PasswordsBusy(DomainError):
    """More hashes are waiting than the bound: 503, the client retries (Retry-After: 1)."""

    code, status = "busy", 503


class Passwords:
    """Hashes and verifies on a small thread pool, never on the event loop.

    One default-profile hash is ~50-100 ms of CPU and 64 MiB: on the loop, 40 parallel wrong
    logins stalled every other request for 3.4 s (issue 11, finding 2). argon2-cffi releases
    the GIL while it works, so `threads` hashes run beside the loop; at most `max_waiting`
    more wait their turn (a fraction of a second each), and beyond that callers get
    PasswordsBusy at once instead of queueing without bound.
    """

    def __init__(self, hasher: PasswordHasher, threads: int = 2, max_waiting: int = 64) -> None:
        self.hasher, self.threads, self.max_waiting = hasher, threads, max_waiting
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="argon2")
        self._queued = 0  # submitted and not finished; touched on the loop only
        # A real hash to verify against when the user does not exist (or has no usable hash),
        # so the answer takes as long as for a real account and does not reveal which it was.
        self._dummy = hasher.hash("hopso-dummy-password")

    @property
    def queued(self) -> int:
        return self._queued

    async def _run(self, work: Callable[[], T]) -> T:
        if self._queued >= self.threads + self.max_waiting:
            raise PasswordsBusy("the server is busy checking passwords; retry in a moment")
        self._queued += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, work)
        finally:
            self._queued -= 1

    async def hash(self, password: str) -> str:
        return await self._run(lambda: self.hasher.hash(password))

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        return await self._run(lambda: self._verify(stored_hash, password))

    def _verify(self, stored_hash: str | None, password: str) -> bool:
        if stored_hash is not None:
            try:
                return self.hasher.verify(stored_hash, password)
            except VerifyMismatchError:
                return False
            except (VerificationError, InvalidHashError):  # e.g. UNUSABLE_HASH, not checked:
                pass  # take as long as a real check below
        try:
            self.hasher.verify(self._dummy, password)
        except VerificationError:
            pass
        return False

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def new_password() -> str:
    """~95 bits, easy to type from a printed line."""
    return secrets.token_urlsafe(12)


def new_token() -> str:
    """256-bit session token for the cookie."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
