"""Every route and event × every role × own/other meeting: allowed, refused, or not revealed."""

import logging
import time
from pathlib import Path
from typing import Any

import pytest
import socketio
from sqlmodel import select

from rooms.meetings import meetings_for
from rooms.models import MeetingMember
from rooms.users import find_user
from server.cascade.keys import NODE
from server.cascade.schemas import NAMESPACE as NODE_NAMESPACE
from server.cascade.tokens import make_token
from server.core import keys
from server.core.settings import NodeSettings
from tests.conftest import Client, Harness, start_harness
from tests.server.core.test_realtime import connect

ROLES = ["anonymous", "quantri", "chutri", "thuky", "daibieu", "kythuat"]
MEMBERS = {"chutri", "thuky", "daibieu", "kythuat"}  # kythuat through the invited site
MANAGERS = {"chutri", "thuky"}


async def meeting_ids(h: Harness) -> tuple[int, int, int]:
    """The demo meeting, another meeting none of the demo people belong to, and a member id
    of that other meeting."""
    admin = await h.login("quantri")
    status, _ = await admin.call("POST", "/api/users", {
        "username": "thuky2", "full_name": "Thư ký khác", "password": "another-secret-1",
        "role": "secretary", "unit_id": admin.user["unit_id"]})
    assert status == 201, _
    other = h.anonymous()
    _, body = await other.call("POST", "/api/login", {"username": "thuky2",
                                                      "password": "another-secret-1"})
    other.csrf = body["csrf_token"]
    status, meeting = await other.call("POST", "/api/meetings", {
        "title": "Họp nội bộ khác", "unit_id": admin.user["unit_id"],
        "starts_at": "2026-12-01T08:00:00+07:00"})
    assert status == 201
    _, members = await other.call("GET", f"/api/meetings/{meeting['id']}/members")
    async with h.server.app[keys.DB].session() as s:
        chair = await find_user(s, "chutri")
        own = (await meetings_for(s, chair))[0][0].id  # type: ignore[arg-type]
    return own, meeting["id"], members["members"][0]["id"]  # type: ignore[return-value]


def expected_meeting_status(role: str, own: bool, manage: bool) -> set[int]:
    if role == "anonymous":
        return {401}
    if not own or role not in MEMBERS:
        return {404}
    if manage and role not in MANAGERS:
        return {403}
    return {200, 201, 409}  # 409: allowed through, but e.g. the meeting is already open


@pytest.mark.parametrize("role", ROLES)
async def test_access_matrix(hopso: Harness, role: str) -> None:
    own, other, other_member = await meeting_ids(hopso)
    client: Client = hopso.anonymous() if role == "anonymous" else await hopso.login(role)
    if role == "anonymous":
        client.csrf = ""
    for meeting_id, is_own in ((own, True), (other, False)):
        routes: list[tuple[str, str, Any, bool]] = [
            ("GET", f"/api/meetings/{meeting_id}", None, False),
            ("GET", f"/api/meetings/{meeting_id}/members", None, False),
            ("POST", f"/api/meetings/{meeting_id}/members",
             {"role": "observer", "user_id": 1}, True),
            ("POST", f"/api/meetings/{meeting_id}/open", None, True),
            ("GET", f"/api/meetings/{meeting_id}/nodes", None, False),
            ("PUT", f"/api/meetings/{meeting_id}/nodes", {"nodes": ["ward:dong-phu"]}, True),
        ]
        for method, path, body, manage in routes:
            status, answer = await client.call(method, path, body)
            expected = expected_meeting_status(role, is_own, manage)
            if role == "anonymous" and method != "GET":
                expected = {401, 403}
            assert status in expected, (role, method, path, status, answer)
            if status in (403, 404) and isinstance(answer, dict):
                assert set(answer) == {"error"}  # never data
        page_status, _ = await client.call("GET", f"/meetings/{meeting_id}",
                                           headers={"Accept": "text/html"})
        assert page_status in ({302} if role == "anonymous" else
                               {200} if is_own and role in MEMBERS else {404}), (role, page_status)
    # A member id from the other meeting is not found through this meeting.
    status, _ = await client.call("DELETE", f"/api/meetings/{own}/members/{other_member}")
    assert status in ({401, 403} if role == "anonymous" else
                      {403} if role in MEMBERS - MANAGERS else {404}), (role, status)

    admin_routes = [("GET", "/api/units", None), ("GET", "/api/users", None),
                    ("POST", "/api/units", {"name": f"Đơn vị thử {role}", "kind": "ward"}),
                    ("POST", "/api/sites", {"name": "Phòng thử", "unit_id": 1}),
                    ("GET", "/api/units/1/history", None)]
    for method, path, body in admin_routes:
        status, _ = await client.call(method, path, body)
        if role == "anonymous":
            assert status in {401, 403}, (path, status)
        elif role == "quantri":
            assert status in {200, 201}, (path, status)
        else:
            assert status == 403, (role, path, status)

    if role == "anonymous":
        return
    sio = await connect(hopso, client)
    for meeting_id, is_own in ((own, True), (other, False)):
        ack = await sio.call("meeting:join", {"meeting_id": meeting_id}, timeout=5)
        if is_own and role in MEMBERS:
            assert ack["ok"], (role, ack)
        else:
            assert ack["error"]["code"] == "not_found", (role, ack)
    await sio.disconnect()


