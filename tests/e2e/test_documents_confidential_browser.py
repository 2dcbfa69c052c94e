"""Issue 17 in Chromium: a secretary and delegates on tablets. Confidentiality that follows the
document (an open reader switches to the watermarked pages, its service worker drops the PDF,
each read is in the access log), a new version followed live with the delegate's ink flagged
on the changed page, the secretary's summary of what changed, refusals in Vietnamese, and the
favicon. Assertions are on what a person sees: the pixels and the text on the page."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymupdf
import pytest
from PIL import Image

from testkit.browser import api_login, chromium, publish_pdfs
from testkit.processes import start_server
from tests.e2e.test_documents_browser import (
    WAIT_MS,
    Env,
    draw_and_save,
    make_pdf,
    shown_annotations,
    tool,
    wait_saved,
    wait_shown,
)

pytestmark = pytest.mark.browser
DELEGATE_NAME = "Lê Minh Tuấn"  # daibieu in the demo


def edited_pdf(path: Path) -> Path:
    """make_pdf's 3 pages, page 2 rewritten, a 4th page added."""
    doc = pymupdf.open(str(make_pdf(path.with_name("base-" + path.name), 3, "Dự thảo nghị quyết")))
    font = pymupdf.Font("notos")
    page = doc[1]
    page.add_redact_annot(pymupdf.Rect(60, 130, 560, 760))
    page.apply_redactions()
    page.insert_font(fontname="notos", fontbuffer=font.buffer)
    page.insert_text((72, 160), "Điều 2 được sửa: giảm dự toán còn 90 tỷ đồng", fontname="notos",
                     fontsize=12)
    extra = doc.new_page(width=595, height=842)
    extra.insert_font(fontname="notos", fontbuffer=font.buffer)
    extra.insert_text((72, 90), "Phụ lục mới", fontname="notos", fontsize=20)
    doc.save(str(path))
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("docs-confidential-e2e")
    server = start_server("--demo", "--data-dir", str(tmp / "data"), preimported=True)
    try:
        with chromium() as browser:
            setup = browser.new_context()
            csrf = api_login(setup.request, server.base, "thuky", server.logins()["thuky"])
            meeting_id = setup.request.get(server.base + "/api/meetings").json()["meetings"][0]["id"]
            documents = [(make_pdf(tmp / "to-trinh.pdf", 3, "Tờ trình nhân sự"), "Tờ trình nhân sự", False),
                         (make_pdf(tmp / "du-thao.pdf", 3, "Dự thảo nghị quyết"), "Dự thảo nghị quyết", False)]
            first, second = publish_pdfs(setup.request, server.base, csrf, meeting_id, documents)
            setup.close()
            yield Env(server, browser, meeting_id, first, second, tmp)
    finally:
        server.stop()


def secretary_page(env: Env, offline_socket: bool = False) -> tuple[Any, Any]:
    context = env.login("thuky")
    if offline_socket:  # the socket.io endpoint only (not the library's script), both transports
        context.route(re.compile(r"/socket\.io/\?"), lambda route: route.abort())
        context.route_web_socket(re.compile(r"/socket\.io/"), lambda ws: ws.close())
    page = context.new_page()
    page.on("pageerror", lambda e: env.page_errors.append(f"{page.url}: {e}"))
    page.goto(f"{env.server.base}/meetings/{env.meeting_id}/documents")
    page.wait_for_selector("#documents[data-ready=true]", timeout=WAIT_MS)
    return context, page


def item(page: Any, document_id: int) -> Any:
    return page.locator(f'.doc-item[data-document-id="{document_id}"]')


def grey_share(page: Any, selector: str, top: float = 0.0, bottom: float = 0.09) -> float:
    """The share of light-grey pixels (a watermark's tone, not black text, not white paper)
    in a horizontal band of an element as it is on the screen."""
    shot = Image.open(io.BytesIO(page.locator(selector).screenshot())).convert("L")
    w, h = shot.size
    band = shot.crop((0, int(h * top), w, int(h * bottom)))
    pixels = list(band.tobytes())
    return sum(1 for p in pixels if 150 <= p <= 242) / len(pixels)


