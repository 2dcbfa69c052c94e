"""Health for operators and load balancers: liveness and readiness (docs/operations.md, "Health").

Liveness (`/healthz/live`, `/healthz?probe=live`): the process answers HTTP, nothing else is
asked, so a supervisor restarts only a process that is stuck, never one whose database is
away. Readiness (`/healthz`, `/healthz/ready`): every check registered here passes, so a
load balancer sends people only to a process that can serve them. Core registers the
database, Redis (when configured) and free disk space; a feature adds its own (the documents
feature: its worker pool) through app[keys.HEALTH].
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from redis import asyncio as aioredis

from server.core import keys
from server.core.middleware import error_response

CHECK_TIMEOUT_S = 2.0  # a check slower than this fails: a probe must answer quickly


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    reason: str = ""  # one line saying what is wrong (empty when ok)
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, **self.detail}
        if self.reason:
            out["reason"] = self.reason
        return out


Check = Callable[[], Awaitable[CheckResult]]


class Health:
    """The readiness checks of one process, by name, run concurrently on each probe."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        if name in self._checks:
            raise ValueError(f"health check {name!r} registered twice")
        self._checks[name] = check

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._checks)

    async def ready(self) -> tuple[bool, dict[str, CheckResult]]:
        names = list(self._checks)
        results = await asyncio.gather(*(_bounded(name, self._checks[name]) for name in names))
        outcome = dict(zip(names, results))
        return all(r.ok for r in results), outcome


async def _bounded(name: str, check: Check) -> CheckResult:
    try:
        return await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
    except TimeoutError:
        return CheckResult(False, f"{name}: no answer within {CHECK_TIMEOUT_S:g} s")
    except Exception as exc:  # noqa: BLE001 - a failing check is a failed probe, not a 500
        return CheckResult(False, f"{name}: {type(exc).__name__}")


def database_check(app: web.Application) -> Check:
    async def check() -> CheckResult:
        started = time.perf_counter()
        if await app[keys.DB].ping():
            return CheckResult(True, detail={"ms": round((time.perf_counter() - started) * 1000, 1)})
        return CheckResult(False, "database unreachable")
    return check


class RedisCheck:
    """PING on a connection of its own (the login limiter's and socket.io's fall back or retry
    quietly; readiness must say so). Opened on the first probe, closed with the app."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._redis: aioredis.Redis | None = None

    async def __call__(self) -> CheckResult:
        if self._redis is None:
            self._redis = aioredis.Redis.from_url(self._url, socket_timeout=1.5,
                                                  socket_connect_timeout=1.5)
        try:
            await self._redis.ping()
        except (aioredis.RedisError, OSError) as exc:
            return CheckResult(False, f"redis unreachable ({type(exc).__name__})")
        return CheckResult(True)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


def disk_check(places: dict[str, Path], min_free_mb: int) -> Check:
    """Free space where the server writes: the data directory (SQLite, its write-ahead log),
    the document store (uploads, rendered pages, exports) and the recordings (a chair's
    recording writes there for hours; docs/media.md), each of which may be a disk of its own
    (a mount or a symbolic link). A place not made yet is measured at its nearest existing
    parent."""
    async def check() -> CheckResult:
        detail: dict[str, Any] = {"min_free_mb": min_free_mb}
        low: list[str] = []
        for name, path in places.items():
            free_mb = shutil.disk_usage(_existing(path)).free // (1024 * 1024)
            detail[f"{name}_free_mb"] = free_mb
            if free_mb < min_free_mb:
                low.append(f"{name} {free_mb} MB")
        if low:
            return CheckResult(False, f"disk space low: {', '.join(low)} free, "
                                      f"below {min_free_mb} MB", detail)
        return CheckResult(True, detail=detail)
    return check


def _existing(path: Path) -> Path:
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def install_core_checks(app: web.Application) -> None:
    """The checks core owns; called by the app factory before the features add theirs."""
    settings = app[keys.SETTINGS]
    health = app[keys.HEALTH]
    health.add("database", database_check(app))
    if settings.redis_url:
        redis = RedisCheck(settings.redis_url)
        health.add("redis", redis)

        async def close_redis(_app: web.Application) -> AsyncIterator[None]:
            yield
            await redis.close()
        app.cleanup_ctx.append(close_redis)
    health.add("disk", disk_check({"data": settings.data_dir,
                                   "documents": settings.data_dir / "documents",
                                   "recordings": settings.data_dir / "recordings"},
                                  settings.min_free_disk_mb))


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz[?probe=live|ready], /healthz/live, /healthz/ready."""
    probe = request.match_info.get("probe") or request.query.get("probe", "ready")
    if probe == "live":
        return web.json_response({"status": "ok", "probe": "live"},
                                 headers={"Cache-Control": "no-store"})
    if probe != "ready":
        return error_response(400, "bad_request", "probe must be live or ready")
    ok, results = await request.app[keys.HEALTH].ready()
    body: dict[str, Any] = {
        "status": "ok" if ok else "unavailable", "probe": "ready",
        # Kept from the first /healthz: clients that read these two go on working.
        "database": results["database"].ok if "database" in results else None,
        "redis": bool(request.app[keys.SETTINGS].redis_url),
        "checks": {name: result.to_json() for name, result in results.items()},
    }
    if not ok:
        body["reason"] = "; ".join(r.reason for r in results.values() if not r.ok)
    return web.json_response(body, status=200 if ok else 503,
                             headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/healthz/{probe:live|ready}", healthz)
