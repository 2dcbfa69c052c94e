"""The pre-join check shows the microphone's level (WebAudio AnalyserNode on the fake
microphone's tone); a tile is pinned as this person's main view and shown full screen."""

from __future__ import annotations

import pytest

from testkit.browser import chromium, fresh_meeting
from testkit.processes import ServerProcess

pytestmark = pytest.mark.browser


@pytest.fixture
def demo_server(shared_demo_server: ServerProcess) -> ServerProcess:
    return shared_demo_server  # on a meeting of its own (tests/e2e/conftest.py)


def test_mic_meter_pin_and_full_screen(demo_server: ServerProcess) -> None:
    with chromium() as browser:
        meeting_id = fresh_meeting(browser, demo_server.base, demo_server.logins()["chutri"],
                                   delegates=())
        context = browser.new_context(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
        page = context.new_page()
        page.goto(f"{demo_server.base}/login?next=/meetings/{meeting_id}")
        page.fill("input[name=username]", "chutri")
        page.fill("input[name=password]", demo_server.logins()["chutri"])
        page.click("button[type=submit]")
        page.wait_for_url(f"**/meetings/{meeting_id}")
        page.click("button[data-action$='/open']")
        page.wait_for_selector("#meeting-status.status-open")

        assert page.locator("#video-mic-level").get_attribute("value") in ("0", None)
        page.click("#video-preview-start")
        # The fake microphone beeps: the meter moves within a few seconds.
        page.wait_for_function(
            "() => { const m = document.getElementById('video-mic-level');"
            " window.__peak = Math.max(window.__peak || 0, m.value); return window.__peak > 0.02; }",
            polling=50, timeout=10000)
        assert page.locator("label.video-meter").inner_text().startswith("Mức âm thanh micrô")

        page.click("#video-join")
        tile = page.locator("#video-tiles .tile").first
        tile.wait_for()
        pin = tile.locator("button.tile-pin")
        pin.click()
        assert pin.get_attribute("aria-pressed") == "true"
        assert page.locator("#video-stage").get_attribute("data-pinned")
        assert "is-pinned" in (tile.get_attribute("class") or "")
        page.click("#video-toggle-layout")  # video.js re-renders the stage: the pin stays
        assert page.locator("#video-stage").get_attribute("data-pinned")
        pin.click()
        assert page.locator("#video-stage").get_attribute("data-pinned") is None
        assert pin.get_attribute("aria-pressed") == "false"

        tile.locator("button.tile-full").click()
        page.wait_for_function("() => document.fullscreenElement?.classList.contains('tile')")
        page.evaluate("() => document.exitFullscreen()")
        context.close()
