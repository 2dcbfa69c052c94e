"""The agenda: insert, reorder, remove, the current item and its time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from documents.catalog import meeting_document
from documents.db_models import Document, DocumentStatus
from rooms import agenda
from rooms.errors import Conflict, Invalid, NotFound
from rooms.models import utcnow
from tests.rooms.conftest import Demo


async def test_insert_move_remove_and_time_the_current_item(demo: Demo) -> None:
    m = demo.meeting_id
    async with demo.db.session() as s:
        a = await agenda.add_item(s, m, agenda.ItemFields(title="Khai mạc", planned_minutes=5))
        b = await agenda.add_item(s, m, agenda.ItemFields(title="Báo cáo chuyển đổi số",
                                                          planned_minutes=20,
                                                          presenter_user_id=demo.users["daibieu"].id))
        c = await agenda.add_item(s, m, agenda.ItemFields(title="Thảo luận"), position=1)
        assert [i.title for i in await agenda.items(s, m)] == ["Thảo luận", "Khai mạc",
                                                             "Báo cáo chuyển đổi số"]
        await agenda.move_item(s, m, c.id, 3)  # type: ignore[arg-type]
        with pytest.raises(Invalid):
            await agenda.move_item(s, m, c.id, 9)  # type: ignore[arg-type]
        with pytest.raises(Invalid):
            await agenda.add_item(s, m, agenda.ItemFields(title="x",
                                                          presenter_user_id=demo.users["quantri"].id))
        doc = Document(meeting_id=m, title="Báo cáo", filename="bao-cao.pdf",
                       status=DocumentStatus.ready, created_by=demo.users["thuky"].id)
        s.add(doc)
        await s.flush()
        await agenda.attach_document(s, m, b.id, doc.id,  # type: ignore[arg-type]
                                     meeting_document)
        with pytest.raises(Conflict):
            await agenda.attach_document(s, m, b.id, doc.id,  # type: ignore[arg-type]
                                         meeting_document)
        for missing in (doc.id + 1, 0):  # type: ignore[operator]
            with pytest.raises(NotFound):
                await agenda.attach_document(s, m, b.id, missing,  # type: ignore[arg-type]
                                             meeting_document)
    t0 = utcnow()
    async with demo.db.session() as s:
        state = await demo.locked(s)
        await agenda.set_current(s, state, a.id, t0)
        with pytest.raises(Conflict):
            await agenda.set_current(s, state, a.id, t0)
        await agenda.set_current(s, state, b.id, t0 + timedelta(seconds=90))
        view = await agenda.agenda_view(s, state, t0 + timedelta(seconds=150))
        assert [i["title"] for i in view["items"]] == ["Khai mạc", "Báo cáo chuyển đổi số",
                                                      "Thảo luận"]
        assert view["items"][0]["spent_seconds"] == 90
        assert view["items"][1]["presenter"] == "Lê Minh Tuấn"
        assert view["items"][1]["documents"] == [doc.id]
        assert view["current"]["item_id"] == b.id
        assert view["current"]["elapsed_seconds"] == 60
        assert view["current"]["remaining_seconds"] == 20 * 60 - 60
        with pytest.raises(Conflict):
            await agenda.remove_item(s, state, b.id)  # type: ignore[arg-type]  # current
        with pytest.raises(Conflict):
            await agenda.remove_item(s, state, a.id)  # type: ignore[arg-type]  # discussed
        await agenda.remove_item(s, state, c.id)  # type: ignore[arg-type]
        assert len(await agenda.items(s, m)) == 2
        with pytest.raises(NotFound):
            await agenda.get_item(s, m + 1, a.id)  # type: ignore[arg-type]  # another meeting
