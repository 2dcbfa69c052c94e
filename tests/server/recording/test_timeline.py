"""The timeline beside a recording (issue 16, item 2) and the replay's routes (item 3), through
the real app: a chair publishing real media records while the procedure, the presenter and
the chat run; the log comes back in order, its offsets on the files' clock, it survives a
restart, outsiders get 404 in the documented shape and hostile Range headers a 416."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from rooms import minutes
from server.core import keys
from testkit.aiortc_clients import EncodedMedia
from tests.conftest import Harness, start_harness
from tests.server.core.test_realtime import demo_meeting_id
from tests.server.documents_support import fetch, make_pdf, upload_ready
from tests.server.media_support import MEDIA_TIMINGS, MediaClient, media_client

# What happens between start and stop, in this order (tracks come when their files begin).
EXPECTED = ["recording_started", "agenda", "presented", "floor", "presented", "vote_opened",
            "vote_closed", "chat", "agenda", "recording_stopped"]


async def person(h: Harness, clients: list[MediaClient], name: str, m: int) -> MediaClient:
    client = await media_client(h, name, m)
    clients.append(client)
    ack = await client.sio.call("meeting:join", {"meeting_id": m}, timeout=5)
    assert ack["ok"], ack
    return client


async def raw(client: MediaClient, event: str, payload: dict[str, Any]) -> Any:
    ack = await client.sio.call(event, payload, timeout=10)
    assert ack["ok"], (event, ack)
    return ack["result"]


async def record_a_meeting(h: Harness, clients: list[MediaClient], media: EncodedMedia,
                           tmp: Path) -> tuple[int, dict[str, Any]]:
    """Everything the timeline notes happens once while the chair's media is recorded."""
    m = await demo_meeting_id(h)
    chair = await person(h, clients, "chutri", m)
    status, _ = await chair.http.call("POST", f"/api/meetings/{m}/open")
    assert status == 200
    delegate = await person(h, clients, "daibieu", m)
    await delegate.ok("attendance:check_in", mode="online")
    doc = await upload_ready(h, m, make_pdf(tmp, pages=3))
    items = []
    for title in ("Báo cáo kinh tế", "Thông qua nghị quyết"):
        status, item = await chair.http.call("POST", f"/api/meetings/{m}/agenda", {"title": title})
        assert status == 201, item
        items.append(item["id"])
    view = {"document_id": doc["id"], "zoom": 1.0, "scroll_x": 0.0, "scroll_y": 0.0}
    await chair.ok("agenda:set_current", item_id=items[0])  # before the start: its snapshot
    await raw(chair, "present:update", {**view, "page": 0})
    await chair.ok("media:join")
    await chair.publish(media)

    await chair.ok("recording:start")
    await asyncio.sleep(0.3)
    asked = await delegate.ok("floor:request")
    await chair.ok("floor:grant", request_id=asked["request_id"])
    await raw(chair, "present:update", {**view, "page": 1})
    await raw(chair, "present:update", {**view, "page": 1, "zoom": 2.0})  # same page: no entry
    vote = await chair.ok("vote:open", agenda_item_id=items[1], question="Thông qua?")
    await chair.ok("vote:close", vote_id=vote["id"])
    await delegate.ok("chat:send", to="all", text="Tôi đồng ý")
    await delegate.ok("chat:send", to="chair", text="Riêng tư")  # private: not in the log
    await chair.ok("agenda:set_current", item_id=items[1])
    await asyncio.sleep(1.2)
    stopped = await chair.ok("recording:stop")
    return m, {"doc": doc["id"], "items": items, "vote": vote["id"], "stopped": stopped,
               "chair": chair}


async def timeline_of(client: Any, m: int) -> dict[str, Any]:
    status, body = await client.call("GET", f"/api/meetings/{m}/recordings")
    assert status == 200, body
    assert len(body["recordings"]) == 1
    rid = body["recordings"][0]["id"]
    status, body = await client.call("GET", f"/api/meetings/{m}/recordings/{rid}/timeline")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


