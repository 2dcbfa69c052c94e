"""Office files that link to anything (a URL, a local file) converted by the REAL
LibreOffice in its sandbox: nothing is fetched, nothing local is copied in, the sandbox has no
network (finding 5 of issue 11; documents/office_links.py). Split from test_office.py."""

from __future__ import annotations

import asyncio
import errno
import io
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from documents import _office_child, office, office_links
from documents.errors import DocumentRejected, RejectCode
from documents.validation import FileKind
from tests.conftest import IN_CI, Harness
from tests.documents import office_corpus as oc
from tests.server.documents.test_office import CONVERT_WAIT, need_soffice, no_leftovers
from tests.server.documents_support import demo_meeting_id, fetch, upload, wait_ready


@dataclass
class LinkListener:
    """A loopback TCP listener standing for the host's own services (PostgreSQL, Redis, this
    server): it records every connection and answers HTTP with a small PNG, so a fetch that
    gets through would also show in the PDF."""

    server: asyncio.base_events.Server
    seen: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.seen.append("(connected)")
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            self.seen[-1] = head.split(b"\r\n", 1)[0].decode("latin-1")
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: image/png\r\nContent-Length: "
                         + str(len(_PNG)).encode() + b"\r\n\r\n" + _PNG)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 0, 0)).save(buf, "PNG")
    return buf.getvalue()


_PNG = _png()


@pytest.fixture
async def listener() -> AsyncIterator[LinkListener]:
    holder: list[LinkListener] = []
    server = await asyncio.start_server(lambda r, w: holder[0]._serve(r, w), "127.0.0.1", 0)
    holder.append(LinkListener(server))
    yield holder[0]
    server.close()
    await server.wait_closed()


async def sandbox_or_skip() -> tuple[str, ...]:
    """The conversion sandbox must work here (CI), else skip with the reason (locally)."""
    prefix = await office.network_sandbox()
    if prefix is not None:
        return prefix
    message = "no network namespace can be made here (unshare, user namespaces)"
    if IN_CI:
        pytest.fail(f"{message}, but CI must test the Office sandbox")
    pytest.skip(message)


async def linked_documents(listener: LinkListener, soffice: str) -> dict[str, tuple[bytes, FileKind, str]]:
    """Every hostile document of the corpus, pointing at the listener; the .doc built here."""
    docs = {name: (build(listener.url(name)), kind, filename)
            for name, (build, kind, filename) in oc.LINKED.items()}
    doc = await asyncio.to_thread(oc.legacy_doc_linked_image, listener.url("doc-image"), soffice)
    docs["doc-image"] = (doc, FileKind.OLE, "Ảnh liên kết.doc")
    await asyncio.sleep(0.2)
    listener.seen.clear()  # whatever making the .doc did is not the conversion's
    return docs


async def test_linked_content_is_never_fetched_while_converting(
    hopso_sqlite: Harness, listener: LinkListener, convert_tmp: Path
) -> None:
    """Issue 11, finding 5: an ODT's linked image or OLE object, an OOXML external image
    relationship (any case), an external workbook, a template, a .doc's linked picture:
    uploaded and converted through the app, not one connection reaches a loopback service,
    and every document still converts (the linked content simply missing)."""
    soffice = need_soffice()
    await sandbox_or_skip()
    hopso = hopso_sqlite
    docs = await linked_documents(listener, soffice)
    meeting_id = await demo_meeting_id(hopso)
    secretary = await hopso.login("thuky")
    started = time.monotonic()
    ids = {}
    for name, (data, _, filename) in docs.items():
        status, doc = await upload(secretary, meeting_id, data, filename=filename)
        assert status == 202, (name, doc)
        ids[name] = doc["id"]
    for name, doc_id in ids.items():
        details = await wait_ready(hopso, doc_id, timeout=CONVERT_WAIT)
        assert details["status"] in ("ready", "ready_with_warnings"), (name, details)
        assert details["page_count"] >= 1, name
        status, body = await secretary.call("GET", f"/api/documents/{doc_id}/search?q=bao cao")
        assert status == 200 and body["hits"], (name, body)  # the text is there
    print(f"\n{len(ids)} linked documents converted in {time.monotonic() - started:.1f} s")
    await asyncio.sleep(0.5)
    assert listener.seen == []
    assert no_leftovers(convert_tmp) == []


