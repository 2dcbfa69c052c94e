"""The administrator's cascade page on a tablet: a province node with one child, in Vietnamese."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.browser import api_login, chromium, session_page
from testkit.processes import ServerProcess, start_server

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def node_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server("--demo", "--data-dir", str(tmp_path_factory.mktemp("e2e-nodes")),
                          env={"HOPSO_NODE_UNIT": "province", "HOPSO_FAST_HASH": "1",
                               "HOPSO_NODE_CHILDREN": "city=" + "c" * 16,
                               "HOPSO_PARENT_URL": "", "HOPSO_NODE_SECRET": ""},
                          preimported=True)
    yield server
    server.stop()


def test_admin_sees_the_node_rotates_and_revokes_a_child(node_server: ServerProcess,
                                                            tmp_path: Path) -> None:
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 800, "height": 1280}, has_touch=True)
        page = session_page(context, node_server.base, "quantri", node_server.logins()["quantri"],
                            "/admin/units")
        page.click("a[href='/admin/nodes']")  # from the admin navigation
        page.wait_for_url("**/admin/nodes")
        assert page.locator("h1").inner_text() == "Máy chủ nối tầng"
        assert page.locator("#node-unit").inner_text() == "province"
        card = page.locator(".child-node[data-unit=city]")
        card.locator(".status:has-text('mất kết nối')").wait_for(timeout=5000)
        assert page.locator("#parent-none").is_visible()  # the root has no parent
        card.locator("[data-action=generate]").click()
        assert len(card.locator("input[name=secret]").input_value()) >= 16
        card.locator("button[type=submit]").click()
        card.locator(".form-message:has-text('Đã lưu khóa của city')").wait_for(timeout=5000)
        assert "error" not in (card.locator(".form-message").get_attribute("class") or "")
        assert card.locator("input[name=secret]").input_value() == ""
        page.screenshot(path=str(tmp_path / "nodes.png"), full_page=True)
        page.on("dialog", lambda dialog: dialog.accept())  # "Thu hồi khóa của city?"
        card.locator("[data-action=revoke]").click()
        page.wait_for_selector("#revoked-list:has-text('city')")
        assert card.count() == 0 and page.locator("#children-none").is_visible()


def test_the_chair_invites_a_child_node_with_its_voting_seats(node_server: ServerProcess,
                                                              tmp_path: Path) -> None:
    """The members panel's cascade block: the chair invites the city node and allots it the
    voting members it may count in the quorum (docs/cascade.md, "Headcounts and seats")."""
    with chromium() as browser:
        # "city" has a credential, whether or not the test above revoked it (on the module's
        # server: a server of its own was a start, 4 s of a loaded box): the administrator
        # gives it one through the API that page uses.
        admin = browser.new_context()
        csrf = api_login(admin.request, node_server.base, "quantri", node_server.logins()["quantri"])
        given = admin.request.post(node_server.base + "/api/admin/nodes/children/city/credential",
                                   headers={"X-CSRF-Token": csrf}, data={"secret": "d" * 16})
        assert given.ok, given.text()
        admin.close()
        context = browser.new_context(viewport={"width": 800, "height": 1280}, has_touch=True)
        page = session_page(context, node_server.base, "chutri", node_server.logins()["chutri"],
                            "/meetings/1")
        errors = page.errors
        block = page.locator("#nodes-block")
        block.wait_for(state="visible", timeout=5000)
        assert "Số đại biểu biểu quyết" in block.inner_text()
        row = block.locator(".node-row:has-text('city')")
        row.locator("input[type=checkbox]").check()
        row.locator("input.seats").fill("3")
        block.locator("#nodes-save").click()
        block.locator("#nodes-status:has-text('Đã lưu')").wait_for(timeout=5000)
        page.reload()
        row = page.locator("#nodes-block .node-row:has-text('city')")
        row.locator("input.seats").wait_for(timeout=5000)
        assert row.locator("input[type=checkbox]").is_checked()
        assert row.locator("input.seats").input_value() == "3"
        page.locator("#nodes-block").screenshot(path=str(tmp_path / "nodes-seats.png"))
        assert not errors, errors
