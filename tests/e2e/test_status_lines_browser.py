"""Status lines do not go stale: "Đã tải lên; đang xử lý các trang." shows while a new
document's pages are prepared and clears once it is ready."""

from __future__ import annotations

import re
from pathlib import Path

import pymupdf
import pytest

from testkit.browser import chromium
from testkit.processes import ServerProcess

pytestmark = pytest.mark.browser
PREPARING = "Đã tải lên; đang xử lý các trang."


@pytest.fixture
def demo_server(shared_demo_server: ServerProcess) -> ServerProcess:
    return shared_demo_server  # only logs in and reads (tests/e2e/conftest.py)


def test_the_processing_line_clears_when_the_document_is_ready(demo_server: ServerProcess,
                                                               tmp_path: Path) -> None:
    pdf = tmp_path / "to-trinh.pdf"
    doc = pymupdf.open()
    for n in range(6):
        doc.new_page().insert_text((72, 90), f"To trinh - trang {n + 1}", fontsize=20)
    doc.save(str(pdf))
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
        page.goto(f"{demo_server.base}/login?next=/meetings")
        page.fill("input[name=username]", "thuky")
        page.fill("input[name=password]", demo_server.logins()["thuky"])
        page.click("button[type=submit]")
        page.click(".meeting-title")
        page.wait_for_url(re.compile(r".*/meetings/\d+$"))
        page.goto(page.url + "/documents")
        page.wait_for_selector("#documents[data-ready=true]", timeout=30_000)
        page.evaluate("""() => { window.statusLines = [];
            const s = document.getElementById('upload-status');
            new MutationObserver(() => window.statusLines.push(s.textContent))
              .observe(s, {childList: true, characterData: true, subtree: true}); }""")
        if not page.locator("#upload-submit").is_visible():
            page.click("#upload-box summary")
        page.set_input_files("#upload-file", str(pdf))
        page.fill("#upload-title", "Tờ trình")
        page.click("#upload-submit")
        page.locator(".doc-item[data-status='ready']", has_text="Tờ trình").wait_for(timeout=60_000)
        page.wait_for_function("() => document.getElementById('upload-status').textContent === ''",
                               timeout=10_000)
        assert PREPARING in page.evaluate("window.statusLines")  # it was said, then cleared
        item = page.locator(".doc-item", has_text="Tờ trình")
        assert PREPARING not in item.inner_text()
