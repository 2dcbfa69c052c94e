"""Login, server-side sessions and CSRF (the login limiter: server/core/login_limit.py)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from aiohttp import web
from sqlalchemy import bindparam
from sqlalchemy import select as sa_select
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import meetings
from rooms.db import Database
from rooms.errors import DomainError, Forbidden, NotAuthenticated, NotFound
from rooms.meetings import MeetingAccess
from rooms.models import AuthSession, Role, User, utcnow
from rooms.permissions import Action
from rooms.users import find_user
from server.core import keys
from server.core.http_util import int_id, read_form
from server.core.passwords import new_token, token_hash

log = logging.getLogger(__name__)

SESSION_COOKIE = "hopso_session"
LOGIN_CSRF_COOKIE = "hopso_login_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
USER = web.RequestKey("user", User)
AUTH = web.RequestKey("auth", AuthSession)
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Paths that check their own CSRF (login: double-submit cookie) or none (engine.io checks Origin).
CSRF_EXEMPT = ("/login", "/api/login", "/socket.io/")


async def create_session(db: Database, user: User, ttl_s: int) -> tuple[str, AuthSession]:
    token = new_token()
    auth = AuthSession(token_hash=token_hash(token), user_id=user.id,  # type: ignore[arg-type]
                       csrf_token=secrets.token_urlsafe(24),
                       expires_at=utcnow() + timedelta(seconds=ttl_s))
    async with db.session() as s:
        s.add(auth)
    return token, auth


async def load_session(db: Database, token: str | None) -> tuple[User, AuthSession] | None:
    if not token or len(token) > 128:
        return None
    async with db.session() as s:
        # One query for the session and its user (every HTTP request and socket event load).
        row = (await s.exec(select(AuthSession, User)
                            .join(User, col(User.id) == col(AuthSession.user_id))
                            .where(col(AuthSession.token_hash) == token_hash(token)))).first()
        if row is None:
            return None
        auth, user = row
        if auth.expires_at <= utcnow():
            await s.delete(auth)
            return None
        if user.disabled:
            return None
        return user, auth


# --- routes that read the session with their access check ----------------------------------
# A tablet polls its meeting's document list and page images several times a second. Such a
# GET route reads the caller's session in the same statement as its access check
# (rooms.meetings.session_select), not in a read of its own before it: one read, not two,
# and still at every request (nothing is cached: a logout or a disabled user counts at once).

OWN_SESSION = "hopso_reads_own_session"
H = TypeVar("H", bound=Callable[[web.Request], Awaitable[web.StreamResponse]])


def reads_own_session(handler: H) -> H:
    """Marks a GET route whose handler reads the session itself (`session_params`, then
    `signed_in` on its row before it uses anything of the row): `auth_middleware` does not
    read it first for GET and HEAD."""
    setattr(handler, OWN_SESSION, True)
    return handler


def session_params(request: web.Request) -> dict[str, Any]:
    """The `token_hash` parameter of a session_select for the request's cookie; no cookie
    (or no possible one) is 401 before any read."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 128:
        raise NotAuthenticated("log in first")
    return {"token_hash": token_hash(token)}


async def signed_in(request: web.Request, row: Sequence[Any] | None) -> Sequence[Any]:
    """`load_session`'s checks on a row of a session_select (AuthSession, User, ...): no
    session, an expired one (deleted, as load_session does) or a disabled user is 401.
    Otherwise the request is the user's (`current_user`), and the row is returned."""
    if row is None:
        raise NotAuthenticated("log in first")
    auth, user = row[0], row[1]
    if auth.expires_at <= utcnow():
        async with request.app[keys.DB].session() as s:
            await s.exec(delete(AuthSession).where(
                col(AuthSession.token_hash) == auth.token_hash))
        raise NotAuthenticated("log in first")
    if user.disabled:
        raise NotAuthenticated("log in first")
    request[USER], request[AUTH] = user, auth
    return row


