"""A newcomer in a real browser: lands on login, logs in, sees the dashboard, switches language."""

from pathlib import Path

import pytest

from rooms.demo import DEMO_MEETING
from testkit.browser import chromium
from testkit.processes import ServerProcess

pytestmark = pytest.mark.browser


@pytest.fixture
def demo_server(shared_demo_server: ServerProcess) -> ServerProcess:
    return shared_demo_server  # only logs in and reads (tests/e2e/conftest.py)


def test_login_reaches_the_dashboard_in_vietnamese_then_english(demo_server: ServerProcess,
                                                                tmp_path: Path) -> None:
    password = demo_server.logins()["daibieu"]
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1024, "height": 768})  # type: ignore[attr-defined]
        page.goto(demo_server.base + "/")
        assert page.url.endswith("/login")
        assert page.locator("h1").inner_text() == "Đăng nhập"
        page.fill("input[name=username]", "daibieu")
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url("**/meetings")
        assert page.locator("h1").inner_text() == "Cuộc họp của tôi"
        # The demo meeting is listed (other tests on the shared server may add theirs).
        demo = page.locator(".meeting-title", has_text=DEMO_MEETING).first
        assert demo.inner_text() == DEMO_MEETING
        assert page.locator("#who").inner_text() == "Lê Minh Tuấn"
        page.screenshot(path=str(tmp_path / "dashboard-vi.png"))
        page.click("#lang-en")
        page.wait_for_url("**/meetings?lang=en")
        assert page.locator("h1").inner_text() == "My meetings"
        demo.click()
        page.wait_for_selector("#live-state:has-text('Live')")
        assert "Đang kết nối" not in page.content()


def test_wrong_password_shows_a_clear_message(demo_server: ServerProcess) -> None:
    with chromium() as browser:
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(demo_server.base + "/login")
        page.fill("input[name=username]", "daibieu")
        page.fill("input[name=password]", "definitely-wrong")
        page.click("button[type=submit]")
        assert page.locator(".error").inner_text() == "Sai tên đăng nhập hoặc mật khẩu."


def test_admin_sees_the_quang_binh_tree_on_a_tablet(demo_server: ServerProcess,
                                                   tmp_path: Path) -> None:
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 800, "height": 1280}, has_touch=True)  # type: ignore[attr-defined]
        page.goto(demo_server.base + "/login?next=/admin/units")
        page.fill("input[name=username]", "quantri")
        page.fill("input[name=password]", demo_server.logins()["quantri"])
        page.click("button[type=submit]")
        page.wait_for_url("**/admin/units")
        rows = page.locator("#unit-tree tbody tr")
        assert rows.count() == 17
        assert "Phường Đồng Phú" in page.locator("#unit-tree").inner_text()
        page.screenshot(path=str(tmp_path / "units.png"), full_page=True)
