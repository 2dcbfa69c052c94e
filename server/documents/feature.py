"""The paperless documents as a feature: runtime (app[DOCUMENTS]), routes, socket events."""

from __future__ import annotations

from aiohttp import web

from server.core import keys
from server.core.feature import Feature
from server.core.health import CheckResult
from server.core.realtime import Realtime
from server.documents import pages, routes, sockets, upload, versions
from server.documents.keys import DOCUMENTS
from server.documents.runtime import create_runtime, documents_context


def setup(app: web.Application, realtime: Realtime) -> None:
    app[DOCUMENTS] = runtime = create_runtime(app)
    pool = runtime.pool

    async def workers_ready() -> CheckResult:
        """Readiness (server/core/health.py): the sandboxed rendering processes can take a job."""
        detail = {"size": pool.size, "running": pool.running_workers(), "queued": pool.queued}
        if pool.closed:
            return CheckResult(False, "document workers: pool closed", detail)
        if not pool.started:
            return CheckResult(True, detail={**detail, "idle": True})  # spawned on the first job
        if detail["running"] == 0:
            return CheckResult(False, f"document workers: none of {pool.size} running", detail)
        return CheckResult(True, detail=detail)
    app[keys.HEALTH].add("document_workers", workers_ready)
    sockets.register(realtime)
    app.add_routes(upload.routes)
    app.add_routes(routes.routes)
    app.add_routes(pages.routes)
    app.add_routes(versions.routes)


# The runtime's worker pool and background writers start after core's database (migrated:
# unfinished conversions resume from it) and close before it.
FEATURE = Feature("documents", setup, provides=(DOCUMENTS,), lifespan=documents_context)
