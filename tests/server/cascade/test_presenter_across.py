"""Following the presenter across nodes (issue 13, item 2): the province chair presents a
document; the ward's tablets get the same page, zoom and laser pointer, on their own copy
of the document; a stop stops it there; a ward cut off catches up with the current page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from server.documents.keys import DOCUMENTS
from tests.server.cascade.test_documents_across import member, mirrored_doc
from tests.server.cascade.tree import cascaded_meeting, cut_link, restore_link, tree, until
from tests.server.documents_support import Listener, make_pdf, upload_ready


async def test_the_province_presenter_is_followed_at_the_ward(tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        _, meeting_id, _, _, ward_id = await cascaded_meeting(t)
        doc = await upload_ready(t.province, meeting_id, make_pdf(tmp_path, pages=5),
                                 title="Báo cáo")
        delegate = await member(t.ward, ward_id, "daibieu")
        mirror = await until(lambda: mirrored_doc(delegate, ward_id, "Báo cáo"), 20, "doc")
        tablet = await Listener.open(t.ward, delegate, ward_id)
        chair = await Listener.open(t.province, await t.province.login("chutri"), meeting_id)
        view: dict[str, Any] = {"document_id": doc["id"], "page": 2, "zoom": 1.0,
                                "scroll_x": 0.0, "scroll_y": 0.0}
        ack = await chair.call("present:update", view)
        assert ack["ok"], ack
        state = await tablet.wait_for("present:state", lambda s: s["page"] == 2, timeout=10)
        assert state["active"] and state["document_id"] == mirror["id"]
        assert state["presenter"]["name"] == t.province.logins["chutri"].full_name
        # Zoom on the same page: pushed live (a minor move), seq grows.
        assert (await chair.call("present:update", {**view, "zoom": 2.0}))["ok"]
        zoomed = await tablet.wait_for("present:state", lambda s: s["zoom"] == 2.0, timeout=10)
        assert zoomed["seq"] > state["seq"] and zoomed["page"] == 2
        # The laser pointer, on the ward's copy of the document.
        ack = await chair.call("present:pointer", {"document_id": doc["id"], "page": 2,
                                                   "x": 100.0, "y": 200.0})
        assert ack["ok"] and ack["result"]["sent"], ack
        pointer = await tablet.wait_for("present:pointer", timeout=10)
        assert (pointer["document_id"], pointer["page"], pointer["x"]) == (mirror["id"], 2, 100.0)
        # What a tablet that joins later asks.
        ack = await tablet.call("present:get", {"meeting_id": ward_id})
        assert ack["ok"] and ack["result"]["page"] == 2, ack

        # The ward is cut off while the presenter turns two pages, then comes back.
        await cut_link(t.ward)
        for page in (3, 4):
            assert (await chair.call("present:update", {**view, "page": page}))["ok"]
        restore_link(t.ward)
        await tablet.wait_for("present:state", lambda s: s["page"] == 4, timeout=15)
        assert (await t.ward.server.app[DOCUMENTS].presenters.get(ward_id))["page"] == 4

        assert (await chair.call("present:stop", {"meeting_id": meeting_id}))["ok"]
        await tablet.wait_for("present:state", lambda s: not s["active"], timeout=10)
