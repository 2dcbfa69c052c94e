"""A Chromium tablet at a ward node (issue 13, item 7): a ward delegate reads the document
the province published, on the ward's own server, and votes on the vote the province chair
opened; the province counts the ballot. Two real `run.py` nodes; what is checked is what the
delegate sees (the rendered page's colour, the prompt's question, the result)."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import socketio

from testkit.browser import api_login, chromium, publish_pdfs
from testkit.processes import ServerProcess, start_server
from tests.e2e.test_reader_switch_browser import RED, assert_shows, colour_pdf, wait_document

pytestmark = pytest.mark.browser
SECRET = "ward-secret-for-the-tablet-test"
WAIT_MS = 60_000
QUESTION = "Bầu Trưởng ban chuyển đổi số"
CANDIDATES = ["Nguyễn Văn An", "Trần Thị Bình"]


def until(probe: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.2)
    return found


@pytest.fixture(scope="module")
def nodes() -> Iterator[tuple[ServerProcess, ServerProcess]]:
    env = {"HOPSO_FAST_HASH": "1"}
    province = start_server("--demo", "--data-dir", tempfile.mkdtemp(prefix="hopso-prov-"),
                            env={**env, "HOPSO_NODE_UNIT": "province",
                                 "HOPSO_NODE_CHILDREN": f"ward={SECRET}"}, preimported=True)
    try:
        ward = start_server("--demo", "--data-dir", tempfile.mkdtemp(prefix="hopso-ward-"),
                            env={**env, "HOPSO_NODE_UNIT": "ward",
                                 "HOPSO_PARENT_URL": province.base, "HOPSO_NODE_SECRET": SECRET},
                            preimported=True)
        try:
            yield province, ward
        finally:
            ward.stop()
    finally:
        province.stop()


def chair_acts(request: Any, base: str, meeting: int,
               events: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """The province chair's socket.io events (the cookie of a logged-in context), answered
    in order; in a thread of its own, beside Playwright's synchronous loop."""
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in request.storage_state()["cookies"])

    async def act() -> list[Any]:
        sio = socketio.AsyncClient(reconnection=False)
        await sio.connect(base, headers={"Cookie": cookie}, transports=["websocket"],
                          wait_timeout=10)
        try:
            results = []
            for event, data in [("meeting:join", {"meeting_id": meeting}), *events]:
                ack = await sio.call(event, data, timeout=15)
                assert isinstance(ack, dict) and ack.get("ok"), (event, ack)
                results.append(ack["result"])
            return results[1:]
        finally:
            await sio.disconnect()
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, act()).result()


