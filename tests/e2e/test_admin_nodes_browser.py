"""The administrator's cascade page on a tablet: a province node with one child, in Vietnamese."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.browser import chromium
from testkit.processes import ServerProcess, start_server

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def node_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server("--demo", "--data-dir", str(tmp_path_factory.mktemp("e2e-nodes")),
                          env={"HOPSO_NODE_UNIT": "province",
                               "HOPSO_NODE_CHILDREN": "city=" + "c" * 16,
                               "HOPSO_PARENT_URL": "", "HOPSO_NODE_SECRET": ""})
    yield server
    server.stop()


def test_admin_sees_the_node_rotates_and_revokes_a_child(node_server: ServerProcess,
                                                            tmp_path: Path) -> None:
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 800, "height": 1280}, has_touch=True)  # type: ignore[attr-defined]
        page.goto(node_server.base + "/login?next=/admin/units")
        page.fill("input[name=username]", "quantri")
        page.fill("input[name=password]", node_server.logins()["quantri"])
        page.click("button[type=submit]")
        page.wait_for_url("**/admin/units")
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


@pytest.fixture
def province_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A province node whose child "city" keeps its credential (the test above revokes it)."""
    server = start_server("--demo", "--data-dir", str(tmp_path / "data"),
                          env={"HOPSO_NODE_UNIT": "province", "HOPSO_FAST_HASH": "1",
                               "HOPSO_NODE_CHILDREN": "city=" + "c" * 16,
                               "HOPSO_PARENT_URL": "", "HOPSO_NODE_SECRET": ""})
    yield server
    server.stop()


def test_the_chair_invites_a_child_node_with_its_voting_seats(province_server: ServerProcess,
                                                              tmp_path: Path) -> None:
    """The members panel's cascade block: the chair invites the city node and allots it the
    voting members it may count in the quorum (docs/cascade.md, "Headcounts and seats")."""
    node_server = province_server
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 800, "height": 1280}, has_touch=True)  # type: ignore[attr-defined]
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(node_server.base + "/login?next=/meetings")
        page.fill("input[name=username]", "chutri")
        page.fill("input[name=password]", node_server.logins()["chutri"])
        page.click("button[type=submit]")
        page.wait_for_url("**/meetings")
        page.goto(node_server.base + "/meetings/1")
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
