"""The composite video through the real app: ffmpeg (its own process, limited) lays the floor
holder's camera beside the presented page as the timeline says; the MP4 is checked with
ffprobe and by the colours of its frames. Without a timeline: the first camera, and the job
says so."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from PIL import Image

from server.archive.keys import ARCHIVES
from tests.conftest import Harness
from tests.server.archive.support import add_recording, folder, track
from tests.server.archive.test_archive import hopso, wait_job  # noqa: F401 - the fixture
from tests.server.documents_support import fetch, make_pdf, upload_ready
from tests.server.procedure_helpers import close_all, open_demo


def probe(path: Path) -> dict[str, object]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                          "stream=codec_name,codec_type,width,height:format=duration",
                          "-of", "json", str(path)], capture_output=True, text=True,
                         check=True, timeout=30)
    assert out.stderr == ""
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def frame(video: Path, at: float, out: Path) -> Image.Image:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", str(at), "-i", str(video),
                    "-frames:v", "1", str(out)], check=True, timeout=30)
    return Image.open(out).convert("RGB")


def rgb(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    pixel = image.getpixel(xy)
    assert isinstance(pixel, tuple)
    return pixel


def near(pixel: tuple[int, ...], want: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, want, strict=False))


async def test_the_floor_holders_camera_beside_the_presented_page(
        hopso: Harness, tmp_path: Path) -> None:  # noqa: F811 - the fixture
    h = hopso
    h.server.app[ARCHIVES].limits.width, h.server.app[ARCHIVES].limits.height = 320, 180
    m, people = await open_demo(h, "thuky", "daibieu")
    chair, thuky, delegate = people["chutri"], people["thuky"], people["daibieu"]
    doc = await upload_ready(h, m, make_pdf(tmp_path, pages=2))
    files = folder(h, m, "20261207T020000Z")
    track(files / "chair-camera-aaaa.webm", 4.0, 0.1, "red")
    track(files / "delegate-camera-bbbb.webm", 3.0, 1.5, "blue")
    track(files / "chair-microphone-cccc.webm", 3.5, 0.2)
    chair_id, delegate_id = chair.http.user["id"], delegate.http.user["id"]
    await add_recording(h, m, "20261207T020000Z", [
        (100, "track", {"file": "chair-camera-aaaa.webm", "kind": "video", "source": "camera",
                        "user_id": chair_id}),
        (1500, "track", {"file": "delegate-camera-bbbb.webm", "kind": "video",
                         "source": "camera", "user_id": delegate_id}),
        (200, "track", {"file": "chair-microphone-cccc.webm", "kind": "audio",
                        "source": "microphone", "user_id": chair_id}),
        (1000, "presented", {"active": True, "document_id": doc["id"], "version": 1,
                             "page": 0}),
        (2000, "floor", {"user_id": delegate_id, "name": "Đại biểu", "site": None}),
    ], 4000)

    status, body = await delegate.http.call("POST", f"/api/meetings/{m}/composite")
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, job = await thuky.http.call("POST", f"/api/meetings/{m}/composite")
    assert status == 202, job
    done = await wait_job(thuky.http, job)
    assert done["state"] == "done" and done["file"].endswith(".mp4"), done
    assert done["notes"] == [], done
    status, kind, data, _ = await fetch(thuky.http, done["url"])
    assert status == 200 and kind == "video/mp4"
    video = tmp_path / "composite.mp4"
    video.write_bytes(data)
    info = probe(video)
    streams = {s["codec_type"]: s for s in info["streams"]}  # type: ignore[attr-defined]
    assert streams["video"]["codec_name"] == "h264" and streams["audio"]["codec_name"] == "aac"
    assert (streams["video"]["width"], streams["video"]["height"]) == (320, 180)
    assert 3.8 <= float(info["format"]["duration"]) <= 4.3  # type: ignore[index]
    left, right = (96, 90), (256, 90)  # the camera's middle, the page's middle
    before = frame(video, 0.5, tmp_path / "a.png")
    assert near(rgb(before, left), (255, 0, 0)) and near(rgb(before, right), (30, 30, 30))
    chair_talks = frame(video, 1.4, tmp_path / "b.png")
    assert near(rgb(chair_talks, left), (255, 0, 0))
    assert sum(rgb(chair_talks, right)) > 600  # the page (white paper) beside
    delegate_talks = frame(video, 3.0, tmp_path / "c.png")
    assert near(rgb(delegate_talks, left), (0, 0, 255))

    # No timeline: the first camera throughout, and the job says so.
    files = folder(h, m, "20261207T021000Z")
    track(files / "x-camera-dddd.webm", 2.0, 0.0, "lime")
    await add_recording(h, m, "20261207T021000Z", [], 2000)
    status, job = await thuky.http.call("POST", f"/api/meetings/{m}/composite")
    assert status == 202
    plain = await wait_job(thuky.http, job)
    assert plain["state"] == "done", plain
    assert any("no timeline" in note for note in plain["notes"]), plain
    status, _, data, _ = await fetch(thuky.http, plain["url"])
    video.write_bytes(data)
    assert near(rgb(frame(video, 1.0, tmp_path / "d.png"), left), (0, 255, 0))
    status, listing = await thuky.http.call("GET", f"/api/meetings/{m}/archives")
    assert sorted(f["kind"] for f in listing["files"]) == ["composite", "composite"]
    await close_all(people)


async def test_ffmpeg_past_its_time_limit_is_stopped_and_leaves_no_file(
        hopso: Harness) -> None:  # noqa: F811 - the fixture
    h = hopso
    limits = h.server.app[ARCHIVES].limits
    limits.width, limits.height = 320, 180
    limits.wall_min_s, limits.wall_s_per_s = 0.05, 0.0  # far less than a 4 s video needs
    m, people = await open_demo(h, "thuky")
    files = folder(h, m, "20261207T030000Z")
    track(files / "c-camera-eeee.webm", 4.0, 0.0, "red")
    await add_recording(h, m, "20261207T030000Z", [], 4000)
    status, job = await people["thuky"].http.call("POST", f"/api/meetings/{m}/composite")
    assert status == 202
    failed = await wait_job(people["thuky"].http, job)
    assert failed["state"] == "failed" and "ffmpeg took longer than" in failed["message"]
    archives = h.settings.data_dir / "archives" / str(m)
    assert [p.name for p in archives.iterdir()] == []  # no .partial, no work folder
    await close_all(people)
