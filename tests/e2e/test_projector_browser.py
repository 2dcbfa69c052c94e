"""The projector view on the meeting room's big screen, opened by the site operator (no
delegate's rights): the current item, then the speaker the chair gives the floor to, appear
live; nothing on it can be clicked but full screen."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from testkit.browser import chromium, session_page
from testkit.processes import ServerProcess, start_server

pytestmark = pytest.mark.browser
ITEM = "Kế hoạch chuyển đổi số năm 2026"


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server("--demo", "--data-dir", str(tmp_path_factory.mktemp("e2e-proj")),
                          env={"HOPSO_FAST_HASH": "1"}, preimported=True)
    yield server
    server.stop()


def log_in(browser: Any, server: ServerProcess, username: str, path: str,
           viewport: dict[str, int]) -> Any:
    return session_page(browser.new_context(viewport=viewport), server.base, username,
                      server.logins()[username], path)


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
        # As a delegate does: asks for the floor once the check-in shows (a connection's
        # events may be handled at once, docs/protocol.md; asked too early, the request is
        # refused as not_checked_in and the chair's queue stays empty).
        delegate.click("#proc-checkin-in-person")
        delegate.wait_for_selector("#proc-my-attendance:has-text('Có mặt tại phòng họp')")
        delegate.click("#proc-request-floor")
        delegate.wait_for_selector("#proc-my-floor")
        chair.click("#proc-queue li:has-text('Lê Minh Tuấn') button.grant")
        screen.wait_for_selector("#pj-speaker:has-text('Lê Minh Tuấn')")
        assert not screen.locator("#pj-speaker-timer").is_hidden()

        # A vote's result on the big screen: counts, base and percentages as the console
        # writes them in Vietnamese (2 of 3 present: 66,67%).
        chair.click("#proc-end-floor")
        others = [log_in(browser, demo_server, name, path, {"width": 800, "height": 1280})
                  for name in ("daibieu2", "daibieu3")]
        for page in others:
            page.click("#proc-checkin-in-person")
            page.wait_for_selector("#proc-my-attendance:has-text('Có mặt tại phòng họp')")
        chair.fill("#proc-vote-question", "Kế hoạch năm 2027")
        chair.click("#proc-vote-open")
        for page, option in zip((delegate, *others), (0, 0, 1)):
            prompt = page.locator("#ballot-prompt")
            prompt.locator(f"button[data-option='{option}']").click()
            prompt.locator("#ballot-prompt-recorded").wait_for()
        if chair.locator("#ballot-prompt[open]").count():
            chair.locator("#ballot-prompt button:has-text('Để sau')").click()
        chair.wait_for_selector(".proc-turnout:has-text('3/3')")
        chair.click(".proc-vote-close")
        screen.wait_for_selector("#pj-vote table tr >> nth=2")
        rows = [" ".join(row.split()) for row in screen.locator("#pj-vote tr").all_inner_texts()]
        assert rows == ["Tán thành 2 / 3 66,67%", "Không tán thành 1 / 3 33,33%",
                        "Không biểu quyết 0 / 3 0%"], rows