# -- Cascade nodes: every /node event x invited / not invited / withdrawn meeting ----------------

CHILD_SECRET = "city-secret-0123456789"


async def node_harness(tmp_path: Path, database_url: str | None) -> Harness:
    """A province node whose one child is "city", on SQLite or PostgreSQL."""
    return await start_harness(tmp_path, database_url,
                               node=NodeSettings("province", children={"city": CHILD_SECRET}))


async def link_city(h: Harness, auth: Any = None) -> socketio.AsyncClient:
    """The city's signaling link as a raw socket.io client (no media), answering the
    province's own `link` requests (catalog pushes) as a child node does."""
    child = socketio.AsyncClient(reconnection=False)
    child.on("link", lambda data: {"ok": True, "result": {}}, namespace=NODE_NAMESPACE)
    await child.connect(h.base, namespaces=[NODE_NAMESPACE], transports=["websocket"],
                        auth=auth or {"unit": "city", "token": make_token("city", CHILD_SECRET)},
                        wait_timeout=5)
    return child


async def node_meetings(h: Harness, chair: Client) -> dict[str, int]:
    """Three open meetings of the province: one invites the city, one never did, one did
    and then withdrew (the withdrawal happens in the test, once the city acted on it)."""
    _, mine = await chair.call("GET", "/api/meetings")
    found = {"invited": mine["meetings"][0]["id"]}
    for name in ("not_invited", "withdrawn"):
        status, made = await chair.call("POST", "/api/meetings", {
            "title": f"Họp {name}", "unit_id": chair.user["unit_id"],
            "starts_at": "2026-12-01T08:00:00+07:00"})
        assert status == 201, made
        found[name] = made["id"]
    for name, meeting_id in found.items():
        assert (await chair.call("POST", f"/api/meetings/{meeting_id}/open"))[0] == 200
        nodes = {"nodes": [] if name == "not_invited" else ["city"]}
        status, body = await chair.call("PUT", f"/api/meetings/{meeting_id}/nodes", nodes)
        assert status == 200, body
    return found


async def cascade_state(h: Harness, chair: Client, meetings: dict[str, int]) -> dict[str, Any]:
    """What a child could change: each meeting's quorum (members is the eligible count)
    and the child headcounts counted in it, what the link joined, the meetings' cascades."""
    node = h.server.app[NODE]
    state: dict[str, Any] = {
        "joined": sorted(m for link in node.children.values() for m in link.meetings),
        "cascades": sorted(k for k, c in node.cascades.items() if "city" in c.links
                           and not c.links["city"].closed)}
    for name, meeting_id in meetings.items():
        status, body = await chair.call("GET", f"/api/meetings/{meeting_id}/procedure")
        assert status == 200, body
        state[name] = {"quorum": body["attendance"]["quorum"], "nodes": body["attendance"]["nodes"]}
    return state


