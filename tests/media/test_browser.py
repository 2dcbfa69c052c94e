"""Real Chromium through the SFU. Opt-in: MEDIA_BROWSER_TESTS=1, and it
needs Debian's chromium, Playwright and the right to create a network namespace
(root). Takes ~15 s on an idle 2-core box, much longer when it is loaded, hence
not in the default run.

Runs tests/media/browser_interop.py in a fresh network namespace whose only
interface is loopback, so Chromium cannot use (or leak) a LAN address.
"""

from __future__ import annotations

import os

import pytest

from testkit.chromium import run_harness

pytestmark = pytest.mark.browser


def test_chromium_publishes_and_subscribes() -> None:
    if os.environ.get("MEDIA_BROWSER_TESTS") != "1":
        pytest.skip("set MEDIA_BROWSER_TESTS=1 to run Chromium interop tests")
    r = run_harness("tests.media.browser_interop", timeout=90, what="the media browser test")
    assert r["published"] == ["audio/OPUS", "video/VP8"]
    assert r["next_offer"] is None
    audio, video = sorted(r["joined"].values(), key=lambda s: s["kind"])
    assert audio["samples"] > 48000  # decoded and played out
    final = next(s for s in r["unmuted"].values() if s["kind"] == "audio")
    # (Almost) no audio lost across renegotiations and both ICE restarts; a
    # starved Chromium can overflow its own socket buffer, so allow 1%.
    assert final["lost"] <= 0.01 * final["packets"]
    assert final["samples"] > audio["samples"]
    assert video["frames"] >= 40  # ~3 s at Chromium's fake 20-30 fps
    assert video["nacks"] > 0 and r["retransmissions"] > 0  # loss repaired by RTX
    assert video["plis"] <= 1  # ...without falling back to keyframes
    streams = sorted({s for t in r["tracks"] for s in t["streams"]})
    assert streams == ["alice-av", "alice-screen"]
    assert sum(1 for s in r["screen"].values() if s["kind"] == "video" and s["frames"]) == 2
    assert r["ports_changed"] == [True, True]
    assert all(r["restarted"][m]["frames"] > r["screen"][m]["frames"]
               for m, s in r["restarted"].items() if s["kind"] == "video")
    before, after = r["muted"]
    camera_mid = next(m for m, s in r["joined"].items() if s["kind"] == "video")
    assert after[camera_mid]["frames"] == before[camera_mid]["frames"]  # chair mute
    assert r["unmuted"][camera_mid]["frames"] > after[camera_mid]["frames"]
    # Recycling (media/subscribing.py): bob drops the screen and the camera and takes them
    # back; the new consumers take the rejected m-sections (same index, new mid). Then the
    # mic (first m-section: only inactive) and the camera: the mic lands in a former video
    # m-section, the camera in a new one.
    rc = r["recycle"]
    assert rc["rounds"] == [{"screen": "3", "camera": "4"}, {"mic": "5", "camera": "6"}]
    offers = [[(kind, port == 0, mid) for kind, port, mid in offer] for offer in rc["offers"]]
    assert offers[1] == [("audio", False, "0"), ("video", True, "1"), ("video", True, "2")]
    assert offers[2] == [("audio", False, "0"), ("video", False, "3"), ("video", False, "4")]
    assert offers[-1] == [("audio", False, "0"), ("video", False, "3"), ("audio", False, "5"),
                          ("video", False, "6")]
    assert rc["inbound"]["3"]["frames"] > 10 and rc["inbound"]["6"]["frames"] > 10
    assert rc["inbound"]["5"]["samples"] > 48000  # audio in a former video m-section
    # Chromium stopped and dropped the rejected transceivers and ended their tracks.
    assert rc["transceivers"] == [["0", "inactive"], ["3", "recvonly"], ["5", "recvonly"],
                                  ["6", "recvonly"]]
    assert {m for m, state in rc["track_states"].items() if state == "live"} == {
        "0", "3", "5", "6"}
    # Alice left: the first m-section goes inactive, the rest are rejected and dropped.
    assert r["left_directions"] == ["inactive"]
    assert {"PeerClosed", "ProducerAdded", "ProducerPaused", "RenegotiationNeeded"} <= set(
        r["events"])
