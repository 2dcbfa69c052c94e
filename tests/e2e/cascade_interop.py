"""Two Chromiums on two cascade nodes, as real users; JSON on the last line.

Run by test_video_browser.py inside `unshare -n` (loopback only): a province node and a
ward node (two `run.py` processes, HOPSO_NODE_*), the province chair in one browser, the
ward's meeting-room operator in the other, on the ward's mirror of the meeting:
    python -m tests.e2e.cascade_interop <screenshot.png>
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from typing import Any

from playwright.sync_api import sync_playwright

from testkit.browser import ARGS, CHROMIUM
from testkit.processes import start_server
from tests.e2e.video_interop import EXTRA_ARGS, grown, join_call, log_in, total, wait_until

SECRET = "ward-secret-for-the-test"


def run(screenshot: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    env = {"HOPSO_FAST_HASH": "1"}
    province = start_server("--demo", "--data-dir", tempfile.mkdtemp(prefix="hopso-prov-"),
                            env={**env, "HOPSO_NODE_UNIT": "province",
                                 "HOPSO_NODE_CHILDREN": f"ward={SECRET}"})
    ward = start_server("--demo", "--data-dir", tempfile.mkdtemp(prefix="hopso-ward-"),
                        env={**env, "HOPSO_NODE_UNIT": "ward",
                             "HOPSO_PARENT_URL": province.base, "HOPSO_NODE_SECRET": SECRET})
    try:
        with sync_playwright() as p:
            browsers = [p.chromium.launch(executable_path=CHROMIUM, args=ARGS + EXTRA_ARGS,
                                          headless=True) for _ in range(2)]
            chair = log_in(browsers[0], province, "chutri", "/meetings")
            chair.click(".meeting-title")
            chair.wait_for_url(re.compile(r".*/meetings/\d+$"))
            chair.click("button[data-action$='/open']")
            chair.wait_for_selector("#meeting-status.status-open")
            invited = chair.evaluate(  # the province invites the ward's node
                "fetch(location.pathname.replace('/meetings/', '/api/meetings/') + '/nodes', "
                "{method: 'PUT', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': "
                "document.querySelector('meta[name=csrf-token]').content}, "
                "body: JSON.stringify({nodes: ['ward']})}).then(r => r.status)")
            assert invited == 200, invited

            # At the ward, the room operator finds the province's meeting, mirrored.
            operator = log_in(browsers[1], ward, "kythuat", "/meetings")
            find = ("fetch('/api/meetings').then(r => r.json()).then(b => b.meetings.find("
                    "m => m.cascade_key === 'province/1' && m.status === 'open')?.id ?? null)")
            wait_until(lambda: operator.evaluate(find) is not None, 15, "the mirrored meeting")
            operator.goto(f"{ward.base}/meetings/{operator.evaluate(find)}")
            pages = {"chair": chair, "operator": operator}
            join_call(pages.values())
            for name, page in pages.items():
                wait_until(lambda page=page: total(page, "video", "frames") > 10, 30,
                           f"{name} decoding the other node's video")
            first = {n: total(pg, "video", "frames") for n, pg in pages.items()}
            out["frames"] = grown(pages, "video", "frames", first, 10, 1.5)
            out["names"] = {n: pg.locator("#video-tiles .tile .tile-name").all_inner_texts()
                            for n, pg in pages.items()}

            # The province chair mutes the ward's room from the chair panel, then gives it
            # the floor: the ward's own page shows both.
            peer = operator.evaluate("hopsoVideo.joined.peer_id")
            chair.click(f".video-person[data-peer='{peer}'] button[data-chair=mute]")
            operator.wait_for_selector("#video-toggle-mic[aria-pressed=true]")
            out["operator_mic_button"] = operator.inner_text("#video-toggle-mic")
            chair.click(f".video-person[data-peer='{peer}'] button[data-chair=floor]")
            for page in pages.values():
                page.wait_for_selector(f".layout-speaker .tile.is-main[data-peer='{peer}']"
                                       "[data-source=camera] .tile-floor:not([hidden])")
            chair.locator("#video").screenshot(path=screenshot)
            out["errors"] = {n: pg.errors for n, pg in pages.items()}  # type: ignore[attr-defined]
            for browser in browsers:
                browser.close()
    finally:
        ward.stop()
        province.stop()
    return out


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1])))
