"""What a tablet polling its meeting's documents costs a node (issue 13), and that nothing of
it outlives a change of access.

The document list is two reads (the caller's session, person and meeting access in one; the
documents with their versions in one) and a page image one (session, access, document and
version); the list carries an ETag, so a tablet asking again with it gets a 304 built from
those reads without the body. Nothing is kept between requests: a logout, an expired or
disabled session, a person removed from the meeting, a document withdrawn or made
confidential takes effect at the very next request.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlmodel import col, select, update

from rooms.models import AuthSession, User, utcnow
from server.core import keys
from server.core.auth import OWN_SESSION, SESSION_COOKIE
from tests.conftest import Client, Harness
from tests.server.documents_support import demo_meeting_id, make_pdf, upload, upload_ready
from tests.sql_statements import COMMIT, Statements, statements


def _reads(seen: Statements) -> list[str]:
    """The request's statements, without the access log's batched rows (written by a
    background flush every second, whenever it falls)."""
    return [s for s in seen if s != COMMIT and "documentaccess" not in s.lower()]


async def _get(client: Client, path: str, **headers: str) -> tuple[int, bytes, Any]:
    async with client.session.get(client.base + path, headers=headers) as r:
        return r.status, await r.read(), r.headers


async def _listed(client: Client, meeting_id: int) -> tuple[str, list[dict[str, Any]]]:
    status, body, headers = await _get(client, f"/api/meetings/{meeting_id}/documents")
    assert status == 200, body
    groups = json.loads(body)["groups"]
    return headers["ETag"], [d for g in groups for d in g["documents"]]


async def _meeting_with_document(hopso: Harness, tmp_path: Path) -> tuple[int, int]:
    meeting_id = await demo_meeting_id(hopso)
    doc = await upload_ready(hopso, meeting_id, make_pdf(tmp_path, pages=2))
    return meeting_id, doc["id"]


async def test_the_document_list_is_two_reads_and_a_page_image_one(
        hopso: Harness, tmp_path: Path) -> None:
    """Before: the session read by the middleware, then the meeting, the person's role, the
    documents and their versions (5 reads); a page: session, document access, version (3)."""
    meeting_id, doc_id = await _meeting_with_document(hopso, tmp_path)
    db = hopso.server.app[keys.DB]
    for name in ("daibieu", "thuky", "kythuat"):  # a delegate, a manager, a site's operator
        client = await hopso.login(name)
        await _get(client, f"/api/meetings/{meeting_id}/documents")  # statement caches warm
        with statements(db) as seen:
            status, _, _ = await _get(client, f"/api/meetings/{meeting_id}/documents")
        assert status == 200
        assert len(_reads(seen)) == 2, (name, seen)
        assert all(s.lstrip().upper().startswith("SELECT") for s in _reads(seen)), seen
        with statements(db) as seen:
            status, body, _ = await _get(client, f"/api/documents/{doc_id}/pages/0")
        assert status == 200 and body[:2] == b"\xff\xd8"
        assert len(_reads(seen)) == 1, (name, seen)


async def test_the_list_answers_304_to_its_etag_until_what_the_caller_sees_changes(
        hopso: Harness, tmp_path: Path) -> None:
    meeting_id, doc_id = await _meeting_with_document(hopso, tmp_path)
    db = hopso.server.app[keys.DB]
    delegate, secretary = await hopso.login("daibieu"), await hopso.login("thuky")
    path = f"/api/meetings/{meeting_id}/documents"
    status, _, headers = await _get(delegate, path)
    assert status == 200 and headers["Cache-Control"] == "private, no-cache"
    etag = headers["ETag"]
    with statements(db) as seen:
        status, body, headers = await _get(delegate, path, **{"If-None-Match": etag})
    assert (status, body, headers["ETag"]) == (304, b"", etag)
    assert len(_reads(seen)) == 2, seen
    assert (await _get(delegate, path, **{"If-None-Match": '"other"'}))[0] == 200

    # Each change the delegate would see makes a new ETag.
    tags = {etag}
    for change in ({"title": "Tờ trình số 2"}, {"confidential": True},
                   {"confidential": False}):
        status, _ = await secretary.call("PATCH", f"/api/documents/{doc_id}", change)
        assert status == 200
        status, _, headers = await _get(delegate, path, **{"If-None-Match": etag})
        assert status == 200 and headers["ETag"] not in tags, change
        etag = headers["ETag"]
        tags.add(etag)
    # A new upload is the manager's news only, until it is published.
    manager_etag, _ = await _listed(secretary, meeting_id)
    assert manager_etag == etag  # the same documents
    status, new = await upload(secretary, meeting_id, make_pdf(tmp_path, 1, "b.pdf"), "b.pdf")
    assert status == 202, new
    assert (await _get(delegate, path, **{"If-None-Match": etag}))[0] == 304
    assert (await _get(secretary, path, **{"If-None-Match": manager_etag}))[0] == 200


async def test_a_withdrawn_or_confidential_document_changes_the_next_answer(
        hopso: Harness, tmp_path: Path) -> None:
    meeting_id, doc_id = await _meeting_with_document(hopso, tmp_path)
    delegate, secretary = await hopso.login("daibieu"), await hopso.login("thuky")
    etag, docs = await _listed(delegate, meeting_id)
    assert [d["id"] for d in docs] == [doc_id]
    page = f"/api/documents/{doc_id}/pages/0"
    status, _, headers = await _get(delegate, page)
    assert status == 200 and headers["Cache-Control"] == "private, no-cache"

    status, _ = await secretary.call("PATCH", f"/api/documents/{doc_id}", {"confidential": True})
    assert status == 200
    status, _, headers = await _get(delegate, page, **{"If-None-Match": headers["ETag"]})
    assert status == 200 and headers["Cache-Control"] == "no-store"  # watermarked for them
    assert headers["Hopso-Confidential"] == "1"

    status, _ = await secretary.call("POST", f"/api/documents/{doc_id}/publish",
                                     {"published": False})
    assert status == 200
    status, body, _ = await _get(delegate, f"/api/meetings/{meeting_id}/documents",
                                 **{"If-None-Match": etag})
    assert status == 200 and json.loads(body)["groups"] == []
    assert (await _get(delegate, page))[0] == 404


async def test_a_logout_or_a_removal_from_the_meeting_counts_at_the_next_request(
        hopso: Harness, tmp_path: Path) -> None:
    meeting_id, doc_id = await _meeting_with_document(hopso, tmp_path)
    delegate, secretary = await hopso.login("daibieu"), await hopso.login("thuky")
    path, page = f"/api/meetings/{meeting_id}/documents", f"/api/documents/{doc_id}/pages/0"
    etag, _ = await _listed(delegate, meeting_id)

    _, members = await secretary.call("GET", f"/api/meetings/{meeting_id}/members")
    mine = next(m for m in members["members"] if m["user_id"] == delegate.user["id"])
    status, _ = await secretary.call("DELETE", f"/api/meetings/{meeting_id}/members/{mine['id']}")
    assert status == 200
    assert (await _get(delegate, path, **{"If-None-Match": etag}))[0] == 404
    assert (await _get(delegate, page))[0] == 404

    etag, _ = await _listed(secretary, meeting_id)
    status, _ = await secretary.call("POST", "/logout")
    assert status == 200
    assert (await _get(secretary, path, **{"If-None-Match": etag}))[0] == 401
    assert (await _get(secretary, page))[0] == 401


async def test_an_expired_or_disabled_session_is_refused_at_the_next_request(
        hopso: Harness, tmp_path: Path) -> None:
    meeting_id, doc_id = await _meeting_with_document(hopso, tmp_path)
    db = hopso.server.app[keys.DB]
    path, page = f"/api/meetings/{meeting_id}/documents", f"/api/documents/{doc_id}/pages/0"
    delegate, operator = await hopso.login("daibieu"), await hopso.login("kythuat")
    etag, _ = await _listed(delegate, meeting_id)
    assert (await _get(operator, page))[0] == 200

    async with db.session() as s:
        await s.exec(update(AuthSession).where(  # type: ignore[call-overload]
            col(AuthSession.user_id) == delegate.user["id"])
            .values(expires_at=utcnow() - timedelta(seconds=1)))
        await s.exec(update(User).where(  # type: ignore[call-overload]
            col(User.id) == operator.user["id"]).values(disabled=True))
    assert (await _get(delegate, path, **{"If-None-Match": etag}))[0] == 401
    assert (await _get(delegate, page))[0] == 401
    async with db.session() as s:  # the expired session is deleted, as by the middleware
        left = await s.exec(select(AuthSession).where(
            AuthSession.user_id == delegate.user["id"]))
        assert left.all() == []
    assert (await _get(operator, path))[0] == 401
    assert (await _get(operator, page))[0] == 401


async def test_outsiders_and_strangers_get_what_they_got_before(
        hopso: Harness, tmp_path: Path) -> None:
    """No session: 401; not a member (an administrator): 404; another meeting or document
    id, a malformed version: 404; an unpublished document, to a delegate: 404."""
    meeting_id, doc_id = await _meeting_with_document(hopso, tmp_path)
    anonymous, admin = hopso.anonymous(), await hopso.login("quantri")
    delegate, secretary = await hopso.login("daibieu"), await hopso.login("thuky")
    path, page = f"/api/meetings/{meeting_id}/documents", f"/api/documents/{doc_id}/pages/0"
    assert (await _get(anonymous, path))[0] == 401
    assert (await _get(anonymous, page))[0] == 401
    assert (await _get(admin, path))[0] == 404
    assert (await _get(admin, page))[0] == 404
    assert (await _get(delegate, f"/api/meetings/{meeting_id + 999}/documents"))[0] == 404
    assert (await _get(delegate, f"/api/documents/{doc_id + 999}/pages/0"))[0] == 404
    assert (await _get(delegate, page + "?version=x"))[0] == 404
    assert (await _get(delegate, page + "?version=2"))[0] == 404
    assert (await _get(delegate, page + "?version=1"))[0] == 200
    status, new = await upload(secretary, meeting_id, make_pdf(tmp_path, 1, "c.pdf"), "c.pdf")
    assert status == 202, new
    assert (await _get(delegate, f"/api/documents/{new['id']}/pages/0"))[0] == 404
    assert (await _get(secretary, f"/api/documents/{new['id']}"))[0] == 200


async def test_every_route_that_reads_its_own_session_refuses_a_request_without_one(
        hopso: Harness, tmp_path: Path) -> None:
    """The middleware does not read the session for these routes: each must refuse a caller
    without a session (or with an unknown one) itself, before anything of the meeting."""
    meeting_id, doc_id = await _meeting_with_document(hopso, tmp_path)
    marked = sorted({r.resource.canonical for r in hopso.server.app.router.routes()
                     if r.resource is not None and getattr(r.handler, OWN_SESSION, False)})
    assert len(marked) == 7, marked
    stranger = hopso.anonymous()
    stranger.session.cookie_jar.update_cookies({SESSION_COOKIE: "not-a-session"})
    for canonical in marked:
        path = (canonical.replace("{meeting_id}", str(meeting_id))
                .replace("{document_id}", str(doc_id)).replace("{page}", "0") + "?q=a")
        for client in (hopso.anonymous(), stranger):
            for method in ("GET", "HEAD"):
                async with client.session.request(method, client.base + path) as r:
                    assert r.status == 401, (method, path)
