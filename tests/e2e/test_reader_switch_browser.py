"""Issue 14 (2): switching documents shows the right document with the right ink, checked on
what is rendered (the colour of the page canvas), not on titles: by hand from the list,
following a presenter who changes document, and when a new version is published."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymupdf
import pytest

from testkit.browser import api_login, chromium, publish_pdfs
from testkit.processes import ServerProcess, start_server

pytestmark = pytest.mark.browser

LANDSCAPE = {"width": 1280, "height": 800}
WAIT_MS = 30_000
RED, BLUE, GREEN = (0.85, 0.1, 0.1), (0.1, 0.2, 0.85), (0.1, 0.65, 0.2)
INK_A = [(0.35, 0.3), (0.45, 0.33), (0.5, 0.36)]   # the delegate's stroke on document A
INK_B = [(0.6, 0.6), (0.7, 0.63), (0.75, 0.66)]    # ... and on document B


def colour_pdf(path: Path, colour: tuple[float, float, float], letter: str, pages: int = 2) -> Path:
    """Pages filled with one colour and a big white letter: what is on screen is unmistakable."""
    doc = pymupdf.open()
    for i in range(pages):
        page = doc.new_page(width=595, height=842)
        page.draw_rect(page.rect, color=colour, fill=colour)
        page.insert_text((180, 500), f"{letter}{i + 1}", fontsize=200, color=(1, 1, 1))
    doc.save(str(path))
    doc.close()
    return path


@dataclass
class Env:
    server: ServerProcess
    browser: Any
    meeting_id: int
    doc_a: int
    doc_b: int
    tmp: Path
    page_errors: list[str] = field(default_factory=list)

    def reader(self, username: str, document_id: int) -> Any:
        context = self.browser.new_context(viewport=LANDSCAPE, locale="vi-VN")
        answer = context.request.post(self.server.base + "/api/login", data={
            "username": username, "password": self.server.logins()[username]})
        assert answer.ok, answer.text()
        context.csrf = answer.json()["csrf_token"]
        page = context.new_page()
        page.on("pageerror", lambda e: self.page_errors.append(f"{username}: {e}"))
        page.goto(f"{self.server.base}/meetings/{self.meeting_id}/documents?doc={document_id}&page=1")
        page.wait_for_selector("#documents[data-ready=true]", timeout=WAIT_MS)
        wait_document(page, document_id)
        return page


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("reader-switch")
    server = start_server("--demo", "--data-dir", str(tmp / "data"), preimported=True)
    try:
        with chromium() as started:
            browser: Any = started
            setup = browser.new_context()
            csrf = api_login(setup.request, server.base, "thuky", server.logins()["thuky"])
            meeting_id = setup.request.get(server.base + "/api/meetings").json()["meetings"][0]["id"]
            doc_a, doc_b = publish_pdfs(setup.request, server.base, csrf, meeting_id, [
                (colour_pdf(tmp / "a.pdf", RED, "A"), "Tài liệu A (đỏ)", False),
                (colour_pdf(tmp / "b.pdf", BLUE, "B"), "Tài liệu B (xanh)", False)])
            setup.close()
            yield Env(server, browser, meeting_id, doc_a, doc_b, tmp)
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def no_script_errors(env: Env) -> Iterator[None]:
    env.page_errors.clear()
    yield
    assert not env.page_errors, env.page_errors


def wait_document(page: Any, document_id: int, version: int | None = None) -> None:
    """The page canvas of that document (and version) is on screen, and its notes are loaded."""
    rendered = f"='{document_id}:{version}'" if version else f"^='{document_id}:'"
    page.wait_for_selector(f"#doc-stage[data-synced=true][data-rendered-document{rendered}]",
                           timeout=WAIT_MS)


def page_colour(page: Any) -> tuple[float, float, float]:
    """Mean colour (0-1) of the rendered page canvas, sampled on a grid."""
    rgb = page.evaluate("""() => {
        const c = document.querySelector('#doc-stage canvas.page-layer');
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const sum = [0, 0, 0]; let n = 0;
        for (let y = 0; y < c.height; y += 7) for (let x = 0; x < c.width; x += 7) {
            const i = (y * c.width + x) * 4;
            sum[0] += data[i]; sum[1] += data[i + 1]; sum[2] += data[i + 2]; n += 1;
        }
        return sum.map((v) => v / n / 255);
    }""")
    return (rgb[0], rgb[1], rgb[2])


def assert_shows(page: Any, colour: tuple[float, float, float]) -> None:
    got = page_colour(page)
    dominant = max(range(3), key=lambda i: colour[i])
    assert max(range(3), key=lambda i: got[i]) == dominant, (got, colour)
    assert got[dominant] > 0.5, (got, colour)


def ink_alpha(page: Any, points: list[tuple[float, float]]) -> int:
    """Highest opacity of the annotation canvas near the middle point of a stroke."""
    fx, fy = points[1]
    return int(page.evaluate("""([fx, fy]) => {
        const c = document.querySelector('#doc-stage canvas.ink-layer:not(.ink-live)');
        const r = Math.round(6 * devicePixelRatio);
        const x = Math.round(fx * c.width) - r, y = Math.round(fy * c.height) - r;
        const data = c.getContext('2d').getImageData(x, y, 2 * r + 1, 2 * r + 1).data;
        let most = 0;
        for (let i = 3; i < data.length; i += 4) most = Math.max(most, data[i]);
        return most;
    }""", [fx, fy]))


def shown_ink(page: Any) -> set[str]:
    return set((page.locator("#doc-stage").get_attribute("data-annotations") or "").split())


def draw(page: Any, points: list[tuple[float, float]]) -> str:
    """A pen stroke, saved on the server; its id."""
    page.click("[data-tool=pen]")
    before = shown_ink(page)
    box = page.locator("#doc-stage").bounding_box()
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for x, y in xy[1:]:
        page.mouse.move(x, y, steps=4)
    page.mouse.up()
    page.wait_for_function(
        f"() => (document.querySelector('#doc-stage').dataset.annotations || '').split(' ')"
        f".filter(Boolean).length === {len(before) + 1}", timeout=WAIT_MS)
    page.wait_for_selector("#documents[data-unsent='0'] #net-state[data-state=saved]", timeout=WAIT_MS)
    page.click("[data-tool=hand]")
    (new,) = shown_ink(page) - before
    return new


def wait_ink(page: Any, ids: set[str]) -> None:
    page.wait_for_function("""(ids) => {
        const shown = (document.querySelector('#doc-stage').dataset.annotations || '')
            .split(' ').filter(Boolean).sort().join(' ');
        return shown === ids.sort().join(' ');
    }""", arg=sorted(ids), timeout=WAIT_MS)
    page.wait_for_timeout(100)  # the ink canvas paints on the next animation frame


def choose(page: Any, document_id: int) -> None:
    page.click(f".doc-item[data-document-id='{document_id}'] .doc-open")


@pytest.fixture(scope="module")
def ink(env: Env) -> dict[int, str]:
    """The delegate's private stroke on each document (drawn once, switching by hand)."""
    delegate = env.reader("daibieu", env.doc_a)
    assert_shows(delegate, RED)
    ink_a = draw(delegate, INK_A)
    assert ink_alpha(delegate, INK_A) > 0
    choose(delegate, env.doc_b)
    wait_document(delegate, env.doc_b)
    assert_shows(delegate, BLUE)
    wait_ink(delegate, set())
    assert ink_alpha(delegate, INK_A) == 0
    ink_b = draw(delegate, INK_B)
    delegate.context.close()
    assert not env.page_errors, env.page_errors
    return {env.doc_a: ink_a, env.doc_b: ink_b}