def path_id(request: web.Request, name: str) -> tuple[int, DomainError | None]:
    """`int_id`, its refusal held back (with an id no row has) so that the caller's session
    is checked first: not signed in is 401, whatever the path."""
    try:
        return int_id(request, name), None
    except NotFound as refusal:
        return 0, refusal


_MEETING_BY_TOKEN = meetings.with_membership(meetings.session_select(),
                                             bindparam("meeting_id"))


async def signed_in_meeting_access(session: AsyncSession, request: web.Request,
                                   action: Action = Action.view) -> MeetingAccess:
    """`meeting_access` for a route marked `reads_own_session`: the session, the person and
    their access to the meeting in one read."""
    params = session_params(request)
    meeting_id, refusal = path_id(request, "meeting_id")
    row = await signed_in(request, (await session.exec(  # type: ignore[call-overload]
        _MEETING_BY_TOKEN, params={**params, "meeting_id": meeting_id})).first())
    verdict = refusal or meetings.access_of(row, meeting_id, action)
    if isinstance(verdict, DomainError):
        raise verdict
    return verdict


_AUTH_COLUMNS = tuple(AuthSession.__table__.columns)  # type: ignore[attr-defined]
_USER_COLUMNS = tuple(User.__table__.columns)  # type: ignore[attr-defined]


def _fingerprint(user: User, auth: AuthSession) -> tuple[Any, ...]:
    """Every column of both rows, as the background refresh reads them, to tell a changed
    row (role, name, disabled, expiry) from an unchanged one without building ORM objects."""
    return (tuple(getattr(auth, c.key) for c in _AUTH_COLUMNS)
            + tuple(getattr(user, c.key) for c in _USER_COLUMNS))


@dataclass(slots=True)
class _Entry:
    checked_at: float  # clock() before the read that found the rows as they are cached
    used_at: float
    user: User
    auth: AuthSession
    fingerprint: tuple[Any, ...]


