"""Vote arithmetic as people see it (issue 14, item 4; shared/DOMAIN.md): a People's Council
session where a site answers the roll call with a headcount. The people counted at the site
are attendance, not delegates; a resolution needs more than half of ALL delegates; an
election names who was elected; every result shows count, base and percentage."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from testkit.browser import chromium, session_page
from testkit.processes import ServerProcess, start_server

pytestmark = pytest.mark.browser
TABLET = {"width": 800, "height": 1280}
DELEGATES = ("daibieu", "daibieu2", "daibieu3")


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server("--demo", "--data-dir", str(tmp_path_factory.mktemp("e2e-arith")),
                          env={"HOPSO_FAST_HASH": "1"}, preimported=True)
    yield server
    server.stop()


def log_in(browser: Any, server: ServerProcess, username: str, path: str,
           viewport: dict[str, int]) -> Any:
    context = browser.new_context(viewport=viewport, has_touch=viewport is TABLET)
    page = session_page(context, server.base, username, server.logins()[username], path)
    if path != "/meetings":
        page.wait_for_selector("#live-state:has-text('Trực tuyến')")
    return page


def rows(card: Any) -> list[str]:
    return [" ".join(r.split()) for r in card.locator("tr[data-option]").all_inner_texts()]


def vote(chair: Any, tablets: dict[str, Any], question: str, choices: tuple[int, ...],
         title: str = "Biểu quyết") -> Any:
    """Every tablet votes in its prompt (titled `title`); the chair closes the vote; its card
    on the chair's console once closed."""
    for page, option in zip(tablets.values(), choices):
        prompt = page.locator(f"#ballot-prompt[open]:has-text('{question}')")
        assert prompt.locator("#ballot-prompt-title").inner_text() == title
        prompt.locator(f"button[data-option='{option}']").click()
        prompt.locator("#ballot-prompt-recorded").wait_for()
        prompt.locator("button.prompt-close").click()
    if chair.locator("#ballot-prompt[open]").count():
        chair.locator("#ballot-prompt button:has-text('Để sau')").click()
    chair.wait_for_selector(f".proc-turnout:has-text('{len(choices)}/{len(choices)}')")
    chair.click(".proc-vote[data-status='open'] .proc-vote-close")
    card = chair.locator(f".proc-vote[data-status='closed']:has-text('{question}')")
    card.wait_for()
    return card


def test_a_council_counts_its_delegates_not_the_people_at_the_sites(server: ServerProcess) -> None:
    with chromium() as opened:
        browser: Any = opened
        chair = log_in(browser, server, "chutri", "/meetings", {"width": 1280, "height": 800})
        chair.click(".meeting-title")
        chair.wait_for_url(re.compile(r".*/meetings/\d+$"))
        path = chair.url.removeprefix(server.base)
        chair.click("button[data-action$='/open']")
        chair.wait_for_selector("#meeting-status.status-open")
        chair.select_option("#proc-rule-set", "council")
        chair.wait_for_selector(".proc-message:has-text('Đã lưu.')")
        chair.fill("#proc-item-title", "Nghị quyết dự toán ngân sách 2027")
        chair.click("#proc-agenda-form button[type=submit]")
        chair.wait_for_selector("#proc-agenda-list li")

        # The roll call: a ward's meeting room answers with 20 people in the room.
        operator = log_in(browser, server, "kythuat", path, {"width": 1600, "height": 1000})
        chair.click("#proc-rollcall")
        operator.fill("#proc-rc-headcount", "20")
        operator.click("#proc-rollcall-form button[type=submit]")
        tablets = {name: log_in(browser, server, name, path, TABLET) for name in DELEGATES}
        for page in tablets.values():
            page.click("#proc-checkin-in-person")
            page.wait_for_selector("#proc-my-attendance:has-text('Có mặt tại phòng họp')")
        attendance = chair.locator("#console-attendance")
        chair.wait_for_selector("#proc-quorum:has-text('Có mặt 3/4 đại biểu')")
        chair.wait_for_selector("#console-attendance:has-text('20 người có mặt tại các điểm cầu')")
        assert "Đủ số đại biểu cần thiết" in chair.inner_text("#proc-quorum")  # 3 of 4 ≥ 2/3
        assert "chỉ tính tham dự, không phải đại biểu" in attendance.inner_text()

        # A resolution: 2 of 3 present agree, but a council needs more than half of all 4.
        chair.fill("#proc-vote-question", "Thông qua Nghị quyết dự toán")
        chair.click("#proc-vote-open")
        card = vote(chair, tablets, "Thông qua Nghị quyết dự toán", (0, 0, 1))
        assert rows(card) == ["Tán thành 2 / 4 50%", "Không tán thành 1 / 4 25%",
                              "Không biểu quyết 0 / 4 0%"], rows(card)
        assert "Tỷ lệ tính trên tổng số 4 đại biểu." in card.inner_text()
        assert card.inner_text().strip().endswith("Không thông qua"), card.inner_text()
        # The tablets see the same result.
        tablet_card = tablets["daibieu2"].locator(
            ".proc-vote[data-status='closed']:has-text('Thông qua Nghị quyết dự toán')")
        tablet_card.wait_for()
        assert rows(tablet_card) == rows(card)

        # An election: all three present vote for one candidate: 3 of 4 (75%), elected.
        chair.fill("#proc-vote-question", "Bầu Trưởng ban Kinh tế - Ngân sách")
        chair.fill("#proc-vote-options", "Nguyễn Văn An\nTrần Thị Bình")
        chair.check("#proc-vote-election")
        chair.click("#proc-vote-open")
        election = vote(chair, tablets, "Bầu Trưởng ban Kinh tế - Ngân sách", (0, 0, 0),
                        title="Bầu cử")
        assert rows(election) == ["Nguyễn Văn An 3 / 4 75%", "Trần Thị Bình 0 / 4 0%"], \
            rows(election)
        assert "Trúng cử: Nguyễn Văn An" in election.inner_text(), election.inner_text()
        assert "Không thông qua" not in election.inner_text()
        for page in (chair, operator, *tablets.values()):
            assert page.errors == [], page.errors
        # A delegate sees the same outcome on their tablet.
        mine = tablets["daibieu"].locator(".proc-vote[data-status='closed']:has-text('Bầu Trưởng ban')")
        mine.wait_for()
        assert "Trúng cử: Nguyễn Văn An" in mine.inner_text(), mine.inner_text()
