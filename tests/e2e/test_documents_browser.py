"""Issue 5 on real tablets (Chromium, touch, 800×1280 and 390×844) against a real server:
upload with progress, private and shared ink, following the presenter, offline drawing,
and the annotated export read back with PyMuPDF."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymupdf
import pytest

from testkit.browser import api_login, chromium, publish_pdfs
from testkit.processes import ServerProcess, start_server

pytestmark = pytest.mark.browser

TABLET = {"width": 800, "height": 1280}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 30_000  # generous: a loaded CI machine renders slowly; passing runs never wait it out
AGENDA_ITEM = "Kế hoạch chuyển đổi số năm 2026 của thành phố"
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"


def make_pdf(path: Path, pages: int, heading: str) -> Path:
    """A text PDF in Vietnamese (Noto Sans covers the diacritics)."""
    doc = pymupdf.open()
    font = pymupdf.Font("notos")
    for i in range(pages):
        page = doc.new_page(width=595, height=842)
        page.insert_font(fontname="notos", fontbuffer=font.buffer)
        page.insert_text((72, 90), f"{heading} — trang {i + 1}", fontname="notos", fontsize=20)
        for line in range(21):
            page.insert_text((72, 140 + line * 28),
                             f"Mục {line + 1}: chuyển đổi số ở phường Đồng Phú, trang {i + 1}",
                             fontname="notos", fontsize=12)
        page.insert_text((72, 140 + 21 * 28), f"Dự toán ngân sách {101 + i} tỷ đồng",
                         fontname="notos", fontsize=12)
    doc.save(str(path))
    doc.close()
    return path


@dataclass
class Env:
    server: ServerProcess
    browser: Any
    meeting_id: int
    document_id: int
    confidential_id: int
    tmp: Path
    page_errors: list[str] = field(default_factory=list)

    def login(self, username: str, viewport: dict[str, int] = TABLET) -> Any:
        """A fresh tablet (browser context) logged in as username."""
        context = self.browser.new_context(viewport=viewport, has_touch=True, locale="vi-VN")
        answer = context.request.post(self.server.base + "/api/login", data={
            "username": username, "password": self.server.logins()[username]})
        assert answer.ok, answer.text()
        context.csrf = answer.json()["csrf_token"]
        return context

    def open(self, context: Any, page_no: int = 1, document_id: int | None = None) -> Any:
        page = context.new_page()
        page.on("pageerror", lambda e: self.page_errors.append(f"{page.url}: {e}"))
        doc = document_id or self.document_id
        page.goto(f"{self.server.base}/meetings/{self.meeting_id}/documents?doc={doc}&page={page_no}")
        page.wait_for_selector("#documents[data-ready=true]", timeout=WAIT_MS)
        page.wait_for_selector(f"#doc-stage[data-synced=true][data-page='{page_no - 1}'][data-rendered]",
                               timeout=WAIT_MS)
        return page


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("docs-e2e")
    server = start_server("--demo", "--data-dir", str(tmp / "data"), preimported=True)
    try:
        with chromium() as browser:
            setup = browser.new_context()
            csrf = api_login(setup.request, server.base, "thuky", server.logins()["thuky"])
            meeting_id = setup.request.get(server.base + "/api/meetings").json()["meetings"][0]["id"]
            agenda = setup.request.post(f"{server.base}/api/meetings/{meeting_id}/agenda",
                                        headers={"X-CSRF-Token": csrf}, data={"title": AGENDA_ITEM})
            assert agenda.ok, agenda.text()
            documents = [(make_pdf(tmp / "bao-cao.pdf", 8, "Báo cáo chuyển đổi số"),
                          "Báo cáo chuyển đổi số 2026", False),
                         (make_pdf(tmp / "mat.pdf", 3, "Tài liệu mật"),
                          "Phương án nhân sự (mật)", True)]
            document_id, confidential_id = publish_pdfs(setup.request, server.base, csrf,
                                                        meeting_id, documents)
            setup.close()
            yield Env(server, browser, meeting_id, document_id, confidential_id, tmp)
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def no_script_errors(env: Env) -> Iterator[None]:
    env.page_errors.clear()
    yield
    assert not env.page_errors, env.page_errors


# --- drawing helpers ------------------------------------------------------------------------

def stage_box(page: Any) -> dict[str, float]:
    box = page.locator("#doc-stage").bounding_box()
    assert box is not None
    return box


def draw(page: Any, points: list[tuple[float, float]], *, pen: bool = False) -> None:
    """A stroke through points given as fractions of the stage (mouse, or a stylus with pressure)."""
    box = stage_box(page)
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    if not pen:
        page.mouse.move(*xy[0])
        page.mouse.down()
        for x, y in xy[1:]:
            page.mouse.move(x, y, steps=4)
        page.mouse.up()
        return
    cdp = page.context.new_cdp_session(page)
    base = {"button": "left", "pointerType": "pen", "clickCount": 1}
    cdp.send("Input.dispatchMouseEvent", {"type": "mousePressed", "x": xy[0][0], "y": xy[0][1],
                                          "force": 0.3, **base})
    for i, (x, y) in enumerate(xy[1:], start=1):
        cdp.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y, "buttons": 1,
                                              "force": min(0.3 + 0.1 * i, 1.0), **base})
    cdp.send("Input.dispatchMouseEvent", {"type": "mouseReleased", "x": xy[-1][0], "y": xy[-1][1],
                                          "force": 0, **base})
    cdp.detach()


def tool(page: Any, name: str) -> None:
    page.click(f"[data-tool={name}]")


def shown_annotations(page: Any) -> list[str]:
    return (page.locator("#doc-stage").get_attribute("data-annotations") or "").split()


def wait_shown(page: Any, condition: Callable[[str], str]) -> None:
    """Wait until the page's annotation ids (JS array `ids`) satisfy condition("ids").
    A function, not an expression: expressions need eval, which the CSP forbids."""
    page.wait_for_function(
        "() => { const ids = (document.querySelector('#doc-stage').dataset.annotations || '')"
        f".split(' ').filter(Boolean); return {condition('ids')}; }}", timeout=WAIT_MS)


def wait_saved(page: Any) -> None:
    """Every op of this tablet acknowledged by the server."""
    page.wait_for_selector("#documents[data-unsent='0'] #net-state[data-state=saved]", timeout=WAIT_MS)


def draw_and_save(page: Any, points: list[tuple[float, float]], *, pen: bool = False) -> str:
    before = set(shown_annotations(page))
    draw(page, points, pen=pen)
    wait_shown(page, lambda ids: f"ids.length === {len(before) + 1}")
    wait_saved(page)
    (new,) = set(shown_annotations(page)) - before
    return new


def server_annotations(page: Any, document_id: int, page_index: int) -> dict[str, Any]:
    """What the server holds for this user on a page, asked over a second socket of the page."""
    answer = page.evaluate("""async ([documentId, pageIndex]) => {
        const socket = io({ transports: ['websocket'], forceNew: true });
        await new Promise((resolve) => socket.on('connect', resolve));
        const ack = await socket.emitWithAck('annotation:snapshot',
            { document_id: documentId, version: 1, pages: [pageIndex] });
        socket.disconnect();
        return ack;
    }""", [document_id, page_index])
    assert answer["ok"], answer
    return {a["id"]: a for p in answer["result"]["pages"] for a in p["annotations"]}


def ink_alpha(page: Any, fx: float, fy: float) -> int:
    """Highest opacity of the annotation canvas within 5 px of a fraction of the stage."""
    return page.evaluate("""([fx, fy]) => {
        const c = document.querySelector('#doc-stage canvas.ink-layer:not(.ink-live)');
        const r = Math.round(5 * devicePixelRatio);
        const x = Math.round(fx * c.width) - r, y = Math.round(fy * c.height) - r;
        const data = c.getContext('2d').getImageData(x, y, 2 * r + 1, 2 * r + 1).data;
        let most = 0;
        for (let i = 3; i < data.length; i += 4) most = Math.max(most, data[i]);
        return most;
    }""", [fx, fy])


# --- tests ------------------------------------------------------------------------------------

def test_secretary_uploads_and_watches_the_progress_bar_reach_ready(env: Env) -> None:
    pdf = make_pdf(env.tmp / "ke-hoach.pdf", 8, "Kế hoạch năm 2026")
    context = env.login("thuky")
    page = context.new_page()
    page.goto(f"{env.server.base}/meetings/{env.meeting_id}/documents")
    page.wait_for_selector("#documents[data-ready=true]", timeout=WAIT_MS)
    # Every percentage any progress bar shows, as it happens.
    page.evaluate("""() => {
        window.seenPercents = [];
        new MutationObserver((records) => {
            for (const r of records) window.seenPercents.push([r.target.id || r.target.closest('.doc-item')?.dataset.status,
                                                               Number(r.target.dataset.percent)]);
        }).observe(document.querySelector('#documents'),
                   {subtree: true, attributes: true, attributeFilter: ['data-percent']});
    }""")
    assert page.locator("#doc-drawer").is_visible()  # the list opens first on a tablet
    if not page.locator("#upload-submit").is_visible():
        page.click("#upload-box summary")
    page.set_input_files("#upload-file", str(pdf))
    page.fill("#upload-title", "Kế hoạch chuyển đổi số năm 2026")
    option = page.locator("#upload-agenda option", has_text=AGENDA_ITEM)
    page.select_option("#upload-agenda", value=option.get_attribute("value"))
    page.click("#upload-submit")
    group = page.locator(".doc-group", has=page.locator(".doc-group-title", has_text=AGENDA_ITEM))
    item = group.locator(".doc-item", has_text="Kế hoạch chuyển đổi số năm 2026")
    item.locator(".bar[data-percent='100']").wait_for(timeout=60_000)
    # The last page's progress (100 %) and the document's "ready" are two events.
    group.locator(".doc-item[data-status='ready']",
                  has_text="Kế hoạch chuyển đổi số năm 2026").wait_for(timeout=WAIT_MS)
    assert "8" in item.locator(".doc-meta").inner_text()
    assert item.locator(".doc-status-text").inner_text() == "Sẵn sàng"
    seen = page.evaluate("window.seenPercents")
    upload = [p for who, p in seen if who == "upload-bar"]
    processing = [p for who, p in seen if who in ("processing", "ready")]
    assert upload and upload[-1] == 100, seen
    assert processing and processing[-1] == 100 and min(processing) < 100, seen
    # Published on upload: a delegate's list shows it without reloading.
    delegate = env.login("daibieu")
    other = delegate.new_page()
    other.goto(f"{env.server.base}/meetings/{env.meeting_id}/documents")
    other.locator(".doc-item[data-status=ready]", has_text="Kế hoạch chuyển đổi số năm 2026").wait_for(
        timeout=WAIT_MS)
    context.close()
    delegate.close()


def test_private_stroke_stays_private_and_a_shared_one_arrives_live(env: Env) -> None:
    a_ctx, b_ctx = env.login("daibieu"), env.login("daibieu2")
    a, b = env.open(a_ctx, 3), env.open(b_ctx, 3)
    # B records every annotation id it ever shows on the page.
    b.evaluate("""() => {
        window.everShown = new Set();
        const stage = document.querySelector('#doc-stage');
        new MutationObserver(() => (stage.dataset.annotations || '').split(' ').filter(Boolean)
            .forEach((id) => window.everShown.add(id)))
          .observe(stage, {attributes: true, attributeFilter: ['data-annotations']});
    }""")
    tool(a, "pen")
    private = draw_and_save(a, [(0.2, 0.3), (0.3, 0.35), (0.4, 0.3), (0.5, 0.35)], pen=True)
    shared = draw_and_save(a, [(0.2, 0.6), (0.5, 0.62), (0.7, 0.6)])
    assert a.locator("#doc-stage").get_attribute("data-shared") == ""
    # The stylus' pressure is kept per point; the mouse has none.
    held = server_annotations(a, env.document_id, 2)
    assert {held[private]["visibility"], held[shared]["visibility"]} == {"private"}
    pressures = [p[2] for p in held[private]["data"]["points"]]
    assert len(set(pressures)) > 2 and all(0 < p <= 1 for p in pressures), pressures
    assert all(len(p) == 2 for p in held[shared]["data"]["points"])
    tool(a, "select")
    box = stage_box(a)
    a.mouse.click(box["x"] + 0.5 * box["width"], box["y"] + 0.62 * box["height"])
    a.wait_for_selector("#selection-bar:not([hidden])")
    assert "Riêng tư" in a.locator("#selection-text").inner_text()
    a.click("#selection-share")
    wait_shown(b, lambda ids: f"ids.includes('{shared}')")
    assert shown_annotations(b) == [shared]
    assert b.locator("#doc-stage").get_attribute("data-shared") == shared
    assert private not in b.evaluate("[...window.everShown]")
    # It is drawn, not just listed: the canvas has ink where the stroke runs.
    assert ink_alpha(b, 0.5, 0.62) > 0
    assert ink_alpha(b, 0.3, 0.33) == 0  # where the private stroke runs on A's page
    # A shares the whole page: the private stroke now reaches B too; then takes it back.
    a.click("#share-page")
    wait_shown(b, lambda ids: f"ids.includes('{private}')")
    a.click("#share-page")
    wait_shown(b, lambda ids: "ids.length === 0")
    a_ctx.close()
    b_ctx.close()


def test_follower_turns_with_the_presenter_and_rejoins_with_one_tap(env: Env) -> None:
    chair_ctx, a_ctx = env.login("chutri"), env.login("daibieu", PHONE)
    chair, a = env.open(chair_ctx, 1), env.open(a_ctx, 1)
    chair.click("#present-toggle")
    chair.wait_for_selector("#documents[data-presenting=true]", timeout=WAIT_MS)
    a.wait_for_selector("#documents[data-following=true]", timeout=WAIT_MS)
    chair.fill("#page-input", "5")
    chair.press("#page-input", "Enter")
    a.wait_for_selector("#doc-stage[data-page='4']", timeout=WAIT_MS)
    assert a.locator("#follow-text").inner_text().endswith("Nguyễn Văn Hùng")
    # The laser pointer shows on the follower's page.
    tool(chair, "laser")
    box = stage_box(chair)
    chair.mouse.move(box["x"] + 0.5 * box["width"], box["y"] + 0.4 * box["height"])
    chair.mouse.down()
    chair.mouse.move(box["x"] + 0.55 * box["width"], box["y"] + 0.45 * box["height"], steps=5)
    a.wait_for_selector("#laser-dot:not([hidden])", timeout=WAIT_MS)
    chair.mouse.up()
    a.wait_for_selector("#laser-dot[hidden]", state="attached", timeout=WAIT_MS)
    # Turning a page by hand leaves follow mode; the presenter's next turns are not applied ...
    a.click("#page-next")
    a.wait_for_selector("#documents[data-following=false] #follow-rejoin:not([hidden])", timeout=WAIT_MS)
    chair.click("#page-next")
    chair.click("#page-next")
    a.wait_for_selector("#documents[data-presenter-page='6']", timeout=WAIT_MS)
    assert a.locator("#doc-stage").get_attribute("data-page") == "5"
    # ... until one tap rejoins.
    rejoin = a.locator("#follow-rejoin")
    box = rejoin.bounding_box()
    assert box is not None and box["width"] >= 44 and box["height"] >= 44
    a.tap("#follow-rejoin")
    a.wait_for_selector("#doc-stage[data-page='6']", timeout=WAIT_MS)
    a.wait_for_selector("#documents[data-following=true]")
    chair.click("#present-toggle")
    a.wait_for_selector("#follow-chip[hidden]", state="attached", timeout=WAIT_MS)
    chair_ctx.close()
    a_ctx.close()


def test_a_second_presenter_is_asked_before_taking_over(env: Env) -> None:
    chair_ctx, sec_ctx = env.login("chutri"), env.login("thuky")
    chair, secretary = env.open(chair_ctx, 1), env.open(sec_ctx, 1)
    chair.click("#present-toggle")
    chair.wait_for_selector("#documents[data-presenting=true]", timeout=WAIT_MS)
    secretary.wait_for_selector("#documents[data-following=true]", timeout=WAIT_MS)
    asked: list[str] = []

    def answer(accept: bool) -> Any:
        def handle(dialog: Any) -> None:
            asked.append(dialog.message)
            dialog.accept() if accept else dialog.dismiss()
        return handle
    secretary.once("dialog", answer(False))  # "no": nothing changes
    secretary.click("#present-toggle")
    assert asked == ["Nguyễn Văn Hùng — đang trình bày. Trình bày thay?"]
    secretary.wait_for_timeout(500)
    assert chair.locator("#documents").get_attribute("data-presenting") == "true"
    secretary.once("dialog", answer(True))  # "yes": the secretary takes over
    secretary.click("#present-toggle")
    secretary.wait_for_selector("#documents[data-presenting=true]", timeout=WAIT_MS)
    chair.wait_for_selector("#documents[data-presenting=false]", timeout=WAIT_MS)
    assert chair.locator("#follow-text").inner_text().endswith("Trần Thị Lan")
    secretary.click("#present-toggle")
    chair_ctx.close()
    sec_ctx.close()


def test_offline_stroke_reaches_the_server_and_the_export(env: Env) -> None:
    a_ctx = env.login("daibieu")
    a = env.open(a_ctx, 2)
    tool(a, "pen")
    online_stroke = draw_and_save(a, [(0.15, 0.2), (0.35, 0.25), (0.55, 0.2)])
    a_ctx.set_offline(True)
    a.wait_for_selector("#net-state[data-state=offline]", timeout=WAIT_MS)
    draw(a, [(0.2, 0.5), (0.4, 0.55), (0.6, 0.5), (0.7, 0.6)])
    a.wait_for_selector("#documents[data-unsent='1']", timeout=WAIT_MS)
    wait_shown(a, lambda ids: f"{ids}.length === 2")  # painted on the next frame
    offline_stroke = next(i for i in shown_annotations(a) if i != online_stroke)
    assert "1" in a.locator("#net-state").inner_text()
    a_ctx.set_offline(False)
    wait_saved(a)
    # Another tablet of the same delegate (nothing shared, no local queue) sees both strokes.
    other_ctx = env.login("daibieu")
    other = env.open(other_ctx, 2)
    assert set(shown_annotations(other)) == {online_stroke, offline_stroke}
    other_ctx.close()
    # The export holds both as real PDF ink annotations on page 2.
    with a.expect_download() as download_info:
        a.click("#export-link")
    path = env.tmp / "export.pdf"
    download_info.value.save_as(path)
    doc = pymupdf.open(str(path))
    inks = [annot for annot in doc[1].annots() if annot.type[1] == "Ink"]
    names = {annot.info.get("name") or annot.info.get("id") for annot in inks}
    assert len(inks) >= 2, [annot.type for annot in doc[1].annots()]
    assert {online_stroke, offline_stroke} <= names or len(inks) == 2, names
    assert all(not list(doc[p].annots()) for p in (0, 3, 4, 5, 6, 7))
    doc.close()
    a_ctx.close()


def test_tablet_and_phone_screenshots(env: Env) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    for name, viewport in (("tablet", TABLET), ("phone", PHONE)):
        ctx = env.login("daibieu", viewport)
        page = env.open(ctx, 3)
        tool(page, "pen")
        page.screenshot(path=str(SCREENSHOTS / f"documents-{name}.png"))
        # Every control a finger uses is at least 44 px.
        small = page.evaluate("""() => [...document.querySelectorAll(
                '#documents button:not([hidden]), #documents a.tool, #documents input')]
            .filter((e) => e.offsetParent !== null && !e.closest('[hidden], #doc-drawer'))
            .map((e) => [e.id || e.className, e.getBoundingClientRect()])
            .filter(([, r]) => r.width < 44 || r.height < 44).map(([n, r]) => `${n} ${r.width}x${r.height}`)""")
        assert not small, small
        page.click("#drawer-toggle")
        page.wait_for_function("() => getComputedStyle(document.querySelector('#doc-drawer')).transform"
                               " === 'none'")
        page.screenshot(path=str(SCREENSHOTS / f"documents-{name}-list.png"))
        ctx.close()


def test_eraser_undo_redo_highlighter_and_note(env: Env) -> None:
    a_ctx = env.login("daibieu")
    a = env.open(a_ctx, 6)
    tool(a, "pen")
    stroke = draw_and_save(a, [(0.2, 0.3), (0.5, 0.32), (0.8, 0.3)])
    tool(a, "highlighter")
    highlight = draw_and_save(a, [(0.12, 0.45), (0.6, 0.45)])
    tool(a, "note")
    box = stage_box(a)
    a.mouse.click(box["x"] + 0.15 * box["width"], box["y"] + 0.7 * box["height"])
    a.fill("#note-text", "Đề nghị bổ sung số liệu quý IV")
    a.click("#note-save")
    wait_shown(a, lambda ids: "ids.length === 3")
    wait_saved(a)
    (note,) = set(shown_annotations(a)) - {stroke, highlight}
    # The eraser takes only what it crosses: the pen stroke.
    tool(a, "eraser")
    draw(a, [(0.5, 0.25), (0.5, 0.36)])
    wait_shown(a, lambda ids: f"ids.length === 2 && !ids.includes('{stroke}')")
    wait_saved(a)
    a.click("#undo")  # the same stroke comes back (same id)
    wait_shown(a, lambda ids: f"ids.includes('{stroke}')")
    wait_saved(a)
    a.click("#redo")
    wait_shown(a, lambda ids: f"!ids.includes('{stroke}')")
    wait_saved(a)
    a.click("#undo")
    wait_shown(a, lambda ids: f"ids.includes('{stroke}')")
    wait_saved(a)
    # What the server kept, seen from a fresh tablet of the same delegate.
    fresh_ctx = env.login("daibieu", PHONE)
    fresh = env.open(fresh_ctx, 6)
    assert set(shown_annotations(fresh)) == {stroke, highlight, note}
    fresh_ctx.close()
    a_ctx.close()


def test_finger_writes_pinch_zooms_canvas_is_capped_and_search_opens_the_page(env: Env) -> None:
    a_ctx = env.login("daibieu3")
    a = env.open(a_ctx, 1)
    box = stage_box(a)
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    cdp = a.context.new_cdp_session(a)

    def touch(kind: str, spread: float) -> None:
        points = [] if kind == "touchEnd" else [{"x": cx - spread, "y": cy, "id": 1},
                                                {"x": cx + spread, "y": cy, "id": 2}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    # With the pen tool, one finger writes ...
    tool(a, "pen")
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": cx - 100, "y": cy - 200}]})
    for step in range(1, 8):
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove",
                                              "touchPoints": [{"x": cx - 100 + 25 * step, "y": cy - 200 + 5 * step}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    wait_shown(a, lambda ids: "ids.length === 1")
    wait_saved(a)
    # ... and two fingers zoom (no stroke).
    touch("touchStart", 60)
    for spread in range(80, 260, 20):
        touch("touchMove", spread)
    touch("touchEnd", 0)
    zoom = float(a.locator("#doc-stage").get_attribute("data-zoom") or 0)
    assert 3.5 < zoom < 4.5  # fingers 120 → 480 px apart
    assert len(shown_annotations(a)) == 1 and a.locator("#documents").get_attribute("data-unsent") == "0"
    # Re-rendered sharp for the new zoom (not just stretched), within the iPad canvas limits.
    a.wait_for_function("() => document.querySelector('.page-box canvas').width > 2000", timeout=WAIT_MS)
    for _ in range(3):
        a.click("#zoom-in")
    a.wait_for_selector("#doc-stage[data-capped=true]", timeout=WAIT_MS)
    width, height = a.evaluate("() => { const c = document.querySelector('.page-box canvas');"
                               " return [c.width, c.height]; }")
    assert max(width, height) <= 4096 and width * height <= 16_777_216
    # ... and the part on screen is rendered again at full sharpness, screen-sized.
    a.wait_for_selector("#doc-stage[data-detail=true]", timeout=WAIT_MS)
    detail = a.evaluate("() => { const c = document.querySelector('.page-box .page-detail');"
                        " return [c.width, c.height]; }")
    assert detail[0] >= box["width"] - 2 and detail[1] <= box["height"] + 2, detail
    # Search (without diacritics) from the list, then open the hit at its page.
    a.click("#drawer-toggle")
    a.fill("#search-input", "ngan sach 105")
    a.press("#search-input", "Enter")
    hit = a.locator(f".hit[data-document-id='{env.document_id}'][data-page='4']")
    hit.wait_for(timeout=WAIT_MS)
    assert "105" in hit.locator("mark").inner_text()
    hit.click()
    a.wait_for_selector("#doc-stage[data-page='4'][data-zoom='1.000']", timeout=WAIT_MS)
    a.locator("#doc-drawer").wait_for(state="hidden")  # the drawer slides away
    a_ctx.close()


def test_server_page_images_for_confidential_documents_and_without_pdfjs(env: Env) -> None:
    a_ctx = env.login("daibieu2", PHONE)
    a = env.open(a_ctx, 2, document_id=env.confidential_id)
    assert a.locator("#doc-stage").get_attribute("data-rendered") == "image"
    src = a.locator(".page-box img.page-layer").get_attribute("src") or ""
    assert f"/api/documents/{env.confidential_id}/pages/1" in src
    assert a.evaluate("() => document.querySelector('.page-box img').naturalWidth") >= 256
    a_ctx.close()
    # A browser where pdf.js cannot run (here: it never arrives) still reads every page.
    b_ctx = env.login("daibieu2", PHONE)
    b_ctx.route("**/vendor/pdfjs/**", lambda route: route.abort())
    b = env.open(b_ctx, 4)
    assert b.locator("#doc-stage").get_attribute("data-rendered") == "image"
    b.click("#page-next")
    b.wait_for_selector("#doc-stage[data-page='4'][data-rendered=image]", timeout=WAIT_MS)
    assert f"/api/documents/{env.document_id}/pages/4" in (
        b.locator(".page-box img.page-layer").get_attribute("src") or "")
    b_ctx.close()


def test_store_gap_recovery_and_queue_semantics_as_modules(env: Env) -> None:
    """The pure modules, loaded as they are served (no build step), with fakes for the wire."""
    ctx = env.login("daibieu3")
    page = ctx.new_page()
    page.goto(f"{env.server.base}/meetings/{env.meeting_id}/documents")
    result = page.evaluate("""async () => {
        const { AnnotationStore } = await import('/static/js/annotation-store.js');
        const { OpQueue } = await import('/static/js/offline.js');
        const ann = (id, author = '9') => ({ id, page: 0, author_id: author, kind: 'ink',
            visibility: 'meeting', data: { points: [[1, 1]], color: '#000000', width: 2 } });
        const ev = (seq, prev, ups, rem = []) => ({ seq, prev_seq: prev, op_id: `op${seq}`, page: 0,
            upserts: ups.map((i) => ann(i)), removed: rem });
        const ids = (store) => store.visible(0).map((a) => a.id).join(',');
        const out = {};
        const store = new AnnotationStore('5', 1, '7');
        const gaps = [];
        store.onGap = (p) => gaps.push(p);
        // An event that overtakes the snapshot is held, then replayed on top of it.
        store.beginResync(0);
        store.applyEvent(ev(3, 2, ['c']));
        store.loadSnapshot(0, [ann('a'), ann('b')], 2);
        out.afterSnapshot = ids(store);
        // Another viewer's private op (seq 4) is invisible: prev_seq 3 chains fine.
        store.applyEvent(ev(5, 3, [], ['a']));
        out.afterRemove = ids(store);
        store.applyEvent(ev(5, 3, [], ['a']));  // a duplicate changes nothing
        // prev_seq 7 was never seen: a gap, nothing applied, a snapshot is asked for.
        store.applyEvent(ev(8, 7, ['z']));
        out.gaps = gaps.join(',');
        out.afterGap = ids(store);
        store.loadSnapshot(0, [ann('b'), ann('c'), ann('y'), ann('z')], 8);
        out.afterResync = ids(store);
        // My own op shows at once; a refusal takes it back.
        store.addPending({ op_id: 'mine', type: 'add', page: 0,
                           annotation: { id: 'm', kind: 'ink', data: { points: [[2, 2]] } } });
        out.pending = ids(store);
        store.reject('mine');
        out.rejected = ids(store);

        let online = false, failing = false;
        const sent = [];
        const queue = new OpQueue({
            isOnline: () => online,
            sendOp: async (r) => {
                sent.push(r.op.op_id);
                if (failing) throw Object.assign(new Error('timeout'), { permanent: false });
                if (r.op.bad) throw Object.assign(new Error('bad_op'), { permanent: true });
                return { op_id: r.op.op_id };
            } }, `test-${Math.random()}`);
        const acked = [], refused = [];
        queue.onAck = (id) => acked.push(id);
        queue.onReject = (id) => refused.push(id);
        await queue.enqueue('5', 1, { op_id: 'A', page: 0 });
        await queue.enqueue('5', 1, { op_id: 'A', page: 0 });   // the same op twice: kept once
        await queue.enqueue('5', 1, { op_id: 'B', page: 0, bad: true });
        await queue.enqueue('5', 1, { op_id: 'C', page: 0 });
        out.offline = [sent.length, queue.size];
        online = true; failing = true;
        await queue.flush();                                     // no ack: nothing leaves the queue
        out.noAck = [sent.join(','), queue.size];
        failing = false; sent.length = 0;
        await queue.flush();
        out.flushed = [sent.join(','), acked.join(','), refused.join(','), queue.size];
        return out;
    }""")
    assert result == {
        "afterSnapshot": "a,b,c", "afterRemove": "b,c", "gaps": "0", "afterGap": "b,c",
        "afterResync": "b,c,y,z", "pending": "b,c,y,z,m", "rejected": "b,c,y,z",
        "offline": [0, 3], "noAck": ["A", 3], "flushed": ["A,B,C", "A,C", "B", 0],
    }, result
    ctx.close()
