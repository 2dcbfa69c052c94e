"""Login and logout, as a form (browsers) and as JSON (API clients and tests)."""

from __future__ import annotations

import secrets

import aiohttp_jinja2
from aiohttp import web

from rooms.errors import NotAuthenticated
from rooms.users import user_dict
from server import keys
from server.auth import (AUTH, CSRF_FIELD, LOGIN_CSRF_COOKIE, SESSION_COOKIE, USER, check_login,
                         create_session, current_user, end_session, forget_sessions, login_csrf_ok,
                         set_session_cookie)
from server.http_util import Body, read_body, read_form
from server.i18n import LANG

routes = web.RouteTableDef()
# Logout drops the browser's HTTP cache of this site. Not "storage": that would also wipe the
# IndexedDB queue of annotations not yet sent (kept per user, sent at their next login) and
# the ballot receipts; sw.js empties its own caches when it sees the logout go by.
CLEAR_ON_LOGOUT = {"Clear-Site-Data": '"cache"'}


class Credentials(Body):
    username: str
    password: str


def _safe_next(value: str | None) -> str:
    # Only local paths: never an open redirect to another site.
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/meetings"


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    raise web.HTTPFound("/meetings" if request.get(USER) else "/login")


def _login_page(request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = aiohttp_jinja2.render_template(
        "login.html", request, {"csrf": token, "error": error,
                                "next": _safe_next(request.query.get("next"))}, status=status)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="Strict", path="/",
                        secure=request.app[keys.SETTINGS].secure_cookies)
    return response


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    if request.get(USER):
        raise web.HTTPFound(_safe_next(request.query.get("next")))
    return _login_page(request)


@routes.post("/login")
async def login_form(request: web.Request) -> web.Response:
    form = await read_form(request)
    translate = request.app[keys.TRANSLATOR].gettext(request[LANG])
    if not login_csrf_ok(request, str(form.get(CSRF_FIELD, ""))):
        return _login_page(request, translate("Your login form expired; please try again."), 403)
    try:
        user = await check_login(request, str(form.get("username", "")),
                                 str(form.get("password", "")))
    except NotAuthenticated:
        return _login_page(request, translate("Wrong username or password."), 401)
    except web.HTTPTooManyRequests:
        return _login_page(request, translate("Too many failed logins; wait a few minutes."), 429)
    token, _ = await create_session(request.app[keys.DB], user,
                                    request.app[keys.SETTINGS].session_ttl_s)
    response = web.HTTPSeeOther(_safe_next(str(form.get("next", ""))))
    set_session_cookie(request, response, token)
    raise response


@routes.post("/api/login")
async def login_json(request: web.Request) -> web.Response:
    body = await read_body(request, Credentials)
    user = await check_login(request, body.username, body.password)
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
