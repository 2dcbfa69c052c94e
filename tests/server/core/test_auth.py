import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import col, delete, update

from rooms.db import Database
from rooms.models import AuthSession, User, utcnow
from server.core import keys
from server.core.auth import (
    SESSION_CACHE,
    SESSION_COOKIE,
    SessionCache,
    end_all_sessions,
    end_session,
    load_session,
)
from tests.conftest import Client, Harness


async def test_login_sets_httponly_samesite_session_cookie(hopso: Harness) -> None:
    client = hopso.anonymous()
    async with client.session.post(hopso.base + "/api/login", json={
            "username": "daibieu", "password": hopso.logins["daibieu"].password}) as r:
        assert r.status == 200
        cookie = r.headers["Set-Cookie"]
    assert "hopso_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    token = cookie.split("hopso_session=")[1].split(";")[0]
    assert len(token) >= 32  # 256 random bits, url-safe base64


async def test_wrong_password_is_rejected_without_a_session(hopso: Harness) -> None:
    client = hopso.anonymous()
    status, body = await client.call("POST", "/api/login", {"username": "daibieu",
                                                             "password": "not-the-password"})
    assert status == 401 and body["error"]["code"] == "bad_credentials"
    status, _ = await client.call("GET", "/api/session")
    assert status == 401


async def test_login_rate_limit_blocks_even_the_right_password(hopso_sqlite: Harness) -> None:
    client = hopso_sqlite.anonymous()
    for _ in range(hopso_sqlite.settings.login_attempts_per_5min):
        status, _ = await client.call("POST", "/api/login", {"username": "thuky", "password": "x"})
        assert status == 401
    status, _body = await client.call("POST", "/api/login", {
        "username": "thuky", "password": hopso_sqlite.logins["thuky"].password})
    assert status == 429


async def test_logout_kills_the_session(hopso: Harness) -> None:
    client = await hopso.login("daibieu")
    cookie = client.cookie_header()
    status, _ = await client.call("POST", "/logout")
    assert status == 200
    other = hopso.anonymous()
    status, _ = await other.call("GET", "/api/session", headers={"Cookie": cookie})
    assert status == 401


async def test_disabling_a_user_kills_all_their_sessions(hopso: Harness) -> None:
    first, second = await hopso.login("daibieu"), await hopso.login("daibieu")
    admin = await hopso.login("quantri")
    status, _ = await admin.call("PATCH", f"/api/users/{first.user['id']}", {"disabled": True})
    assert status == 200
    for client in (first, second):
        status, _ = await client.call("GET", "/api/session")
        assert status == 401
    status, _ = await hopso.anonymous().call("POST", "/api/login", {
        "username": "daibieu", "password": hopso.logins["daibieu"].password})
    assert status == 401


async def test_expired_session_is_refused(hopso: Harness) -> None:
    client = await hopso.login("daibieu")
    async with hopso.server.app[keys.DB].session() as s:
        await s.exec(update(AuthSession).values(expires_at=utcnow() - timedelta(seconds=1)))  # type: ignore[call-overload]
    status, body = await client.call("GET", "/api/session")
    assert status == 401 and body["error"]["code"] == "not_authenticated"


async def test_state_change_without_csrf_token_is_refused_and_changes_nothing(hopso: Harness) -> None:
    admin = await hopso.login("quantri")
    status, body = await admin.call("POST", "/api/units", {"name": "Unit-CSRF-probe", "kind": "ward"},
                                    headers={"X-CSRF-Token": "wrong"})
    assert status == 403 and body["error"]["code"] == "csrf"
    admin.csrf = ""
    status, _ = await admin.call("POST", "/api/units", {"name": "Unit-CSRF-probe", "kind": "ward"})
    assert status == 403
    _, tree = await (await hopso.login("quantri")).call("GET", "/api/units")
    assert "Unit-CSRF-probe" not in str(tree)