def kept_pdfs(page: Any, document_id: int) -> list[str]:
    return page.evaluate("""async (id) => {
        const cache = await caches.open('hopso-data-1');
        return (await cache.keys()).map((r) => r.url)
            .filter((u) => u.includes(`/api/documents/${id}/pdf`));
    }""", document_id)


def access_entries(page: Any, document_id: int) -> list[dict[str, Any]]:
    answer = page.request.get(f"{page.url.split('/meetings')[0]}/api/documents/{document_id}/access")
    assert answer.ok, answer.text()
    return [e for e in answer.json()["entries"] if e["name"] == DELEGATE_NAME]


# Every toast a page shows, kept in window.__toasts: one stays 5 s, which a loaded CI box can
# spend between two of the test's waits (the toast came and went before it was looked for).
TOAST_LOG = """new MutationObserver(() => {
  const box = document.getElementById('toast');
  const seen = (window.__toasts ??= []);
  if (box && !box.hidden && seen[seen.length - 1] !== box.textContent) seen.push(box.textContent);
}).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});"""


def wait_toast(page: Any, text: str) -> None:
    page.wait_for_function("(text) => (window.__toasts ?? []).some((t) => t.includes(text))",
                           arg=text, timeout=WAIT_MS)


def wait_until(check: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_marked_confidential_while_open_the_reader_switches_and_forgets_the_pdf(env: Env) -> None:
    doc_id = env.document_id
    d_ctx = env.login("daibieu")
    d_ctx.add_init_script(TOAST_LOG)
    reader = env.open(d_ctx, 2, document_id=doc_id)
    assert reader.locator("#doc-stage").get_attribute("data-rendered") == "pdf"
    clear = grey_share(reader, ".page-box")
    # Its service worker kept the PDF for offline reading.
    reader.reload()
    reader.wait_for_selector("#doc-stage[data-synced=true][data-rendered]", timeout=WAIT_MS)
    assert wait_until(lambda: kept_pdfs(reader, doc_id)), "the worker never kept the PDF"

    s_ctx, secretary = secretary_page(env)
    button = item(secretary, doc_id).locator(".doc-confidential")
    assert button.inner_text() == "Mật: tắt"
    button.click()
    note = item(secretary, doc_id).locator(".doc-note")
    note.wait_for(state="visible", timeout=WAIT_MS)
    secretary.wait_for_function(
        f"() => document.querySelector('.doc-item[data-document-id=\"{doc_id}\"] .doc-note')"
        ".textContent.includes('người đang xem đã chuyển sang trang có watermark')", timeout=WAIT_MS)
    assert button.inner_text() == "Mật: bật"

    # The open reader re-renders at once: server images with the delegate's name, same page.
    reader.wait_for_selector("#doc-stage[data-rendered=image][data-page='1']", timeout=WAIT_MS)
    wait_toast(reader, "tài liệu mật")
    reader.wait_for_function("() => [...document.querySelectorAll('.page-box img.page-layer')]"
                             ".some((img) => img.complete && img.naturalWidth > 0)", timeout=WAIT_MS)
    watermarked = grey_share(reader, ".page-box")
    assert watermarked > 0.02 and watermarked > 5 * max(clear, 0.001), (clear, watermarked)
    # The worker dropped the PDF, and does not answer for it any more.
    assert wait_until(lambda: not kept_pdfs(reader, doc_id)), kept_pdfs(reader, doc_id)
    status = reader.evaluate(f"""async () => (await fetch('/api/documents/{doc_id}/pdf?version=1',
                                 {{cache: 'no-store'}})).status""")
    assert status == 403
    # Two more reads of the page: each is in the access log.
    def page_reads() -> list[dict[str, Any]]:
        return [e for e in access_entries(secretary, doc_id) if e["kind"] == "page"]

    before = len(page_reads())
    reader.click("#page-next")
    reader.wait_for_selector("#doc-stage[data-page='2'][data-rendered=image]", timeout=WAIT_MS)
    reader.reload()  # nothing kept: the same page is asked of the server again
    reader.wait_for_selector("#doc-stage[data-synced=true][data-page='2'][data-rendered=image]",
                             timeout=WAIT_MS)
    assert wait_until(lambda: len(page_reads()) >= before + 2), (before, page_reads())
    reads = page_reads()
    assert [e["page"] for e in reads[: len(reads) - before]] == [2, 2]
    s_ctx.close()
    d_ctx.close()


def test_new_version_followed_live_with_flagged_ink_and_a_summary(env: Env) -> None:
    doc_id = env.confidential_id  # here: the second, ordinary document
    d_ctx = env.login("daibieu")
    d_ctx.add_init_script(TOAST_LOG)
    reader = env.open(d_ctx, 2, document_id=doc_id)
    tool(reader, "pen")
    stroke = draw_and_save(reader, [(0.3, 0.4), (0.5, 0.45), (0.7, 0.4)])
    moved = draw_and_save(reader, [(0.3, 0.55), (0.5, 0.6), (0.7, 0.55)])
    dropped = draw_and_save(reader, [(0.3, 0.7), (0.5, 0.75), (0.7, 0.7)])

    s_ctx, secretary = secretary_page(env)
    row = item(secretary, doc_id)
    row.locator(".doc-version-file").set_input_files(str(edited_pdf(env.tmp / "du-thao-v2.pdf")))
    changes = row.locator(".doc-changes")
    secretary.wait_for_function(
        f"() => document.querySelector('.doc-item[data-document-id=\"{doc_id}\"] .doc-changes')"
        ".textContent.includes('Trang 2: đã sửa')", timeout=WAIT_MS)
    text = changes.inner_text()
    assert "Phiên bản 2" in text and "Trang 4: trang mới" in text and "Trang 1" not in text, text

    # The delegate is still on page 2, now of version 2, with the stroke marked for review.
    wait_toast(reader, "phiên bản mới")
    reader.wait_for_selector("#doc-stage[data-synced=true][data-page='1'][data-rendered]",
                             timeout=WAIT_MS)
    assert {stroke, moved, dropped} <= set(shown_annotations(reader))
    panel = reader.locator(".flag-panel")
    panel.wait_for(state="visible", timeout=WAIT_MS)
    assert panel.locator(".flag-row").count() == 3
    assert "Ghi chú này nằm trên trang đã thay đổi ở phiên bản mới." in panel.inner_text()
    mark = reader.locator(f'.flag-mark[data-annotation-id="{stroke}"]')
    shot = Image.open(io.BytesIO(mark.screenshot())).convert("RGB")
    orange = sum(1 for r, g, b in zip(*[iter(shot.tobytes())] * 3, strict=True) if r > 200 and 60 < g < 140 and b < 60)
    assert orange > 50, orange  # the dashed orange frame a person sees around the stroke
    # Delete one, move one to page 3, keep the last: each as its author sees it.
    reader.click(f'.flag-row[data-annotation-id="{dropped}"] .flag-delete')
    wait_shown(reader, lambda ids: f"!{ids}.includes('{dropped}')")
    reader.fill(f'.flag-row[data-annotation-id="{moved}"] .flag-move-page', "3")
    reader.click(f'.flag-row[data-annotation-id="{moved}"] .flag-move')
    wait_shown(reader, lambda ids: f"!{ids}.includes('{moved}')")
    assert panel.locator(".flag-row").count() == 1
    reader.click(".flag-row .flag-keep")
    panel.wait_for(state="hidden", timeout=WAIT_MS)
    assert set(shown_annotations(reader)) == {stroke}
    wait_saved(reader)
    reader.click("#page-next")
    reader.wait_for_selector("#doc-stage[data-page='2'][data-rendered]", timeout=WAIT_MS)
    assert len(shown_annotations(reader)) == 1  # the moved stroke, under a new id, not flagged
    assert reader.locator(".flag-panel").is_hidden()
    flagged = reader.evaluate(f"""async () => {{
        const socket = io({{ transports: ['websocket'], forceNew: true }});
        await new Promise((resolve) => socket.on('connect', resolve));
        const ack = await socket.emitWithAck('annotation:snapshot',
            {{ document_id: {doc_id}, version: 2, pages: [1] }});
        socket.disconnect();
        return ack.result.pages[0].annotations.map((a) => a.flagged);
    }}""")
    assert flagged == [False]
    s_ctx.close()
    d_ctx.close()


def test_refusals_are_clear_and_change_nothing(env: Env) -> None:
    doc_id = env.confidential_id
    # A stale tab: it never hears of the version uploaded after it loaded (no socket).
    s_ctx, stale = secretary_page(env, offline_socket=True)
    csrf = s_ctx.csrf
    details = f"{env.server.base}/api/documents/{doc_id}"
    shown = s_ctx.request.get(details).json()["version"]
    upload = s_ctx.request.post(
        f"{env.server.base}/api/documents/{doc_id}/versions", headers={"X-CSRF-Token": csrf},
        multipart={"file": {"name": "v3.pdf", "mimeType": "application/pdf",
                            "buffer": make_pdf(env.tmp / "v3.pdf", 2, "Bản thứ ba").read_bytes()}})
    assert upload.status == 202, upload.text()
    assert wait_until(lambda: s_ctx.request.get(details).json()["version"] == shown + 1, 60)
    item(stale, doc_id).locator(".doc-confidential").click()
    stale.wait_for_selector(f'.doc-item[data-document-id="{doc_id}"] .doc-note:has-text('
                            '"Trang này đang hiển thị phiên bản cũ")', timeout=WAIT_MS)
    assert not s_ctx.request.get(f"{env.server.base}/api/documents/{doc_id}").json()["confidential"]
    # Withdrawn while a delegate reads it: the reader closes it at once, the worker forgets it.
    r_ctx = env.login("daibieu2")
    r_ctx.add_init_script(TOAST_LOG)
    reading = env.open(r_ctx, 1, document_id=doc_id)
    assert wait_until(lambda: kept_pdfs(reading, doc_id)), "the worker never kept the PDF"
    answer = s_ctx.request.post(f"{env.server.base}/api/documents/{doc_id}/publish",
                                headers={"X-CSRF-Token": csrf}, data={"published": False})
    assert answer.ok
    reading.wait_for_selector("#documents.no-doc", timeout=WAIT_MS)
    wait_toast(reading, "Tài liệu đã bị thu hồi.")
    assert wait_until(lambda: not kept_pdfs(reading, doc_id)), kept_pdfs(reading, doc_id)
    r_ctx.close()
    # A withdrawn document takes no new version.
    stale.reload()
    stale.wait_for_selector("#documents[data-ready=true]", timeout=WAIT_MS)
    item(stale, doc_id).locator(".doc-version-file").set_input_files(
        str(make_pdf(env.tmp / "v4.pdf", 1, "Bản thứ tư")))
    stale.wait_for_selector(f'.doc-item[data-document-id="{doc_id}"] .doc-note:has-text('
                            '"Tài liệu đã bị thu hồi")', timeout=WAIT_MS)
    versions = s_ctx.request.get(details).json()["versions"]
    assert [v["version"] for v in versions] == list(range(1, shown + 2))
    # A delegate's page has no switch, and the API refuses them.
    d_ctx = env.login("daibieu")
    reader = d_ctx.new_page()
    reader.goto(f"{env.server.base}/meetings/{env.meeting_id}/documents")
    reader.wait_for_selector("#documents[data-ready=true]", timeout=WAIT_MS)
    assert reader.locator(".doc-confidential").count() == 0
    refused = d_ctx.request.patch(f"{env.server.base}/api/documents/{env.document_id}",
                                  headers={"X-CSRF-Token": d_ctx.csrf}, data={"confidential": False})
    assert refused.status == 403
    # The favicon, on every page.
    assert reader.locator('link[rel="icon"]').count() == 2
    icon = d_ctx.request.get(f"{env.server.base}/favicon.ico")
    assert icon.ok and icon.headers["content-type"] == "image/x-icon"
    d_ctx.close()
    s_ctx.close()


@pytest.fixture(autouse=True)
def no_script_errors(env: Env) -> Iterator[None]:
    env.page_errors.clear()
    yield
    assert not env.page_errors, env.page_errors