def test_switching_by_hand_shows_each_document_with_its_own_ink(env: Env, ink: dict[int, str]
                                                                 ) -> None:
    ink_a, ink_b = ink[env.doc_a], ink[env.doc_b]
    delegate = env.reader("daibieu", env.doc_b)
    assert_shows(delegate, BLUE)
    wait_ink(delegate, {ink_b})
    choose(delegate, env.doc_a)
    wait_document(delegate, env.doc_a)
    assert_shows(delegate, RED)
    wait_ink(delegate, {ink_a})
    assert ink_alpha(delegate, INK_A) > 0
    assert ink_alpha(delegate, INK_B) == 0

    # Quick switches (a second choice before the first document has loaded) end on the last.
    choose(delegate, env.doc_b)
    choose(delegate, env.doc_a)
    choose(delegate, env.doc_b)
    wait_document(delegate, env.doc_b)
    delegate.wait_for_timeout(500)
    wait_document(delegate, env.doc_b)
    assert_shows(delegate, BLUE)
    wait_ink(delegate, {ink_b})
    assert ink_alpha(delegate, INK_B) > 0
    assert delegate.locator("#doc-title").inner_text() == "Tài liệu B (xanh)"
    delegate.context.close()


def test_a_choice_made_while_the_document_still_loads_is_kept(env: Env) -> None:
    """B, then A and B again while B's pages are still on their way: B it is. (The second B
    once counted as 'already open' and the pending open of A won.)"""
    held: list[Any] = []
    released = False

    def hold(route: Any) -> None:
        if released:
            route.continue_()
        else:
            held.append(route)

    delegate = env.reader("daibieu", env.doc_a)
    delegate.context.route(f"**/api/documents/{env.doc_b}/pdf*", hold)  # its worker's too
    choose(delegate, env.doc_b)
    deadline = time.monotonic() + WAIT_MS / 1000
    while not held and time.monotonic() < deadline:
        delegate.wait_for_timeout(50)  # Playwright hands the request to `hold` meanwhile
    assert held, "B's PDF was not asked for"
    # B is the reader's document (its title is shown) but its pages are not there: not synced.
    delegate.wait_for_function(
        "() => document.querySelector('#doc-title').textContent === 'Tài liệu B (xanh)'"
        " && document.querySelector('#doc-stage').dataset.synced === 'false'", timeout=WAIT_MS)
    delegate.evaluate("""(ids) => { for (const id of ids) document.querySelector(
        `.doc-item[data-document-id='${id}'] .doc-open`).click(); }""", [env.doc_a, env.doc_b])
    released = True
    for route in held:
        route.continue_()
    delegate.wait_for_selector("#doc-stage[data-synced=true][data-rendered-document]",
                               timeout=WAIT_MS)
    shown = delegate.locator("#doc-stage").get_attribute("data-rendered-document") or ""
    assert shown.startswith(f"{env.doc_b}:"), shown
    assert_shows(delegate, BLUE)
    delegate.context.close()


