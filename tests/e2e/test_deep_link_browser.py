"""A deep link survives the login in a real browser: the documents page with its ?doc=&page=,
and a refused login keeps the username."""

from __future__ import annotations

import pytest

from testkit.browser import chromium
from testkit.processes import ServerProcess

pytestmark = pytest.mark.browser


@pytest.fixture
def demo_server(shared_demo_server: ServerProcess) -> ServerProcess:
    return shared_demo_server  # only logs in and reads (tests/e2e/conftest.py)


def test_deep_link_and_username_survive_the_login(demo_server: ServerProcess) -> None:
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
        page.goto(demo_server.base + "/meetings/1/documents?doc=7&page=3")
        page.wait_for_url("**/login?**")
        page.fill("input[name=username]", "daibieu")
        page.fill("input[name=password]", "wrong password")
        page.click("button[type=submit]")
        assert page.locator("#login-error").inner_text() == "Sai tên đăng nhập hoặc mật khẩu."
        assert page.input_value("input[name=username]") == "daibieu"
        assert page.evaluate("() => document.activeElement.name") == "password"
        page.fill("input[name=password]", demo_server.logins()["daibieu"])
        page.click("button[type=submit]")
        page.wait_for_url("**/meetings/1/documents?doc=7&page=3")
        page.goto(demo_server.base + "/meetings/424242")
        assert page.locator("h1").inner_text() == "Không tìm thấy trang"