async def test_the_timeline_is_the_meeting_in_order_on_the_recording_clock(
        tmp_path: Path, clients: list[MediaClient], media: EncodedMedia) -> None:
    h = await start_harness(tmp_path, None, media_timings=MEDIA_TIMINGS)
    try:
        m, made = await record_a_meeting(h, clients, media, tmp_path)
        delegate = await h.login("daibieu")
        body = await timeline_of(delegate, m)
        async with h.server.app[keys.DB].session() as s:  # the minutes say it was recorded
            recorded = (await minutes.gather(s, m, 1)).recorded
    finally:
        await h.close()
        await h.server.close()
    entries = body["entries"]
    plain = [e for e in entries if e["kind"] != "track"]
    assert [e["kind"] for e in plain] == EXPECTED
    offsets = [e["offset_ms"] for e in entries]
    assert offsets == sorted(offsets)
    # Two clocks, one timeline: each entry's UTC time is the start plus its offset.
    started = datetime.fromisoformat(body["recording"]["started_at"])
    for e in entries:
        late = (datetime.fromisoformat(e["at"]) - started).total_seconds() * 1000 - e["offset_ms"]
        assert -5 <= late <= 100, e
    by_kind = {e["kind"]: e for e in entries}
    assert [(r.since, r.until) for r in recorded] == [
        (minutes.local(started), minutes.local(datetime.fromisoformat(
            body["recording"]["stopped_at"])))]
    assert [e["data"]["page"] for e in entries if e["kind"] == "presented"] == [0, 1]
    assert plain[1]["data"]["item_id"] == made["items"][0]
    assert [e["offset_ms"] for e in plain[:3]] == [0, 0, 0]  # the start and the state then
    assert by_kind["floor"]["data"]["name"] and by_kind["floor"]["offset_ms"] >= 300
    assert by_kind["vote_closed"]["data"]["vote_id"] == made["vote"]
    assert by_kind["chat"]["data"]["text"] == "Tôi đồng ý"
    assert body["documents"] == {str(made["doc"]): body["documents"][str(made["doc"])]}
    # The tracks: whose each file is, and the same files the stop reported.
    files = {f["name"] for f in made["stopped"]["files"]}
    assert {t["file"] for t in body["tracks"]} == files
    assert {(t["kind"], t["name"]) for t in body["tracks"]} == {
        ("audio", made["chair"].http.user["full_name"]),
        ("video", made["chair"].http.user["full_name"])}
    # The files' clock is the timeline's: a file ends where the stop entry says.
    stop_s = by_kind["recording_stopped"]["offset_ms"] / 1000
    assert stop_s >= 1.5
    folder = tmp_path / "data" / "recordings" / str(m)
    if shutil.which("ffprobe"):
        for path in folder.glob("*/*.webm"):
            out = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                                  "format=start_time,duration", "-of", "json", str(path)],
                                 capture_output=True, text=True, check=True)
            fmt = json.loads(out.stdout)["format"]
            begun = next(t["offset_ms"] for t in body["tracks"] if t["file"] == path.name)
            assert float(fmt["start_time"]) >= begun / 1000 - 0.1, (path.name, fmt, begun)
            assert abs(float(fmt["duration"]) - stop_s) < 0.6, (path.name, fmt, stop_s)


async def test_the_timeline_survives_a_restart(
        tmp_path: Path, clients: list[MediaClient], media: EncodedMedia) -> None:
    h = await start_harness(tmp_path, None, media_timings=MEDIA_TIMINGS)
    m = await demo_meeting_id(h)
    chair = await person(h, clients, "chutri", m)
    status, _ = await chair.http.call("POST", f"/api/meetings/{m}/open")
    assert status == 200
    status, item = await chair.http.call("POST", f"/api/meetings/{m}/agenda", {"title": "Mục 1"})
    assert status == 201
    await chair.ok("recording:start")
    await chair.ok("agenda:set_current", item_id=item["id"])
    before = await timeline_of(chair.http, m)
    for client in clients:
        await client.close()
    clients.clear()
    await h.close()
    await h.server.close()  # the server stops: the recording is stopped and its end written

    h = await start_harness(tmp_path, None, media_timings=MEDIA_TIMINGS)
    try:
        after = await timeline_of(await h.login("chutri"), m)
    finally:
        await h.close()
        await h.server.close()
    assert [e["kind"] for e in after["entries"]] == [
        "recording_started", "agenda", "recording_stopped"]
    assert after["entries"][:2] == before["entries"]
    assert before["recording"]["stopped_at"] is None and after["recording"]["stopped_at"]