def node_payload(event: str, key: str, members: int = 10_000) -> dict[str, Any]:
    return {"join": {"meeting": key},
            "link": {"meeting": key, "op": "catalog", "data": {"producers": [], "peers": []}},
            "headcounts": {"counts": [{"key": key, "members": members, "present": members}]},
            }[event]


def refused(ack: Any) -> bool:
    return (isinstance(ack, dict) and ack.get("ok") is False
            and set(ack["error"]) == {"code", "message"})


async def test_a_child_node_acts_only_on_meetings_it_is_invited_to(
        tmp_path: Path, harness_database_url: str | None, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 11, finding 8: with nothing offered, `join "province/1"` answered ok and a
    headcount of 10,000 present moved the quorum. Every meeting-scoped /node event is
    now checked against the invitations at the moment it arrives; a refusal changes
    nothing."""
    h = await node_harness(tmp_path, harness_database_url)
    try:
        chair = await h.login("chutri")
        meetings = await node_meetings(h, chair)
        keys_of = {name: f"province/{i}" for name, i in meetings.items()}
        child = await link_city(h)
        offered = await child.call("meetings", {}, namespace=NODE_NAMESPACE, timeout=5)
        assert sorted(m["key"] for m in offered["result"]["meetings"]) == sorted(
            [keys_of["invited"], keys_of["withdrawn"]])

        # Invited: the city joins, talks on the link and reports what its seats allow.
        for name in ("invited", "withdrawn"):
            for event in ("join", "link"):
                ack = await child.call(event, node_payload(event, keys_of[name]),
                                       namespace=NODE_NAMESPACE, timeout=5)
                assert ack.get("ok") is True, (name, event, ack)

        # Not invited: nothing a child sends about the meeting is acted on.
        before = await cascade_state(h, chair, meetings)
        for event in ("join", "link", "headcounts"):
            ack = await child.call(event, node_payload(event, keys_of["not_invited"]),
                                   namespace=NODE_NAMESPACE, timeout=5)
            assert refused(ack) and ack["error"]["code"] in ("not_found", "not_joined"), (
                event, ack)
            assert await cascade_state(h, chair, meetings) == before, event

        # Withdrawn: the invitation is taken back; from then on the child's link end for
        # that meeting is gone and nothing it sends about the meeting is acted on.
        status, _ = await chair.call("PUT", f"/api/meetings/{meetings['withdrawn']}/nodes",
                                     {"nodes": []})
        assert status == 200
        for event in ("link", "join", "headcounts"):
            ack = await child.call(event, node_payload(event, keys_of["withdrawn"]),
                                   namespace=NODE_NAMESPACE, timeout=5)
            assert refused(ack) and ack["error"]["code"] in ("not_found", "not_joined"), (
                event, ack)
        after = await cascade_state(h, chair, meetings)
        assert keys_of["withdrawn"] not in after["joined"] + after["cascades"]
        assert after["withdrawn"] == before["withdrawn"]
        assert after["not_invited"] == before["not_invited"]
        assert "Traceback" not in caplog.text
        await child.disconnect()
    finally:
        await h.close()
        await h.server.close()


async def test_a_child_reports_no_more_members_than_the_seats_its_meeting_allots(
        tmp_path: Path, harness_database_url: str | None) -> None:
    """Issue 11, finding 8: a headcount of members=10000, present=10000 from the city moved
    the province's quorum to reached. A child's report now counts only for a meeting that
    invites it, and for at most the seats that meeting allots it (docs/cascade.md)."""
    h = await node_harness(tmp_path, harness_database_url)
    try:
        chair = await h.login("chutri")
        meetings = await node_meetings(h, chair)
        meeting, key = meetings["invited"], f"province/{meetings['invited']}"
        status, body = await chair.call("PUT", f"/api/meetings/{meeting}/nodes",
                                        {"nodes": ["city"], "seats": {"city": 3}})
        assert status == 200 and body["seats"] == {"city": 3}, body
        child = await link_city(h)
        before = await cascade_state(h, chair, meetings)
        assert not before["invited"]["quorum"]["reached"]
        for members, present in ((10_000, 10_000), (4, 0), (3, 4)):
            ack = await child.call("headcounts", {"counts": [
                {"key": key, "members": members, "present": present}]},
                namespace=NODE_NAMESPACE, timeout=5)
            assert refused(ack) and ack["error"]["code"] in ("over_seats", "invalid"), ack
            assert await cascade_state(h, chair, meetings) == before, (members, present)
        # Within its seats, the report counts...
        ack = await child.call("headcounts", {"counts": [
            {"key": key, "members": 3, "present": 3}]}, namespace=NODE_NAMESPACE, timeout=5)
        assert ack["ok"], ack
        counted = (await cascade_state(h, chair, meetings))["invited"]
        assert counted["nodes"] == [{"node": "city", "members": 3, "present": 3}]
        assert counted["quorum"]["members"] == before["invited"]["quorum"]["members"] + 3
        # ...for no more than the seats it has now, and not at all once it is not invited.
        assert (await chair.call("PUT", f"/api/meetings/{meeting}/nodes",
                                 {"nodes": ["city"], "seats": {"city": 1}}))[0] == 200
        lowered = (await cascade_state(h, chair, meetings))["invited"]
        assert lowered["nodes"] == [{"node": "city", "members": 1, "present": 1}]
        assert (await chair.call("PUT", f"/api/meetings/{meeting}/nodes", {"nodes": []}))[0] == 200
        assert (await cascade_state(h, chair, meetings))["invited"] == before["invited"]
        # A report naming another meeting as well is refused whole: nothing of it is kept.
        ack = await child.call("headcounts", {"counts": [
            {"key": f"province/{meetings['withdrawn']}", "members": 0, "present": 0},
            {"key": f"province/{meetings['not_invited']}", "members": 1, "present": 1}]},
            namespace=NODE_NAMESPACE, timeout=5)
        assert refused(ack) and ack["error"]["code"] == "not_found", ack
        assert await cascade_state(h, chair, meetings) == before
        await child.disconnect()
    finally:
        await h.close()
        await h.server.close()


BAD_NODE_AUTH: list[tuple[str, Any]] = [
    ("no auth", None),
    ("auth not an object", "city"),
    ("no token", {"unit": "city"}),
    ("token not a string", {"unit": "city", "token": 12}),
    ("token a list", {"unit": "city", "token": ["1", "2"]}),
    ("token null", {"unit": "city", "token": None}),
    ("non-ASCII MAC", {"unit": "city", "token": "{now}." + "é" * 64}),
    ("non-ASCII tail", {"unit": "city", "token": "{now}.é"}),
    ("other script's digits", {"unit": "city", "token": "{arabic}." + "a" * 64}),
    ("huge token", {"unit": "city", "token": "{now}." + "a" * 200_000}),
    ("wrong secret", {"unit": "city", "token": "{wrong}"}),
    ("stale token", {"unit": "city", "token": "{stale}"}),
    ("unit not a string", {"unit": ["city"], "token": "{good}"}),
    ("huge unit", {"unit": "c" * 200_000, "token": "{good}"}),
    ("non-ASCII unit", {"unit": "cíty", "token": "{good}"}),
    ("unknown unit", {"unit": "ward", "token": "{good}"}),
]


def bad_auth(auth: Any) -> Any:
    if not isinstance(auth, dict) or not isinstance(auth.get("token"), str):
        return auth
    now = str(int(time.time()))
    token = auth["token"].format(
        now=now, arabic=now.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")),
        wrong=make_token("city", "not-the-secret-0123456"),
        stale=make_token("city", CHILD_SECRET, time.time() - 3600),
        good=make_token("city", CHILD_SECRET))
    return {**auth, "token": token}


async def test_bad_node_credentials_are_refused_at_once_and_logged_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 11, finding 12: a non-ASCII node token raised TypeError in the connect handler
    (hmac.compare_digest) and the child's connection hung. Every malformed credential is
    now a refusal, answered at once and logged once, with no traceback; nothing changes."""
    h = await node_harness(tmp_path, None)
    try:
        node = h.server.app[NODE]
        chair = await h.login("chutri")
        meetings = await node_meetings(h, chair)
        before = await cascade_state(h, chair, meetings)
        for name, auth in BAD_NODE_AUTH:
            caplog.clear()
            refusals = len(node.refusals)
            child = socketio.AsyncClient(reconnection=False)
            started = time.monotonic()
            with pytest.raises(socketio.exceptions.ConnectionError):
                await child.connect(h.base, namespaces=[NODE_NAMESPACE],
                                    transports=["websocket"], auth=bad_auth(auth),
                                    wait_timeout=5)
            await child.disconnect()
            assert time.monotonic() - started < 2, name  # refused, not left hanging
            lines = [r for r in caplog.records if "refused node link" in r.getMessage()]
            assert len(lines) == 1 and len(lines[0].getMessage()) < 300, (name, caplog.text)
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR], name
            assert "Traceback" not in caplog.text, name
            assert len(node.refusals) == refusals + 1 and not node.children, name
        assert await cascade_state(h, chair, meetings) == before
        # ...and the right credential still links.
        child = await link_city(h)
        assert (await child.call("hello", {}, namespace=NODE_NAMESPACE, timeout=5))["ok"]
        await child.disconnect()
    finally:
        await h.close()
        await h.server.close()


