import asyncio
from datetime import timedelta

from sqlmodel import col, delete, update

from rooms.models import AuthSession, utcnow
from server import keys
from server.auth import SESSION_COOKIE, SessionCache, end_all_sessions, end_session
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
    status, body = await client.call("POST", "/api/login", {
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
