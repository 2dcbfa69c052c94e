"""Files across node links: content-addressed blobs over HTTP, each file crossing each link
once (docs/cascade.md, "Documents across nodes").

* ``GET /api/node/blobs/{sha256}`` on a parent, for its children only: header
  ``X-Hopso-Node: <unit> <token>`` (the /node socket's token, server/cascade/tokens.py), and
  only for a blob that a document of a live meeting inviting the child carries
  (documents/mirror_models.py). Range requests are answered (aiohttp's FileResponse). A node
  that mirrors the meeting and has not got the blob yet fetches it from its own parent first.
* `BlobFetcher` is the child's side: one download in flight per sha256 (every tablet and
  every child below waits on the same one), resumed with a Range request after a cut,
  verified (size announced, sha256) before it is stored, so a wrong or oversized file is
  refused with a logged reason and nothing is stored. A blob already here costs nothing:
  a second meeting with the same file crosses no link.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import ssl
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter
from sqlmodel import col, or_, select

from documents.db_models import Document
from documents.mirror_models import DocumentCascade
from documents.storage import BlobStore
from rooms.models import Meeting
from server.cascade.keys import NODE, STATE
from server.cascade.schemas import shown
from server.cascade.tokens import check_token, make_token
from server.core import keys
from server.core.settings import NodeSettings
from server.documents.keys import DOCUMENTS

log = logging.getLogger(__name__)

HEADER = "X-Hopso-Node"
DIGEST = re.compile(r"[0-9a-f]{64}")
CHUNK_BYTES = 256 * 1024
RETRY_MIN_S, RETRY_MAX_S = 0.2, 2.0
GIVE_UP_S = 900.0  # a blob the parent cannot serve for this long is given up (logged)
LOGGED_REFUSALS = 20
APPLY_WAIT_S = 5.0  # a request for a blob this node's journal is applying waits this long

routes = web.RouteTableDef()


class BlobRefused(Exception):
    """What arrived is not the file announced (size, sha256): nothing was stored."""


class BlobUnavailable(Exception):
    """The parent could not serve the blob (not linked, not offered yet, gave up)."""


# -- the parent's side ------------------------------------------------------------------------


class _Refusals:
    """Refused blob requests, logged (the first LOGGED_REFUSALS, then every 1000th)."""

    count = 0

    @classmethod
    def note(cls, message: str) -> None:
        cls.count += 1
        if cls.count <= LOGGED_REFUSALS or cls.count % 1000 == 0:
            log.warning("cascade: refused blob request: %s (%d refused)", message, cls.count)


def _child_of(request: web.Request) -> str:
    """The child unit the request authenticates as; HTTPUnauthorized (logged) otherwise."""
    node = request.app.get(NODE)
    raw = request.headers.get(HEADER, "")
    unit, _, token = raw.partition(" ")
    secret = node.credentials.get(unit) if node is not None and unit else None
    reason = "not a cascade node" if node is None else "no credentials" if not raw else \
        "unit is not a child of this node (or was revoked)" if secret is None else \
        check_token(unit, token, secret)
    if reason is not None:
        _Refusals.note(f"{shown(unit)}: {reason}")
        raise web.HTTPUnauthorized(text=f"node authentication failed: {reason}")
    return unit


async def _wanted_size(request: web.Request, child: str, digest: str) -> int | None:
    """The size of the blob if a published document of a live meeting that invites `child`
    carries it, else None (whether it exists here is not revealed)."""
    node = request.app[NODE]
    async with request.app[keys.DB].session() as s:
        rows = (await s.exec(select(DocumentCascade, Meeting)
                             .join(Meeting, col(Meeting.id) == DocumentCascade.meeting_id)
                             .join(Document, col(Document.id) == DocumentCascade.document_id)
                             .where(or_(DocumentCascade.sha256 == digest,
                                        DocumentCascade.page1_sha256 == digest),
                                    col(Document.published).is_(True)))).all()
    by_key: dict[str, int] = {}
    unit = node.settings.unit
    for row, meeting in rows:
        size = row.size if row.sha256 == digest else row.page1_size
        if size is not None:
            by_key[meeting.cascade_key or f"{unit}/{meeting.id}"] = size
    if not by_key:
        return None
    outside = await node.directory.out_of_scope(child, set(by_key))
    inside = [size for key, size in by_key.items() if key not in outside]
    return inside[0] if inside else None


@routes.get("/api/node/blobs/{sha256}")
async def blob(request: web.Request) -> web.StreamResponse:
    child = _child_of(request)
    digest = request.match_info["sha256"]
    if not DIGEST.fullmatch(digest):
        _Refusals.note(f"{child}: malformed digest {shown(digest)}")
        raise web.HTTPNotFound(text="no such blob")
    size = await _wanted_size(request, child, digest)
    state = request.app.get(STATE)
    if size is None and state is not None and await state.journal.applying(APPLY_WAIT_S):
        # The entry naming the blob reached the child before this node applied it (it goes
        # on to children first): asked again once it is applied, not refused, so the child
        # does not wait out its retry (0.2 s doubling to 2 s) for page 1.
        size = await _wanted_size(request, child, digest)
    if size is None:
        _Refusals.note(f"{child}: blob {digest[:12]} is not in a meeting that invites it")
        raise web.HTTPNotFound(text="no such blob")
    store: BlobStore = request.app[DOCUMENTS].store
    fetcher = request.app.get(FETCHER)
    if not store.exists(digest):
        if fetcher is None:
            raise web.HTTPNotFound(text="no such blob")
        try:  # a mirror that has not got it yet: from our own parent, once for everyone
            download = fetcher.in_flight(digest, size)
        except BlobRefused as exc:
            raise web.HTTPServiceUnavailable(text=f"not here: {exc}") from None
        if download is not None:
            return await _pass_on(request, download)
    return web.FileResponse(store.path_for(digest), headers=_HEADERS)


_HEADERS = {"Content-Type": "application/octet-stream", "Cache-Control": "no-store"}
_RANGE = re.compile(r"bytes=([0-9]{1,15})-")


async def _pass_on(request: web.Request, download: _Download) -> web.StreamResponse:
    """A blob still arriving from our parent, passed on to the child as it arrives (the
    file crosses both links at once instead of one after the other). If the download
    fails, the answer is cut short: the child resumes later with a Range request, and
    checks the sha256 of what it got in any case."""
    found = _RANGE.fullmatch(request.headers.get("Range", ""))
    start = int(found.group(1)) if found else 0
    if start >= download.size:
        raise web.HTTPRequestRangeNotSatisfiable(headers={
            "Content-Range": f"bytes */{download.size}"})
    try:
        source = await asyncio.to_thread(open, download.path, "rb")
    except FileNotFoundError:  # published a moment ago
        return web.FileResponse(download.store.path_for(download.digest), headers=_HEADERS)
    response = web.StreamResponse(status=206 if start else 200, headers=_HEADERS)
    response.content_length = download.size - start
    if start:
        response.headers["Content-Range"] = f"bytes {start}-{download.size - 1}/{download.size}"
    try:
        await response.prepare(request)
        offset = start
        while offset < download.size:
            waiting = download.progress
            if download.received > offset:
                chunk = await asyncio.to_thread(_read, source, offset,
                                                min(CHUNK_BYTES, download.received - offset))
                await response.write(chunk)
                offset += len(chunk)
            elif download.over:  # the download from our parent stopped: cut the answer
                log.info("cascade: passing blob %s… on stopped at %d bytes",
                         download.digest[:12], offset)
                if request.transport is not None:
                    request.transport.close()
                return response
            else:
                await waiting.wait()
    finally:
        await asyncio.to_thread(source.close)
    await response.write_eof()
    return response


def _read(source: BinaryIO, offset: int, count: int) -> bytes:
    source.seek(offset)
    return source.read(count)


# -- the child's side ---------------------------------------------------------------------------


class _Download:
    """A blob being received: a temp file in the store's tmp dir, hashed as it grows, and
    published under its digest only if it is exactly the file announced."""

    def __init__(self, store: BlobStore, digest: str, size: int) -> None:
        self.store, self.digest, self.size = store, digest, size
        fd, name = tempfile.mkstemp(dir=store.root / "tmp", prefix="node-")
        self.path = Path(name)
        self.file: BinaryIO = os.fdopen(fd, "wb")
        self.hash = hashlib.sha256()
        self.received = 0
        self.over = False  # published or given up: no more bytes will come
        self.progress = asyncio.Event()  # set (and replaced) whenever bytes arrive

    def moved(self) -> None:
        """Wake whoever waits for more bytes (on the event loop)."""
        self.progress.set()
        self.progress = asyncio.Event()

    def restart(self) -> None:
        self.file.seek(0)
        self.file.truncate()
        self.hash = hashlib.sha256()
        self.received = 0

    def write(self, chunk: bytes) -> None:
        if self.received + len(chunk) > self.size:
            raise BlobRefused(f"more than the {self.size} bytes announced")
        self.hash.update(chunk)
        self.file.write(chunk)
        self.received += len(chunk)

    def publish(self) -> Path:
        if self.hash.hexdigest() != self.digest:
            raise BlobRefused(f"sha256 {self.hash.hexdigest()[:12]}… is not {self.digest[:12]}…")
        self.file.flush()
        if self.store.durable:
            os.fsync(self.file.fileno())
        self.file.close()
        final = self.store.path_for(self.digest)
        if not final.is_file():
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(self.path, 0o444)
            os.replace(self.path, final)
        return final

    def discard(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.path.unlink(missing_ok=True)


class BlobFetcher:
    """Fetches blobs from this node's parent (see the module's doc)."""

    def __init__(self, store: BlobStore, settings: NodeSettings, max_bytes: int,
                 give_up_s: float = GIVE_UP_S, registry: CollectorRegistry | None = None) -> None:
        self.store, self.settings, self.max_bytes = store, settings, max_bytes
        self.give_up_s = give_up_s
        # On GET /metrics: what crossed the parent link for documents (the benchmark's
        # doc_link_bytes_ratio reads it before and after a publication).
        self.bytes_metric = Counter("hopso_cascade_blob_received_bytes",
                                    "Document bytes received from the parent node",
                                    registry=registry) if registry is not None else None
        self.downloads_metric = Counter("hopso_cascade_blob_downloads",
                                        "Blobs downloaded from the parent node",
                                        registry=registry) if registry is not None else None
        self._inflight: dict[str, tuple[asyncio.Task[Path], _Download]] = {}
        self._session: aiohttp.ClientSession | None = None
        self.bytes_received = 0  # over the parent link, for tests and the benchmark
        self.fetched: list[str] = []  # digests downloaded (not found here already)
        self.refused: list[str] = []  # why downloads were refused

    async def close(self) -> None:
        tasks = [task for task, _ in self._inflight.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            ca = self.settings.parent_ca
            connector = aiohttp.TCPConnector(
                ssl=ssl.create_default_context(cafile=str(ca)) if ca is not None else True)
            self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(
                total=None, connect=10, sock_read=30))
        return self._session

    async def fetch(self, digest: str, size: int) -> Path:
        """The blob's path here, downloaded from the parent unless it is here already.
        BlobRefused if what arrives is not that file; BlobUnavailable if the parent cannot
        serve it (given up after `give_up_s`)."""
        path = self.store.path_for(digest)  # ValueError for a malformed digest
        if path.is_file():
            return path
        if not 0 < size <= self.max_bytes:
            self._refuse(digest, f"announced size {size} is outside 1..{self.max_bytes}")
        return await asyncio.shield(self._start(digest, size)[0])

    def in_flight(self, digest: str, size: int) -> _Download | None:
        """The download of a blob not here yet (started if need be), to pass its bytes on
        while they arrive; None if it is here."""
        if self.store.path_for(digest).is_file():
            return None
        if not 0 < size <= self.max_bytes:
            self._refuse(digest, f"announced size {size} is outside 1..{self.max_bytes}")
        return self._start(digest, size)[1]

    def _start(self, digest: str, size: int) -> tuple[asyncio.Task[Path], _Download]:
        found = self._inflight.get(digest)
        if found is not None:
            return found
        download = _Download(self.store, digest, size)
        task = asyncio.ensure_future(self._download(digest, download))
        self._inflight[digest] = task, download
        task.add_done_callback(lambda _t: self._inflight.pop(digest, None))
        return task, download

    def _refuse(self, digest: str, reason: str) -> None:
        message = f"blob {digest[:12]}… from the parent refused: {reason}; nothing stored"
        log.warning("cascade: %s", message)
        self.refused.append(reason)
        raise BlobRefused(reason)

    async def _download(self, digest: str, download: _Download) -> Path:
        try:
            return await self._receive(digest, download)
        finally:
            download.over = True
            download.moved()
            await asyncio.to_thread(download.discard)

    async def _receive(self, digest: str, download: _Download) -> Path:
        if not self.settings.parent_url or not self.settings.secret:
            raise BlobUnavailable("this node has no parent")
        url = f"{self.settings.parent_url.rstrip('/')}/api/node/blobs/{digest}"
        started = time.monotonic()
        deadline = started + self.give_up_s
        delay, attempts = RETRY_MIN_S, 0
        while True:
            before = download.received
            attempts += 1
            try:
                await self._attempt(url, download)
                path = await asyncio.to_thread(download.publish)
                log.info("cascade: blob %s…: %d bytes from the parent in %.2f s (%d attempts)",
                         digest[:12], download.size, time.monotonic() - started, attempts)
                self.fetched.append(digest)
                if self.downloads_metric is not None:
                    self.downloads_metric.inc()
                return path
            except BlobRefused as exc:
                self._refuse(digest, str(exc))
            except (aiohttp.ClientError, TimeoutError, BlobUnavailable) as exc:
                if time.monotonic() > deadline:
                    log.warning("cascade: giving up blob %s…: %s", digest[:12], exc)
                    raise BlobUnavailable(str(exc)) from None
                log.debug("cascade: blob %s… not fetched yet: %s", digest[:12], exc)
                if download.received > before:
                    delay = RETRY_MIN_S  # a cut mid-file: resume soon where it stopped
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def _attempt(self, url: str, download: _Download) -> None:
        """One request, resuming at what was received; returns once the whole file is here."""
        assert self.settings.secret is not None
        headers = {HEADER: f"{self.settings.unit} {make_token(self.settings.unit, self.settings.secret)}"}
        if download.received:
            headers["Range"] = f"bytes={download.received}-"
        async with self._http().get(url, headers=headers) as response:
            if response.status == 200 and download.received:
                await asyncio.to_thread(download.restart)  # the parent ignored the range
            elif response.status not in (200, 206):
                raise BlobUnavailable(f"parent answered {response.status}")
            declared = response.content_length
            if declared is not None and download.received + declared > download.size:
                raise BlobRefused(f"{download.received + declared} bytes offered, "
                                  f"{download.size} announced")
            async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                self.bytes_received += len(chunk)
                if self.bytes_metric is not None:
                    self.bytes_metric.inc(len(chunk))
                await asyncio.to_thread(download.write, chunk)
                download.moved()
        if download.received < download.size:
            raise BlobUnavailable(f"cut after {download.received} of {download.size} bytes")


FETCHER: web.AppKey[BlobFetcher] = web.AppKey("blob_fetcher", BlobFetcher)
