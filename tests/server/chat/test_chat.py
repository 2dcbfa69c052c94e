"""Meeting chat over socket.io and HTTP: who sees what, moderation, the exported record,
and hostile input (oversized, wrong meeting, not a member, flooding) answered with the
documented error acknowledgements (docs/protocol.md, "Chat")."""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

from sqlmodel import select

from rooms.procedure_models import AuditEntry
from server.core import keys
from tests.conftest import Harness
from tests.server.core.test_realtime import connect
from tests.server.procedure_helpers import Member, join, open_demo


def hear_chat(member: Member) -> None:
    for event in ("chat:message", "chat:hidden"):
        def heard(payload: dict[str, Any], event: str = event) -> None:
            member.heard.setdefault(event, []).append(payload)
            member.changed.set()
        member.sio.on(event, heard)


async def test_messages_to_everyone_and_private_ones_to_the_chair(hopso: Harness) -> None:
    m, people = await open_demo(hopso, "thuky", "daibieu", "daibieu2")
    for person in people.values():
        hear_chat(person)
    chair, thuky, d1, d2 = (people[n] for n in ("chutri", "thuky", "daibieu", "daibieu2"))

    sent = await d1.ok("chat:send", {"meeting_id": m, "to": "all",
                                     "text": "  Đề nghị bổ sung số liệu quý IV.  "})
    assert sent["text"] == "Đề nghị bổ sung số liệu quý IV." and sent["to"] == "all"
    for person in (chair, thuky, d2):
        got = await person.wait_for("chat:message", lambda e: e["id"] == sent["id"])
        assert got["sender"] == "Lê Minh Tuấn" and got["meeting_id"] == m

    note = await d2.ok("chat:send", {"meeting_id": m, "to": "chair",
                                     "text": "Ý kiến riêng: xin phát biểu sau."})
    for person in (chair, thuky, d2):
        await person.wait_for("chat:message", lambda e: e["id"] == note["id"])
    await asyncio.sleep(0.2)
    assert note["id"] not in [e["id"] for e in d1.heard.get("chat:message", [])]

    mine = await d1.ok("chat:history", {"meeting_id": m})
    assert [x["id"] for x in mine["messages"]] == [sent["id"]] and not mine["can_moderate"]
    staff = await thuky.ok("chat:history", {"meeting_id": m})
    assert [x["id"] for x in staff["messages"]] == [sent["id"], note["id"]]
    status, body = await d2.http.call("GET", f"/api/meetings/{m}/chat")
    assert status == 200 and [x["id"] for x in body["messages"]] == [sent["id"], note["id"]]


async def test_the_chair_hides_a_message_kept_in_the_record_and_audited(hopso: Harness) -> None:
    m, people = await open_demo(hopso, "thuky", "daibieu", "daibieu2")
    for person in people.values():
        hear_chat(person)
    chair, d1, d2 = people["chutri"], people["daibieu"], people["daibieu2"]
    rude = await d1.ok("chat:send", {"meeting_id": m, "to": "all", "text": "=HYPERLINK(x)"})
    assert await d2.error("chat:hide", {"meeting_id": m, "message_id": rude["id"]}) == "forbidden"
    assert await people["thuky"].error("chat:hide", {"meeting_id": m,
                                                      "message_id": rude["id"]}) == "forbidden"
    assert (await chair.ok("chat:hide", {"meeting_id": m, "message_id": rude["id"]})
            == {"meeting_id": m, "message_id": rude["id"]})
    await d2.wait_for("chat:hidden", lambda e: e["message_id"] == rude["id"])
    seen = (await d2.ok("chat:history", {"meeting_id": m}))["messages"]
    assert seen[0]["hidden"] is True and seen[0]["text"] == ""
    assert (await chair.ok("chat:history", {"meeting_id": m}))["messages"][0]["text"] == rude["text"]
    async with hopso.server.app[keys.DB].session() as s:
        kinds = (await s.exec(select(AuditEntry.kind).where(AuditEntry.meeting_id == m))).all()
    assert "chat_hidden" in kinds

    status, text = await chair.http.call("GET", f"/api/meetings/{m}/chat/export?format=csv")
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert status == 200 and rows[0]["text"] == "'=HYPERLINK(x)" and rows[0]["hidden"] == "True"
    status, body = await chair.http.call("GET", f"/api/meetings/{m}/chat/export?format=json",
                                         headers={"Accept": "*/*"})
    assert status == 200 and body["messages"][0]["hidden"] is True
    assert (await d1.http.call("GET", f"/api/meetings/{m}/chat/export"))[0] == 403
    assert (await chair.http.call("GET", f"/api/meetings/{m}/chat/export?format=xml"))[0] == 400


