"""Measuring a document's way down the cascade (issue 13; bench/province.py and the tests):
how long until page 1 is viewable on every tablet, and how many document bytes crossed a
node's parent link (the node's `hopso_cascade_blob_received_bytes_total` on GET /metrics).

A tablet here is a logged-in HTTP session at its own node, on that node's copy of the
meeting. Page 1 is "viewable" when the document is ready at the tablet's node and its page 1
image is a real render (a stand-in for a page not available yet is answered
``Cache-Control: no-store``; a confidential page is always no-store, and its document is
only listed ready once the node has its whole file).

A tablet with `pushes` (its user's live channel at that node) learns that the document is
ready as the web client does, from the `document:updated` push, then asks for page 1 (and
again at every later push, or after RECHECK_S without one); one without polls its document
list and page 1 every `interval` (the list with If-None-Match, as a browser revalidates
it). 101 tablets polling every 50 ms on the 2-core box of the 15-ward bench kept the node
processes at 1.8 cores from the publication on, mostly answering the polls, and page 1 was
late because of them (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

METRIC = "hopso_cascade_blob_received_bytes_total"
READY = ("ready", "ready_with_warnings")
RECHECK_S = 1.0  # a pushed tablet looks again after this long without a push


class Pushes(Protocol):
    """A live channel's events, as testkit.province.Tablet keeps them."""

    async def wait_for(self, event: str, match: Callable[[Any], bool], timeout: float,
                       since: float = 0.0) -> tuple[float, Any]: ...


@dataclass
class Tablet:
    session: aiohttp.ClientSession  # logged in at `base`
    base: str  # the tablet's own node
    meeting_id: int  # that node's copy of the meeting
    pushes: Pushes | None = None  # its user's live channel at that node, if it follows it
    # The list as last answered, with its ETag: asked again with If-None-Match, as a
    # browser's HTTP cache revalidates it (the route says `private, no-cache`).
    _list: tuple[str, Any] | None = field(default=None, repr=False)

    async def _listed(self) -> Any:
        path = f"{self.base}/api/meetings/{self.meeting_id}/documents"
        kept = self._list
        headers = {"If-None-Match": kept[0]} if kept is not None else {}
        async with self.session.get(path, headers=headers) as response:
            if response.status == 304 and kept is not None:
                return kept[1]
            if response.status != 200:
                return None
            body = await response.json()
            etag = response.headers.get("ETag")
            self._list = (etag, body) if etag else None
            return body

    async def document(self, title: str) -> dict[str, Any] | None:
        """The meeting's ready document of that title, as this tablet lists it."""
        body = await self._listed()
        for group in (body or {}).get("groups", []):
            for doc in group["documents"]:
                if doc["title"] == title and doc["status"] in READY:
                    return doc  # type: ignore[no-any-return]
        return None

    async def page1_viewable(self, title: str) -> bool:
        doc = await self.document(title)
        return doc is not None and await self.page1_of(doc)

    async def page1_of(self, doc: dict[str, Any]) -> bool:
        """Page 1 of that (ready) document is a real render here."""
        async with self.session.get(f"{self.base}/api/documents/{doc['id']}/pages/0") as r:
            await r.read()
            stand_in = r.headers.get("Cache-Control") == "no-store" and not doc["confidential"]
            return r.status == 200 and r.content_type == "image/jpeg" and not stand_in


async def first_page_everywhere(tablets: list[Tablet], title: str, started: float,
                                timeout: float = 60.0, interval: float = 0.05
                                ) -> list[float]:
    """Seconds from `started` (time.monotonic(), e.g. just before the publish request) until
    page 1 of `title` was viewable, per tablet (on its pushes, else polled every `interval`);
    TimeoutError if one did not get there within `timeout`."""
    def late(tablet: Tablet) -> TimeoutError:
        return TimeoutError(f"page 1 of {title!r} not at {tablet.base} in {timeout} s")

    async def polled(tablet: Tablet) -> float:
        while not await tablet.page1_viewable(title):
            if time.monotonic() - started > timeout:
                raise late(tablet)
            await asyncio.sleep(interval)
        return time.monotonic() - started

    def ready(data: Any) -> bool:
        return isinstance(data, dict) and data.get("title") == title \
            and data.get("status") in READY

    async def pushed(tablet: Tablet, pushes: Pushes) -> float:
        since = started
        while True:
            remaining = started + timeout - time.monotonic()
            if remaining <= 0:
                raise late(tablet)
            try:
                at, doc = await pushes.wait_for("document:updated", ready,
                                                timeout=min(remaining, RECHECK_S), since=since)
                since = at + 1e-6  # then only a later push
            except AssertionError:  # none (or none since the last look): look anyway
                doc = await tablet.document(title)
            if doc is not None and await tablet.page1_of(doc):
                return time.monotonic() - started

    return list(await asyncio.gather(*(
        pushed(t, t.pushes) if t.pushes is not None else polled(t) for t in tablets)))


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