@pytest.mark.timeout(420)  # two servers and a document through the cascade, shared box
def test_a_ward_tablet_reads_the_provinces_document_and_votes_on_its_vote(
        nodes: tuple[ServerProcess, ServerProcess], tmp_path: Path) -> None:
    province, ward = nodes
    with chromium() as started:
        browser: Any = started
        # The province: the chair opens the meeting, invites the ward, adds an agenda item;
        # the secretary publishes a red document.
        chair = browser.new_context()
        api_login(chair.request, province.base, "chutri", province.logins()["chutri"])
        meeting = chair.request.get(province.base + "/api/meetings").json()["meetings"][0]["id"]
        csrf = api_login(chair.request, province.base, "chutri", province.logins()["chutri"])
        headers = {"X-CSRF-Token": csrf}
        assert chair.request.post(f"{province.base}/api/meetings/{meeting}/open",
                                  headers=headers).ok
        invited = chair.request.put(f"{province.base}/api/meetings/{meeting}/nodes",
                                    headers=headers, data={"nodes": ["ward"],
                                                           "seats": {"ward": 3}})
        assert invited.ok, invited.text()
        item = chair.request.post(f"{province.base}/api/meetings/{meeting}/agenda",
                                  headers=headers, data={"title": "Chuyển đổi số"}).json()
        secretary = browser.new_context()
        s_csrf = api_login(secretary.request, province.base, "thuky", province.logins()["thuky"])
        publish_pdfs(secretary.request, province.base, s_csrf, meeting,
                     [(colour_pdf(tmp_path / "nghi-quyet.pdf", RED, "N"), "Nghị quyết (đỏ)",
                       False)])

        # The ward: its secretary invites a local delegate to the mirrored meeting.
        w_secretary = browser.new_context()
        w_csrf = api_login(w_secretary.request, ward.base, "thuky", ward.logins()["thuky"])

        def mirrored() -> int | None:
            listed = w_secretary.request.get(ward.base + "/api/meetings").json()["meetings"]
            return next((m["id"] for m in listed if m["cascade_key"] == f"province/{meeting}"
                         and m["status"] == "open"), None)
        mirror = until(mirrored, 30, "the meeting mirrored at the ward")
        admin = browser.new_context()
        api_login(admin.request, ward.base, "quantri", ward.logins()["quantri"])
        users = admin.request.get(ward.base + "/api/users").json()["users"]
        delegate = next(u for u in users if u["username"] == "daibieu")
        added = w_secretary.request.post(f"{ward.base}/api/meetings/{mirror}/members",
                                         headers={"X-CSRF-Token": w_csrf},
                                         data={"role": "delegate", "user_id": delegate["id"]})
        assert added.status == 201, added.text()

        def ward_document() -> int | None:
            groups = w_secretary.request.get(
                f"{ward.base}/api/meetings/{mirror}/documents").json()["groups"]
            return next((d["id"] for g in groups for d in g["documents"]
                         if d["title"] == "Nghị quyết (đỏ)" and d["status"] == "ready"), None)
        doc = until(ward_document, 60, "the province's document ready at the ward")

        # The delegate's tablet, on the ward's own server, shows the province's red page.
        tablet_context = browser.new_context(viewport={"width": 1280, "height": 800},
                                             locale="vi-VN")
        api_login(tablet_context.request, ward.base, "daibieu", ward.logins()["daibieu"])
        errors: list[str] = []
        tablet = tablet_context.new_page()
        tablet.on("pageerror", lambda e: errors.append(str(e)))
        tablet.goto(f"{ward.base}/meetings/{mirror}/documents?doc={doc}&page=1")
        tablet.wait_for_selector("#documents[data-ready=true]", timeout=WAIT_MS)
        wait_document(tablet, doc)
        assert_shows(tablet, RED)

        # The province chair opens an election by those present, 10 minutes to vote: the
        # ballot prompt appears on the ward tablet, over the reader, as the province's (an
        # election, with its countdown); the delegate checks in and votes for the first
        # candidate.
        vote = chair_acts(chair.request, province.base, meeting, [
            ("agenda:set_current", {"meeting_id": meeting, "item_id": item["id"]}),
            ("vote:open", {"meeting_id": meeting, "agenda_item_id": item["id"],
                           "question": QUESTION, "kind": "election", "options": CANDIDATES,
                           "base": "present", "time_limit_seconds": 600})])[1]
        tablet.wait_for_selector(f"dialog[open] :text('{QUESTION}')", timeout=WAIT_MS)
        tablet.wait_for_selector("dialog[open] :text('Bầu cử')", timeout=WAIT_MS)
        tablet.wait_for_function(
            "document.querySelector('#ballot-prompt-countdown')?.textContent"
            ".startsWith('Còn lại: ')", timeout=WAIT_MS)
        checkin = tablet.locator("#ballot-prompt-checkin")
        if checkin.count():
            checkin.click()
        tablet.click("dialog[open] button[data-option='0']:not([disabled])", timeout=WAIT_MS)

        def counted() -> bool:
            state = chair.request.get(f"{province.base}/api/meetings/{meeting}/procedure").json()
            found = next(v for v in state["votes"] if v["id"] == vote["id"])
            return bool((found.get("result") or {}).get("cast") == 1)
        until(counted, 30, "the ward's ballot counted at the province")
        chair_acts(chair.request, province.base, meeting,
                   [("vote:close", {"meeting_id": meeting, "vote_id": vote["id"]})])
        # The result reaches the tablet: the first candidate's line reads 1 at the ward,
        # and the outcome is the province's, in its words (who was elected).
        tablet.wait_for_selector("dialog[open] li[data-option='0']", timeout=WAIT_MS)
        line = tablet.inner_text("dialog[open] li[data-option='0']")
        assert "1" in line, line
        state = chair.request.get(f"{province.base}/api/meetings/{meeting}/procedure").json()
        result = next(v for v in state["votes"] if v["id"] == vote["id"])["result"]
        assert (result["kind"], result["base_rule"]) == ("election", "present"), result
        expected = ("Trúng cử: " + ", ".join(CANDIDATES[i] for i in result["elected"])
                    if result["outcome"] == "elected" else "Không có ứng cử viên nào trúng cử.")
        outcome = tablet.inner_text("dialog[open] .prompt-outcome")
        assert outcome.strip() == expected, (outcome, result)
        assert not errors, errors
