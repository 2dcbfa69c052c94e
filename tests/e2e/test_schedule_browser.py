"""A secretary on a tablet schedules a meeting from the dashboard, invites a delegate and a
ward's site from the members panel, and the delegate then finds the meeting on their own
dashboard."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from testkit.browser import chromium, form_login
from testkit.processes import ServerProcess, start_server

pytestmark = pytest.mark.browser
TABLET = {"width": 800, "height": 1280}
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
TITLE = "Họp chuẩn bị kỳ họp HĐND thành phố"


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server("--demo", "--data-dir", str(tmp_path_factory.mktemp("e2e-schedule")),
                          env={"HOPSO_FAST_HASH": "1"})
    yield server
    server.stop()


def log_in(browser: Any, server: ServerProcess, username: str) -> Any:
    context = browser.new_context(viewport=TABLET, has_touch=True, locale="vi-VN")
    return form_login(context, server.base, username, server.logins()[username], "/meetings")


def test_secretary_schedules_and_invites_on_a_tablet(demo_server: ServerProcess) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    day = date.today() + timedelta(days=3)
    with chromium() as browser:
        secretary = log_in(browser, demo_server, "thuky")
        secretary.click("#schedule summary")
        assert secretary.locator("#schedule summary").inner_text() == "Lên lịch cuộc họp"
        form = secretary.locator("#schedule-form")
        # The host unit defaults to the secretary's own unit.
        assert form.locator("select[name=unit_id] option:checked").inner_text().endswith(
            "Thành phố Đồng Hới")
        form.locator("input[name=title]").fill(TITLE)
        form.locator("input[name=date]").fill(day.isoformat())
        form.locator("input[name=time]").fill("14:30")
        form.locator("textarea[name=description]").fill("Chuẩn bị tài liệu kỳ họp cuối năm")
        # A People's Council session: its votes count on all delegates, chosen when scheduled.
        form.locator("select[name=rule_set]").select_option("council")
        secretary.screenshot(path=str(SCREENSHOTS / "schedule-form-tablet.png"))
        secretary.click("#schedule-submit")
        secretary.wait_for_url(re.compile(r".*/meetings/\d+$"))
        meeting_path = secretary.url.removeprefix(demo_server.base)
        assert secretary.locator("h1").inner_text() == TITLE
        # The console shows the working rules chosen when scheduling.
        secretary.wait_for_selector("#proc-rule-set")
        assert secretary.locator("#proc-rule-set option:checked").inner_text() == \
            "Kỳ họp HĐND (quá nửa tổng số đại biểu)"

        # The members panel: only the secretary so far, without a remove button for herself.
        table = secretary.locator("#members-table tbody")
        secretary.wait_for_selector("#person-select option")
        assert table.locator("tr").count() == 1
        assert "Trần Thị Lan" in table.inner_text()
        assert table.locator("button.remove").count() == 0
        assert secretary.locator("#nodes-block").is_hidden()  # not a cascade node

        secretary.locator("#invite-person").screenshot(
            path=str(SCREENSHOTS / "members-invite-unfiltered.png"))

        # Typed without diacritics, the filter still finds "Lê Minh Tuấn" (and only him).
        secretary.fill("#person-filter", "le minh TUAN")
        assert secretary.locator("#person-select option").count() == 1
        assert secretary.locator("#person-select").input_value() != ""
        secretary.select_option("#person-role", "delegate")
        secretary.click("#invite-person-submit")
        secretary.wait_for_selector("#members-table tr:has-text('Lê Minh Tuấn')")
        assert "Đại biểu" in table.locator("tr:has-text('Lê Minh Tuấn')").inner_text()

        secretary.fill("#site-filter", "dong phu")
        assert secretary.locator("#site-select option").count() == 1
        secretary.click("#invite-site-submit")
        secretary.wait_for_selector("#members-table tr:has-text('Điểm cầu Phường Đồng Phú')")
        assert table.locator("tr").count() == 3
        assert secretary.locator("#members-status").inner_text().startswith("Đã mời")
        secretary.locator("#members-panel").scroll_into_view_if_needed()
        secretary.screenshot(path=str(SCREENSHOTS / "members-panel-tablet.png"))
        secretary.locator("#members-panel").screenshot(
            path=str(SCREENSHOTS / "members-panel-only.png"))

        # The dashboard shows the time as typed, in the configured zone (Asia/Ho_Chi_Minh).
        secretary.goto(demo_server.base + "/meetings")
        card = secretary.locator(f".card:has(a[href='{meeting_path}'])")
        assert f"{day:%d/%m/%Y} 14:30" in card.inner_text()
        assert secretary.errors == []

        delegate = log_in(browser, demo_server, "daibieu")
        assert delegate.locator("h1").inner_text() == "Cuộc họp của tôi"
        assert delegate.locator("#schedule").count() == 0  # delegates do not schedule
        titles = delegate.locator(".meeting-title").all_inner_texts()
        assert TITLE in titles
        delegate.click(f"a[href='{meeting_path}']")
        delegate.wait_for_url(f"**{meeting_path}")
        assert delegate.locator("#members-panel").count() == 0  # read-only list for others
        assert "Lê Minh Tuấn" in delegate.locator("ul.members").inner_text()
        assert delegate.errors == []
