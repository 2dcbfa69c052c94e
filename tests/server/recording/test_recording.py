"""Recording through the real app: the chair starts and stops it over socket.io, everyone in
the meeting is told, each start and stop is audited, the files are real WebM; hostile input
gets the documented error acks (docs/protocol.md, "Recording")."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from typing import Any

from sqlmodel import select

from rooms.models import Meeting
from rooms.procedure_models import AuditEntry
from server.core import keys
from testkit.aiortc_clients import EncodedMedia
from tests.conftest import Harness
from tests.server.core.test_realtime import demo_meeting_id
from tests.server.media_support import MediaClient, media_client


async def person(h: Harness, clients: list[MediaClient], name: str, meeting_id: int
                 ) -> MediaClient:
    client = await media_client(h, name, meeting_id)
    clients.append(client)
    ack = await client.sio.call("meeting:join", {"meeting_id": meeting_id}, timeout=5)
    assert ack["ok"], ack

    def heard(payload: dict[str, Any]) -> None:
        client.heard.setdefault("recording:state", []).append(payload)
        client.changed.set()
    client.sio.on("recording:state", heard)
    return client


async def audit_kinds(h: Harness, meeting_id: int) -> list[tuple[str, int | None, Any]]:
    async with h.server.app[keys.DB].session() as s:
        rows = (await s.exec(select(AuditEntry).where(AuditEntry.meeting_id == meeting_id)
                             .order_by(AuditEntry.seq))).all()  # type: ignore[arg-type]
    return [(r.kind, r.actor_id, json.loads(r.data_json)) for r in rows if r.kind.startswith("recording_")]


async def test_the_chair_records_everyone_is_told_and_it_is_audited(
        hopso_media: Harness, clients: list[MediaClient], media: EncodedMedia) -> None:
    h = hopso_media
    m = await demo_meeting_id(h)
    chair = await person(h, clients, "chutri", m)
    assert await chair.error("recording:start") == "meeting_not_open"
    status, _ = await chair.http.call("POST", f"/api/meetings/{m}/open")
    assert status == 200
    delegate = await person(h, clients, "daibieu", m)
    secretary = await person(h, clients, "thuky", m)

    # Hostile or mistaken requests: documented error acks, nothing started.
    assert await delegate.error("recording:start") == "forbidden"
    assert await secretary.error("recording:start") == "forbidden"
    assert await chair.error("recording:stop") == "not_recording"
    assert await chair.error("recording:start", extra=1) == "invalid"
    assert (await delegate.ok("recording:status"))["recording"] is False
    for bad, code in (({"meeting_id": 999_999}, "not_found"), ({"meeting_id": "x"}, "invalid"),
                      ({}, "invalid"), ({"meeting_id": 2**70}, "invalid")):
        ack = await chair.sio.call("recording:start", bad, timeout=5)
        assert not ack["ok"] and ack["error"]["code"] == code, (bad, ack)

    await chair.ok("media:join")
    await chair.publish(media)  # camera + microphone through the SFU
    started = await chair.ok("recording:start")
    assert started["recording"] is True and started["started_at"].endswith("Z")
    again = await chair.ok("recording:start")  # idempotent: the same recording
    assert again == started
    pushed = await delegate.wait_for("recording:state", lambda e: e["recording"])
    assert pushed == started
    assert await delegate.error("recording:stop") == "forbidden"
    assert (await delegate.ok("recording:status")) == started

    await asyncio.sleep(2.5)
    stopped = await chair.ok("recording:stop")
    assert stopped["recording"] is False
    assert sorted((f["kind"], f["codec"]) for f in stopped["files"]) == [
        ("audio", "OPUS"), ("video", "VP8")]
    await delegate.wait_for("recording:state", lambda e: not e["recording"])
    assert await chair.error("recording:stop") == "not_recording"

    kinds = await audit_kinds(h, m)
    assert [k for k, _, _ in kinds] == ["recording_started", "recording_stopped"]
    assert all(actor is not None for _, actor, _ in kinds)  # the chair, both times
    folder = h.settings.data_dir / "recordings" / str(m) / kinds[0][2]["directory"]
    files = sorted(folder.iterdir())
    assert [p.suffix for p in files] == [".webm", ".webm"]
    assert {f["name"] for f in kinds[1][2]["files"]} == {p.name for p in files}
    if shutil.which("ffprobe"):
        for path in files:
            out = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams",
                                  "-of", "json", str(path)],
                                 capture_output=True, text=True, check=True)
            info = json.loads(out.stdout)
            assert out.stderr == "" and info["streams"][0]["codec_name"] in ("vp8", "opus")
            assert 1.5 <= float(info["format"]["duration"]) <= 3.5


async def test_closing_the_meeting_stops_its_recording(
        hopso_media: Harness, clients: list[MediaClient]) -> None:
    h = hopso_media
    m = await demo_meeting_id(h)
    chair = await person(h, clients, "chutri", m)
    status, _ = await chair.http.call("POST", f"/api/meetings/{m}/open")
    assert status == 200
    await chair.ok("recording:start")  # nobody in the call yet: no router, still recording
    status, _ = await chair.http.call("POST", f"/api/meetings/{m}/close")
    assert status == 200, _
    await chair.wait_for("recording:state", lambda e: not e["recording"])
    kinds = await audit_kinds(h, m)
    assert [(k, actor) for k, actor, _ in kinds][-1] == ("recording_stopped", None)


async def test_a_mirrored_meeting_is_recorded_at_its_owner_node_only(
        hopso_media: Harness, clients: list[MediaClient]) -> None:
    h = hopso_media
    m = await demo_meeting_id(h)
    chair = await person(h, clients, "chutri", m)
    status, _ = await chair.http.call("POST", f"/api/meetings/{m}/open")
    assert status == 200
    async with h.server.app[keys.DB].session() as s:  # as a node mirroring its parent's meeting
        meeting = await s.get(Meeting, m)
        assert meeting is not None
        meeting.cascade_key = "city:dong-hoi/7"
        s.add(meeting)
    assert await chair.error("recording:start") == "not_owner_node"
    assert (await chair.ok("recording:status"))["recording"] is False
    assert await audit_kinds(h, m) == []