async def test_local_files_are_not_copied_into_the_pdf(
    hopso_sqlite: Harness, tmp_path: Path, convert_tmp: Path
) -> None:
    """A link to a file on the server (file:, an absolute path, ../ from the work dir) would
    put that file, e.g. another meeting's page image, into the converted PDF."""
    need_soffice()
    await sandbox_or_skip()
    secret = tmp_path / "secret.png"
    secret.write_bytes(_PNG)
    up = "../" * 16 + str(secret).lstrip("/")
    cases = {"file-uri.odt": oc.odt_linked_image(secret.as_uri()),
             "relative.odt": oc.odt_linked_image(up),
             "file-uri.docx": oc.docx_external_image(secret.as_uri())}
    hopso = hopso_sqlite
    meeting_id = await demo_meeting_id(hopso)
    secretary = await hopso.login("thuky")
    ids = {}
    for filename, data in cases.items():
        status, doc = await upload(secretary, meeting_id, data, filename=filename)
        assert status == 202, doc
        ids[filename] = doc["id"]
    for filename, doc_id in ids.items():
        details = await wait_ready(hopso, doc_id, timeout=CONVERT_WAIT)
        assert details["status"] in ("ready", "ready_with_warnings"), (filename, details)
        status, _, pdf, _ = await fetch(secretary, f"/api/documents/{doc_id}/pdf")
        assert status == 200
        with pymupdf.open("pdf", pdf) as copy:
            assert [p.get_images() for p in copy] == [[]] * copy.page_count, filename
            assert oc.TEXT in copy[0].get_text(), filename


