"""Real Chromium publishes its camera as simulcast through the web client's own publish
path (web_client/static/js/video-session.js) to the SFU: the server binds three layers by
rid, and an aiortc subscriber decodes the top layer, then the lowest after a switch; a
Chromium subscriber's temporal target is lowered and raised.

Both tests read one run of tests/media/browser_simulcast.py (module fixture: one Chromium and
one publisher for the two), in a loopback-only network namespace of its own, so Chromium
cannot use a LAN address.
"""

from __future__ import annotations

from typing import Any

import pytest

from testkit.chromium import run_harness

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return run_harness("tests.media.browser_simulcast", timeout=200,
                       what="the browser simulcast tests")


@pytest.mark.timeout(230)  # the first test of the two runs the harness (up to 200 s)
def test_chromium_camera_simulcast_is_bound_and_switched(run: dict[str, Any]) -> None:
    r = run["simulcast"]
    assert r["errors"] == []
    assert r["simulcast"] is True
    assert [layer["rid"] for layer in r["layers"]] == ["r0", "r1", "r2"]
    for layer in r["layers"]:
        assert layer["bound"] and layer["packets"] > 50 and layer["keyframes"] >= 1, layer
    assert r["faults"] == [0, 0, 0]  # no unknown rid, unbound packet nor SSRC change
    assert [(rid, width) for rid, width, _ in r["outbound"]] == [
        ("r0", 320), ("r1", 640), ("r2", 1280)]
    current, frames, sizes = r["top"]
    assert current == 2 and frames > 10 and [1280, 720] in sizes
    current, frames, sizes = r["low"]
    assert current == 0 and frames > 20 and [320, 180] in sizes


@pytest.mark.timeout(230)
def test_chromium_subscriber_decodes_at_a_lower_frame_rate_without_a_keyframe(
        run: dict[str, Any]) -> None:
    """VP8 temporal layers (media/temporal.py): Chromium publishes L1T3 in each simulcast
    layer; a Chromium subscriber's consumer lowered to TID 1, then 0, keeps decoding at about
    1/2, then 1/4, of the frame rate with no keyframe asked for or decoded, and is back at
    the full rate when the target is lifted."""
    r = run["temporal"]
    assert r["errors"] == [] and r["tids_seen"] is True
    full, half, quarter, back = r["steps"]
    rate = max(full["fps"], back["fps"])
    assert rate > 8, r["steps"]  # the fake camera's 20 fps, less on a loaded box
    assert 0.35 * rate <= half["fps"] <= 0.7 * rate, r["steps"]
    assert 0.15 * rate <= quarter["fps"] <= 0.4 * rate, r["steps"]
    assert back["fps"] >= 0.75 * rate, r["steps"]
    for step, tid in ((half, 1), (quarter, 0)):
        assert (step["target"], step["current"]) == (tid, tid), step
        assert step["longest_gap_s"] < 1.0, step  # frames keep coming
        # No keyframe: none asked for by the subscriber, none decoded, none from the SFU.
        assert step["plis"] == step["firs"] == step["keyframes"] == 0, step
        assert step["keyframe_requests"] == 0, step
    assert r["temporal_dropped"] > 0 and r["layer_switches"] == 0
