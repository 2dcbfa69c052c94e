import asyncio
from typing import Any

import pytest
import socketio

from rooms.meetings import meetings_for
from rooms.users import find_user
from server.core import keys
from tests.conftest import Client, Harness


async def connect(harness: Harness, client: Client) -> socketio.AsyncClient:
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(harness.base, headers={"Cookie": client.cookie_header()},
                      transports=["websocket"], wait_timeout=5)
    return sio


async def demo_meeting_id(harness: Harness) -> int:
    async with harness.server.app[keys.DB].session() as s:
        user = await find_user(s, "chutri")
        assert user
        return (await meetings_for(s, user))[0][0].id  # type: ignore[return-value]


async def test_connection_without_session_is_refused_with_a_code(hopso_sqlite: Harness) -> None:
    sio = socketio.AsyncClient(reconnection=False)
    refusals: list[Any] = []
    sio.on("connect_error", refusals.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(hopso_sqlite.base, transports=["websocket"], wait_timeout=5)
    # socket.io's CONNECT_ERROR is {message, data}: `data` is the common error shape.
    message = "no valid session; log in first"
    assert refusals == [{"message": message,
                         "data": {"code": "not_authenticated", "message": message}}]


async def test_member_joins_own_meeting_and_hears_status_changes(hopso: Harness) -> None:
    meeting_id = await demo_meeting_id(hopso)
    delegate = await hopso.login("daibieu")
    sio = await connect(hopso, delegate)
    got: asyncio.Queue[Any] = asyncio.Queue()
    sio.on("meeting:updated", got.put_nowait)
    ack = await sio.call("meeting:join", {"meeting_id": meeting_id}, timeout=5)
    assert ack["ok"] and ack["result"]["my_role"] == "delegate"
    chair = await hopso.login("chutri")
    status, _ = await chair.call("POST", f"/api/meetings/{meeting_id}/open")
    assert status == 200
    update = await asyncio.wait_for(got.get(), 5)
    assert update["id"] == meeting_id and update["status"] == "open"
    await sio.disconnect()


async def test_non_member_cannot_join_and_hears_nothing(hopso: Harness) -> None:
    meeting_id = await demo_meeting_id(hopso)
    admin = await hopso.login("quantri")  # an administrator is not a member of the meeting
    sio = await connect(hopso, admin)
    ack = await sio.call("meeting:join", {"meeting_id": meeting_id}, timeout=5)
    assert ack == {"ok": False, "error": {"code": "not_found",
                                          "message": f"meeting {meeting_id} not found"}}
    ack = await sio.call("meeting:join", {"meeting_id": 987654}, timeout=5)
    assert ack["error"]["code"] == "not_found"
    await sio.disconnect()


@pytest.mark.parametrize("payload, where", [
    ({"meeting_id": "1"}, "meeting_id"),
    ({}, "meeting_id"),
    ({"meeting_id": 1, "extra": True}, "extra"),
    ("not an object", "payload"),
])
async def test_malformed_event_payloads_get_a_clear_error(hopso_sqlite: Harness, payload: Any,
                                                          where: str) -> None:
    sio = await connect(hopso_sqlite, await hopso_sqlite.login("daibieu"))
    ack = await sio.call("meeting:join", payload, timeout=5)
    assert ack["ok"] is False and ack["error"]["code"] == "invalid"
    assert ack["error"]["message"].startswith(where) or where == "payload"
    await sio.disconnect()


async def test_events_stop_working_once_the_session_ends(hopso_sqlite: Harness) -> None:
    meeting_id = await demo_meeting_id(hopso_sqlite)
    delegate = await hopso_sqlite.login("daibieu")
    sio = await connect(hopso_sqlite, delegate)
    await delegate.call("POST", "/logout")
    ack = await sio.call("meeting:join", {"meeting_id": meeting_id}, timeout=5)
    assert ack["error"]["code"] == "not_authenticated"


@pytest.mark.parametrize("change", [{"disabled": True}, {"password": "a-brand-new-password-1"}])
async def test_a_disabled_or_reset_users_next_event_is_refused(hopso_sqlite: Harness,
                                                               change: dict[str, Any]) -> None:
    # Events answer from a short-lived session cache (server.core.auth.SessionCache): disabling a
    # user or resetting their password must still stop their open socket at its next event.
    meeting_id = await demo_meeting_id(hopso_sqlite)
    delegate = await hopso_sqlite.login("daibieu")
    admin = await hopso_sqlite.login("quantri")
    sio = await connect(hopso_sqlite, delegate)
    ack = await sio.call("meeting:join", {"meeting_id": meeting_id}, timeout=5)
    assert ack["ok"] is True  # the session is now cached
    status, _ = await admin.call("PATCH", f"/api/users/{delegate.user['id']}", change)
    assert status == 200
    ack = await sio.call("meeting:join", {"meeting_id": meeting_id}, timeout=5)
    assert ack["ok"] is False and ack["error"]["code"] == "not_authenticated"


async def test_logout_stops_a_socket_whose_session_is_cached(hopso_sqlite: Harness) -> None:
    meeting_id = await demo_meeting_id(hopso_sqlite)
    delegate = await hopso_sqlite.login("daibieu")
    other_device = await hopso_sqlite.login("daibieu")
    sio, other = await connect(hopso_sqlite, delegate), await connect(hopso_sqlite, other_device)
    for s in (sio, other):
        assert (await s.call("meeting:join", {"meeting_id": meeting_id}, timeout=5))["ok"]
    await delegate.call("POST", "/logout")
    ack = await sio.call("meeting:join", {"meeting_id": meeting_id}, timeout=5)
    assert ack["error"]["code"] == "not_authenticated"
    # Logging out ends that session only: the same user's other login keeps working.
    assert (await other.call("meeting:join", {"meeting_id": meeting_id}, timeout=5))["ok"]
    await other.disconnect()
