"""Playwright driving Debian's chromium (the browser cannot be downloaded here)."""

from __future__ import annotations

import asyncio
import atexit
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
        "--allow-loopback-in-peer-connection"]


@contextmanager
def chromium() -> Iterator[Browser]:
    """Chromium, driven by Playwright's sync API. One browser serves the whole test process
    (the browser tests run one after another on one worker): a launch with Playwright's
    driver took 1-3 s of a loaded box, ~20 times in the browser group. What is opened in
    it meanwhile (contexts, and the pages made by `browser.new_page`) is closed when the
    `with` ends: each context is a profile of its own (cookies, storage, cache, service
    workers), so nothing carries over to the next test."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} missing: the setup script must install chromium")
        pytest.skip(f"{CHROMIUM} is not installed (bash scripts/setup.sh --test installs it)")
    browser = _shared_browser()
    before = set(browser.contexts)
    _SHARED["depth"] += 1
    try:
        yield browser
    finally:
        try:
            for context in browser.contexts:
                if context not in before:
                    context.close()
        finally:
            _SHARED["depth"] -= 1
            if _SHARED["depth"] == 0:
                _idle()


# Playwright's sync API runs its event loop in a greenlet and leaves that loop marked as
# the thread's running one between its calls (playwright/_impl/_greenlets.py); a test of
# pytest-asyncio would then be refused a loop of its own. So the mark is taken off while
# no `with chromium()` is open, and put back when one opens (private asyncio calls, the
# ones Playwright itself makes).
_SHARED: dict[str, Any] = {"depth": 0}


def _shared_browser() -> Browser:
    if "playwright" not in _SHARED:
        from playwright.sync_api import sync_playwright

        manager = sync_playwright()
        _SHARED["playwright"] = manager.start()
        _SHARED["loop"] = manager._loop  # marked running by now
        atexit.register(_stop_shared)
    else:
        asyncio._set_running_loop(_SHARED["loop"])  # as Playwright expects between calls
    browser: Browser | None = _SHARED.get("browser")
    if browser is None or not browser.is_connected():
        browser = _SHARED["playwright"].chromium.launch(executable_path=CHROMIUM, args=ARGS,
                                                        headless=True)
        _SHARED["browser"] = browser
    return browser


def _idle() -> None:
    asyncio._set_running_loop(None)


def _stop_shared() -> None:
    try:
        asyncio._set_running_loop(_SHARED["loop"])
        if "browser" in _SHARED:
            _SHARED.pop("browser").close()
        _SHARED.pop("playwright").stop()
    except Exception:  # noqa: BLE001 - the process is ending: its driver and browser end too
        pass
    finally:
        _idle()


# Added to a context (context.add_init_script) before its pages load: counts what the page is
# still waiting for (fetches, socket.io requests awaiting their answer) and when its DOM last
# changed, for wait_settled.
SETTLE_SCRIPT = r"""(() => {
  const s = window.__settle = { busy: 0, last: performance.now(), connected: false };
  const touch = () => { s.last = performance.now(); };
  new MutationObserver(touch).observe(document, {
    subtree: true, childList: true, attributes: true, characterData: true });
  const fetch0 = window.fetch;
  window.fetch = function (...args) {
    s.busy += 1; touch();
    return fetch0.apply(this, args).finally(() => { s.busy -= 1; touch(); });
  };
  // socket.io over a WebSocket: '42<id>[...]' asks for an answer, '43<id>[...]' is one,
  // '40' is the namespace's connection (socket.io's packet types; a namespace may precede).
  const WS = window.WebSocket;
  window.WebSocket = class extends WS {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (e) => {
        if (typeof e.data !== "string") return;
        if (/^40/.test(e.data)) s.connected = true;
        if (/^43(\/[^,]*,)?\d/.test(e.data)) s.busy -= 1;
        touch();
      });
    }
    send(data) {
      if (typeof data === "string" && /^42(\/[^,]*,)?\d/.test(data)) s.busy += 1;
      super.send(data);
    }
  };
})();"""


def wait_settled(page: Any, quiet_ms: int = 150, timeout_ms: int = 30_000) -> None:
    """The page (its context has SETTLE_SCRIPT) has loaded, connected its socket.io socket if it
    has one, has no fetch or socket.io request unanswered, and its DOM has not changed for
    `quiet_ms`: what it fills in from the server is on the screen."""
    page.wait_for_function(
        """(quiet) => { const s = window.__settle;
            return document.readyState === 'complete' && s !== undefined
              && (typeof window.io !== 'function' || s.connected)
              && s.busy <= 0 && performance.now() - s.last >= quiet; }""",
        arg=quiet_ms, timeout=timeout_ms, polling=50)


def form_login(context: Any, base: str, username: str, password: str, path: str) -> Any:
    """A new page of `context`, logged in through the login form and landed on `path`; the
    page's uncaught script errors collect in `page.errors` (tests assert it stays empty)."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    page.goto(f"{base}/login?next={path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{path}")
    return page


