"""The meeting archive page in Chromium (issue 16, item 4): the secretary makes the archive
and sees its progress end in a file to download; asking for the video of a meeting without a
recording shows why it failed; a delegate is refused the page."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from testkit.browser import ARGS, CHROMIUM
from tests.conftest import Harness, start_harness
from tests.e2e.test_replay_browser import open_as
from tests.server.procedure_helpers import close_all, open_demo

pytestmark = pytest.mark.browser


@pytest.fixture
async def hopso(tmp_path: Path) -> AsyncIterator[Harness]:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} missing: the setup script must install chromium")
        pytest.skip(f"{CHROMIUM} is not installed")
    harness = await start_harness(tmp_path, None)
    yield harness
    await harness.close()
    await harness.server.close()


async def test_the_secretary_makes_the_archive_and_downloads_it(hopso: Harness) -> None:
    h = hopso
    m, people = await open_demo(h, "thuky")
    from playwright.async_api import async_playwright
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = await open_as(browser, h, "thuky", f"/meetings/{m}/archive")
            assert (await page.locator("h1").inner_text()).startswith("Hồ sơ lưu trữ cuộc họp")
            await page.locator("#archive-none").wait_for()
            await page.click("#make-archive")
            link = page.locator("#archive-files a[href$='.zip']")
            await link.wait_for(timeout=60_000)
            status = await page.locator("#archive-status").inner_text()
            assert status.startswith("Xong: hopso-meeting-"), status
            assert await page.locator("#archive-none").is_hidden()
            async with page.expect_download() as download:
                await link.click()
            path = await (await download.value).path()
            assert path is not None and Path(path).read_bytes()[:2] == b"PK"

            await page.click("#make-composite")
            await page.wait_for_function(
                "() => document.getElementById('archive-status').textContent"
                ".startsWith('Không thành công')", timeout=30_000)
            assert "no finished recording" in await page.locator("#archive-status").inner_text()
            # the buttons come back once the file list is refreshed
            await page.wait_for_function("() => !document.getElementById('make-archive').disabled")

            delegate = await open_as(browser, h, "daibieu", f"/meetings/{m}/archive")
            assert await delegate.locator("#archive").count() == 0
        finally:
            await browser.close()
    await close_all(people)
