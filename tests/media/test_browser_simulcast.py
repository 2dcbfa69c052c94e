"""Real Chromium publishes its camera as simulcast through the web client's own publish
path (web_client/static/js/video-session.js) to the SFU: the server binds three layers by
rid, and an aiortc subscriber decodes the top layer, then the lowest after a switch.

Runs tests/media/browser_simulcast.py in a fresh network namespace whose only interface is
loopback (as tests/e2e/test_video_browser.py), so Chromium cannot use a LAN address.
"""

from __future__ import annotations

import pytest

from tests.e2e.test_video_browser import run_in_loopback_namespace

pytestmark = pytest.mark.browser


@pytest.mark.timeout(150)
def test_chromium_camera_simulcast_is_bound_and_switched(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = run_in_loopback_namespace("tests.media.browser_simulcast", tmp_path / "unused.png")
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
