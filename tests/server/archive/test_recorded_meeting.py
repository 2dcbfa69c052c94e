"""The archive and the composite video of a meeting recorded for real: the chair publishes
(an aiortc peer: VP8 + Opus through the SFU), records while presenting a red page then a blue
one, and stops; the composite shows the camera and, beside it, each page at the moment the
timeline says (the recorder's clock and the timeline's are one); the archive holds the
recorder's files and timeline and verifies offline."""

from __future__ import annotations

import asyncio
import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import ImageStat

from documents import archive as archive_check
from server.archive.keys import ARCHIVES
from testkit.aiortc_clients import encode_media
from tests.conftest import Harness, start_harness
from tests.e2e.test_replay_browser import prepare, present
from tests.server.archive.test_archive import wait_job
from tests.server.archive.test_composite import frame, probe, rgb
from tests.server.core.test_realtime import demo_meeting_id
from tests.server.documents_support import fetch
from tests.server.media_support import MEDIA_TIMINGS, media_client


@pytest.fixture
async def hopso_media(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await start_harness(tmp_path, None, media_timings=MEDIA_TIMINGS)
    harness.server.app[ARCHIVES].limits.width, harness.server.app[ARCHIVES].limits.height = 320, 180
    yield harness
    await harness.close()
    await harness.server.close()


async def test_a_recorded_meetings_composite_and_archive_follow_its_timeline(
        hopso_media: Harness, tmp_path: Path) -> None:
    h = hopso_media
    m = await demo_meeting_id(h)
    chair = await media_client(h, "chutri", m)
    try:
        doc, _items = await prepare(h, chair, m)
        await chair.ok("media:join")
        await chair.publish(encode_media(seconds=1.0))
        await present(chair, doc, 0)  # red
        await chair.ok("recording:start")
        await asyncio.sleep(1.6)
        await present(chair, doc, 1)  # blue
        await asyncio.sleep(1.6)
        stopped = await chair.ok("recording:stop")
        assert sorted(f["codec"] for f in stopped["files"]) == ["OPUS", "VP8"]
    finally:
        await chair.close()
    http = await h.login("chutri")
    status, job = await http.call("POST", f"/api/meetings/{m}/composite")
    assert status == 202, job
    done = await wait_job(http, job)
    assert done["state"] == "done", done
    status, _, data, _ = await fetch(http, done["url"])
    video = tmp_path / "composite.mp4"
    video.write_bytes(data)
    info = probe(video)
    assert 2.5 <= float(info["format"]["duration"]) <= 4.5  # type: ignore[index]
    red, blue = frame(video, 0.8, tmp_path / "r.png"), frame(video, 2.8, tmp_path / "b.png")
    right = (256, 90)
    assert rgb(red, right)[0] > 150 and rgb(red, right)[2] < 100, rgb(red, right)
    assert rgb(blue, right)[2] > 150 and rgb(blue, right)[0] < 100, rgb(blue, right)
    # The camera's test pattern, not a plain fill, read from the later frame: the video starts
    # at its first keyframe after the start's request, which a loaded CI box once had after
    # 0.8 s (the camera still blank there: stddev 0).
    camera = ImageStat.Stat(blue.crop((0, 0, 192, 180))).stddev
    assert max(camera) > 10, camera

    status, job = await http.call("POST", f"/api/meetings/{m}/archive")
    done = await wait_job(http, job)
    assert done["state"] == "done", done
    status, _, data, _ = await fetch(http, done["url"])
    path = tmp_path / "meeting.zip"
    path.write_bytes(data)
    report = await asyncio.to_thread(archive_check.verify, path)
    assert report.ok, report.problems
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        names = {mm["path"] for mm in manifest["members"]}
        timeline_name = next(n for n in names if n.startswith("timeline/"))
        timeline = json.loads(zf.read(timeline_name))
    tracks = {e["data"]["file"] for e in timeline["entries"] if e["kind"] == "track"}
    assert {n.rsplit("/", 1)[-1] for n in names if n.startswith("recordings/")} == tracks
    assert any(mm["kind"] == "document" and mm["about"]["presented"]
               for mm in manifest["members"])