def session_page(context: Any, base: str, username: str, password: str, path: str) -> Any:
    """As form_login, but the session comes from /api/login (the context's request shares its
    cookies): a new page of `context` opened at `path`, its script errors in `page.errors`.
    For tests whose subject is not the login (test_login_browser.py clicks through the form):
    the login page's load and the form's round trip were ~0.7 s of each of their logins."""
    api_login(context.request, base, username, password)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    page.goto(base + path)
    return page


def api_login(request: Any, base: str, username: str, password: str) -> str:
    """Log a Playwright request context in; its CSRF token."""
    answer = request.post(base + "/api/login", data={"username": username, "password": password})
    assert answer.ok, answer.text()
    return str(answer.json()["csrf_token"])


def publish_pdfs(request: Any, base: str, csrf: str, meeting_id: int,
                 documents: list[tuple[Path, str, bool]]) -> list[int]:
    """Upload (pdf, title, confidential) documents to a meeting, publish them and wait
    until each is ready (a second or two each); their ids."""
    ids = []
    for pdf, title, confidential in documents:
        upload = request.post(
            f"{base}/api/meetings/{meeting_id}/documents", headers={"X-CSRF-Token": csrf},
            multipart={"title": title, "confidential": "1" if confidential else "0",
                       "file": {"name": pdf.name, "mimeType": "application/pdf",
                                "buffer": pdf.read_bytes()}})
        assert upload.status == 202, upload.text()
        ids.append(int(upload.json()["id"]))
    deadline = time.monotonic() + 120
    for doc_id in ids:
        published = request.post(f"{base}/api/documents/{doc_id}/publish",
                                 headers={"X-CSRF-Token": csrf}, data={"published": True})
        assert published.ok, published.text()
        status = ""
        while status != "ready" and time.monotonic() < deadline:
            time.sleep(0.1)
            status = request.get(f"{base}/api/documents/{doc_id}").json()["status"]
        assert status == "ready", f"document {doc_id} is {status!r}"
    return ids


def fresh_meeting(browser: Any, base: str, chair_password: str,
                  delegates: tuple[str, ...] = ("daibieu",)) -> int:
    """A new scheduled meeting of the demo's chair (chutri) with the named demo people as its
    delegates, as in the demo meeting: its id. Tests that share one server each open one of
    their own, so none sees another's agenda, votes or status (a server start is 4-10 s on a
    loaded box)."""
    from rooms.demo import DEMO_MEETING, DEMO_PEOPLE

    setup = browser.new_context()
    try:
        csrf = api_login(setup.request, base, "chutri", chair_password)
        headers = {"X-CSRF-Token": csrf}
        chair = setup.request.get(base + "/api/session").json()["user"]
        made = setup.request.post(base + "/api/meetings", headers=headers, data={
            "title": "Kỳ họp chuyên đề", "unit_id": chair["unit_id"],
            "starts_at": "2026-12-01T08:00:00+07:00"})
        assert made.status == 201, made.text()
        meeting_id = int(made.json()["id"])
        listed = setup.request.get(base + "/api/meetings").json()["meetings"]
        (demo_id,) = [m["id"] for m in listed if m["title"] == DEMO_MEETING]
        members = setup.request.get(f"{base}/api/meetings/{demo_id}/members").json()["members"]
        names = {username: full_name for username, full_name, *_ in DEMO_PEOPLE}
        for username in delegates:
            (user_id,) = [m["user_id"] for m in members if m["name"] == names[username]]
            added = setup.request.post(f"{base}/api/meetings/{meeting_id}/members",
                                       headers=headers,
                                       data={"role": "delegate", "user_id": user_id})
            assert added.status == 201, added.text()
        return meeting_id
    finally:
        setup.close()