def test_following_a_presenter_who_changes_document(env: Env, ink: dict[int, str]) -> None:
    delegate = env.reader("daibieu", env.doc_a)
    wait_ink(delegate, {ink[env.doc_a]})
    chair = env.reader("chutri", env.doc_a)
    chair.click("#present-toggle")
    chair.wait_for_selector("#documents[data-presenting=true]", timeout=WAIT_MS)
    delegate.wait_for_selector("#documents[data-following=true]", timeout=WAIT_MS)

    choose(chair, env.doc_b)
    wait_document(chair, env.doc_b)
    wait_document(delegate, env.doc_b)
    assert_shows(delegate, BLUE)
    wait_ink(delegate, {ink[env.doc_b]})
    assert ink_alpha(delegate, INK_B) > 0 and ink_alpha(delegate, INK_A) == 0
    assert delegate.locator("#documents").get_attribute("data-following") == "true"

    choose(chair, env.doc_a)
    wait_document(delegate, env.doc_a)
    assert_shows(delegate, RED)
    wait_ink(delegate, {ink[env.doc_a]})
    assert ink_alpha(delegate, INK_A) > 0 and ink_alpha(delegate, INK_B) == 0

    # The presenter turns a page: the follower renders page 2 of the same document.
    chair.click("#page-next")
    delegate.wait_for_selector("#doc-stage[data-page='1'][data-rendered-document]", timeout=WAIT_MS)
    wait_document(delegate, env.doc_a)
    assert_shows(delegate, RED)
    chair.click("#present-toggle")
    delegate.wait_for_selector("#follow-chip[hidden]", state="attached", timeout=WAIT_MS)
    chair.context.close()
    delegate.context.close()


def test_a_new_version_replaces_the_page_and_keeps_the_ink(env: Env) -> None:
    secretary = env.browser.new_context()
    csrf = api_login(secretary.request, env.server.base, "thuky", env.server.logins()["thuky"])
    (doc_c,) = publish_pdfs(secretary.request, env.server.base, csrf, env.meeting_id,
                            [(colour_pdf(env.tmp / "c.pdf", RED, "C"), "Tài liệu C", False)])
    delegate = env.reader("daibieu", doc_c)
    assert_shows(delegate, RED)
    own = draw(delegate, INK_A)
    pdf = colour_pdf(env.tmp / "c2.pdf", GREEN, "C")
    upload = secretary.request.post(
        f"{env.server.base}/api/documents/{doc_c}/versions", headers={"X-CSRF-Token": csrf},
        multipart={"file": {"name": pdf.name, "mimeType": "application/pdf",
                            "buffer": pdf.read_bytes()}})
    assert upload.status == 202, upload.text()
    wait_document(delegate, doc_c, version=2)
    assert_shows(delegate, GREEN)
    wait_ink(delegate, {own})
    assert ink_alpha(delegate, INK_A) > 0
    secretary.close()
    delegate.context.close()


