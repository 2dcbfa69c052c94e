"""Signed minutes over HTTP: submit (secretary), approve (chair), sign (each), verify.

The review's rules are rooms/minutes_signing.py's; the signature itself is
documents/signing.py's, run in this process's one signing thread: a PKCS#11 module and its
sessions belong to the process that opened them (never the documents worker pool),
and one thread keeps a token's sessions one at a time. Verifying reads no key and runs in
any thread. A sign request is checked (role, stage, newest version) before the key is
touched, and again under the meeting's lock before the signed file is kept.

The trust anchors (--signing-ca) are read at start-up; with --demo and none configured, a
TEST CA and two PKCS#12 signers are made once under <data dir>/signing-demo/.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web
from pydantic import Field
from sqlmodel.ext.asyncio.session import AsyncSession

from documents import signing, signing_testca
from rooms import meetings
from rooms import minutes_signing as review
from rooms.errors import DomainError, Forbidden, Invalid
from rooms.meetings import MeetingAccess
from rooms.models import MeetingRole
from rooms.permissions import Action
from rooms.procedure_models import ProcedureState
from server.core import keys
from server.core.auth import current_user
from server.core.http_util import Body, int_id, read_body
from server.procedure.live import When, run_change
from server.procedure.views import Emit

if TYPE_CHECKING:
    from asn1crypto import x509 as asn1_x509

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
_BASE = "/api/meetings/{meeting_id}/minutes/{version:[0-9]{1,9}}"
DEMO_SIGNERS = ("Chủ trì (demo)", "Thư ký (demo)")
VERIFIED_KEPT = 256


class SigningRefusedError(DomainError):
    code, status = "signing_refused", 422


@dataclass
class MinutesSigning:
    """Per app: the trust anchors, the token to sign with, the signing thread."""

    anchors: list[asn1_x509.Certificate] = field(default_factory=list)
    token_module: Path | None = None
    token_label: str | None = None
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="signing"))
    # Verifications by the sha256 of the file: a review push makes every member's screen
    # ask at once (500 tablets: one check, not 500). Same bytes, same anchors, same answer
    # (checked at the signing time the file reports).
    _verified: OrderedDict[str, asyncio.Future[signing.Verification]] = field(
        default_factory=OrderedDict)

    async def verify(self, pdf: bytes) -> signing.Verification:
        digest = hashlib.sha256(pdf).hexdigest()
        found = self._verified.get(digest)
        if found is None:
            found = asyncio.ensure_future(asyncio.to_thread(signing.verify_pdf, pdf,
                                                            self.anchors))
            self._verified[digest] = found
            while len(self._verified) > VERIFIED_KEPT:
                self._verified.popitem(last=False)
        else:
            self._verified.move_to_end(digest)
        return await asyncio.shield(found)


SIGNING: web.AppKey[MinutesSigning] = web.AppKey("minutes_signing", MinutesSigning)


class SignBody(Body):
    key: Literal["pkcs12", "pkcs11"]
    pkcs12: str = Field(default="", max_length=400_000)  # base64 of the .p12/.pfx file
    password: str = Field(default="", max_length=1000, repr=False)
    key_label: str = Field(default="", max_length=200)  # on the token; default: your login
    pin: str = Field(default="", max_length=200, repr=False)


def _demo_anchor(data_dir: Path) -> Path:
    out = data_dir / "signing-demo"
    if not (out / "ca.pem").exists():
        made = signing_testca.write_demo(out, list(DEMO_SIGNERS))
        for who, (path, _) in made.items():
            log.warning("demo signing key for %s: %s (password in %s; TEST CA, not real)",
                        who, path, out / "passwords.txt")
    return out / "ca.pem"


async def _start(app: web.Application) -> None:
    settings, state = app[keys.SETTINGS], app[SIGNING]
    anchor = settings.signing_ca
    if anchor is None and settings.demo:
        anchor = await asyncio.to_thread(_demo_anchor, settings.data_dir)
    if anchor is not None:
        state.anchors = await asyncio.to_thread(signing.load_trust_anchors, anchor)
    state.token_module, state.token_label = (settings.signing_pkcs11_module,
                                             settings.signing_pkcs11_token)


async def _stop(app: web.Application) -> None:
    app[SIGNING].pool.shutdown(wait=False, cancel_futures=True)


def setup(app: web.Application) -> None:
    app[SIGNING] = MinutesSigning()
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    app.add_routes(routes)


def key_of(body: SignBody, login: str, state: MinutesSigning) -> signing.Key:
    """The key a sign request names (PKCS#12 bytes, or the server's token and a label)."""
    if body.key == "pkcs12":
        try:
            data = base64.b64decode(body.pkcs12, validate=True)
        except (binascii.Error, ValueError):
            raise Invalid("pkcs12: must be the file in base64") from None
        if not data:
            raise Invalid("pkcs12: the PKCS#12 file is missing")
        return signing.Pkcs12Key(data, body.password)
    if state.token_module is None or state.token_label is None:
        raise SigningRefusedError("this server has no signing token configured",
                                  code="token_unavailable")
    return signing.TokenKey(state.token_module, state.token_label,
                            body.key_label or login, body.pin)


async def _status(app: web.Application, s: AsyncSession, meeting_id: int,
                  version: int) -> dict[str, Any]:
    """The review with each signature's verification (the last signed file, checked)."""
    info = await review.status(s, meeting_id, version)
    info["verification"] = None
    if info["signatures"]:
        row = await review.signed_file(s, meeting_id, version)
        checked = await app[SIGNING].verify(row.pdf)
        info["verification"] = checked.as_dict()
        by_field = {v.field_name: v for v in checked.signatures}
        for entry in info["signatures"]:
            found = by_field.get(entry["field"])
            entry["intact"] = bool(found and found.ok)
        info["intact"] = checked.intact
    info["url"] = f"/api/meetings/{meeting_id}/minutes/{version}/signed.pdf" \
        if info["signatures"] else None
    return info


async def _step(request: web.Request, apply: Any, role: MeetingRole, doing: str
                ) -> web.Response:
    user, meeting_id = current_user(request), int_id(request, "meeting_id")
    version = int_id(request, "version")
    async with request.app[keys.DB].session() as s:  # refused here: no lock, no write
        access = await meetings.require(s, user, meeting_id)
        if access.role != role:
            raise Forbidden(f"only the meeting's {role.value} may {doing} the minutes")

    async def change(s: AsyncSession, a: MeetingAccess, st: ProcedureState
                     ) -> tuple[dict[str, Any], list[Emit]]:
        await apply(s, a, version)
        info = await review.status(s, meeting_id, version)
        return info, [("minutes:review", {"review": info})]
    result, _ = await run_change(request.app, user, meeting_id, Action.view, change,
                                 when=When.any)
    return web.json_response(result)


@routes.post(_BASE + "/submit")
async def submit(request: web.Request) -> web.Response:
    return await _step(request, review.submit, MeetingRole.secretary, "draft")


@routes.post(_BASE + "/approve")
async def approve(request: web.Request) -> web.Response:
    return await _step(request, review.approve, MeetingRole.chair, "approve")


@routes.post(_BASE + "/sign")
async def sign(request: web.Request) -> web.Response:
    body = await read_body(request, SignBody)
    user, meeting_id = current_user(request), int_id(request, "meeting_id")
    version = int_id(request, "version")
    state = request.app[SIGNING]
    async with request.app[keys.DB].session() as s:  # who and what, before the key is used
        access = await meetings.require(s, user, meeting_id)
        role, pdf = await review.to_sign(s, access, version)
    key = key_of(body, user.username, state)
    reason = "Thư ký lập biên bản" if role is review.SignerRole.secretary \
        else "Chủ trì duyệt biên bản"
    try:
        signed = await asyncio.get_running_loop().run_in_executor(
            state.pool, lambda: signing.sign_pdf(pdf, key, field_name=review.FIELD[role],
                                                 anchors=state.anchors, reason=reason))
    except signing.SigningRefused as exc:
        log.info("minutes %s v%s: %s's signature refused: %s", meeting_id, version,
                 user.username, exc.code)
        raise SigningRefusedError(exc.message, code=exc.code) from None
    checked = await asyncio.to_thread(signing.verify_pdf, signed, state.anchors)
    mine = next((v for v in checked.signatures if v.field_name == review.FIELD[role]), None)
    if mine is None or not checked.intact:  # never keep a file that does not verify
        raise SigningRefusedError("the signed file did not verify", code="signing_failed")

    async def change(s: AsyncSession, a: MeetingAccess, st: ProcedureState
                     ) -> tuple[dict[str, Any], list[Emit]]:
        await review.record_signature(s, a, version, pdf, signed, mine.signer,
                                      mine.certificate_sha256, body.key)
        info = await review.status(s, meeting_id, version)
        return info, [("minutes:review", {"review": info})]
    result, _ = await run_change(request.app, user, meeting_id, Action.view, change,
                                 when=When.any)
    return web.json_response(result, status=201)


@routes.get(_BASE + "/signatures")
async def signatures(request: web.Request) -> web.Response:
    meeting_id, version = int_id(request, "meeting_id"), int_id(request, "version")
    async with request.app[keys.DB].session() as s:
        await meetings.require(s, current_user(request), meeting_id)
        info = await _status(request.app, s, meeting_id, version)
    return web.json_response(info)


@routes.get(_BASE + "/signed.pdf")
async def signed_pdf(request: web.Request) -> web.Response:
    meeting_id, version = int_id(request, "meeting_id"), int_id(request, "version")
    async with request.app[keys.DB].session() as s:
        await meetings.require(s, current_user(request), meeting_id)
        row = await review.signed_file(s, meeting_id, version)
    name = f"bien-ban-{meeting_id}-v{version}-da-ky.pdf"
    return web.Response(body=row.pdf, content_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="{name}"', "X-Content-SHA256": row.sha256,
        "Cache-Control": "private, no-store"})
