"""Hostile input at the REST edges (issue 11, finding 12): ids, integers, JSON bodies and
charsets a browser would never send. Each is a 4xx in the documented shape, never a 500 or a
traceback in the log, and changes nothing."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import Field

from rooms.errors import Invalid
from server.app import create_app
from server.core import http_util
from server.core.http_util import MAX_ID, parse_int
from server.core.settings import Settings
from tests.conftest import Client, Harness
from tests.server.documents_support import demo_meeting_id, make_pdf, upload_ready


def assert_error(status: int, body: Any, expected: int, code: str | None = None) -> None:
    assert status == expected, (status, body)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)
    if code is not None:
        assert body["error"]["code"] == code, body


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def raw(client: Client, method: str, path: str, data: bytes, content_type: str,
              **headers: str) -> tuple[int, Any]:
    return await client.call(method, path, data=data,
                             headers={"Content-Type": content_type, **headers})


# --- the parsing helpers themselves --------------------------------------------------------


@pytest.mark.parametrize("text", ["0", "7", "2147483647", "000012"])
def test_parse_int_accepts_ascii_digits_in_range(text: str) -> None:
    assert parse_int(text, "id") == int(text)


@pytest.mark.parametrize("text", ["¹", "²", "١٢", "１２", "1²", "", " 1", "1 ", "+1", "-1",
                                  "1_000", "0x1", "1e3", "2147483648", "9" * 5000,
                                  str(2 ** 63), "\x00"])
def test_parse_int_refuses_anything_else(text: str) -> None:
    with pytest.raises(Invalid):
        parse_int(text, "id")


def test_parse_int_bounds_are_the_callers() -> None:
    assert parse_int("3072", "width", low=256, high=3072) == 3072
    with pytest.raises(Invalid, match="width"):
        parse_int("255", "width", low=256, high=3072)
    assert MAX_ID == 2 ** 31 - 1  # PostgreSQL INTEGER columns: the tightest of our databases


def test_body_ints_and_strings_are_bounded_whatever_the_model() -> None:
    class Thing(http_util.Body):
        n: int
        names: list[str] = Field(default_factory=list)

    assert Thing.model_validate_json(b'{"n": 5, "names": ["a"]}').n == 5
    for bad in (b'{"n": 2147483648}', b'{"n": -2147483649}', b'{"n": 1, "names": ["a\\u0000"]}'):
        with pytest.raises(ValueError):
            Thing.model_validate_json(bad)


# --- through the app -----------------------------------------------------------------------


async def test_superscript_and_non_ascii_digit_ids_are_404(
        hopso_sqlite: Harness, caplog: pytest.LogCaptureFixture) -> None:
    chair = await hopso_sqlite.login("chutri")
    for path in ("/api/meetings/%C2%B9", "/api/meetings/%C2%B9/procedure",
                 "/api/documents/%C2%B2", "/api/meetings/%D9%A1",
                 "/api/meetings/1/votes/%C2%B9", "/api/meetings/1/minutes/%C2%B9.pdf"):
        status, body = await chair.call("GET", path)
        assert_error(status, body, 404, "not_found")
    status, _ = await chair.call("GET", "/meetings/%C2%B9", headers={"Accept": "text/html"})
    assert status == 404
    assert not tracebacks(caplog)


async def test_ids_beyond_the_database_range_are_refused_and_change_nothing(
        hopso: Harness, caplog: pytest.LogCaptureFixture) -> None:
    chair = await hopso.login("chutri")
    meeting_id = await demo_meeting_id(hopso)
    for big in (2 ** 31, 10 ** 11, 2 ** 63, 2 ** 64):
        status, body = await chair.call("GET", f"/api/meetings/{big}")
        assert_error(status, body, 404, "not_found")
        status, body = await chair.call("POST", f"/api/meetings/{meeting_id}/members",
                                        {"role": "delegate", "user_id": big})
        assert_error(status, body, 400, "invalid")
        assert body["error"]["message"].startswith("user_id")
        status, body = await chair.call("POST", f"/api/meetings/{meeting_id}/agenda",
                                        {"title": "x", "planned_minutes": big})
        assert_error(status, body, 400, "invalid")
    status, body = await chair.call("GET", f"/api/meetings/{meeting_id}/agenda")
    assert status == 200 and not any(i["title"] == "x" for i in body["items"])
    assert not tracebacks(caplog)


async def test_huge_integers_in_bodies_and_queries_are_refused(
        hopso_sqlite: Harness, caplog: pytest.LogCaptureFixture) -> None:
    chair = await hopso_sqlite.login("chutri")
    meeting_id = await demo_meeting_id(hopso_sqlite)
    status, body = await raw(chair, "POST", f"/api/meetings/{meeting_id}/members",
                             b'{"role": "delegate", "user_id": ' + b"9" * 5000 + b"}",
                             "application/json")
    assert_error(status, body, 400, "bad_json")
    status, body = await chair.call("GET", f"/api/meetings/{meeting_id}/audit?after={'9' * 5000}")
    assert_error(status, body, 400, "invalid")
    status, body = await chair.call("GET", f"/api/meetings/{meeting_id}/audit?after=%C2%B9")
    assert_error(status, body, 400, "invalid")
    assert not tracebacks(caplog)


async def test_deeply_nested_json_is_refused(hopso_sqlite: Harness,
                                             caplog: pytest.LogCaptureFixture) -> None:
    admin = await hopso_sqlite.login("quantri")
    for depth in (100, 100_000):
        status, body = await raw(admin, "POST", "/api/units",
                                 b"[" * depth + b"]" * depth, "application/json")
        assert_error(status, body, 400, "bad_json")
        assert "nested" in body["error"]["message"]
    assert not tracebacks(caplog)


async def test_unknown_or_wrong_charsets_are_refused(hopso_sqlite: Harness,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    admin = await hopso_sqlite.login("quantri")
    body_bytes = b'{"name": "A", "kind": "ward"}'
    for charset in ("x-bogus", "utf-16", "latin-1"):
        status, body = await raw(admin, "POST", "/api/units", body_bytes,
                                 f"application/json; charset={charset}")
        assert_error(status, body, 400, "bad_content_type")
    status, _ = await raw(admin, "POST", "/api/units", body_bytes,
                          "application/json; charset=UTF-8")
    assert status == 201
    # A form body (the CSRF field of a form post) with a charset Python does not know.
    for charset in ("x-bogus", "utf-8"):
        status, body = await raw(admin, "POST", "/logout", b"csrf_token=%FF%FE",
                                 f"application/x-www-form-urlencoded; charset={charset}",
                                 **{"X-CSRF-Token": ""})
        assert_error(status, body, 400 if charset != "utf-8" else 403,
                     "bad_content_type" if charset != "utf-8" else "csrf")
    status, body = await admin.call("POST", "/logout", headers={"X-CSRF-Token": "é"})
    assert_error(status, body, 403, "csrf")
    _, session = await admin.call("GET", "/api/session")
    assert session["user"]["username"] == "quantri"  # still logged in
    assert not tracebacks(caplog)


async def test_non_utf8_and_nul_strings_are_refused(hopso: Harness,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    admin = await hopso.login("quantri")
    for data in (b'{"name": "\xff", "kind": "ward"}', b'{"name": "a\\u0000b", "kind": "ward"}',
                 b'{"name": "\\ud800", "kind": "ward"}'):
        status, body = await raw(admin, "POST", "/api/units", data, "application/json")
        assert status == 400, body
    assert not tracebacks(caplog)


async def test_bad_widths_pages_and_versions_are_4xx(
        hopso_sqlite: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    meeting_id = await demo_meeting_id(hopso_sqlite)
    doc = await upload_ready(hopso_sqlite, meeting_id, make_pdf(tmp_path, pages=1))
    chair = await hopso_sqlite.login("chutri")
    base = f"/api/documents/{doc['id']}"
    for query in ("width=%C2%B2", "width=2" + "0" * 30, "width=-256", "width=257"):
        status, body = await chair.call("GET", f"{base}/pages/0?{query}")
        assert_error(status, body, 400, "invalid")
    for path in (f"{base}/pages/%C2%B9", f"{base}/pages/{2 ** 63}", f"{base}/thumbs/%C2%B9",
                 f"{base}?version=%C2%B9", f"{base}?version={2 ** 63}", f"{base}/pages/5"):
        status, body = await chair.call("GET", path)
        assert_error(status, body, 404, "not_found")
    assert not tracebacks(caplog)


async def test_upload_field_ids_are_parsed_like_path_ids(
        hopso_sqlite: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    meeting_id = await demo_meeting_id(hopso_sqlite)
    secretary = await hopso_sqlite.login("thuky")
    for value in ("¹", str(2 ** 63)):
        form = aiohttp.FormData()
        form.add_field("agenda_item_id", value)
        form.add_field("file", make_pdf(tmp_path, pages=1), filename="a.pdf")
        async with secretary.session.post(
                f"{secretary.base}/api/meetings/{meeting_id}/documents", data=form,
                headers={"X-CSRF-Token": secretary.csrf}) as r:
            body = await r.json()
            assert_error(r.status, body, 400, "invalid")
            assert body["error"]["message"].startswith("agenda_item_id")
    assert not tracebacks(caplog)


async def test_overlong_path_segments_are_404_even_for_static_files(
        hopso_sqlite: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """Found by the REST fuzzer: aiohttp's static handler let ENAMETOOLONG out as a 500."""
    client = await hopso_sqlite.login("daibieu")
    for path in ("/vendor/pdfjs/" + "9" * 300, "/static/" + "a" * 256, "/static/js/" + "é" * 200,
                 "/api/meetings/" + "1" * 300):
        for method in ("GET", "HEAD"):
            status, body = await client.call(method, path)
            assert status == 404, (path, status)
            if method == "GET":
                assert_error(status, body, 404, "not_found")
    status, _ = await client.call("GET", "/static/js/" + "a" * 240 + ".js")
    assert status == 404
    assert not tracebacks(caplog)


