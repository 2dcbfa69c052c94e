"""Browsers get localized HTML error pages (Vietnamese, English), API clients keep JSON; the
login form keeps the username after a wrong password and keeps a deep link's query."""

from __future__ import annotations

import re

import aiohttp

from tests.conftest import Harness

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


async def test_a_browser_sees_a_localized_error_page_and_the_api_keeps_json(
        hopso_sqlite: Harness) -> None:
    chair = await hopso_sqlite.login("chutri")
    status, page = await chair.call("GET", "/meetings/999999", headers=HTML)
    assert status == 404 and "Không tìm thấy trang" in page and '"error"' not in page
    assert 'data-code="not_found"' in page and '<html lang="vi">' in page
    status, page = await chair.call("GET", "/meetings/999999?lang=en", headers=HTML)
    assert status == 404 and "Page not found" in page
    status, page = await chair.call("GET", "/no/such/page", headers=HTML)
    assert status == 404 and "Không tìm thấy trang" in page  # an unknown path too
    status, page = await chair.call("GET", "/no/such/page?lang=en", headers=HTML)
    assert status == 404 and "Page not found" in page
    status, page = await chair.call("GET", "/admin/users", headers=HTML)
    assert status == 403 and "Không được phép" in page

    status, body = await chair.call("GET", "/api/meetings/999999", headers=HTML)
    assert status == 404 and body["error"]["code"] == "not_found"  # /api: JSON whatever
    status, body = await chair.call("GET", "/meetings/999999")  # Accept: application/json
    assert status == 404 and body["error"]["code"] == "not_found"
    async with (aiohttp.ClientSession() as anonymous,  # no Accept: the JSON shape as before
                anonymous.get(hopso_sqlite.base + "/api/meetings/1") as r):
        assert r.status == 401 and (await r.json())["error"]["code"] == "not_authenticated"


async def test_the_login_form_keeps_the_username_and_the_deep_link(hopso_sqlite: Harness
                                                                     ) -> None:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        deep = "/meetings/1/documents?doc=3&page=2"
        async with browser.get(hopso_sqlite.base + deep, headers=HTML,
                               allow_redirects=False) as r:
            assert r.status == 302
            login = r.headers["Location"]
        async with browser.get(hopso_sqlite.base + login, headers=HTML) as r:
            page = await r.text()
        fields = dict(re.findall(r'name="(csrf_token|next)" value="([^"]*)"', page))
        assert fields["next"].replace("&amp;", "&") == deep

        form = {"csrf_token": fields["csrf_token"], "next": deep, "username": "daibieu",
                "password": "wrong password"}
        async with browser.post(hopso_sqlite.base + "/login", data=form, headers=HTML,
                                allow_redirects=False) as r:
            page = await r.text()
            assert r.status == 401 and "Sai tên đăng nhập hoặc mật khẩu." in page
        assert re.search(r'name="username"[^>]*value="daibieu"', page)
        assert re.search(r'name="password"[^>]*autofocus', page)
        assert 'name="next" value="/meetings/1/documents?doc=3&amp;page=2"' in page

        form["password"] = hopso_sqlite.logins["daibieu"].password
        async with browser.post(hopso_sqlite.base + "/login", data=form, headers=HTML,
                                allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == deep
        form["next"] = "//evil.example/x?doc=1"  # never off this origin
        async with browser.post(hopso_sqlite.base + "/login", data=form, headers=HTML,
                                allow_redirects=False) as r:
            assert r.headers["Location"] == "/meetings"