def test_a_landscape_tablet_reads_at_width_folds_the_list_and_swipes(env: Env) -> None:
    context = env.browser.new_context(viewport=LANDSCAPE, has_touch=True, locale="vi-VN")
    assert context.request.post(env.server.base + "/api/login", data={
        "username": "daibieu", "password": env.server.logins()["daibieu"]}).ok
    page = context.new_page()
    page.on("pageerror", lambda e: env.page_errors.append(str(e)))
    page.goto(f"{env.server.base}/meetings/{env.meeting_id}/documents?doc={env.doc_b}&page=1")
    wait_document(page, env.doc_b)

    def widths() -> tuple[float, float]:
        stage = page.locator("#doc-stage").bounding_box()
        box = page.locator("#doc-stage .page-box").bounding_box()
        assert stage and box
        return stage["width"], box["width"]

    stage, shown = widths()
    assert abs(shown - stage) < 2, (stage, shown)  # the page's width, not its height
    assert page.locator("#doc-drawer").is_visible()
    page.click("#drawer-toggle")  # fold the list: the page takes the whole width
    page.wait_for_selector("#drawer-toggle[aria-expanded=false]")
    page.wait_for_function("() => document.querySelector('#doc-stage').clientWidth > 1200")
    page.wait_for_timeout(200)
    stage, shown = widths()
    assert stage > 1200 and abs(shown - stage) < 2, (stage, shown)
    assert not page.locator("#doc-drawer").is_visible()

    # A quick sideways swipe of a finger turns the page, and back.
    box = page.locator("#doc-stage").bounding_box()
    assert box
    cdp = context.new_cdp_session(page)
    y = box["y"] + box["height"] / 2

    def swipe(x0: float, x1: float) -> None:
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x0, "y": y}]})
        for step in range(1, 6):
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [
                {"x": x0 + (x1 - x0) * step / 5, "y": y}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})

    swipe(box["x"] + box["width"] * 0.8, box["x"] + box["width"] * 0.3)
    page.wait_for_selector("#doc-stage[data-page='1']", timeout=WAIT_MS)
    assert page.locator("#page-input").input_value() == "2"
    swipe(box["x"] + box["width"] * 0.3, box["x"] + box["width"] * 0.8)
    page.wait_for_selector("#doc-stage[data-page='0']", timeout=WAIT_MS)
    page.click("#drawer-toggle")  # the choice is remembered: leave the list open for others
    page.wait_for_selector("#drawer-toggle[aria-expanded=true]")
    context.close()


def test_the_meeting_screen_reader_follows_while_hidden_and_shows_it_sharp(
        env: Env, ink: dict[int, str]) -> None:
    """On the meeting screen the documents pane follows the presenter while the delegate is
    on the meeting pane; turning to it shows the presented document at full width, with ink."""
    chair = env.reader("chutri", env.doc_a)
    context = env.browser.new_context(viewport=LANDSCAPE, locale="vi-VN")
    assert context.request.post(env.server.base + "/api/login", data={
        "username": "daibieu", "password": env.server.logins()["daibieu"]}).ok
    delegate = context.new_page()
    delegate.on("pageerror", lambda e: env.page_errors.append(f"meeting screen: {e}"))
    delegate.goto(f"{env.server.base}/meetings/{env.meeting_id}")
    delegate.wait_for_selector("#documents[data-ready=true]", state="attached", timeout=WAIT_MS)
    assert delegate.locator("#pane-documents").is_hidden()

    chair.click("#present-toggle")
    chair.wait_for_selector("#documents[data-presenting=true]", timeout=WAIT_MS)
    choose(chair, env.doc_b)
    delegate.wait_for_selector(f"#doc-stage[data-synced=true][data-rendered-document^='{env.doc_b}:']",
                               state="attached", timeout=WAIT_MS)
    delegate.click("#tab-documents")
    wait_document(delegate, env.doc_b)
    delegate.wait_for_function(  # re-rendered for the pane's real size, not the hidden one's
        "() => { const s = document.querySelector('#doc-stage');"
        " const c = s.querySelector('canvas.page-layer');"
        " return c && c.getBoundingClientRect().width > s.clientWidth - 2; }", timeout=WAIT_MS)
    assert_shows(delegate, BLUE)
    wait_ink(delegate, {ink[env.doc_b]})
    assert delegate.evaluate("""() => {  // the stroke is painted (the stage has another size here)
        const c = document.querySelector('#doc-stage canvas.ink-layer:not(.ink-live)');
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) return true;
        return false;
    }""")
    assert delegate.locator("#documents").get_attribute("data-following") == "true"
    chair.click("#present-toggle")
    chair.context.close()
    context.close()
