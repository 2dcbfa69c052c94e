"""Two real Chromiums in one video meeting, through the meeting page and a real server.

Everything runs in a fresh network namespace whose only interface is loopback (like
tests/media/test_browser.py): the server process, its SFU and both browsers. Each browser
plays the other's camera; the chair mutes the delegate from the chair panel and stops
receiving the delegate's audio; the delegate cannot unmute.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from testkit.browser import CHROMIUM

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "tests" / "e2e" / "screenshots" / "video-two-participants.png"
pytestmark = pytest.mark.browser


def _cannot_run() -> str | None:
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is not installed"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare/ip missing"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    probe = subprocess.run(["unshare", "-n", "true"], check=False, capture_output=True)
    return None if probe.returncode == 0 else "no permission to create a network namespace"


def run_in_loopback_namespace(module: str, screenshot: Path) -> dict[str, Any]:
    """Run `python -m module screenshot` in a new network namespace with only loopback up;
    its last line of output is its JSON result."""
    reason = _cannot_run()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser video tests must run in CI: {reason}")
        pytest.skip(f"{reason}: the loopback-only video tests cannot run here")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    run = subprocess.run(
        ["unshare", "-n", "sh", "-c",
         f"ip link set lo up && exec {sys.executable} -m {module} {screenshot}"],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=110,
        env={**os.environ, "HOPSO_FAST_HASH": "1"})
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_two_browsers_see_each_other_and_the_chair_mutes_one() -> None:
    r = run_in_loopback_namespace("tests.e2e.video_interop", SCREENSHOT)
    assert r["errors"] == {"chair": [], "delegate": []}

    # Each browser decodes and plays the other's camera.
    for name, (before, after) in r["frames"].items():
        assert after > before + 10, (name, before, after)
    for name, videos in r["playing"].items():
        assert [v for v in videos if v[0] > 0 and not v[1] and v[2] >= 2], (name, videos)

    # Chair mute: the chair stops receiving the delegate's audio, the delegate still hears.
    before, after = r["audio_before_mute"]
    assert after > before + 20  # ~50 packets/s while unmuted
    muted, later = r["audio_after_mute"]
    assert later == muted, "the chair still receives a muted delegate's audio"
    heard, heard_later = r["delegate_still_hears"]
    assert heard_later > heard + 40
    assert r["delegate_mic_button"] == "Chủ trì đã tắt micro"
    assert r["chair_tile_badge"] == "Chủ trì đã tắt micro"
    assert "chờ chủ trì cho phép" in r["delegate_message"]
    assert r["server_refusal"] == "muted_by_chair"
    assert r["audio_after_attempt"] == later

    assert (r["screen_tiles"], r["screen_tiles_after"]) == (1, 0)  # share, floor, stop

    # ICE: every candidate gathered or announced, on both sides of both connections, is
    # loopback.
    for name, candidates in r["candidates"].items():
        assert {c["type"] for c in candidates} >= {"local-candidate", "remote-candidate",
                                                   "sdp-remote"}, name
        addresses = {c["address"] for c in candidates}
        assert addresses and all(ipaddress.ip_address(a).is_loopback for a in addresses), (
            name, addresses)
    assert SCREENSHOT.stat().st_size > 10_000


def test_a_province_chair_and_a_ward_room_meet_across_two_nodes() -> None:
    r = run_in_loopback_namespace("tests.e2e.cascade_interop",
                                  SCREENSHOT.with_name("video-cascade-province-chair.png"))
    assert r["errors"] == {"chair": [], "operator": []}
    for name, (before, after) in r["frames"].items():
        assert after > before + 10, (name, before, after)  # each decodes the other node
    assert "Võ Đức Anh" in " ".join(r["names"]["chair"])  # the ward's operator, by name
    assert "Nguyễn Văn Hùng" in " ".join(r["names"]["operator"])
    assert r["operator_mic_button"] == "Chủ trì đã tắt micro"
