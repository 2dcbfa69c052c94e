"""The presenter state in the database (server.documents.presenter), on SQLite and PostgreSQL.

Two PresenterBoards on one database stand for two server processes: start, a second
presenter refused (also when both start at the same instant), take-over, stop, a late
joiner reading the state, and the position of minor moves persisted about once a second;
over socket.io, followers turning pages with the presenter, and a second presenter refused."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from rooms.models import User
from rooms.users import find_user
from server.core import keys
from server.documents.presenter import SEQ_STEP, NotPresenter, PresenterBoard, PresenterBusy
from tests.conftest import Harness
from tests.server.documents_support import (
    Listener,
    demo_meeting_id,
    make_pdf,
    runtime,
    upload_ready,
)


async def _user_id(hopso: Harness, username: str) -> int:
    async with hopso.server.app[keys.DB].session() as s:
        user: User | None = await find_user(s, username)
        assert user is not None and user.id is not None
        return user.id


def _boards(hopso: Harness, interval: float = 0.05) -> tuple[PresenterBoard, PresenterBoard]:
    db = hopso.server.app[keys.DB]
    return PresenterBoard(db, persist_interval_s=interval), PresenterBoard(db, interval)


def _view(page: int = 0, zoom: float = 1.0, scroll_y: float = 0.0, document_id: int = 1
          ) -> dict[str, float | int]:
    return {"document_id": document_id, "version": 1, "page": page, "zoom": zoom,
            "scroll_x": 0.0, "scroll_y": scroll_y}


async def test_start_refuse_take_over_stop_and_late_join(hopso: Harness) -> None:
    meeting_id = await demo_meeting_id(hopso)
    chair, secretary = await _user_id(hopso, "chutri"), await _user_id(hopso, "thuky")
    a, b = _boards(hopso)
    assert (await b.get(meeting_id))["active"] is False

    started = await a.update(meeting_id, user_id=chair, name="Chair", **_view(page=2))
    assert started["active"] and started["page"] == 2 and started["seq"] == SEQ_STEP
    late = await b.get(meeting_id)  # another process, never involved so far
    assert late == started
    assert (await b.presenting(meeting_id, chair, 1)).version == 1
    with pytest.raises(NotPresenter):
        await b.presenting(meeting_id, secretary, 1)

    with pytest.raises(PresenterBusy):
        await b.update(meeting_id, user_id=secretary, name="Secretary", **_view(page=0))
    assert (await a.get(meeting_id))["presenter"]["user_id"] == chair

    # The presenter may turn pages through any process (a second tablet, a reconnect).
    turned = await b.update(meeting_id, user_id=chair, name="Chair", **_view(page=3))
    assert turned["page"] == 3 and turned["seq"] == 2 * SEQ_STEP

    taken = await b.update(meeting_id, user_id=secretary, name="Secretary", take_over=True,
                           **_view(page=1))
    assert taken["presenter"]["user_id"] == secretary and taken["seq"] > turned["seq"]
    with pytest.raises(PresenterBusy):
        await a.update(meeting_id, user_id=chair, name="Chair", **_view(page=0))

    stopped = await a.stop(meeting_id)
    assert stopped["active"] is False and stopped["seq"] > taken["seq"]
    assert await b.get(meeting_id) == stopped
    again = await a.update(meeting_id, user_id=chair, name="Chair", **_view(page=0))
    assert again["active"] and again["seq"] > stopped["seq"]


async def test_two_presenters_starting_at_once_one_wins(hopso: Harness) -> None:
    meeting_id = await demo_meeting_id(hopso)
    chair, secretary = await _user_id(hopso, "chutri"), await _user_id(hopso, "thuky")
    for round_ in range(5):
        a, b = _boards(hopso)
        results = await asyncio.gather(
            a.update(meeting_id, user_id=chair, name="Chair", **_view(page=round_)),
            b.update(meeting_id, user_id=secretary, name="Secretary", **_view(page=round_)),
            return_exceptions=True)
        won = [r for r in results if isinstance(r, dict)]
        refused = [r for r in results if isinstance(r, PresenterBusy)]
        assert len(won) == 1 and len(refused) == 1, results
        assert (await a.get(meeting_id))["presenter"] == won[0]["presenter"]
        await a.stop(meeting_id)


async def test_scroll_moves_are_pushed_at_once_and_stored_about_once_a_second(
        hopso: Harness) -> None:
    meeting_id = await demo_meeting_id(hopso)
    chair, secretary = await _user_id(hopso, "chutri"), await _user_id(hopso, "thuky")
    a, b = _boards(hopso, interval=0.2)
    started = await a.update(meeting_id, user_id=chair, name="Chair", **_view(page=1))
    writes = a.writes
    moves = [await a.update(meeting_id, user_id=chair, name="Chair",
                            **_view(page=1, zoom=2.0, scroll_y=i / 10)) for i in range(1, 8)]
    assert a.writes == writes  # nothing stored yet
    assert [m["seq"] for m in moves] == list(range(started["seq"] + 1, started["seq"] + 8))
    assert (await b.get(meeting_id))["seq"] == started["seq"]  # the row lags...
    assert (await a.get(meeting_id)) == moves[-1]  # ...but the presenter's process knows
    await asyncio.sleep(0.5)
    assert a.writes == writes + 1  # seven moves, one write
    late = await b.get(meeting_id)
    assert late == moves[-1] and late["scroll_y"] == 0.7

    # A page turn lands above every move handed out before it.
    turned = await a.update(meeting_id, user_id=chair, name="Chair", **_view(page=2))
    assert turned["seq"] == 2 * SEQ_STEP > moves[-1]["seq"]

    # Taken over through the other process: the old presenter's next move is pushed with a
    # seq below the take-over (followers ignore it) and never overwrites the row.
    taken = await b.update(meeting_id, user_id=secretary, name="Secretary", take_over=True,
                           **_view(page=0))
    stale = await a.update(meeting_id, user_id=chair, name="Chair",
                           **_view(page=2, scroll_y=0.9))
    assert stale["seq"] < taken["seq"]
    await asyncio.sleep(0.5)
    assert await b.get(meeting_id) == taken
    with pytest.raises(PresenterBusy):  # and a has forgotten its copy
        await a.update(meeting_id, user_id=chair, name="Chair", **_view(page=2, scroll_y=1.0))


async def test_last_position_is_stored_on_close(hopso: Harness) -> None:
    meeting_id = await demo_meeting_id(hopso)
    chair = await _user_id(hopso, "chutri")
    a, b = _boards(hopso, interval=60)
    await a.update(meeting_id, user_id=chair, name="Chair", **_view(page=1))
    moved = await a.update(meeting_id, user_id=chair, name="Chair", **_view(page=1, zoom=3))
    await a.close()
    assert await b.get(meeting_id) == moved


async def _presenting(hopso: Harness, tmp_path: Path, username: str
                      ) -> tuple[int, dict[str, Any], Listener, Listener]:
    """The demo meeting with a ready 3-page PDF; the chair's and `username`'s sockets in it."""
    meeting_id = await demo_meeting_id(hopso)
    doc = await upload_ready(hopso, meeting_id, make_pdf(tmp_path, pages=3))
    chair = await Listener.open(hopso, await hopso.login("chutri"), meeting_id)
    other = await Listener.open(hopso, await hopso.login(username), meeting_id)
    return meeting_id, doc, chair, other


async def test_presenter_page_turn_reaches_followers(hopso_sqlite: Harness, tmp_path: Path
                                                     ) -> None:
    hopso = hopso_sqlite
    meeting_id, doc, chair, follower = await _presenting(hopso, tmp_path, "daibieu")
    turn = {"document_id": doc["id"], "page": 2, "zoom": 1.5, "scroll_x": 0, "scroll_y": 0.25}
    ack = await chair.call("present:update", turn)
    assert ack["ok"], ack
    state = await follower.wait_for("present:state", lambda s: s["page"] == 2)
    assert state["active"] and state["presenter"]["name"] == "Nguyễn Văn Hùng"
    assert state["document_id"] == doc["id"] and state["zoom"] == 1.5
    late = await Listener.open(hopso, await hopso.login("daibieu2"), meeting_id)
    got = await late.call("present:get", {"meeting_id": meeting_id})
    assert got["result"]["page"] == 2 and got["result"]["seq"] == state["seq"]
    ack = await chair.call("present:pointer", {"document_id": doc["id"], "page": 2, "x": 100.0,
                                               "y": 200.0})
    assert ack["result"] == {"sent": True}
    pointer = await follower.wait_for("present:pointer")
    assert (pointer["x"], pointer["y"], pointer["page"]) == (100.0, 200.0, 2)
    # Delegates cannot present; pages outside the document are refused.
    ack = await follower.call("present:update", turn)
    assert ack["error"]["code"] == "forbidden"
    ack = await chair.call("present:update", {**turn, "page": 3})
    assert ack["error"]["code"] == "bad_page"
    ack = await chair.call("present:pointer", {"document_id": doc["id"], "page": 2, "x": 9999.0,
                                               "y": 1.0})
    assert ack["error"]["code"] == "out_of_page"
    ack = await chair.call("present:stop", {"meeting_id": meeting_id})
    assert ack["result"]["active"] is False
    await follower.wait_for("present:state", lambda s: not s["active"])


async def test_second_presenter_is_refused_over_socketio(hopso_sqlite: Harness, tmp_path: Path
                                                         ) -> None:
    hopso = hopso_sqlite
    meeting_id, doc, chair, secretary = await _presenting(hopso, tmp_path, "thuky")
    view = {"document_id": doc["id"], "page": 1, "zoom": 1, "scroll_x": 0, "scroll_y": 0}
    first = await chair.call("present:update", view)
    assert first["ok"], first
    ack = await secretary.call("present:update", {**view, "page": 2})
    assert ack["error"]["code"] == "presenter_busy", ack
    ack = await secretary.call("present:pointer", {"document_id": doc["id"], "page": 1,
                                                   "x": 10.0, "y": 10.0})
    assert ack["error"]["code"] == "not_presenter"
    ack = await secretary.call("present:update", {**view, "page": 2, "take_over": True})
    assert ack["ok"] and ack["result"]["presenter"]["name"] == secretary_name(hopso)
    state = await chair.wait_for("present:state", lambda s: s["page"] == 2)
    assert state["seq"] > first["result"]["seq"]
    ack = await chair.call("present:update", view)
    assert ack["error"]["code"] == "presenter_busy"
    assert (await runtime(hopso).presenters.get(meeting_id))["page"] == 2


def secretary_name(hopso: Harness) -> str:
    return hopso.logins["thuky"].full_name