class SessionCache:
    """Sessions recently checked by socket events, so a tablet sending a pen stroke every
    100 ms does not reload its session and user from the database on every event.

    Trade-off: an entry is trusted for `ttl_s` seconds. Logging out, disabling a user and
    resetting a password in *this* process drop the affected entries at once (`forget_token`,
    `forget_user`, called after the database commit), so their next socket event is refused
    as before; an expired session is refused at once too (its expiry is cached with it). What
    the TTL bounds is everything else: a logout or disable handled by *another* server
    process (scale-out), or a change made directly in the database, reaches this process's
    sockets within `ttl_s`; a changed user row (role, name) is seen within `ttl_s`. HTTP
    requests never use this cache.

    Refresh-ahead (`keep_fresh`, run by the app): every `ttl_s / 4` one query re-reads the
    rows of every entry older than `ttl_s / 2` and used in the last `idle_s`, and renews the
    entries whose rows are unchanged (changed or missing rows are dropped, so the next event
    reloads or is refused). So a delegate who last sent an event a minute ago does not wait
    for a session load when they vote; a renewed entry is still never older than `ttl_s`
    from the read that vouched for it. Concurrent loads of one token share one query.
    """

    def __init__(self, ttl_s: float = 2.0, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic, idle_s: float = 600.0) -> None:
        self.ttl_s, self.max_entries, self.clock, self.idle_s = ttl_s, max_entries, clock, idle_s
        self._entries: dict[str, _Entry] = {}
        self._loading: dict[str, asyncio.Future[tuple[User, AuthSession] | None]] = {}
        # Bumped by every forget: a load that started before it must not be cached, since it
        # may have read the session just before the logout committed.
        self._generation = 0
        self._refresh_failed_logged = -math.inf

    async def load(self, db: Database, token: str | None) -> tuple[User, AuthSession] | None:
        """`load_session`, answered from the cache while the entry is fresh."""
        if not token or len(token) > 128:
            return None
        key, now = token_hash(token), self.clock()
        hit = self._entries.get(key)
        if hit is not None and now - hit.checked_at < self.ttl_s \
                and hit.auth.expires_at > utcnow():
            hit.used_at = now
            return hit.user, hit.auth
        loading = self._loading.get(key)
        if loading is None:
            loading = self._loading[key] = asyncio.ensure_future(self._load(db, token, key))
            loading.add_done_callback(lambda done: self._loaded(key, done))
        # Shielded: one waiter's cancellation must not cancel the others' load.
        return await asyncio.shield(loading)

    async def _load(self, db: Database, token: str, key: str
                    ) -> tuple[User, AuthSession] | None:
        generation, started = self._generation, self.clock()
        found = await load_session(db, token)
        if found is None:
            self._entries.pop(key, None)
        elif generation == self._generation:
            if len(self._entries) >= self.max_entries:
                self._prune(started)
            self._entries[key] = _Entry(started, started, *found, _fingerprint(*found))
        return found

    def _loaded(self, key: str, done: asyncio.Future[tuple[User, AuthSession] | None]) -> None:
        if self._loading.get(key) is done:
            del self._loading[key]
        if not done.cancelled():
            done.exception()  # retrieved here too, in case every waiter was cancelled

    async def refresh(self, db: Database) -> None:
        """One refresh-ahead pass (see the class docstring)."""
        now = self.clock()
        due: list[tuple[str, _Entry]] = []
        for key, entry in list(self._entries.items()):
            if now - entry.used_at >= self.idle_s:
                if now - entry.checked_at >= self.ttl_s:
                    del self._entries[key]  # idle and stale: the next event loads it
            elif now - entry.checked_at >= self.ttl_s / 2:
                due.append((key, entry))
        for start in range(0, len(due), 500):
            chunk = due[start:start + 500]
            async with db.session() as s:
                rows = (await s.exec(sa_select(  # type: ignore[call-overload]
                    *_AUTH_COLUMNS, *_USER_COLUMNS)
                    .join_from(AuthSession, User, col(User.id) == col(AuthSession.user_id))
                    .where(col(AuthSession.token_hash).in_([k for k, _ in chunk])))).all()
            current = {next(iter(row)): tuple(row) for row in rows}
            moment = utcnow()
            for key, entry in chunk:
                if self._entries.get(key) is not entry:
                    continue  # forgotten or reloaded meanwhile: not ours to renew
                if current.get(key) == entry.fingerprint and entry.auth.expires_at > moment:
                    entry.checked_at = max(entry.checked_at, now)
                else:  # logged out, disabled, changed or expired elsewhere
                    del self._entries[key]

    async def keep_fresh(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: runs `refresh` every `ttl_s / 4` while the app runs."""
        task = asyncio.ensure_future(self._refresh_forever(app[keys.DB]))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _refresh_forever(self, db: Database) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 4)
            try:
                await self.refresh(db)
            except PoolTimeout:  # expected under load: a line, no traceback (as realtime's)
                if self._refresh_failure_due():
                    log.warning("session refresh skipped: no database connection free "
                                "(pool busy); events load their sessions themselves meanwhile")
            except Exception:
                if self._refresh_failure_due():
                    log.warning("session refresh failed", exc_info=True)

    def _refresh_failure_due(self) -> bool:
        """A failed refresh is logged at most once a minute (it retries every ttl_s / 4)."""
        if self.clock() - self._refresh_failed_logged <= 60:
            return False
        self._refresh_failed_logged = self.clock()
        return True

    def forget_token(self, token: str) -> None:
        self._generation += 1
        key = token_hash(token)
        self._entries.pop(key, None)
        self._loading.pop(key, None)  # a later load must not join one that read too early

    def forget_user(self, user_id: int) -> None:
        self._generation += 1
        for key in [k for k, e in self._entries.items() if e.user.id == user_id]:
            del self._entries[key]
        self._loading.clear()

    def _prune(self, now: float) -> None:
        self._entries = {k: e for k, e in self._entries.items() if now - e.checked_at < self.ttl_s}
        if len(self._entries) >= self.max_entries:
            self._entries.clear()


# Created by server.core.realtime.Realtime; logout and user changes tell it what ended.
SESSION_CACHE = web.AppKey("session_cache", SessionCache)


def forget_sessions(app: web.Application, *, token: str | None = None,
                    user_id: int | None = None) -> None:
    """Call after the commit that ended a session (`token`) or all of a user's sessions."""
    cache = app.get(SESSION_CACHE)
    if cache is None:
        return
    if token is not None:
        cache.forget_token(token)
    if user_id is not None:
        cache.forget_user(user_id)


async def end_session(db: Database, token: str) -> None:
    async with db.session() as s:
        await s.exec(delete(AuthSession).where(col(AuthSession.token_hash) == token_hash(token)))


async def end_all_sessions(session: AsyncSession, user_id: int) -> None:
    await session.exec(delete(AuthSession).where(col(AuthSession.user_id) == user_id))


async def check_login(request: web.Request, username: str, password: str) -> User:
    """Verifies a password under the login limiter, off the event loop. Raises
    NotAuthenticated (401), LoginThrottled (429) or PasswordsBusy (503)."""
    app = request.app
    async with app[keys.LIMITER].attempt(request.remote, username) as attempt:
        async with app[keys.DB].session() as s:
            user = await find_user(s, username) if username else None
        right = await app[keys.PASSWORDS].verify(user.password_hash if user else None, password)
        if not right or user is None or user.disabled:
            await attempt.failed()
            raise NotAuthenticated("wrong username or password", code="bad_credentials")
        await attempt.succeeded()
    return user


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    settings = request.app[keys.SETTINGS]
    response.set_cookie(SESSION_COOKIE, token, max_age=settings.session_ttl_s, httponly=True,
                        samesite="Lax", secure=settings.secure_cookies, path="/")


def current_user(request: web.Request) -> User:
    user = request.get(USER)
    if user is None:
        raise NotAuthenticated("log in first")
    return user


async def meeting_access(session: AsyncSession, request: web.Request,
                         action: Action = Action.view) -> MeetingAccess:
    """The logged-in user's access to the meeting the path names (`{meeting_id}`): 404 for a
    non-member, 403 for a member lacking `action` (rooms.meetings.require)."""
    return await meetings.require(session, current_user(request), int_id(request, "meeting_id"),
                                  action)


def require_admin(request: web.Request) -> User:
    user = current_user(request)
    if user.role != Role.admin:
        raise Forbidden("administrators only")
    return user


def _same(a: str | None, b: str | None) -> bool:
    # As bytes: compare_digest refuses str with non-ASCII characters (TypeError), and a
    # header or form field can carry any.
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())