async def test_hostile_chat_input_gets_the_documented_error_acks(hopso: Harness) -> None:
    m, people = await open_demo(hopso, "daibieu")
    d1 = people["daibieu"]
    assert await d1.error("chat:send", {"meeting_id": m, "to": "all", "text": "x" * 2001}) == "too_long"
    assert await d1.error("chat:send", {"meeting_id": m, "to": "all", "text": "x" * 5000}) == "invalid"
    assert await d1.error("chat:send", {"meeting_id": m, "to": "all", "text": "   "}) == "empty"
    assert await d1.error("chat:send", {"meeting_id": m, "to": "all", "text": "a\x00b"}) == "invalid"
    assert await d1.error("chat:send", {"meeting_id": m, "to": "everyone", "text": "x"}) == "invalid"
    assert await d1.error("chat:send", {"meeting_id": m, "to": "all", "text": 5}) == "invalid"
    assert await d1.error("chat:send", {"meeting_id": m, "to": "all", "text": "x",
                                        "extra": 1}) == "invalid"
    assert await d1.error("chat:send", {"meeting_id": 999999, "to": "all", "text": "x"}) == "not_found"
    assert await d1.error("chat:hide", {"meeting_id": m, "message_id": 999999}) == "forbidden"
    chair = people["chutri"]
    assert await chair.error("chat:hide", {"meeting_id": m, "message_id": 999999}) == "not_found"
    assert await d1.error("chat:history", {"meeting_id": m, "limit": 10**6}) == "invalid"

    # Not a member: the administrator exists but was not invited (404, never revealed).
    admin = await join_outsider(hopso)
    assert await admin.error("chat:send", {"meeting_id": m, "to": "all", "text": "x"}) == "not_found"
    assert await admin.error("chat:history", {"meeting_id": m}) == "not_found"
    assert (await admin.http.call("GET", f"/api/meetings/{m}/chat"))[0] == 404

    # A message of this meeting cannot be hidden through another meeting's id.
    status, other = await chair.http.call("POST", "/api/meetings", {
        "title": "Họp khác", "unit_id": chair.http.user["unit_id"],
        "starts_at": "2026-12-05T08:00:00+07:00"})
    assert status == 201, other
    msg = await d1.ok("chat:send", {"meeting_id": m, "to": "all", "text": "ok"})
    assert await chair.error("chat:hide", {"meeting_id": other["id"],
                                           "message_id": msg["id"]}) == "not_found"

    # Flooding: a burst, then rate_limited; nothing beyond the burst is stored.
    acks = [await d1.emit("chat:send", {"meeting_id": m, "to": "all", "text": f"{n}"})
            for n in range(12)]
    refused = [a for a in acks if not a["ok"]]
    assert refused and {a["error"]["code"] for a in refused} == {"rate_limited"}
    stored = (await d1.ok("chat:history", {"meeting_id": m}))["messages"]
    assert len(stored) <= 1 + 5

    # A closed meeting's chat is read-only.
    assert (await chair.http.call("POST", f"/api/meetings/{m}/close"))[0] == 200
    assert await chair.error("chat:send", {"meeting_id": m, "to": "all",
                                           "text": "x"}) == "meeting_closed"


async def join_outsider(h: Harness) -> Member:
    http = await h.login("quantri")
    return Member("quantri", http, await connect(h, http))


async def test_a_site_operator_writes_to_the_chair(hopso: Harness) -> None:
    m, _people = await open_demo(hopso)
    operator = await join(hopso, "kythuat", m)
    sent = await operator.ok("chat:send", {"meeting_id": m, "to": "chair", "text": "Mất tiếng"})
    assert sent["to"] == "chair"