async def test_outsiders_get_404_and_hostile_ranges_416(
        tmp_path: Path, clients: list[MediaClient], media: EncodedMedia) -> None:
    h = await start_harness(tmp_path, None, media_timings=MEDIA_TIMINGS)
    try:
        m = await demo_meeting_id(h)
        chair = await person(h, clients, "chutri", m)
        status, _ = await chair.http.call("POST", f"/api/meetings/{m}/open")
        assert status == 200
        await chair.ok("media:join")
        await chair.publish(media)
        await chair.ok("recording:start")
        await asyncio.sleep(1.0)
        stopped = await chair.ok("recording:stop")
        body = await timeline_of(chair.http, m)
        rid = body["recording"]["id"]
        name = next(f["name"] for f in stopped["files"] if f["kind"] == "audio")
        url = f"/api/meetings/{m}/recordings/{rid}/files/{name}"
        member = await h.login("daibieu")
        size = len((await fetch(member, url))[2])
        assert size > 1000

        # An administrator is no member of the meeting: not found, whatever they ask.
        outsider = await h.login("quantri")
        for path in (f"/api/meetings/{m}/recordings", f"/api/meetings/{m}/recordings/{rid}/timeline",
                     url):
            status, answer = await outsider.call("GET", path)
            assert status == 404 and answer["error"]["code"] == "not_found", (path, answer)
        status, _, page, _ = await fetch(outsider, f"/meetings/{m}/replay")
        assert status == 404 and b'id="rp-video"' not in page
        status, _, page, _ = await fetch(member, f"/meetings/{m}/replay")
        assert status == 200 and b'id="rp-video"' in page
        anonymous = h.anonymous()
        status, answer = await anonymous.call("GET", f"/api/meetings/{m}/recordings/{rid}/timeline")
        assert status == 401

        # Names that are no file of this recording, ids that are no recording of this meeting.
        for bad in (f"/api/meetings/{m}/recordings/{rid}/files/..%2F..%2Fhopso.sqlite",
                    f"/api/meetings/{m}/recordings/{rid}/files/nothing.webm",
                    f"/api/meetings/{m}/recordings/{rid}/files/{name[:-5]}.mp4",
                    f"/api/meetings/{m}/recordings/{rid + 1}/timeline",
                    f"/api/meetings/{m}/recordings/{2**70}/timeline",
                    f"/api/meetings/{m}/recordings/x/files/{name}"):
            status, answer = await member.call("GET", bad)
            assert status == 404 and answer["error"]["code"] == "not_found", (bad, answer)

        async def ranged(value: str) -> tuple[int, bytes, Any]:
            async with member.session.get(member.base + url, headers={"Range": value}) as r:
                return r.status, await r.read(), r.headers
        status, part, headers = await ranged("bytes=0-99")
        assert status == 206 and len(part) == 100
        assert headers["Content-Range"] == f"bytes 0-99/{size}"
        status, part, _ = await ranged("bytes=-10")
        assert status == 206 and len(part) == 10
        for hostile in ("bytes=abc", f"bytes={size}-", "bytes=99999999999999999999-",
                        "bytes=0-1,5-9", "bytes=9-3", "items=0-9", "bytes=-", "bytes=" + "9" * 5000):
            status, part, _ = await ranged(hostile)
            assert status == 416, (hostile[:40], status)
            assert json.loads(part)["error"]["code"] == "bad_range"
    finally:
        await h.close()
        await h.server.close()


async def test_replay_pages_are_watermarked_per_viewer_and_hidden_chat_stays_hidden(
        tmp_path: Path, clients: list[MediaClient]) -> None:
    """What the replay shows is as seen now: a confidential page comes through the documents'
    page route, rendered for each viewer (never cached); a message the chair hid after it
    was said is withheld from members, shown to the chair."""
    h = await start_harness(tmp_path, None, media_timings=MEDIA_TIMINGS)
    try:
        m = await demo_meeting_id(h)
        chair = await person(h, clients, "chutri", m)
        status, _ = await chair.http.call("POST", f"/api/meetings/{m}/open")
        assert status == 200
        delegate = await person(h, clients, "daibieu", m)
        doc = await upload_ready(h, m, make_pdf(tmp_path, pages=2), confidential="1")
        await chair.ok("recording:start")  # nobody publishes: the timeline is written all the same
        await raw(chair, "present:update", {"document_id": doc["id"], "page": 1, "zoom": 1.0,
                                            "scroll_x": 0.0, "scroll_y": 0.0})
        said = await delegate.ok("chat:send", to="all", text="Xin ý kiến riêng")
        await chair.ok("chat:hide", message_id=said["id"])
        await chair.ok("recording:stop")

        seen = await timeline_of(delegate.http, m)
        presented = next(e["data"] for e in seen["entries"] if e["kind"] == "presented")
        chat = next(e["data"] for e in seen["entries"] if e["kind"] == "chat")
        assert chat["hidden"] is True and chat["text"] == ""
        chat_for_chair = next(e["data"] for e in (await timeline_of(chair.http, m))["entries"]
                              if e["kind"] == "chat")
        assert chat_for_chair["text"] == "Xin ý kiến riêng"

        # The URL replay.js builds (replay-timeline.js pageUrl) for the page presented then.
        url = (f"/api/documents/{presented['document_id']}/pages/{presented['page']}"
               f"?version={presented['version']}&width=1024")
        images = []
        for who in (delegate.http, await h.login("daibieu2")):
            status, kind, body, headers = await fetch(who, url)
            assert status == 200 and kind == "image/jpeg", (status, body[:200])
            assert headers["Hopso-Confidential"] == "1" and "no-store" in headers["Cache-Control"]
            images.append(body)
        assert images[0] != images[1]  # each viewer's own watermark
        status, _, _, _ = await fetch(await h.login("quantri"), url)
        assert status == 404
    finally:
        await h.close()
        await h.server.close()
