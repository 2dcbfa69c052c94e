"""HTTP edges: health, metrics, headers, errors, size limits, translations."""

import aiohttp

from tests.conftest import Harness


async def test_healthz_reports_database_reachability(hopso: Harness) -> None:
    status, body = await hopso.anonymous().call("GET", "/healthz")
    assert status == 200 and body["status"] == "ok" and body["database"] is True


async def test_metrics_are_prometheus_text(hopso_sqlite: Harness) -> None:
    await hopso_sqlite.anonymous().call("GET", "/healthz")
    admin = await hopso_sqlite.login("quantri")  # who may read them: tests/server/core/test_metrics.py
    async with admin.session.get(hopso_sqlite.base + "/metrics") as r:
        text = await r.text()
        assert r.status == 200 and r.content_type == "text/plain"
    assert 'hopso_http_requests_total{method="GET",route="/healthz",status="200"}' in text


async def test_pages_carry_security_headers(hopso_sqlite: Harness) -> None:
    async with aiohttp.ClientSession() as s, s.get(hopso_sqlite.base + "/login") as r:
        headers = r.headers
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"


async def test_unknown_api_route_is_a_json_404(hopso_sqlite: Harness) -> None:
    client = await hopso_sqlite.login("daibieu")
    status, body = await client.call("GET", "/api/no-such-thing")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await client.call("GET", "/api/meetings/abc")
    assert status == 404


async def test_malformed_json_and_wrong_types_change_nothing(hopso: Harness) -> None:
    admin = await hopso.login("quantri")
    status, body = await admin.call("POST", "/api/units", data="{not json",
                                    headers={"Content-Type": "application/json"})
    assert status == 400 and body["error"]["code"] == "bad_json"
    status, body = await admin.call("POST", "/api/units", {"name": 5, "kind": "ward"})
    assert status == 400 and body["error"]["message"].startswith("name")
    status, body = await admin.call("POST", "/api/units", {"name": "A", "kind": "galaxy"})
    assert status == 400 and body["error"]["message"].startswith("kind")
    _, tree = await admin.call("GET", "/api/units")
    assert '"A"' not in str(tree).replace("'", '"')


async def test_oversized_body_is_refused_and_server_keeps_serving(hopso_sqlite: Harness) -> None:
    admin = await hopso_sqlite.login("quantri")
    huge = "x" * (hopso_sqlite.settings.max_body_bytes + 10)
    status, body = await admin.call("POST", "/api/units", {"name": huge, "kind": "ward"})
    assert status == 413 and body["error"]["code"] == "too_large"
    status, _ = await admin.call("GET", "/healthz")
    assert status == 200


async def test_translations_for_scripts(hopso_sqlite: Harness) -> None:
    client = hopso_sqlite.anonymous()
    status, vi = await client.call("GET", "/i18n/vi.json")
    assert status == 200 and vi["Log in"] == "Đăng nhập"
    status, _ = await client.call("GET", "/i18n/xx.json")
    assert status == 404


async def test_login_page_is_vietnamese_by_default_and_english_on_request(
        hopso_sqlite: Harness) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(hopso_sqlite.base + "/login") as r:
            assert "Đăng nhập" in await r.text()
        async with s.get(hopso_sqlite.base + "/login?lang=en") as r:
            page = await r.text()
            assert "Log in" in page and "Đăng nhập" not in page
            assert "hopso_lang=en" in " ".join(r.headers.getall("Set-Cookie"))
        async with s.get(hopso_sqlite.base + "/login") as r:  # the choice sticks (cookie)
            assert "Log in" in await r.text()


async def test_footer_links_to_the_source(hopso_sqlite: Harness) -> None:
    async with aiohttp.ClientSession() as s, s.get(hopso_sqlite.base + "/login") as r:
        page = await r.text()
    assert 'id="source-link"' in page and "AGPL" in page
