"""The chair's console and the meeting chat in real browsers: the console's sections fit one
1280×800 screen without the chair's own check-in; a delegate writes to everyone and privately
to the chair; another delegate sees only the public message; the chair hides it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from testkit.browser import chromium, form_login
from testkit.processes import ServerProcess, start_server

pytestmark = pytest.mark.browser
DESKTOP = {"width": 1280, "height": 800}
TABLET = {"width": 800, "height": 1280}


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server("--demo", "--data-dir", str(tmp_path_factory.mktemp("e2e-chat")),
                          env={"HOPSO_FAST_HASH": "1"})
    yield server
    server.stop()


def log_in(browser: Any, server: ServerProcess, username: str, path: str,
           viewport: dict[str, int]) -> Any:
    return form_login(browser.new_context(viewport=viewport), server.base, username,
                      server.logins()[username], path)


def test_console_fits_and_the_chat_reaches_the_right_people(demo_server: ServerProcess) -> None:
    with chromium() as browser:
        chair = log_in(browser, demo_server, "chutri", "/meetings", DESKTOP)
        chair.click(".meeting-title")
        chair.wait_for_url(re.compile(r".*/meetings/\d+$"))
        path = chair.url.removeprefix(demo_server.base)
        chair.click("button[data-action$='/open']")
        chair.wait_for_selector("#meeting-status.status-open")
        chair.wait_for_selector("#proc-agenda-form")

        # The console: six sections side by side, all within one 1280×800 screen.
        console = chair.locator("#procedure").bounding_box()  # live cards, links, sections
        assert console is not None and console["height"] <= 800 - 60, console
        for section in ("agenda", "floor", "votes", "attendance", "minutes", "chat"):
            assert chair.locator(f"#console-{section}").is_visible()
        # The chair is not offered their own check-in or request to speak.
        assert chair.locator("#proc-checkin-in-person").is_hidden()
        assert chair.locator("#proc-request-floor").is_hidden()

        d1 = log_in(browser, demo_server, "daibieu", path, TABLET)
        d2 = log_in(browser, demo_server, "daibieu2", path, TABLET)
        assert d1.locator("#proc-checkin-in-person").is_visible()
        d1.fill("#chat-text", "Đề nghị bổ sung số liệu quý IV.")
        d1.click("#chat-send")
        for page in (chair, d1, d2):
            page.wait_for_selector("#chat-list li:has-text('Đề nghị bổ sung số liệu quý IV.')")
        d1.select_option("#chat-to", "chair")
        d1.fill("#chat-text", "Xin phát biểu sau phần báo cáo.")
        d1.press("#chat-text", "Enter")
        chair.wait_for_selector("#chat-list li:has-text('Xin phát biểu sau phần báo cáo.')"
                                ":has-text('Ý kiến riêng gửi chủ tọa')")
        d1.wait_for_selector("#chat-list li:has-text('Xin phát biểu sau phần báo cáo.')")
        d2.wait_for_timeout(500)
        assert d2.locator("#chat-list li").count() == 1  # the private note never reached them

        chair.click("#chat-list li:has-text('Đề nghị bổ sung') button.chat-hide")
        d2.wait_for_selector("#chat-list li.hidden:has-text('Chủ tọa đã ẩn một tin nhắn.')")
        assert "Đề nghị bổ sung" not in d2.inner_text("#chat-list")
        chair.wait_for_selector("#chat-list li.hidden:has-text('(đã ẩn) Đề nghị bổ sung')")

        # Flooding shows a clear message, in Vietnamese, and sends nothing more.
        d2.select_option("#chat-to", "all")
        # What the status line says is recorded as it changes: on a loaded box the burst can
        # take long enough for the budget to refill, and a last message sent clears the line.
        d2.evaluate("""() => { const status = document.getElementById('chat-status');
            window.__said = [];
            new MutationObserver(() => window.__said.push(status.textContent))
              .observe(status, {subtree: true, childList: true, characterData: true});
            const box = document.getElementById('chat-text');
            for (let n = 0; n < 12; n++) {  // faster than anyone types: one burst
              box.value = 'tin ' + n; document.getElementById('chat-form').requestSubmit(); } }""")
        d2.wait_for_function("() => window.__said.some((t) => t.includes('Bạn gửi tin quá nhanh'))")
