"""Hostile page geometry costs the web process nothing: every image of an uploaded page
(render, thumbnail, placeholder) is made in the sandboxed workers, under pixel caps.

A real `run.py` process is measured with psutil (its own RSS, not its workers'), sampled
every 10 ms while the files are uploaded and processed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from testkit.processes import ServerProcess, start_server
from tests.documents import corpus

# What processing a few small documents may add to the server process's peak RSS (the
# issue measured +667 MB kept, 3.5 GB peak, for the tall strip before the fix).
RSS_GROWTH_LIMIT = 48 << 20
CLEAN_ENDS = {"ready", "ready_with_warnings"}


@contextmanager
def peak_rss(pid: int) -> Iterator[list[int]]:
    """Samples the process's RSS every 10 ms; the list holds [peak] once the block ends."""
    process, stop, peak = psutil.Process(pid), threading.Event(), [0]

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            stop.wait(0.01)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


class Secretary:
    def __init__(self, server: ServerProcess, session: aiohttp.ClientSession) -> None:
        self.server, self.session, self.csrf = server, session, ""

    async def login(self) -> int:
        async with self.session.post(self.server.base + "/api/login", json={
                "username": "thuky", "password": self.server.logins()["thuky"]}) as r:
            assert r.status == 200, await r.text()
            self.csrf = (await r.json())["csrf_token"]
        async with self.session.get(self.server.base + "/api/meetings") as r:
            return int((await r.json())["meetings"][0]["id"])

    async def upload(self, meeting_id: int, path: Path) -> int:
        form = aiohttp.FormData()
        form.add_field("file", path.read_bytes(), filename=path.name,
                       content_type="application/pdf")
        async with self.session.post(f"{self.server.base}/api/meetings/{meeting_id}/documents",
                                     data=form, headers={"X-CSRF-Token": self.csrf}) as r:
            body = await r.json()
            assert r.status == 202, body
            return int(body["id"])

    async def finished(self, document_id: int, timeout: float = 60) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            async with self.session.get(f"{self.server.base}/api/documents/{document_id}") as r:
                body: dict[str, Any] = await r.json()
            if body["progress"] is None:
                return body
            assert asyncio.get_running_loop().time() < deadline, body
            await asyncio.sleep(0.1)

    async def get(self, path: str) -> tuple[int, bytes]:
        async with self.session.get(self.server.base + path) as r:
            return r.status, await r.read()


async def test_hostile_page_boxes_leave_the_web_process_memory_flat(tmp_path: Path) -> None:
    server = start_server("--demo", "--data-dir", str(tmp_path / "data"),
                          "--document-workers", "2")
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            secretary = Secretary(server, http)
            meeting_id = await secretary.login()
            # Warm up: the first upload imports and allocates what every upload needs.
            warm = await secretary.upload(meeting_id, corpus.make_text_pdf(tmp_path, pages=2))
            assert (await secretary.finished(warm))["status"] == "ready"
            baseline = psutil.Process(server.process.pid).memory_info().rss
            with peak_rss(server.process.pid) as peak:
                ids = {name: await secretary.upload(
                           meeting_id, corpus.make_page_box_pdf(tmp_path, name, entries))
                       for name, entries in corpus.HOSTILE_PAGE_BOXES.items()}
                docs = {name: await secretary.finished(i) for name, i in ids.items()}
                for i in ids.values():  # the page images and thumbnails are served
                    for kind in ("pages", "thumbs"):
                        status, _ = await secretary.get(f"/api/documents/{i}/{kind}/0")
                        assert status == 200, (kind, i)
    finally:
        server.stop()
    assert server.process.stdout is not None
    log = "\n".join(server.output) + (server.process.stdout.read() or "")
    growth = peak[0] - baseline
    assert growth < RSS_GROWTH_LIMIT, f"web process grew {growth >> 20} MB"
    for name, doc in docs.items():
        assert doc["status"] in CLEAN_ENDS or (
            doc["status"] == "rejected" and doc["rejection"]["code"] != "internal_error"), \
            (name, doc)
    assert not [p for p in (tmp_path / "data").rglob("*") if ".tmp-" in p.name]
    assert "Traceback" not in log and "internal_error" not in log, log[-4000:]