async def test_the_sandbox_has_no_network_not_even_the_hosts_loopback(
    listener: LinkListener
) -> None:
    prefix = await sandbox_or_skip()
    probe = """import fcntl, socket, struct, sys
flags = struct.unpack("16sH", fcntl.ioctl(socket.socket(), 0x8913, struct.pack("256s", b"lo"))[:18])[1]
names = [l.split(":")[0].strip() for l in open("/proc/self/net/dev").read().splitlines()[2:]]
errors = []
for port in map(int, sys.argv[1:]):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        errors.append("connected")
    except OSError as exc:
        errors.append(exc.errno)
print(names, bool(flags & 1), errors)
"""
    ports = [listener.port, 5432, 6379]  # ours, and the host's PostgreSQL and Redis
    proc = await asyncio.create_subprocess_exec(
        *prefix, sys.executable, "-I", "-c", probe, *map(str, ports),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out
    print(f"\nin the sandbox {prefix[1:-1]}: {out.decode().strip()}")
    assert out.decode().strip() == f"['lo'] False {[errno.ENETUNREACH] * len(ports)}"
    await asyncio.sleep(0.2)
    assert listener.seen == []


async def _soffice_batch(soffice: str, files: list[Path], outdir: Path, profile: Path,
                         prefix: tuple[str, ...] = ()) -> None:
    """Plain soffice (none of office.py's layers unless given), all files in one run."""
    proc = await asyncio.create_subprocess_exec(
        *prefix, soffice, "--headless", "--norestore", "--nologo",
        f"-env:UserInstallation={profile.as_uri()}", "--convert-to", "pdf",
        "--outdir", str(outdir), *map(str, files),
        env={"HOME": str(profile.parent), "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    assert await asyncio.wait_for(proc.wait(), 300) == 0
    made = sorted(p.stem for p in outdir.glob("*.pdf"))
    assert made == sorted(f.stem for f in files)  # every one converts, links or not


async def test_each_layer_alone_keeps_links_unfetched(listener: LinkListener,
                                                      tmp_path: Path) -> None:
    """Defence in depth, layer by layer, on the same documents. The control run (no layer)
    shows the documents do make LibreOffice connect, so zero elsewhere means something."""
    soffice = need_soffice()
    prefix = await sandbox_or_skip()
    docs = await linked_documents(listener, soffice)
    originals, rewritten = tmp_path / "originals", tmp_path / "rewritten"
    originals.mkdir()
    rewritten.mkdir()
    for name, (data, kind, _) in docs.items():
        src = originals / f"{name}{kind.extension}"
        src.write_bytes(data)
        if kind is not FileKind.OLE:  # a binary .doc is not rewritten: nothing to test there
            office_links.neutralise(src, rewritten / src.name, kind)
    files = sorted(originals.iterdir())
    counts = {}
    runs: dict[str, tuple[list[Path], bool, tuple[str, ...]]] = {
        "none (control)": (files, False, ()),
        "LibreOffice profile": (files, True, ()),
        "package rewrite": (sorted(rewritten.iterdir()), False, ()),
        "network namespace": (files, False, prefix),
    }
    for i, (layer, (inputs, hardened, wrap)) in enumerate(runs.items()):
        profile = tmp_path / f"run{i}" / "profile"
        if hardened:
            _office_child.write_profile(profile)
        listener.seen.clear()
        await _soffice_batch(soffice, inputs, tmp_path / f"run{i}" / "out", profile, wrap)
        await asyncio.sleep(0.5)
        counts[layer] = sorted(set(listener.seen))
    print("\nconnections per layer:", counts)
    fetched = {line.split()[1].lstrip("/") for line in counts["none (control)"]}
    assert {"odt-image", "odt-ole", "docx-image", "docx-image-lowercase", "pptx-image",
            "doc-image"} <= fetched, counts
    assert counts["LibreOffice profile"] == []
    assert counts["package rewrite"] == []
    assert counts["network namespace"] == []


def _fake_unshare(directory: Path, body: str) -> None:
    directory.mkdir()
    script = directory / "unshare"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)


@pytest.mark.parametrize("fake", [
    "echo 'unshare: unshare failed: Operation not permitted' >&2; exit 1\n",
    # "succeeds" but isolates nothing: the probe must notice
    'while [ "$1" != "--" ]; do shift; done; shift; exec "$@"\n',
], ids=["unshare-fails", "unshare-isolates-nothing"])
async def test_no_sandbox_means_no_conversion_unless_the_operator_says_so(
    tmp_path: Path, listener: LinkListener, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, fake: str
) -> None:
    real = need_soffice()
    _fake_unshare(tmp_path / "bin", fake)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    calls = tmp_path / "calls.log"
    wrapper = tmp_path / "soffice"
    wrapper.write_text(f'#!/bin/sh\necho called >> "{calls}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    src = tmp_path / "blob"
    src.write_bytes(oc.odt_linked_image(listener.url("odt-image")))
    with pytest.raises(DocumentRejected) as info:
        await office.convert_to_pdf(src, FileKind.ODT, tmp_path / "out.pdf", 60.0,
                                    binary=str(wrapper))
    assert info.value.code is RejectCode.CONVERSION_UNAVAILABLE
    assert not calls.exists()  # LibreOffice never started
    assert "no network namespace can be made" in caplog.text
    # The operator's explicit choice: converts, logged, and the other layers still hold.
    out = await office.convert_to_pdf(src, FileKind.ODT, tmp_path / "out.pdf", 60.0,
                                      binary=str(wrapper), allow_unsandboxed=True)
    assert calls.read_text() == "called\n" and out.is_file()
    assert "WITHOUT a network sandbox" in caplog.text
    await asyncio.sleep(0.3)
    assert listener.seen == []
