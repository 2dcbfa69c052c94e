"""The projector view on the meeting room's big screen, opened by the site operator (no
delegate's rights): the current item, then the speaker the chair gives the floor to, appear
live; nothing on it can be clicked but full screen."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from testkit.browser import chromium
from testkit.processes import ServerProcess, start_server

pytestmark = pytest.mark.browser
ITEM = "Kế hoạch chuyển đổi số năm 2026"


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server("--demo", "--data-dir", str(tmp_path_factory.mktemp("e2e-proj")),
                          env={"HOPSO_FAST_HASH": "1"})
    yield server
    server.stop()


def log_in(browser: Any, server: ServerProcess, username: str, path: str,
           viewport: dict[str, int]) -> Any:
    page = browser.new_context(viewport=viewport).new_page()
    page.goto(f"{server.base}/login?next={path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", server.logins()[username])
    page.click("button[type=submit]")
    page.wait_for_url(f"**{path}")
    return page


def test_the_site_operator_projects_the_item_and_the_speaker(demo_server: ServerProcess) -> None:
    with chromium() as browser:
        chair = log_in(browser, demo_server, "chutri", "/meetings", {"width": 1280, "height": 800})
        chair.click(".meeting-title")
        chair.wait_for_url(re.compile(r".*/meetings/\d+$"))
        path = chair.url.removeprefix(demo_server.base)
        chair.click("button[data-action$='/open']")
        chair.wait_for_selector("#meeting-status.status-open")

        screen = log_in(browser, demo_server, "kythuat", path + "/projector",
                        {"width": 1600, "height": 1000})
        screen.wait_for_selector("#pj-live:has-text('Trực tuyến')")
        assert screen.inner_text("#pj-item").startswith("Chưa có nội dung")
        assert screen.locator("button").count() == 1  # full screen only: read-only

        chair.fill("#proc-item-title", ITEM)
        chair.fill("#proc-item-minutes", "15")
        chair.click("#proc-agenda-form button[type=submit]")
        chair.click("#proc-agenda-list li .set-current")
        screen.wait_for_selector(f"#pj-item:has-text('{ITEM}')")
        screen.wait_for_selector("#pj-item-timer:has-text('/ 15:00')")

        delegate = log_in(browser, demo_server, "daibieu", path, {"width": 800, "height": 1280})
        delegate.click("#proc-checkin-in-person")
        delegate.click("#proc-request-floor")
        chair.click("#proc-queue li:has-text('Lê Minh Tuấn') button.grant")
        screen.wait_for_selector("#pj-speaker:has-text('Lê Minh Tuấn')")
        assert not screen.locator("#pj-speaker-timer").is_hidden()
