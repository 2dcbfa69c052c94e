"""A sitting in real browsers: delegates check in on tablets, one asks to speak, the chair
gives the floor (announced on the speaker's tablet), opens a vote (a prompt on every
delegate's screen), three delegates vote and everyone sees the right result with its
percentages; then the chair ends the meeting (after a confirmation), every screen shows it
ended without live controls, and stale tabs are told so and change nothing (issue 14)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from testkit.browser import SETTLE_SCRIPT, chromium, fresh_meeting, session_page, wait_settled
from testkit.processes import ServerProcess, start_server

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

pytestmark = pytest.mark.browser
TABLET: ViewportSize = {"width": 800, "height": 1280}
DELEGATES = ("daibieu", "daibieu2", "daibieu3")


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server("--demo", "--data-dir", str(tmp_path_factory.mktemp("e2e-proc")),
                          env={"HOPSO_FAST_HASH": "1"}, preimported=True)
    yield server
    server.stop()


def log_in(browser: Any, server: ServerProcess, username: str, path: str,
           viewport: ViewportSize, context: Any = None) -> Any:
    context = context or browser.new_context(viewport=viewport, has_touch=viewport is TABLET)
    page = session_page(context, server.base, username, server.logins()[username], path)
    if path != "/meetings":
        page.wait_for_selector("#live-state:has-text('Trực tuyến')")
    return page


def hold_pushes(ws: Any, muted: dict[str, bool]) -> None:
    """Relay a page's socket.io WebSocket, dropping the server's pushed events ("42…")
    while muted: a tab that missed what happened meanwhile. Acks ("43…") still pass."""
    server = ws.connect_to_server()
    ws.on_message(lambda message: server.send(message))
    server.on_message(lambda message: None if muted["on"] and isinstance(message, str)
                      and message.startswith("42") else ws.send(message))


@pytest.mark.timeout(420)  # five browsers through a whole sitting, on a shared 2-core box
def test_check_in_floor_and_vote_on_tablets(demo_server: ServerProcess, tmp_path: Path) -> None:
    with chromium() as browser:
        chair = log_in(browser, demo_server, "chutri", "/meetings", {"width": 1280, "height": 900})
        chair.click(".meeting-title")
        chair.wait_for_url(re.compile(r".*/meetings/\d+$"))
        path = chair.url.removeprefix(demo_server.base)
        chair.click("button[data-action$='/open']")
        chair.wait_for_selector("#meeting-status.status-open")
        secretary = log_in(browser, demo_server, "thuky", path, {"width": 1280, "height": 900})
        # daibieu3's tablet can be made to miss the server's pushes (a stale screen, below).
        stale_muted = {"on": False}
        stale_context = browser.new_context(viewport=TABLET, has_touch=True)
        stale_context.route_web_socket(re.compile(r".*/socket\.io/.*"),
                                       lambda ws: hold_pushes(ws, stale_muted))
        tablets = {name: log_in(browser, demo_server, name, path, TABLET,
                                context=stale_context if name == "daibieu3" else None)
                   for name in DELEGATES}

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
        # The floor is announced as a prompt that takes the focus.
        notice = tablets["daibieu"].locator("#floor-notice")
        notice.wait_for()
        assert "Mời bạn phát biểu." in notice.inner_text()
        assert "Chủ trì mời bạn phát biểu trong 03:00." in notice.inner_text()
        assert tablets["daibieu"].evaluate(
            "document.getElementById('floor-notice').contains(document.activeElement)")
        tablets["daibieu"].screenshot(path=str(tmp_path / "tablet-speaking.png"))
        notice.locator("button:has-text('Đồng ý')").click()
        notice.wait_for(state="hidden")
        assert tablets["daibieu2"].locator("#floor-notice[open]").count() == 0  # not theirs
        chair.click("#proc-end-floor")
        chair.wait_for_selector("#proc-speaker:has-text('Chưa có ai phát biểu')")

        # The chair opens a vote with a time limit; it opens as a prompt on every delegate's
        # screen (question, choices, countdown), where they vote and see what was recorded.
        chair.fill("#proc-vote-question", "Thông qua Kế hoạch chuyển đổi số năm 2026")
        chair.fill("#proc-vote-limit", "600")
        chair.click("#proc-vote-open")
        for name, option in zip(DELEGATES, (0, 0, 1)):
            page = tablets[name]
            prompt = page.locator("#ballot-prompt")
            prompt.wait_for()
            text = prompt.inner_text()
            assert "Thông qua Kế hoạch chuyển đổi số năm 2026" in text, text
            assert re.search(r"Còn lại: (10:00|09:\d\d)", text), text
            assert page.evaluate(
                "document.getElementById('ballot-prompt').contains(document.activeElement)")
            prompt.locator(f"button[data-option='{option}']").click()
            label = ("Tán thành", "Không tán thành")[option]
            prompt.locator(f"#ballot-prompt-recorded:has-text('Đã ghi nhận biểu quyết của bạn: "
                           f"{label}.')").wait_for()
            if name == "daibieu":
                page.screenshot(path=str(tmp_path / "tablet-ballot-recorded.png"))
            prompt.locator("button.prompt-close").click()
            page.wait_for_selector("#proc-my-vote-status:has-text('Đã ghi nhận biểu quyết')")
        # The chair votes too, but is not checked in: the prompt says so; they put it off.
        chair_prompt = chair.locator("#ballot-prompt")
        chair_prompt.wait_for()
        assert "Hãy điểm danh để biểu quyết." in chair_prompt.inner_text()
        chair_prompt.locator("button:has-text('Để sau')").click()
        chair.wait_for_selector(".proc-turnout:has-text('3/3 đại biểu có mặt đã biểu quyết')")
        chair.wait_for_selector(".proc-pending:has-text('Tất cả đại biểu có mặt đã biểu quyết')")
        chair.click(".proc-vote-close")
        for page in (chair, secretary, *tablets.values()):
            card = page.locator(".proc-vote[data-status='closed']")
            card.wait_for()
            counts = [card.locator(f"tr[data-option='{i}'] td.count").inner_text()
                      for i in range(3)]
            assert counts == ["2", "1", "0"], counts
            # An "other meeting" counts opinions of those present: 2 of 3 carries.
            percents = [card.locator(f"tr[data-option='{i}'] td.percent").inner_text()
                        for i in range(3)]
            assert percents == ["66,67%", "33,33%", "0%"], percents
            assert "Tỷ lệ tính trên 3 đại biểu có mặt." in card.inner_text()
            assert "Thông qua" in card.inner_text()
        tablets["daibieu2"].screenshot(path=str(tmp_path / "tablet-result.png"), full_page=True)
        chair.screenshot(path=str(tmp_path / "chair-console.png"), full_page=True)

        # A secret vote: the tablet makes the receipt itself, keeps it, and shows it.
        chair.fill("#proc-vote-question", "Bầu Trưởng ban")
        chair.check("#proc-vote-secret")
        chair.click("#proc-vote-open")
        tablet = tablets["daibieu"]
        prompt = tablet.locator("#ballot-prompt")
        prompt.locator("h2:has-text('Bỏ phiếu kín')").wait_for()
        prompt.locator("button[data-option='1']").click()
        prompt.locator("#ballot-prompt-recorded").wait_for()
        prompt.locator("button.prompt-close").click()
        receipt = tablet.locator("#proc-my-receipt").inner_text()
        assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}", receipt), receipt
        vote_id = tablet.locator(".proc-ballot").get_attribute("data-vote-id")
        assert tablet.evaluate(f"localStorage.getItem('hopso.receipt.{vote_id}')") == receipt
        chair.locator("#ballot-prompt button:has-text('Để sau')").click()
        chair.wait_for_selector(".proc-turnout:has-text('1/3')")
        chair.click(".proc-vote-close")
        tablet.locator(f".proc-vote[data-vote-id='{vote_id}'][data-status='closed']").wait_for()
        # Those who had not voted see the prompt turn into the result.
        waiting = tablets["daibieu2"].locator("#ballot-prompt")
        waiting.locator(".prompt-closed:has-text('Biểu quyết đã kết thúc.')").wait_for()
        assert "Không thông qua" in waiting.inner_text()  # 1 of 3 present
        assert "0/3 (0%)" in waiting.inner_text() and "1/3 (33,33%)" in waiting.inner_text()
        waiting.locator("button.prompt-close").click()
        tablets["daibieu3"].locator("#ballot-prompt button.prompt-close").click()

        # A stale screen: daibieu3's tablet stops hearing the server with a vote's prompt
        # open; the vote closes meanwhile; the ballot it then sends is refused, and it says so.
        chair.fill("#proc-vote-question", "Phê duyệt dự toán")
        chair.uncheck("#proc-vote-secret")
        chair.click("#proc-vote-open")
        stale = tablets["daibieu3"]
        stale.locator("#ballot-prompt h2:has-text('Biểu quyết')").wait_for()
        chair.locator("#ballot-prompt button:has-text('Để sau')").click()
        stale_muted["on"] = True
        chair.click(".proc-vote[data-status='open'] .proc-vote-close")
        chair.wait_for_selector(".proc-vote[data-status='closed']:has-text('Phê duyệt dự toán')")
        stale.locator("#ballot-prompt button[data-option='0']").click()
        stale.locator("#ballot-prompt-error:has-text('Biểu quyết đã kết thúc.')").wait_for()
        assert "Phiếu của bạn không được ghi nhận." in stale.locator("#ballot-prompt").inner_text()
        stale_muted["on"] = False
        closed_card = chair.locator(".proc-vote:has-text('Phê duyệt dự toán')")
        assert closed_card.locator("tr[data-option='0'] td.count").inner_text() == "0"
        stale.locator("#ballot-prompt button.prompt-close").click()

        # A recess: paused, the tablets say so and offer nothing live; resumed, they do again.
        chair.click("#proc-pause")
        chair.wait_for_selector("#proc-state-text:has-text('Cuộc họp đang tạm dừng.')")
        tablets["daibieu2"].wait_for_selector(
            "#proc-meeting-state:has-text('Cuộc họp đang tạm dừng.')")
        assert tablets["daibieu2"].locator("#proc-request-floor").count() == 0
        chair.click("#proc-resume")
        tablets["daibieu2"].wait_for_selector("#proc-request-floor")

        # The chair ends the meeting: asked first, told what it does.
        chair.click("button[data-action$='/close']")
        confirm = chair.locator("#confirm-dialog")
        confirm.wait_for()
        assert "Kết thúc cuộc họp cho mọi người?" in confirm.inner_text()
        assert "biểu quyết đang mở được đóng" in confirm.inner_text()
        chair.click("#confirm-no")
        confirm.wait_for(state="hidden")
        assert chair.locator("#meeting-status.status-open").count() == 1  # nothing happened
        # Another tab of the chair's, left open, misses the close (the server's pushes to it
        # are held back; its own requests and their answers still pass): its chair action
        # is refused with the reason in Vietnamese, and nothing is opened.
        muted = {"on": False}
        chair_context = browser.new_context(viewport={"width": 1280, "height": 900})
        chair_context.route_web_socket(re.compile(r".*/socket\.io/.*"),
                                       lambda ws: hold_pushes(ws, muted))
        stale_chair = log_in(browser, demo_server, "chutri", path, {"width": 1280, "height": 900},
                             context=chair_context)
        stale_chair.wait_for_selector("#proc-vote-open")
        muted["on"] = True
        chair.click("button[data-action$='/close']")
        chair.click("#confirm-yes")
        chair.wait_for_selector("#meeting-status.status-closed")
        stale_chair.fill("#proc-vote-question", "Một biểu quyết muộn")
        stale_chair.click("#proc-vote-open")
        stale_chair.wait_for_selector(".proc-message:has-text('Cuộc họp đã kết thúc.')")
        assert chair.locator(".proc-vote:has-text('Một biểu quyết muộn')").count() == 0
        muted["on"] = False
        stale_chair.reload()  # once it hears again, it shows the end like every screen
        for page in (secretary, *tablets.values()):
            page.wait_for_selector("#proc-meeting-state:has-text('Cuộc họp đã kết thúc.')")
        for page in (chair, stale_chair, secretary):  # those who run it, beside their controls
            page.wait_for_selector("#proc-state-text:has-text('Cuộc họp đã kết thúc.')")
        for page in (chair, stale_chair, secretary, *tablets.values()):
            for control in ("#proc-checkin-in-person", "#proc-request-floor", "#proc-vote-open",
                            "button.grant", "#proc-rollcall", "#proc-end-floor"):
                assert page.locator(control).filter(visible=True).count() == 0, control
            assert page.locator("#proc-item-timer").count() == 0  # the item's clock stopped
        chair.wait_for_selector("#proc-reopen")
        tablets["daibieu2"].screenshot(path=str(tmp_path / "tablet-ended.png"))

        # Closed by mistake: the chair reopens it (asked first); the tablets are live again.
        chair.click("#proc-reopen")
        chair.locator("#confirm-dialog:has-text('Mở lại cuộc họp?')").wait_for()
        chair.click("#confirm-yes")
        chair.wait_for_selector("#meeting-status.status-open")
        tablets["daibieu2"].wait_for_selector("#proc-request-floor")
        for page in (chair, secretary, *tablets.values()):
            assert page.errors == [], page.errors


def test_a_vote_reaches_a_delegate_reading_documents(demo_server: ServerProcess) -> None:
    """Issue 14: a delegate on the documents page (not the meeting page) gets the ballot as
    a prompt, checks in from it, votes in it and is told what was recorded. On a meeting of
    its own (the demo meeting is the sitting's, above), not a server of its own."""
    with chromium() as browser:
        meeting_id = fresh_meeting(browser, demo_server.base, demo_server.logins()["chutri"])
        path = f"/meetings/{meeting_id}"
        chair = log_in(browser, demo_server, "chutri", path, {"width": 1280, "height": 900})
        chair.click("button[data-action$='/open']")
        chair.wait_for_selector("#meeting-status.status-open")
        chair.fill("#proc-item-title", "Dự toán ngân sách 2027")
        chair.click("#proc-agenda-form button[type=submit]")
        chair.wait_for_selector("#proc-agenda-list li")

        context = browser.new_context(viewport=TABLET, has_touch=True)
        context.add_init_script(SETTLE_SCRIPT)
        reader = session_page(context, demo_server.base, "daibieu",
                              demo_server.logins()["daibieu"], f"{path}/documents")
        reader.wait_for_selector("#documents")
        # Connected and joined (meeting:join answered), then the ballot's own resync 200 ms
        # later: waited for, not slept (was 1.5 s).
        wait_settled(reader, quiet_ms=300)

        chair.fill("#proc-vote-question", "Thông qua dự toán ngân sách 2027")
        chair.fill("#proc-vote-limit", "120")
        chair.click("#proc-vote-open")
        prompt = reader.locator("#ballot-prompt")
        prompt.wait_for()
        assert "Thông qua dự toán ngân sách 2027" in prompt.inner_text()
        assert "Hãy điểm danh để biểu quyết." in prompt.inner_text()
        assert re.search(r"Còn lại: (2:00|1:\d\d|0?2:00|01:\d\d)", prompt.inner_text()), \
            prompt.inner_text()
        prompt.locator("#ballot-prompt-checkin").click()
        prompt.locator("button[data-option='0']:not([disabled])").click()
        prompt.locator("#ballot-prompt-recorded:has-text('Đã ghi nhận biểu quyết của bạn: "
                       "Tán thành.')").wait_for()
        chair.locator("#ballot-prompt button:has-text('Để sau')").click()
        chair.wait_for_selector(".proc-turnout:has-text('1/1')")
        assert reader.errors == [], reader.errors
