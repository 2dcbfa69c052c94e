"""Errors as clear JSON (or a page), security headers and request metrics."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from rooms.errors import DomainError
from server.core import keys

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "media-src 'self' blob:; connect-src 'self' ws: wss:; worker-src 'self' blob:; "
       "font-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(self), microphone=(self), display-capture=(self)",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _wants_json(request: web.Request) -> bool:
    return request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")


# The longest file name Linux allows; no id, name or file of ours comes near it. A longer
# segment would reach the static file handlers as ENAMETOOLONG (aiohttp answers that 500).
MAX_SEGMENT_BYTES = 255


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if any(len(segment.encode()) > MAX_SEGMENT_BYTES for segment in request.path.split("/")):
        return await _refusal(request, 404, "not_found", "no such path")
    try:
        return await handler(request)
    except DomainError as exc:
        if exc.status == 401 and not _wants_json(request) and request.method == "GET":
            raise web.HTTPFound(f"/login?next={quote(request.path_qs, safe='/')}") from None
        return await _refusal(request, exc.status, exc.code, exc.message)
    except json.JSONDecodeError:
        return error_response(400, "bad_json", "request body is not valid JSON")
    except web.HTTPRequestEntityTooLarge as exc:
        return await _refusal(request, 413, "too_large", exc.text or "request body too large")
    except web.HTTPException as exc:
        if exc.status >= 400 and _wants_json(request):
            code = exc.reason.lower().replace(" ", "_")
            return error_response(exc.status, code, exc.text or exc.reason)
        if exc.status >= 400 and _wants_html(request):
            return await html_error(request, exc.status, exc.reason.lower().replace(" ", "_"))
        raise
    except Exception:
        # Last resort: every input is meant to be refused above as a DomainError, so this is
        # a bug. Logged here once (with the traceback; aiohttp then sees an answer and logs
        # nothing), answered in the documented shape without internals.
        log.exception("unexpected error in %s %s", request.method, request.path[:200])
        return await _refusal(request, 500, "internal", "internal error; it has been logged")


def _wants_html(request: web.Request) -> bool:
    """A browser navigating (its Accept names text/html) outside the JSON API."""
    return (not request.path.startswith("/api/") and not _wants_json(request)
            and "text/html" in request.headers.get("Accept", ""))


async def _refusal(request: web.Request, status: int, code: str, message: str
                   ) -> web.Response:
    if _wants_html(request):
        return await html_error(request, status, code)
    return error_response(status, code, message)


async def html_error(request: web.Request, status: int, code: str) -> web.Response:
    """The error as a page in the reader's language (web_client/templates/error.html): a
    person in the Vietnamese UI never sees raw English JSON. The JSON shape stays for /api
    and for clients that ask for JSON."""
    try:
        # The template context (user, language, `_`) is made here: the refusal may come from
        # a middleware (CSRF, authentication) before aiohttp_jinja2's own made it.
        context: dict[str, Any] = {}
        for processor in request.app.get(aiohttp_jinja2.APP_CONTEXT_PROCESSORS_KEY, ()):
            context.update(await processor(request))
        context.update(status=status, code=code[:64])
        return aiohttp_jinja2.render_template("error.html", request, context, status=status)
    except Exception:  # no template environment (a bare test app) or a broken template
        log.exception("error page for %s failed", status)
        return error_response(status, code, code)


class ClientProtocolErrors(logging.Filter):
    """aiohttp logs every malformed HTTP request (a request line over 8190 bytes, a header
    that is not one) at ERROR with a traceback, before any handler runs: any client could
    fill the log with them. aiohttp has already answered 400 and the fault is the client's,
    so such a record becomes one line at INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = f"{record.msg}: malformed HTTP refused ({type(exc).__name__})"
            record.exc_info, record.exc_text = None, None
        return True


def quiet_client_protocol_errors() -> None:
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientProtocolErrors) for f in logger.filters):
        logger.addFilter(ClientProtocolErrors())


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
        _apply_headers(response)
        raise
    _apply_headers(response)
    return response


def _apply_headers(response: web.StreamResponse) -> None:
    if response.prepared:
        return
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[keys.METRICS]
    route = request.match_info.route.resource
    name = route.canonical if route is not None else "unmatched"
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics.http_requests.labels(request.method, name, str(status)).inc()
        metrics.http_seconds.labels(name).observe(time.perf_counter() - started)
