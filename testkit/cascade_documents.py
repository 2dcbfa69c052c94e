"""Measuring a document's way down the cascade (issue 13; bench/province.py and the tests):
how long until page 1 is viewable on every tablet, and how many document bytes crossed a
node's parent link (the node's `hopso_cascade_blob_received_bytes_total` on GET /metrics).

A tablet here is a logged-in HTTP session at its own node, on that node's copy of the
meeting. Page 1 is "viewable" when the tablet's document list shows the document ready and
its page 1 image is a real render (a stand-in for a page not available yet is answered
``Cache-Control: no-store``; a confidential page is always no-store, and its document is
only listed ready once the node has its whole file).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

METRIC = "hopso_cascade_blob_received_bytes_total"


@dataclass
class Tablet:
    session: aiohttp.ClientSession  # logged in at `base`
    base: str  # the tablet's own node
    meeting_id: int  # that node's copy of the meeting

    async def _json(self, path: str) -> Any:
        async with self.session.get(self.base + path) as response:
            return await response.json() if response.status == 200 else None

    async def document(self, title: str) -> dict[str, Any] | None:
        """The meeting's ready document of that title, as this tablet lists it."""
        body = await self._json(f"/api/meetings/{self.meeting_id}/documents")
        for group in (body or {}).get("groups", []):
            for doc in group["documents"]:
                if doc["title"] == title and doc["status"] in ("ready", "ready_with_warnings"):
                    return doc  # type: ignore[no-any-return]
        return None

    async def page1_viewable(self, title: str) -> bool:
        doc = await self.document(title)
        if doc is None:
            return False
        async with self.session.get(f"{self.base}/api/documents/{doc['id']}/pages/0") as r:
            await r.read()
            stand_in = r.headers.get("Cache-Control") == "no-store" and not doc["confidential"]
            return r.status == 200 and r.content_type == "image/jpeg" and not stand_in


async def first_page_everywhere(tablets: list[Tablet], title: str, started: float,
                                timeout: float = 60.0, interval: float = 0.05
                                ) -> list[float]:
    """Seconds from `started` (time.monotonic(), e.g. just before the publish request) until
    page 1 of `title` was viewable, per tablet (polled every `interval`); TimeoutError if one
    did not get there within `timeout`."""
    async def one(tablet: Tablet) -> float:
        while not await tablet.page1_viewable(title):
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"page 1 of {title!r} not at {tablet.base} in {timeout} s")
            await asyncio.sleep(interval)
        return time.monotonic() - started
    return list(await asyncio.gather(*(one(t) for t in tablets)))


def blob_bytes(metrics_text: str) -> float:
    """The document bytes a node received from its parent, from its /metrics text."""
    found = re.search(rf"^{METRIC} ([0-9.e+]+)$", metrics_text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def read_blob_bytes(session: aiohttp.ClientSession, base: str,
                          token: str | None = None) -> float:
    """`blob_bytes` of node `base` (an administrator's session, or the metrics token)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.get(f"{base}/metrics", headers=headers) as response:
        response.raise_for_status()
        return blob_bytes(await response.text())