async def test_login_form_needs_its_double_submit_token(hopso_sqlite: Harness) -> None:
    client = hopso_sqlite.anonymous()
    async with client.session.get(hopso_sqlite.base + "/login") as r:
        page = await r.text()
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    form = {"username": "daibieu", "password": hopso_sqlite.logins["daibieu"].password}
    async with client.session.post(hopso_sqlite.base + "/login", data={**form, "csrf_token": "x"},
                                   allow_redirects=False) as r:
        assert r.status == 403
    async with client.session.post(hopso_sqlite.base + "/login",
                                   data={**form, "csrf_token": token, "next": "//evil.example"},
                                   allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/meetings"


async def test_visitor_without_session_lands_on_login(hopso_sqlite: Harness) -> None:
    client = hopso_sqlite.anonymous()
    async with client.session.get(hopso_sqlite.base + "/", allow_redirects=False) as r:
        assert r.status == 302 and r.headers["Location"] == "/login"
    async with client.session.get(hopso_sqlite.base + "/meetings", allow_redirects=False) as r:
        assert r.status == 302 and r.headers["Location"].startswith("/login?next=/meetings")


def _token(client: Client) -> str:
    return next(c.value for c in client.session.cookie_jar if c.key == SESSION_COOKIE)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_session_cache_trusts_an_entry_for_its_ttl_only(hopso: Harness) -> None:
    db, clock = hopso.server.app[keys.DB], FakeClock()
    cache = SessionCache(ttl_s=2.0, clock=clock)
    client = await hopso.login("daibieu")
    token = _token(client)
    found = await cache.load(db, token)
    assert found is not None and found[0].username == "daibieu"
    # Ended behind the cache's back (another server process, or by hand in the database):
    async with db.session() as s:
        await s.exec(delete(AuthSession).where(col(AuthSession.user_id) == found[0].id))
    clock.now += 1.9
    assert await cache.load(db, token) is not None  # the documented trade-off: at most ttl_s
    clock.now += 0.2
    assert await cache.load(db, token) is None
    assert await cache.load(db, None) is None and await cache.load(db, "x" * 200) is None


async def test_session_cache_forgets_at_once_and_refuses_expired_sessions(hopso: Harness) -> None:
    db, clock = hopso.server.app[keys.DB], FakeClock()
    cache = SessionCache(ttl_s=60.0, clock=clock)
    first, second = await hopso.login("daibieu"), await hopso.login("daibieu")
    thuky = await hopso.login("thuky")
    for c in (first, second, thuky):
        assert await cache.load(db, _token(c)) is not None
    await end_session(db, _token(first))
    cache.forget_token(_token(first))
    assert await cache.load(db, _token(first)) is None
    assert first.user is not None
    async with db.session() as s:
        await end_all_sessions(s, first.user["id"])
    cache.forget_user(first.user["id"])
    assert await cache.load(db, _token(second)) is None
    assert await cache.load(db, _token(thuky)) is not None  # someone else's stays cached
    # A session that expires is refused at once, even while its entry is fresh.
    expiring = await hopso.login("chutri")
    async with db.session() as s:
        await s.exec(update(AuthSession).where(col(AuthSession.user_id) == expiring.user["id"])  # type: ignore[call-overload]
                     .values(expires_at=utcnow() + timedelta(seconds=0.5)))
    assert await cache.load(db, _token(expiring)) is not None
    await asyncio.sleep(0.6)
    assert await cache.load(db, _token(expiring)) is None


async def test_session_cache_does_not_keep_a_load_that_raced_a_logout(hopso: Harness) -> None:
    db = hopso.server.app[keys.DB]
    cache = SessionCache(ttl_s=60.0)
    token = _token(await hopso.login("daibieu"))
    loading = asyncio.ensure_future(cache.load(db, token))
    await asyncio.sleep(0)  # the load has started: it may read the row before the logout commits
    await end_session(db, token)
    cache.forget_token(token)
    await loading
    assert await cache.load(db, token) is None


class StatementCounter:
    """Counts the SQL statements that read sessions or users on a database."""

    def __init__(self, db: Database) -> None:
        self.count = 0
        event.listen(db.engine.sync_engine, "before_cursor_execute", self._seen)
        self.engine = db.engine.sync_engine

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "authsession" in statement.lower() or '"user"' in statement.lower():
            self.count += 1

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)


async def test_a_session_load_is_one_query_and_concurrent_loads_share_it(hopso: Harness) -> None:
    db = hopso.server.app[keys.DB]
    token = _token(await hopso.login("daibieu"))
    counter = StatementCounter(db)
    try:
        assert await load_session(db, token) is not None
        assert counter.count == 1  # the session and its user in one query
        counter.count = 0
        cache = SessionCache(ttl_s=60.0)
        found = await asyncio.gather(*(cache.load(db, token) for _ in range(20)))
        assert all(f is not None and f[0].username == "daibieu" for f in found)
        assert counter.count == 1
    finally:
        counter.close()