# -- Role changes: every role x every target role x oneself / another ----------------------------

MEETING_ROLES = ["chair", "secretary", "delegate", "site_operator", "observer"]
APPOINTED = {"chair", "secretary"}  # given and taken only by the chair or the scheduler


def may_change(actor: str, appoints: bool, is_self: bool, current: str | None,
               new: str | None) -> bool:
    """The rule of docs/protocol.md (Meetings, "Who may change a role")."""
    if actor not in ("chair", "secretary") or is_self:
        return False
    return appoints or not ({current, new} & APPOINTED)


async def members_of(h: Harness, meeting_id: int) -> list[tuple[Any, ...]]:
    """(role, user_id, site_id) of every member, read from the database."""
    async with h.server.app[keys.DB].session() as s:
        rows = await s.exec(select(MeetingMember).where(MeetingMember.meeting_id == meeting_id))
        return sorted((m.role.value, m.user_id or 0, m.site_id or 0) for m in rows.all())


async def member_id(h: Harness, meeting_id: int, user_id: int) -> int | None:
    async with h.server.app[keys.DB].session() as s:
        rows = await s.exec(select(MeetingMember.id).where(
            MeetingMember.meeting_id == meeting_id, MeetingMember.user_id == user_id))
        return rows.first()


async def test_roles_are_changed_only_by_those_allowed_and_never_by_oneself(
        hopso: Harness) -> None:
    """Issue 11, finding 9: the secretary made themselves chair (POST members answered 201).
    Every role (and the administrator, not a member) tries to give every role to themselves,
    to a newcomer and to each kind of member, and to remove them; refusals change nothing."""
    admin = await hopso.login("quantri")
    _, users = await admin.call("GET", "/api/users")
    ids = {u["username"]: u["id"] for u in users["users"]}
    status, made = await admin.call("POST", "/api/users", {
        "username": "khachmoi", "full_name": "Khách mới", "password": "another-secret-1",
        "role": "delegate", "unit_id": admin.user["unit_id"]})
    assert status == 201, made
    chair = await hopso.login("chutri")
    _, mine = await chair.call("GET", "/api/meetings")
    meeting = mine["meetings"][0]["id"]  # the demo meeting: chutri scheduled it and chairs it
    for username, role in (("daibieu3", "observer"), ("daibieu2", "delegate")):
        assert (await chair.call("POST", f"/api/meetings/{meeting}/members",
                                 {"role": role, "user_id": ids[username]}))[0] == 201
    actors = {"chair": "chutri", "secretary": "thuky", "delegate": "daibieu",
              "site_operator": "kythuat", "observer": "daibieu3", "admin": "quantri"}
    # Each kind of member someone may act on (restored by the chair after each change).
    targets = {"chair": "chutri", "secretary": "thuky", "delegate": "daibieu2",
               "observer": "daibieu3", None: made["id"]}
    baseline = await members_of(hopso, meeting)  # restored after every allowed change
    checked = 0
    for actor, username in actors.items():
        client = await hopso.login(username)
        for current, target in targets.items():
            target_id = target if isinstance(target, int) else ids[target]
            is_self = target_id == client.user["id"]
            for new in MEETING_ROLES:
                status, body = await client.call("POST", f"/api/meetings/{meeting}/members",
                                                 {"role": new, "user_id": target_id})
                checked += 1
                if not may_change(actor, actor == "chair", is_self, current, new):
                    # (the administrator is not a member: the meeting is not revealed)
                    assert status == (404 if actor == "admin" else 403), (actor, current, new,
                                                                          status, body)
                    assert set(body) == {"error"}, body
                    assert await members_of(hopso, meeting) == baseline, (actor, current, new)
                    continue
                assert status == 201 and body["role"] == new, (actor, current, new, body)
                # Put the member back as they were (the chair may; never their own role).
                assert target_id != ids["chutri"], (actor, new)
                if current is None:
                    status, _ = await chair.call("DELETE", f"/api/meetings/{meeting}/members/"
                                                 f"{await member_id(hopso, meeting, target_id)}")
                else:
                    status, _ = await chair.call("POST", f"/api/meetings/{meeting}/members",
                                                 {"role": current, "user_id": target_id})
                assert status in (200, 201) and await members_of(hopso, meeting) == baseline
            # Removing the member.
            found = await member_id(hopso, meeting, target_id)
            if found is None:
                continue
            status, body = await client.call("DELETE", f"/api/meetings/{meeting}/members/{found}")
            checked += 1
            if may_change(actor, actor == "chair", is_self, current, None):
                assert status == 200, (actor, current, status, body)
                assert (await chair.call("POST", f"/api/meetings/{meeting}/members",
                                         {"role": current, "user_id": target_id}))[0] == 201
            else:
                assert status == (404 if actor == "admin" else 403), (actor, current, status)
            assert await members_of(hopso, meeting) == baseline, (actor, current)
    assert checked == 6 * 5 * 5 + 6 * 4  # (actor, target, new role) triples, then removals

    # A secretary who schedules a meeting appoints its chair and other secretaries, but
    # never raises their own role either.
    secretary = await hopso.login("thuky")
    status, own = await secretary.call("POST", "/api/meetings", {
        "title": "Họp do thư ký lên lịch", "unit_id": secretary.user["unit_id"],
        "starts_at": "2026-12-01T08:00:00+07:00"})
    assert status == 201
    before = await members_of(hopso, own["id"])
    status, body = await secretary.call("POST", f"/api/meetings/{own['id']}/members",
                                        {"role": "chair", "user_id": secretary.user["id"]})
    assert status == 403 and await members_of(hopso, own["id"]) == before, body
    for new, username in (("chair", "chutri"), ("secretary", "daibieu2")):
        status, body = await secretary.call("POST", f"/api/meetings/{own['id']}/members",
                                            {"role": new, "user_id": ids[username]})
        assert status == 201 and body["role"] == new, body