MALFORMED_MULTIPART = [  # found by the REST fuzzer: aiohttp's ValueError / InvalidHeader as 500s
    ("multipart/form-data", b"--x\r\n"),
    ("multipart/form-data; boundary=", b"--x\r\n"),
    ("multipart/form-data; boundary=" + "a" * 80, b"--x\r\n"),
    ("multipart/form-data; boundary=x", b"[1108, null]"),
    ("multipart/form-data; boundary=x",
     b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n\r\n%PDF-1.4'),
    ("multipart/form-data; boundary=x", b"--x\r\n\xff\xfe: x\r\n\r\n%PDF-1.4\r\n--x--\r\n"),
]


async def test_malformed_multipart_uploads_are_400_bad_form(
        hopso_sqlite: Harness, caplog: pytest.LogCaptureFixture) -> None:
    meeting_id = await demo_meeting_id(hopso_sqlite)
    secretary = await hopso_sqlite.login("thuky")
    for content_type, data in MALFORMED_MULTIPART:
        for path in (f"/api/meetings/{meeting_id}/documents", "/login"):
            status, body = await raw(secretary, "POST", path, data, content_type)
            if path.startswith("/api/"):
                assert_error(status, body, 400, "bad_form")
            else:
                assert status in (400, 403), status
    _, listed = await secretary.call("GET", f"/api/meetings/{meeting_id}/documents")
    assert listed["groups"] == [] or all(not g["documents"] for g in listed["groups"])
    assert not tracebacks(caplog)


async def test_a_request_line_too_long_is_one_quiet_line_not_a_traceback(
        hopso_sqlite: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """Found by the REST fuzzer: aiohttp's parser logs a client's bad HTTP with a traceback."""
    caplog.set_level(logging.INFO, logger="aiohttp.server")
    client = await hopso_sqlite.login("daibieu")
    status, _ = await client.call("GET", "/api/meetings?x=" + "9" * 9000)
    assert status == 400
    quiet = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert quiet and all(r.levelno == logging.INFO and not r.exc_info for r in quiet)
    assert "LineTooLong" in quiet[0].getMessage()
    assert not tracebacks(caplog)


async def test_an_unexpected_exception_is_one_logged_500_in_the_documented_shape(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def broken(_request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app = create_app(Settings(data_dir=tmp_path / "data"))
    app.router.add_get("/api/broken", broken)
    app.router.add_get("/broken-page", broken)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as s:
            for path in ("/api/broken", "/broken-page"):
                caplog.clear()
                async with s.get(server.make_url(path)) as r:
                    body = await r.json()
                    assert_error(r.status, body, 500, "internal")
                    assert "a bug" not in body["error"]["message"]  # no internals to clients
                    assert r.headers["X-Content-Type-Options"] == "nosniff"
                logged = tracebacks(caplog)
                assert len(logged) == 1 and "a bug" in str(logged[0].exc_info[1])  # type: ignore[index]
    finally:
        await server.close()
