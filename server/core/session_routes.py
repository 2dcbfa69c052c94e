"""Login and logout, as a form (browsers) and as JSON (API clients and tests)."""

from __future__ import annotations

import re
import secrets
from urllib.parse import urlsplit

import aiohttp_jinja2
from aiohttp import web

from rooms.errors import NotAuthenticated
from rooms.users import user_dict
from server.core import keys
from server.core.auth import (
    AUTH,
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    USER,
    check_login,
    create_session,
    current_user,
    end_session,
    forget_sessions,
    login_csrf_ok,
    set_session_cookie,
)
from server.core.http_util import Body, read_body, read_form
from server.core.i18n import LANG
from server.core.login_limit import LoginThrottled
from server.core.middleware import error_response
from server.core.passwords import PasswordsBusy

routes = web.RouteTableDef()
# Logout drops the browser's HTTP cache of this site. Not "storage": that would also wipe the
# IndexedDB queue of annotations not yet sent (kept per user, sent at their next login) and
# the ballot receipts; sw.js empties its own caches when it sees the logout go by.
CLEAR_ON_LOGOUT = {"Clear-Site-Data": '"cache"'}


class Credentials(Body):
    username: str
    password: str


HOME = "/meetings"
# What `next` may contain: RFC 3986's unreserved, sub-delims, ":", "@", "/", "?", "#" and "%"
# escapes. No spaces, controls, backslashes or non-ASCII: browsers drop tabs and newlines,
# strip leading controls and read "\" as "/" before resolving a Location, which is how
# "/\t/evil.example" became "//evil.example" (issue 11, finding 6). Whatever needs that
# normalisation is refused rather than normalised by us.
_NEXT = re.compile(r"/(?![/\\])[A-Za-z0-9\-._~!$&'()*+,;=:@/?#%]{0,2000}")


def safe_next(value: str | None) -> str:
    """Where to go after logging in: `value` if it is a path on this site, else HOME. Never
    an open redirect: the allow-list leaves only a path-absolute reference (a single "/"
    followed by no "/"), which every browser resolves against this origin."""
    if value and _NEXT.fullmatch(value):
        parts = urlsplit(value)
        if not parts.scheme and not parts.netloc and parts.path.startswith("/"):
            return value
    return HOME


def _retry_after(exc: LoginThrottled | PasswordsBusy) -> int:
    return exc.retry_after if isinstance(exc, LoginThrottled) else 1


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    raise web.HTTPFound(HOME if request.get(USER) else "/login")


def _login_page(request: web.Request, error: str | None = None, status: int = 200,
                next_path: str | None = None, username: str = "") -> web.Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    next_path = safe_next(next_path if next_path is not None else request.query.get("next"))
    # A refused login keeps the username typed (only the password is retyped).
    response = aiohttp_jinja2.render_template(
        "login.html", request, {"csrf": token, "error": error, "next": next_path,
                                "username": username[:200]}, status=status)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="Strict", path="/",
                        secure=request.app[keys.SETTINGS].secure_cookies)
    return response


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    if request.get(USER):
        raise web.HTTPFound(safe_next(request.query.get("next")))
    return _login_page(request)


@routes.post("/login")
async def login_form(request: web.Request) -> web.Response:
    form = await read_form(request)
    translate = request.app[keys.TRANSLATOR].gettext(request[LANG])
    next_path = str(form.get("next", ""))
    username = str(form.get("username", ""))
    if not login_csrf_ok(request, str(form.get(CSRF_FIELD, ""))):
        return _login_page(request, translate("Your login form expired; please try again."), 403,
                           next_path, username)
    try:
        user = await check_login(request, username, str(form.get("password", "")))
    except NotAuthenticated:
        return _login_page(request, translate("Wrong username or password."), 401, next_path,
                           username)
    except (LoginThrottled, PasswordsBusy) as exc:
        text = ("Too many failed logins; wait a few minutes." if exc.code == "too_many_attempts"
                else "Too many requests; wait a moment.")
        page = _login_page(request, translate(text), exc.status, next_path, username)
        page.headers["Retry-After"] = str(_retry_after(exc))
        return page
    token, _ = await create_session(request.app[keys.DB], user,
                                    request.app[keys.SETTINGS].session_ttl_s)
    response = web.HTTPSeeOther(safe_next(next_path))
    set_session_cookie(request, response, token)
    raise response


@routes.post("/api/login")
async def login_json(request: web.Request) -> web.Response:
    body = await read_body(request, Credentials)
    try:
        user = await check_login(request, body.username, body.password)
    except (LoginThrottled, PasswordsBusy) as exc:
        refused = error_response(exc.status, exc.code, exc.message)
        refused.headers["Retry-After"] = str(_retry_after(exc))
        return refused
    token, auth = await create_session(request.app[keys.DB], user,
                                       request.app[keys.SETTINGS].session_ttl_s)
    response = web.json_response({"user": user_dict(user), "csrf_token": auth.csrf_token})
    set_session_cookie(request, response, token)
    return response


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await end_session(request.app[keys.DB], token)
        forget_sessions(request.app, token=token)  # its sockets stop working at once
    if "application/json" in request.headers.get("Accept", ""):
        response = web.json_response({"logged_out": True}, headers=CLEAR_ON_LOGOUT)
        response.del_cookie(SESSION_COOKIE, path="/")
        return response
    redirect = web.HTTPSeeOther("/login", headers=CLEAR_ON_LOGOUT)
    redirect.del_cookie(SESSION_COOKIE, path="/")
    raise redirect


@routes.get("/api/session")
async def session_info(request: web.Request) -> web.Response:
    user = current_user(request)
    return web.json_response({"user": user_dict(user), "csrf_token": request[AUTH].csrf_token,
                              "lang": request[LANG]})