async def csrf_token_from(request: web.Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    # Multipart bodies (uploads) are streamed by their handler, so they must use the header.
    if request.content_type == "application/x-www-form-urlencoded":
        form = await read_form(request)
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


@web.middleware
async def auth_middleware(request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                          ) -> web.StreamResponse:
    if request.method in ("GET", "HEAD") \
            and getattr(request.match_info.handler, OWN_SESSION, False):
        return await handler(request)  # it reads the session with its access check
    found = await load_session(request.app[keys.DB], request.cookies.get(SESSION_COOKIE))
    if found:
        request[USER], request[AUTH] = found
    if request.method in UNSAFE and not request.path.startswith(CSRF_EXEMPT):
        auth = request.get(AUTH)
        if auth is None:
            raise NotAuthenticated("log in first")
        if not _same(await csrf_token_from(request), auth.csrf_token):
            raise Forbidden("missing or wrong CSRF token", code="csrf")
    return await handler(request)


def login_csrf_ok(request: web.Request, submitted: str | None) -> bool:
    """Double-submit check for the login form, which has no session yet."""
    return _same(request.cookies.get(LOGIN_CSRF_COOKIE), submitted)


async def users_sessions(session: AsyncSession, user_id: int) -> int:
    rows = await session.exec(select(AuthSession).where(AuthSession.user_id == user_id))
    return len(rows.all())
