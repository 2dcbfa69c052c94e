"""A sitting in real browsers: delegates check in on tablets, one asks to speak, the chair
gives the floor, opens a vote, three delegates vote and everyone sees the right result."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.browser import chromium
from testkit.processes import ServerProcess, start_server

pytestmark = pytest.mark.browser
TABLET = {"width": 800, "height": 1280}
DELEGATES = ("daibieu", "daibieu2", "daibieu3")


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server("--demo", "--data-dir", str(tmp_path_factory.mktemp("e2e-proc")),
                          env={"HOPSO_FAST_HASH": "1"})
    yield server
    server.stop()


def log_in(browser: Any, server: ServerProcess, username: str, path: str,
           viewport: dict[str, int]) -> Any:
    context = browser.new_context(viewport=viewport, has_touch=viewport is TABLET)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    page.goto(f"{server.base}/login?next={path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", server.logins()[username])
    page.click("button[type=submit]")
    page.wait_for_url(f"**{path}")
    if path != "/meetings":
        page.wait_for_selector("#live-state:has-text('Trực tuyến')")
    return page


def test_check_in_floor_and_vote_on_tablets(demo_server: ServerProcess, tmp_path: Path) -> None:
    with chromium() as browser:
        chair = log_in(browser, demo_server, "chutri", "/meetings", {"width": 1280, "height": 900})
        chair.click(".meeting-title")
        chair.wait_for_url(re.compile(r".*/meetings/\d+$"))
        path = chair.url.removeprefix(demo_server.base)
        chair.click("button[data-action$='/open']")
        chair.wait_for_selector("#meeting-status.status-open")
        secretary = log_in(browser, demo_server, "thuky", path, {"width": 1280, "height": 900})
        tablets = {name: log_in(browser, demo_server, name, path, TABLET) for name in DELEGATES}

        # The secretary builds the agenda and puts the item under discussion.
        secretary.fill("#proc-item-title", "Kế hoạch chuyển đổi số năm 2026")
        secretary.fill("#proc-item-minutes", "15")
        secretary.click("#proc-agenda-form button[type=submit]")
        secretary.click("#proc-agenda-list li .set-current")
        for page in tablets.values():
            page.wait_for_selector("#proc-current-title:has-text('Kế hoạch chuyển đổi số năm 2026')")

        # Each delegate checks in on their tablet; the chair sees the quorum.
        for page in tablets.values():
            page.click("#proc-checkin-in-person")
            page.wait_for_selector("#proc-my-attendance:has-text('Có mặt tại phòng họp')")
        chair.wait_for_selector("#proc-quorum:has-text('Có mặt 3/4 đại biểu')")
        assert "Đủ số đại biểu cần thiết" in chair.inner_text("#proc-quorum")

        # A delegate asks to speak; the chair gives the floor; every tablet shows the speaker.
        tablets["daibieu"].click("#proc-request-floor")
        tablets["daibieu"].wait_for_selector("#proc-my-floor:has-text('vị trí thứ 1')")
        chair.wait_for_selector("#proc-queue li:has-text('Lê Minh Tuấn')")
        chair.click("#proc-queue li:has-text('Lê Minh Tuấn') button.grant")
        for page in (chair, *tablets.values()):
            page.wait_for_selector("#proc-speaker-name:has-text('Lê Minh Tuấn')")
        tablets["daibieu"].wait_for_selector("#proc-my-floor:has-text('Mời bạn phát biểu')")
        tablets["daibieu"].screenshot(path=str(tmp_path / "tablet-speaking.png"))
        chair.click("#proc-end-floor")
        chair.wait_for_selector("#proc-speaker:has-text('Chưa có ai phát biểu')")

        # The chair opens a vote; three delegates vote on their tablets.
        chair.fill("#proc-vote-question", "Thông qua Kế hoạch chuyển đổi số năm 2026")
        chair.click("#proc-vote-open")
        for name, option in zip(DELEGATES, (0, 0, 1)):
            page = tablets[name]
            page.wait_for_selector(".proc-ballot button[data-option='0']:has-text('Tán thành')")
            page.click(f".proc-ballot button[data-option='{option}']")
            page.wait_for_selector("#proc-my-vote-status:has-text('Đã ghi nhận biểu quyết')")
        chair.wait_for_selector(".proc-turnout:has-text('3/3 đại biểu có mặt đã biểu quyết')")
        chair.wait_for_selector(".proc-pending:has-text('Tất cả đại biểu có mặt đã biểu quyết')")
        chair.click(".proc-vote-close")
        for page in (chair, secretary, *tablets.values()):
            card = page.locator(".proc-vote[data-status='closed']")
            card.wait_for()
            counts = [card.locator(f"tr[data-option='{i}'] td.count").inner_text()
                      for i in range(3)]
            assert counts == ["2", "1", "0"], counts
            assert "Không thông qua" in card.inner_text()  # 2 of 4 members is not a majority
        tablets["daibieu2"].screenshot(path=str(tmp_path / "tablet-result.png"), full_page=True)
        chair.screenshot(path=str(tmp_path / "chair-console.png"), full_page=True)

        # A secret vote: the tablet makes the receipt itself, keeps it, and shows it.
        chair.fill("#proc-vote-question", "Bầu Trưởng ban")
        chair.check("#proc-vote-secret")
        chair.click("#proc-vote-open")
        tablet = tablets["daibieu"]
        tablet.wait_for_selector(".proc-ballot button[data-option='1']")
        tablet.click(".proc-ballot button[data-option='1']")
        receipt = tablet.locator("#proc-my-receipt").inner_text()
        assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}", receipt), receipt
        vote_id = tablet.locator(".proc-ballot").get_attribute("data-vote-id")
        assert tablet.evaluate(f"localStorage.getItem('hopso.receipt.{vote_id}')") == receipt
        chair.wait_for_selector(".proc-turnout:has-text('1/3')")
        chair.click(".proc-vote-close")
        tablet.locator(f".proc-vote[data-vote-id='{vote_id}'][data-status='closed']").wait_for()
        for page in (chair, secretary, *tablets.values()):
            assert page.errors == [], page.errors
