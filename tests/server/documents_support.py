"""Helpers for the documents server tests: PDFs, uploads, sockets and waiting for events."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import socketio

from server.documents.keys import DOCUMENTS
from tests.conftest import Client, Harness
from tests.documents import corpus
from tests.server.core.test_realtime import connect, demo_meeting_id

__all__ = ["Listener", "connect", "demo_meeting_id", "fetch", "ink_op", "make_pdf", "upload",
           "upload_ready", "wait_ready"]


def make_pdf(tmp: Path, pages: int = 3, name: str = "bien-ban.pdf") -> bytes:
    return corpus.make_text_pdf(tmp, pages=pages, name=name).read_bytes()


async def upload(client: Client, meeting_id: int, data: bytes, filename: str = "Biên bản.pdf",
                 path: str | None = None, **fields: str) -> tuple[int, Any]:
    form = aiohttp.FormData()
    for key, value in fields.items():
        form.add_field(key, value)
    form.add_field("file", data, filename=filename, content_type="application/octet-stream")
    url = client.base + (path or f"/api/meetings/{meeting_id}/documents")
    async with client.session.post(url, data=form, headers={"X-CSRF-Token": client.csrf}) as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body


async def fetch(client: Client, path: str) -> tuple[int, str, bytes, Any]:
    """GET a binary resource: (status, content type, body, headers)."""
    async with client.session.get(client.base + path) as r:
        return r.status, r.content_type, await r.read(), r.headers


@dataclass
class Listener:
    """A socket.io client that records every server event it receives."""

    sio: socketio.AsyncClient
    events: list[tuple[str, Any]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def open(cls, harness: Harness, client: Client, meeting_id: int | None = None
                   ) -> Listener:
        sio = await connect(harness, client)
        listener = cls(sio)
        # Closed with the harness's clients, so a failing test never leaves a socket open
        # (an open socket makes the server's shutdown wait).
        harness.clients.append(_Closer(listener))  # type: ignore[arg-type]
        sio.on("*", listener._record)
        if meeting_id is not None:
            ack = await sio.call("meeting:join", {"meeting_id": meeting_id}, timeout=5)
            assert ack["ok"], ack
        return listener

    async def _record(self, event: str, data: Any) -> None:
        self.events.append((event, data))
        self._changed.set()

    async def call(self, event: str, payload: Any) -> Any:
        return await self.sio.call(event, payload, timeout=10)

    def of(self, event: str) -> list[Any]:
        return [d for e, d in self.events if e == event]

    async def wait_for(self, event: str, match: Callable[[Any], bool] = lambda _: True,
                       timeout: float = 30.0) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for name, data in self.events:
                if name == event and match(data):
                    return data
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no {event} matching within {timeout}s; got "
                                     f"{[e for e, _ in self.events][-20:]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()


@dataclass
class _Closer:
    listener: Listener

    @property
    def session(self) -> _Closer:
        return self

    async def close(self) -> None:
        await self.listener.close()


async def wait_ready(harness: Harness, document_id: int, timeout: float = 60.0) -> dict[str, Any]:
    """Poll the document until processing has finished (any outcome)."""
    client = await harness.login("thuky")
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status, body = await client.call("GET", f"/api/documents/{document_id}")
        assert status == 200, body
        pending = body["pending_version"]
        if body["progress"] is None and (pending is None or pending["progress"] is None):
            return body  # type: ignore[no-any-return]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"document {document_id} still processing: {body}")
        await asyncio.sleep(0.1)


async def upload_ready(harness: Harness, meeting_id: int, data: bytes, *, publish: bool = True,
                       **fields: str) -> dict[str, Any]:
    secretary = await harness.login("thuky")
    status, body = await upload(secretary, meeting_id, data, **fields)
    assert status == 202, body
    doc = await wait_ready(harness, body["id"])
    assert doc["status"] in ("ready", "ready_with_warnings"), doc
    if publish:
        status, doc = await secretary.call("POST", f"/api/documents/{body['id']}/publish",
                                           {"published": True})
        assert status == 200, doc
    return doc  # type: ignore[no-any-return]


def ink_op(page: int = 0, visibility: str = "private", points: list[list[float]] | None = None,
           annotation_id: str | None = None) -> dict[str, Any]:
    return {"op_id": str(uuid.uuid4()), "type": "add", "page": page,
            "annotation": {"id": annotation_id or str(uuid.uuid4()), "kind": "ink",
                           "visibility": visibility,
                           "data": {"points": points or [[72, 72], [200, 120], [300, 90]],
                                    "color": "#c62828", "width": 2.5}}}


def runtime(harness: Harness) -> Any:
    return harness.server.app[DOCUMENTS]


async def subscribed_viewers(hopso: Harness, meeting_id: int, doc_id: int, *names: str
                             ) -> list[Listener]:
    """The named members connected to the meeting and subscribed to the document."""
    out = []
    for name in names:
        listener = await Listener.open(hopso, await hopso.login(name), meeting_id)
        ack = await listener.call("document:subscribe", {"document_id": doc_id})
        assert ack["ok"], ack
        out.append(listener)
    return out