async def test_session_refresh_renews_unchanged_entries_and_drops_ended_ones(
        hopso: Harness) -> None:
    db, clock = hopso.server.app[keys.DB], FakeClock()
    cache = SessionCache(ttl_s=2.0, clock=clock)
    kept, ended = await hopso.login("daibieu"), await hopso.login("thuky")
    for c in (kept, ended):
        assert await cache.load(db, _token(c)) is not None
    assert ended.user is not None
    async with db.session() as s:  # ended behind the cache's back (another process)
        await end_all_sessions(s, ended.user["id"])
    clock.now += 1.5
    await cache.refresh(db)
    # Refused at once, not when the entry would have expired:
    assert await cache.load(db, _token(ended)) is None
    counter = StatementCounter(db)
    try:
        clock.now += 1.0  # 2.5 s after the load, 1.0 s after the refresh
        assert await cache.load(db, _token(kept)) is not None
        assert counter.count == 0  # answered from the renewed entry: the event did not wait
    finally:
        counter.close()
    # The promise still holds: a renewed entry is trusted ttl_s from the read that renewed it.
    assert kept.user is not None
    async with db.session() as s:
        await end_all_sessions(s, kept.user["id"])
    clock.now += 0.9
    assert await cache.load(db, _token(kept)) is not None
    clock.now += 0.2
    assert await cache.load(db, _token(kept)) is None


async def test_session_refresh_sees_a_changed_user_and_lets_idle_entries_go(
        hopso: Harness) -> None:
    db, clock = hopso.server.app[keys.DB], FakeClock()
    cache = SessionCache(ttl_s=2.0, clock=clock, idle_s=30.0)
    client = await hopso.login("daibieu")
    assert client.user is not None
    assert await cache.load(db, _token(client)) is not None
    async with db.session() as s:
        await s.exec(update(User).where(col(User.id) == client.user["id"])  # type: ignore[call-overload]
                     .values(full_name="Đổi tên"))
    clock.now += 1.5
    await cache.refresh(db)
    found = await cache.load(db, _token(client))
    assert found is not None and found[0].full_name == "Đổi tên"  # reloaded, not renewed
    counter = StatementCounter(db)
    try:
        clock.now += 31  # unused for longer than idle_s: no longer refreshed, then dropped
        await cache.refresh(db)
        assert counter.count == 0
    finally:
        counter.close()
    assert cache._entries == {}


async def test_the_app_refreshes_its_socket_session_cache_in_the_background(
        hopso_sqlite: Harness) -> None:
    app = hopso_sqlite.server.app
    db, cache = app[keys.DB], app[SESSION_CACHE]
    token = _token(await hopso_sqlite.login("daibieu"))
    assert await cache.load(db, token) is not None
    await asyncio.sleep(cache.ttl_s * 1.5)  # a quiet delegate, longer than the TTL
    counter = StatementCounter(db)
    try:
        assert await cache.load(db, token) is not None
        assert counter.count == 0
    finally:
        counter.close()


async def test_a_busy_pool_skips_a_session_refresh_with_one_line_and_no_traceback(
        hopso_sqlite: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """A refresh that finds every connection taken is an expected condition (events then
    load their sessions themselves): one warning line, no traceback, then quiet."""
    app = hopso_sqlite.server.app
    db, cache = app[keys.DB], app[SESSION_CACHE]
    token = _token(await hopso_sqlite.login("daibieu"))
    assert await cache.load(db, token) is not None
    engine = db.engine
    engine.pool._timeout = 0.2  # type: ignore[attr-defined]  # not 30 s: the test waits for it
    held = []
    try:
        while True:  # check out every connection the pool will give
            try:
                held.append(await asyncio.wait_for(engine.connect(), 1))
            except (PoolTimeout, TimeoutError):
                break
        await asyncio.sleep(cache.ttl_s * 1.5)  # refreshes come due and find no connection
    finally:
        for conn in held:
            await conn.close()
    refresh = [r for r in caplog.records if r.name == "server.core.auth"]
    assert [r.getMessage() for r in refresh] == [
        "session refresh skipped: no database connection free (pool busy); "
        "events load their sessions themselves meanwhile"]
    assert not [r for r in caplog.records if r.exc_info]
