"""Accessibility: every distinct page, for each role that sees it differently, at 1280×800,
800×1280 and 1600×1000, checked with axe-core once what it fills in from the server is there
(WCAG 2.1 A and AA rules; axe-core from web_client/node_modules, pinned in
package-lock.json): no serious or critical violation. Keyboard focus is visible (a focused
control gets an outline). With HOPSO_SCREENSHOTS=1 it also writes each role's meeting
screen at 1280×800 to docs/screenshots/ (meeting-<user>.png: the top of the page,
meeting-<user>-console.png: the procedure console)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.browser import SETTLE_SCRIPT, api_login, chromium, wait_settled
from testkit.processes import ServerProcess, start_server

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "web_client" / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ROOT / "docs" / "screenshots"
VIEWPORTS = ({"width": 1280, "height": 800}, {"width": 800, "height": 1280},
             {"width": 1600, "height": 1000})
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
MEETING = "/meetings/{m}"
# Each screen once: the projector is the same page for every role that may open it, and
# the meetings list is the chair's and secretary's (who may schedule) or everyone else's.
PAGES: dict[str | None, tuple[str, ...]] = {
    None: ("/login", "/no/such/page"),
    "chutri": (MEETING, MEETING + "/documents", MEETING + "/projector"),
    "thuky": ("/meetings", MEETING, MEETING + "/documents"),
    "daibieu": ("/meetings", MEETING, MEETING + "/documents", "/admin/audit"),  # 403 page
    "kythuat": (MEETING,),
    "quantri": ("/admin/units", "/admin/users", "/admin/nodes", "/admin/audit"),
}


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server("--demo", "--data-dir", str(tmp_path_factory.mktemp("e2e-a11y")),
                          env={"HOPSO_FAST_HASH": "1"}, preimported=True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as started:
        yield started


def serious_violations(page: Any) -> list[dict[str, Any]]:
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate("async (tags) => (await axe.run(document, {runOnly: {type: 'tag',"
                           " values: tags}, resultTypes: ['violations']})).violations", TAGS)
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result if v["impact"] in ("serious", "critical")]


def open_meeting(server: ServerProcess, browser: Any) -> int:
    context = browser.new_context()
    csrf = api_login(context.request, server.base, "chutri", server.logins()["chutri"])
    meetings = context.request.get(server.base + "/api/meetings").json()["meetings"]
    meeting_id = int(meetings[0]["id"])
    if meetings[0]["status"] == "scheduled":
        opened = context.request.post(f"{server.base}/api/meetings/{meeting_id}/open",
                                      headers={"X-CSRF-Token": csrf})
        assert opened.ok, opened.text()
    context.close()
    return meeting_id


@pytest.mark.timeout(600)  # ~50 page views, each checked by axe
def test_every_page_for_every_role_has_no_serious_violation(demo_server: ServerProcess,
                                                            browser: Any) -> None:
    found: dict[str, list[dict[str, Any]]] = {}
    meeting_id = open_meeting(demo_server, browser)
    # The check itself works: a page with a known critical fault is caught.
    probe = browser.new_page()
    probe.set_content('<html lang="vi"><title>x</title><main><img src="x.png"></main></html>')
    assert [v["id"] for v in serious_violations(probe)] == ["image-alt"]
    probe.close()
    for role, paths in PAGES.items():
        # axe is injected as an inline script: the test's context bypasses our CSP.
        context = browser.new_context(bypass_csp=True)
        context.add_init_script(SETTLE_SCRIPT)
        if role is not None:
            api_login(context.request, demo_server.base, role, demo_server.logins()[role])
        page = context.new_page()
        for viewport in VIEWPORTS:
            page.set_viewport_size(viewport)
            for path in paths:
                page.goto(demo_server.base + path.format(m=meeting_id))
                wait_settled(page)  # the live parts are filled in
                where = f"{role or 'anonymous'} {path} {viewport['width']}x{viewport['height']}"
                bad = serious_violations(page)
                if bad:
                    found[where] = bad
                if (os.environ.get("HOPSO_SCREENSHOTS") == "1" and path == MEETING
                        and viewport["width"] == 1280):
                    SHOTS.mkdir(exist_ok=True)
                    page.screenshot(path=str(SHOTS / f"meeting-{role}.png"))
                    # ...and the procedure console, scrolled to its top.
                    page.evaluate("() => document.getElementById('procedure')"
                                  "?.scrollIntoView({block: 'start'})")
                    page.screenshot(path=str(SHOTS / f"meeting-{role}-console.png"))
        context.close()
    assert not found, json.dumps(found, ensure_ascii=False, indent=1)


def test_keyboard_focus_is_visible(demo_server: ServerProcess, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        page.goto(demo_server.base + "/login")
        page.keyboard.press("Tab")
        for _ in range(12):
            page.keyboard.press("Tab")
            style = page.evaluate("() => { const s = getComputedStyle(document.activeElement);"
                                  " return [document.activeElement.tagName, s.outlineStyle,"
                                  " s.outlineWidth]; }")
            if style[0] in ("INPUT", "BUTTON", "A", "SELECT"):
                assert style[1] != "none" and style[2] != "0px", style
    finally:
        page.close()
