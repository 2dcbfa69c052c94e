"""`replay_seek_s` for bench/record.py: on the replay page (a real `run.py --demo` server and
Debian's Chromium), the time from clicking an agenda item's jump button to the video playing
at that point (currentTime within 0.3 s of the item's moment or past it, not paused,
readyState >= 3), measured inside the page (performance.now around the click).

The recording is made as the recorder leaves one: a 60 s VP8 camera track and an Opus track
(ffmpeg, keyframes every 2 s like a camera asked for one at start and then every few
seconds) in `<data dir>/recordings/<meeting>/<folder>/`, and its rows and timeline written
through rooms/recording_log.py (two agenda items at 0 s and 40 s). Jumps alternate between
the two items; the worst (the first, cold) is `replay_seek_s`, the median beside it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rooms import models, recording_log
from rooms.db import Database
from server.core.settings import Settings
from testkit.browser import ARGS, CHROMIUM
from testkit.http import Client
from testkit.processes import start_server

TABLES = models.User  # the tables a recording row refers to, mapped before it is written
SECONDS, ITEM_AT_S = 60, 40
FOLDER = "20261207T000000Z"
# Click the jump button and wait (in the page) until the video plays at the item's moment.
JUMP = """async ([selector, target]) => {
  const v = document.getElementById('rp-video');
  const t0 = performance.now();
  document.querySelector(selector).click();
  while (!( !v.paused && v.readyState >= 3 && v.currentTime >= target - 0.3
            && v.currentTime < target + 2)) {
    if (performance.now() - t0 > 15000) return null;
    await new Promise((r) => setTimeout(r, 5));
  }
  return (performance.now() - t0) / 1000;
}"""


def log(msg: str) -> None:
    print(f"[replay-seek {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _tracks(folder: Path) -> None:
    folder.mkdir(parents=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc=s=320x180:r=15:d={SECONDS}", "-c:v", "libvpx", "-b:v", "200k",
                    "-deadline", "realtime", "-cpu-used", "8", "-g", "30",
                    str(folder / "p1-camera-aaaaaaaa.webm")],
                   check=True, timeout=300)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"sine=f=440:d={SECONDS}", "-c:a", "libopus",
                    str(folder / "p1-microphone-bbbbbbbb.webm")], check=True, timeout=120)


async def _prepare(base: str, password: str, data_dir: Path) -> tuple[int, list[int]]:
    chair = Client.new(base)
    try:
        status, body = await chair.call("POST", "/api/login", {"username": "chutri",
                                                               "password": password})
        assert status == 200, body
        chair.csrf = body["csrf_token"]
        status, listing = await chair.call("GET", "/api/meetings")
        meeting_id = int(listing["meetings"][0]["id"])
        items = []
        for title in ("Khai mạc", "Báo cáo tài chính"):
            status, item = await chair.call("POST", f"/api/meetings/{meeting_id}/agenda",
                                            {"title": title})
            assert status == 201, item
            items.append(int(item["id"]))
        user_id = int(body["user"]["id"])
    finally:
        await chair.close()
    log("encoding the recording's tracks")
    _tracks(data_dir / "recordings" / str(meeting_id) / FOLDER)
    db = Database(Settings(data_dir=data_dir).sqlalchemy_url)
    start = datetime.now(UTC) - timedelta(seconds=SECONDS + 60)
    try:
        async with db.session() as s:
            row = await recording_log.open_recording(s, meeting_id, FOLDER, start, user_id)
            assert row.id is not None
            entries: list[tuple[int, str, dict[str, Any]]] = [
                (0, "recording_started", {}),
                (0, "track", {"file": "p1-camera-aaaaaaaa.webm", "kind": "video",
                              "source": "camera", "user_id": user_id, "name": "Chủ trì"}),
                (0, "track", {"file": "p1-microphone-bbbbbbbb.webm", "kind": "audio",
                              "source": "microphone", "user_id": user_id, "name": "Chủ trì"}),
                (0, "agenda", {"item_id": items[0], "title": "Khai mạc"}),
                (ITEM_AT_S * 1000, "agenda", {"item_id": items[1], "title": "Báo cáo tài chính"}),
                (SECONDS * 1000, "recording_stopped", {"files": []})]
            for offset, kind, data in entries:
                await recording_log.add(s, row.id, start + timedelta(milliseconds=offset),
                                        offset, kind, data)
            await recording_log.close_recording(s, row.id, start + timedelta(seconds=SECONDS))
            await s.commit()
    finally:
        await db.close()
    return meeting_id, items


def measure(jumps: int = 6) -> dict[str, Any]:
    """{"replay_seek_s": median, "replay_seek_max_s", "samples"} or {"replay_seek_s": None,
    "replay_seek_s_reason"}."""
    if not os.path.exists(CHROMIUM) or shutil.which("ffmpeg") is None:
        return {"replay_seek_s": None,
                "replay_seek_s_reason": f"needs {CHROMIUM} and ffmpeg (scripts/setup.sh --test)"}
    from playwright.sync_api import sync_playwright
    data_dir = Path(tempfile.mkdtemp(prefix="hopso-replay-bench-"))
    log("starting run.py --demo")
    server = start_server("--demo", "--data-dir", str(data_dir),
                          env={"HOPSO_FAST_HASH": "1"}, ready_timeout=90)
    try:
        password = server.logins()["chutri"]
        meeting_id, items = asyncio.run(_prepare(server.base, password, data_dir))
        samples: list[float | None] = []
        log("replay page in Chromium")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=[*ARGS, "--autoplay-policy=no-user-gesture-required"])
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(f"{server.base}/login?next=/meetings/{meeting_id}/replay")
                page.fill("input[name=username]", "chutri")
                page.fill("input[name=password]", password)
                page.click("button[type=submit]")
                page.wait_for_url(f"**/meetings/{meeting_id}/replay")
                for item in items:
                    page.locator(f"#rp-items li[data-key='item-{item}'] button").wait_for()
                for i in range(jumps):
                    item, at = (items[1], ITEM_AT_S) if i % 2 == 0 else (items[0], 0)
                    selector = f"#rp-items li[data-key='item-{item}'] button"
                    samples.append(page.evaluate(JUMP, [selector, at]))
                    log(f"jump to {at} s: {samples[-1]}")
                    page.wait_for_timeout(500)
            finally:
                browser.close()
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    got = [s for s in samples if s is not None]
    if not got:
        return {"replay_seek_s": None, "replay_seek_s_reason": "the video never played there"}
    # The worst jump (the first one reads the file cold): the figure held to the target.
    return {"replay_seek_s": max(got), "replay_seek_median_s": statistics.median(got),
            "replay_seek_samples_s": samples, "replay_seek_into_s": ITEM_AT_S}
