"""Playwright driving Debian's chromium (the browser cannot be downloaded here)."""

from __future__ import annotations

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
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} missing: the setup script must install chromium")
        pytest.skip(f"{CHROMIUM} is not installed (bash scripts/setup.sh --test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


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
