"""Signed vote results, and checking any signed file a member holds.

A closed vote's result is typeset (documents/vote_result.py, in the minutes' one PyMuPDF
thread) and signed by the meeting's chair with the same service as the minutes
(documents/signing.py, in the signing thread; key and checks as for the minutes). The signed
file is not stored: its sha256 goes into the audit chain (`vote_result_signed`), which is
what a holder of the file checks it against later with `POST …/signatures/verify`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

from aiohttp import web
from sqlmodel.ext.asyncio.session import AsyncSession

from documents import signing
from rooms import audit, meetings
from rooms import minutes_signing as review
from rooms.errors import Forbidden, Invalid
from rooms.meetings import MeetingAccess
from rooms.models import MeetingRole
from rooms.permissions import Action
from rooms.procedure_models import ProcedureState
from rooms.vote_record import VoteRecord, vote_record
from server.core import keys
from server.core.auth import current_user
from server.core.http_util import int_id, read_body
from server.procedure.keys import LIVE
from server.procedure.live import When, run_change
from server.procedure.minutes_signing import SIGNING, SignBody, SigningRefusedError, key_of
from server.procedure.views import Emit

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
_VOTE = "/api/meetings/{meeting_id}/votes/{vote_id}"


async def _render(request: web.Request, meeting_id: int, vote_id: int) -> bytes:
    async with request.app[keys.DB].session() as s:
        await meetings.require(s, current_user(request), meeting_id)
        record = await vote_record(s, meeting_id, vote_id)
    return await asyncio.get_running_loop().run_in_executor(request.app[LIVE].renderer,
                                                            _typeset, record)


def _typeset(record: VoteRecord) -> bytes:
    """In the renderer thread: PyMuPDF is imported there, at the first result, not by every
    server process at start (docs/architecture.md (Start-up))."""
    from documents.vote_result import render_vote_result
    return render_vote_result(record)


def _pdf(body: bytes, name: str, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="{name}"',
        "X-Content-SHA256": hashlib.sha256(body).hexdigest(), "Cache-Control": "private, no-store"})


@routes.get(_VOTE + "/result.pdf")
async def result_pdf(request: web.Request) -> web.Response:
    meeting_id, vote_id = int_id(request, "meeting_id"), int_id(request, "vote_id")
    return _pdf(await _render(request, meeting_id, vote_id),
                f"ket-qua-bieu-quyet-{meeting_id}-{vote_id}.pdf")


@routes.post(_VOTE + "/result/sign")
async def sign_result(request: web.Request) -> web.Response:
    body = await read_body(request, SignBody)
    user, meeting_id = current_user(request), int_id(request, "meeting_id")
    vote_id, state = int_id(request, "vote_id"), request.app[SIGNING]
    async with request.app[keys.DB].session() as s:  # the chair only, before any key is used
        access = await meetings.require(s, user, meeting_id)
        if access.role != MeetingRole.chair:
            raise Forbidden("only the meeting's chair signs a vote's result")
    pdf = await _render(request, meeting_id, vote_id)
    key = key_of(body, user.username, state)
    try:
        signed = await asyncio.get_running_loop().run_in_executor(
            state.pool, lambda: signing.sign_pdf(pdf, key, field_name="ChuTri",
                                                 anchors=state.anchors,
                                                 reason="Chủ trì xác nhận kết quả biểu quyết"))
    except signing.SigningRefused as exc:
        log.info("vote %s result: %s's signature refused: %s", vote_id, user.username, exc.code)
        raise SigningRefusedError(exc.message, code=exc.code) from None
    checked = await asyncio.to_thread(signing.verify_pdf, signed, state.anchors)
    if not checked.intact:
        raise SigningRefusedError("the signed file did not verify", code="signing_failed")
    mine = checked.signatures[-1]

    async def change(s: AsyncSession, a: MeetingAccess, st: ProcedureState
                     ) -> tuple[None, list[Emit]]:
        await audit.record(s, meeting_id, a.user.id, "vote_result_signed",
                           {"vote_id": vote_id, "signer": mine.signer,
                            "certificate_sha256": mine.certificate_sha256,
                            "sha256": hashlib.sha256(signed).hexdigest(), "key": body.key})
        return None, []
    await run_change(request.app, user, meeting_id, Action.view, change, when=When.any)
    return _pdf(signed, f"ket-qua-bieu-quyet-{meeting_id}-{vote_id}-da-ky.pdf", status=201)


@routes.post("/api/meetings/{meeting_id}/signatures/verify")
async def verify(request: web.Request) -> web.Response:
    """Check a signed PDF a member holds: its signatures, and whether this meeting's audit
    chain recorded a file with exactly these bytes."""
    meeting_id = int_id(request, "meeting_id")
    async with request.app[keys.DB].session() as s:
        await meetings.require(s, current_user(request), meeting_id)
    if request.content_type != "application/pdf":
        raise Invalid("send the file as application/pdf", code="bad_content_type")
    data = await request.read()
    checked = await asyncio.to_thread(signing.verify_pdf, data, request.app[SIGNING].anchors)
    digest = hashlib.sha256(data).hexdigest()
    async with request.app[keys.DB].session() as s:
        audited = await review.audited_signatures(s, meeting_id, digest)
    result: dict[str, Any] = {**checked.as_dict(), "sha256": digest, "audited": audited}
    return web.json_response(result)
