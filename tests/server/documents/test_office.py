"""Office uploads converted by the REAL LibreOffice (``soffice``), end to end.

tests/documents/test_processing.py drives the pipeline with a fake ``soffice`` script; here
the real one converts small documents built by hand (minimal WordprocessingML / ODF / SpreadsheetML
packages with Vietnamese text), uploaded through the app. Without LibreOffice these tests skip
(locally) or fail (CI, where ``bash scripts/setup.sh --test`` installs it).
"""

from __future__ import annotations

import asyncio
import errno
import io
import os
import sys
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymupdf
import pytest
from PIL import Image

from documents import _office_child, office, office_links
from documents.errors import DocumentRejected, RejectCode
from documents.validation import FileKind, Limits, sniff_file
from server.documents.keys import DOCUMENTS
from tests.conftest import IN_CI, Harness
from tests.documents import office_corpus as oc
from tests.server.documents_support import Listener, demo_meeting_id, fetch, upload, wait_ready

SENTENCE = "Báo cáo tình hình kinh tế – xã hội quý IV"
SECOND = "Phương hướng nhiệm vụ năm 2026 của tỉnh Quảng Bình"
CONVERT_WAIT = 120.0  # seconds; a conversion here takes ~1.5 s


def need_soffice() -> str:
    """The real converter, or skip (locally) / fail (CI) with the reason."""
    binary = office.find_converter()
    if binary is not None:
        return binary
    message = "LibreOffice (soffice) is not installed"
    if IN_CI:
        pytest.fail(f"{message}, but CI must test the real Office conversion "
                    "(bash scripts/setup.sh --test installs it)")
    pytest.skip(f"{message}: real Office conversion test skipped "
                "(run bash scripts/setup.sh --test as root)")


# --- documents built by hand ---------------------------------------------------------------

_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_PKG_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Target="{target}"
 Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"/>
</Relationships>"""


def _content_types(overrides: dict[str, str]) -> str:
    parts = "".join(f'<Override PartName="/{name}" ContentType="{kind}"/>'
                    for name, kind in overrides.items())
    return ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" '
            'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>' + parts + "</Types>")


def _zip(members: dict[str, str], stored_first: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in members.items():
            # ODF wants "mimetype" first and uncompressed
            method = zipfile.ZIP_STORED if name == stored_first else zipfile.ZIP_DEFLATED
            zf.writestr(name, text.encode("utf-8"), compress_type=method)
    return buf.getvalue()


def docx_document_xml(paragraphs: list[str], page_break_after: int | None = None) -> str:
    body = ""
    for i, text in enumerate(paragraphs):
        body += f'<w:p><w:r><w:t xml:space="preserve">{text}</w:t></w:r></w:p>'
        if i == page_break_after:
            body += '<w:p><w:r><w:br w:type="page"/></w:r></w:p>'
    return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            f'<w:document xmlns:w="{_W}"><w:body>{body}</w:body></w:document>')


def make_docx(paragraphs: list[str] | None = None, document_xml: str | None = None,
              page_break_after: int | None = 0) -> bytes:
    """A minimal valid WordprocessingML package: content types, package rels, document."""
    xml = document_xml or docx_document_xml(paragraphs or [SENTENCE, SECOND], page_break_after)
    return _zip({
        "[Content_Types].xml": _content_types({"word/document.xml": (
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml")}),
        "_rels/.rels": _PKG_RELS.format(target="word/document.xml"),
        "word/document.xml": xml,
    })


def make_xlsx(cells: list[str]) -> bytes:
    """A minimal SpreadsheetML package: one sheet, inline strings in column A."""
    rows = "".join(f'<row r="{i}"><c r="A{i}" t="inlineStr"><is><t>{text}</t></is></c></row>'
                   for i, text in enumerate(cells, start=1))
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    return _zip({
        "[Content_Types].xml": _content_types({
            "xl/workbook.xml":
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
            "xl/worksheets/sheet1.xml":
                "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"}),
        "_rels/.rels": _PKG_RELS.format(target="xl/workbook.xml"),
        "xl/workbook.xml": f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                           f'<workbook xmlns="{main}" xmlns:r="{rel}"><sheets>'
                           f'<sheet name="Quý IV" sheetId="1" r:id="rId1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/>'
            "</Relationships>"),
        "xl/worksheets/sheet1.xml": f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                                    f'<worksheet xmlns="{main}"><sheetData>{rows}</sheetData>'
                                    "</worksheet>",
    })


_ODF_NS = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
           'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
           'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
           'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
           'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0"')
_ODF_KINDS = {"odt": ("text", "text"), "ods": ("spreadsheet", "spreadsheet"),
              "odp": ("presentation", "presentation")}


def make_odf(kind: str, lines: list[str]) -> bytes:
    """A minimal OpenDocument package: mimetype (stored, first), manifest, content."""
    mimetype_suffix, body_tag = _ODF_KINDS[kind]
    paragraphs = "".join(f"<text:p>{line}</text:p>" for line in lines)
    if kind == "odt":
        body = paragraphs
    elif kind == "ods":
        body = '<table:table table:name="Quy4">' + "".join(
            f"<table:table-row><table:table-cell><text:p>{line}</text:p></table:table-cell>"
            "</table:table-row>" for line in lines) + "</table:table>"
    else:
        body = ('<draw:page draw:name="Trang1"><draw:frame svg:x="1cm" svg:y="1cm" '
                f'svg:width="24cm" svg:height="10cm"><draw:text-box>{paragraphs}'
                "</draw:text-box></draw:frame></draw:page>")
    mime = f"application/vnd.oasis.opendocument.{mimetype_suffix}"
    manifest_ns = "urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"
    return _zip({
        "mimetype": mime,
        "META-INF/manifest.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
            f'xmlns:manifest="{manifest_ns}" manifest:version="1.2">'
            f'<manifest:file-entry manifest:full-path="/" manifest:media-type="{mime}"/>'
            '<manifest:file-entry manifest:full-path="content.xml" '
            'manifest:media-type="text/xml"/></manifest:manifest>'),
        "content.xml": (f'<?xml version="1.0" encoding="UTF-8"?><office:document-content '
                        f'{_ODF_NS} office:version="1.2"><office:body><office:{body_tag}>'
                        f"{body}</office:{body_tag}></office:body></office:document-content>"),
    }, stored_first="mimetype")


# --- helpers -------------------------------------------------------------------------------


def inked_pixels(jpeg: bytes) -> int:
    """Clearly non-white pixels: text on the page, not a blank sheet."""
    with Image.open(io.BytesIO(jpeg)) as img:
        return sum(img.convert("L").histogram()[:160])


def no_leftovers(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*")]


def processes_under(path: Path) -> list[int]:
    """Live processes whose command line mentions ``path`` (zombies have none)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(path).encode() in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture
def convert_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where office.py makes its per-conversion temp dirs during the test (to inspect them)."""
    root = tmp_path / "convert-tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


async def converted_ready(hopso: Harness, data: bytes, filename: str
                          ) -> tuple[dict[str, Any], float, list[str]]:
    """Upload an Office file, wait for the outcome: (details, seconds, progress stages)."""
    meeting_id = await demo_meeting_id(hopso)
    secretary = await hopso.login("thuky")
    listener = await Listener.open(hopso, secretary)
    started = time.monotonic()
    status, doc = await upload(secretary, meeting_id, data, filename=filename)
    assert status == 202, doc
    await listener.wait_for("document:progress",
                            lambda e: e["stage"] in ("ready", "ready_with_warnings", "rejected"),
                            timeout=CONVERT_WAIT)
    elapsed = time.monotonic() - started
    details = await wait_ready(hopso, doc["id"], timeout=CONVERT_WAIT)
    stages = [e["stage"] for e in listener.of("document:progress")]
    await listener.close()
    return details, elapsed, stages


# --- through the app -----------------------------------------------------------------------


async def test_real_docx_is_converted_rendered_and_searchable(
    hopso_sqlite: Harness, convert_tmp: Path
) -> None:
    need_soffice()
    hopso = hopso_sqlite
    details, elapsed, stages = await converted_ready(hopso, make_docx(),
                                                     "Báo cáo quý IV.docx")
    print(f"\n.docx upload → ready (real LibreOffice): {elapsed:.2f} s")
    assert details["status"] == "ready", details
    assert "converting" in stages and "rendering" in stages
    assert details["filename"] == "Báo cáo quý IV.docx" and details["has_pdf"]
    assert details["page_count"] == 2  # the page break is honoured
    width, height = details["page_sizes"][0]
    assert 500 < width < 650 and 750 < height < 850  # A4 or Letter, portrait
    doc_id = details["id"]
    secretary = await hopso.login("thuky")

    # extracted text per page, searched with and without diacritics
    for query, match in ((SENTENCE, SENTENCE), ("bao cao tinh hinh", "Báo cáo tình hình"),
                         ("BAO CAO TINH HINH KINH TE", "Báo cáo tình hình kinh tế")):
        status, body = await secretary.call("GET", f"/api/documents/{doc_id}/search?q={query}")
        assert status == 200, body
        assert [h["page"] for h in body["hits"]] == [0], (query, body)
        hit = body["hits"][0]
        assert hit["snippet"][hit["start"]:hit["end"]] == match, (query, hit)
    status, body = await secretary.call("GET", f"/api/documents/{doc_id}/search?q=quang binh")
    assert [h["page"] for h in body["hits"]] == [1]
    assert "Quảng Bình" in body["hits"][0]["snippet"]
    meeting_id = details["meeting_id"]
    status, body = await secretary.call(
        "GET", f"/api/meetings/{meeting_id}/documents/search?q=xa hoi quy iv")
    assert [(h["document_id"], h["page"]) for h in body["hits"]] == [(doc_id, 0)]

    # the page images render (text, not a blank sheet)
    for page in (0, 1):
        status, kind, jpeg, _ = await fetch(secretary, f"/api/documents/{doc_id}/pages/{page}")
        assert status == 200 and kind == "image/jpeg" and jpeg[:3] == b"\xff\xd8\xff"
        print(f"page {page}: {inked_pixels(jpeg)} inked pixels")
        assert 1000 < inked_pixels(jpeg) < 200_000, page  # a line of text, not blank or black
    status, kind, jpeg, _ = await fetch(secretary, f"/api/documents/{doc_id}/thumbs/0")
    assert status == 200 and kind == "image/jpeg"

    # the sanitised PDF downloads and carries the text, fonts and all
    status, kind, pdf, _ = await fetch(secretary, f"/api/documents/{doc_id}/pdf")
    assert status == 200 and kind == "application/pdf"
    with pymupdf.open("pdf", pdf) as copy:
        assert copy.page_count == 2
        assert SENTENCE in copy[0].get_text() and SECOND in copy[1].get_text()
    assert no_leftovers(convert_tmp) == []  # the conversion's temp dir and profile are gone


async def test_real_odt_is_converted_and_searchable(
    hopso_sqlite: Harness, convert_tmp: Path
) -> None:
    need_soffice()
    hopso = hopso_sqlite
    details, elapsed, _ = await converted_ready(hopso, make_odf("odt", [SENTENCE, SECOND]),
                                                "Báo cáo.odt")
    print(f"\n.odt upload → ready (real LibreOffice): {elapsed:.2f} s")
    assert details["status"] == "ready", details
    assert details["page_count"] >= 1
    secretary = await hopso.login("thuky")
    status, body = await secretary.call(
        "GET", f"/api/documents/{details['id']}/search?q=bao cao tinh hinh")
    assert status == 200 and [h["page"] for h in body["hits"]] == [0], body
    status, _, jpeg, _ = await fetch(secretary, f"/api/documents/{details['id']}/pages/0")
    assert status == 200 and inked_pixels(jpeg) > 1000
    status, _, pdf, _ = await fetch(secretary, f"/api/documents/{details['id']}/pdf")
    assert status == 200 and SENTENCE in pymupdf.open("pdf", pdf)[0].get_text()
    assert no_leftovers(convert_tmp) == []


CORRUPT = {
    # not XML at all: refused by the container check (documents.containers), before LibreOffice
    "garbage document.xml": (make_docx(document_xml="\x00\x01 không phải XML <<<>>> " * 40),
                             "damaged"),
    "truncated document.xml": (make_docx(document_xml=docx_document_xml([SENTENCE])[:-60]),
                               "conversion_failed"),
}


@pytest.mark.parametrize("case", list(CORRUPT))
async def test_corrupt_docx_is_rejected_cleanly(
    hopso_sqlite: Harness, convert_tmp: Path, case: str
) -> None:
    need_soffice()
    hopso = hopso_sqlite
    data, code = CORRUPT[case]
    details, _, stages = await converted_ready(hopso, data, "Hỏng.docx")
    assert details["status"] == "rejected", details
    assert stages[-1] == "rejected" and ("converting" in stages) == (code == "conversion_failed")
    assert details["rejection"]["code"] == code
    if code == "conversion_failed":
        assert details["rejection"] == {
            "code": "conversion_failed",
            "message_en": "The Office document could not be converted to PDF.",
            "message_vi": "Không chuyển đổi được tài liệu Office sang PDF."}
    assert details["page_count"] is None and not details["has_pdf"]
    await _nothing_half_made(hopso, details, convert_tmp)


async def test_truncated_docx_zip_is_rejected_cleanly(
    hopso_sqlite: Harness, convert_tmp: Path
) -> None:
    hopso = hopso_sqlite  # no LibreOffice needed: this never reaches it
    whole = make_docx()
    details, _, stages = await converted_ready(hopso, whole[: len(whole) // 2], "Cắt cụt.docx")
    # No central directory: not recognisable as a document at all (refused before LibreOffice)
    assert details["status"] == "rejected", details
    assert details["rejection"]["code"] == "not_pdf" and "converting" not in stages
    await _nothing_half_made(hopso, details, convert_tmp)


async def _nothing_half_made(hopso: Harness, details: dict[str, Any], convert_tmp: Path) -> None:
    doc_id = details["id"]
    secretary = await hopso.login("thuky")
    for path in ("/pdf", "/pages/0", "/thumbs/0"):
        status, body = await secretary.call("GET", f"/api/documents/{doc_id}{path}")
        assert status in (404, 409), (path, status, body)
    status, body = await secretary.call("POST", f"/api/documents/{doc_id}/publish",
                                        {"published": True})
    assert status == 409 and body["error"]["code"] == "rejected"
    [version] = details["versions"]
    derived = hopso.server.app[DOCUMENTS].store.derived_dir(version["sha256"])
    made = [p for p in derived.rglob("*") if p.is_file()] if derived.exists() else []
    assert made == []  # no converted.pdf, no page images
    assert no_leftovers(convert_tmp) == []


# --- the converter itself ------------------------------------------------------------------


@pytest.mark.parametrize("kind", [FileKind.XLSX, FileKind.ODS, FileKind.ODP])
async def test_real_conversion_of_spreadsheets_and_slides(tmp_path: Path, kind: FileKind) -> None:
    """Calc and Impress are installed too: every Office kind validation accepts converts."""
    need_soffice()
    data = make_xlsx([SENTENCE, SECOND]) if kind is FileKind.XLSX else make_odf(kind, [SENTENCE])
    src = tmp_path / "blob"
    src.write_bytes(data)
    assert sniff_file(src, Limits()) is kind
    out = await office.convert_to_pdf(src, kind, tmp_path / "out" / "converted.pdf", 60.0)
    with pymupdf.open(out) as pdf:
        assert pdf.page_count >= 1 and SENTENCE in pdf[0].get_text()


async def test_parallel_conversions_use_their_own_profile(tmp_path: Path,
                                                          convert_tmp: Path) -> None:
    real = need_soffice()
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "soffice"  # records how it was started, then is the real soffice
    wrapper.write_text(f'#!/bin/sh\necho "$HOME|$TMPDIR|$*" >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    sources = []
    for i in range(3):
        src = tmp_path / f"blob{i}"
        src.write_bytes(make_docx([f"{SENTENCE} – bản {i}"], page_break_after=None))
        sources.append(src)
    started = time.monotonic()
    outs = await asyncio.gather(*(
        office.convert_to_pdf(src, FileKind.DOCX, tmp_path / f"out{i}.pdf", 60.0,
                              binary=str(wrapper))
        for i, src in enumerate(sources)))
    print(f"\n3 parallel .docx conversions: {time.monotonic() - started:.2f} s")
    for i, out in enumerate(outs):
        with pymupdf.open(out) as pdf:
            assert f"{SENTENCE} – bản {i}" in pdf[0].get_text()
    calls = [line.split("|") for line in log.read_text().splitlines()]
    assert len(calls) == 3
    workdirs = set()
    for home, tmpdir, args in calls:
        work = Path(home)
        assert work.parent == convert_tmp and work.name.startswith("hopso-convert-")
        assert tmpdir == str(work / "tmp")
        assert f"-env:UserInstallation={(work / 'profile').as_uri()}" in args.split()
        workdirs.add(work)
    assert len(workdirs) == 3  # one profile per conversion: no shared profile lock
    assert no_leftovers(convert_tmp) == []


async def test_slow_real_conversion_is_killed_with_its_process_group(
    tmp_path: Path, convert_tmp: Path
) -> None:
    need_soffice()
    # ~20 000 paragraphs: several seconds of work, far beyond the timeout below
    many = [f"Đoạn {i}: {SENTENCE}, tiếp tục phát triển." for i in range(20_000)]
    src = tmp_path / "blob"
    src.write_bytes(make_docx(many, page_break_after=None))
    seen: set[int] = set()

    async def watch() -> None:
        while True:
            seen.update(processes_under(convert_tmp))
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    started = time.monotonic()
    try:
        with pytest.raises(DocumentRejected) as info:
            await office.convert_to_pdf(src, FileKind.DOCX, tmp_path / "out.pdf", 1.5)
    finally:
        watcher.cancel()
    elapsed = time.monotonic() - started
    assert info.value.code is RejectCode.CONVERSION_FAILED
    assert "timed out after 1.5s" in info.value.detail
    assert elapsed < 1.5 + 3.0  # killed, not waited for
    assert seen, "soffice never showed up: the timeout fired too early to test anything"
    assert processes_under(convert_tmp) == []  # soffice and soffice.bin are gone
    for pid in seen:
        assert not _alive(pid), pid
    assert not (tmp_path / "out.pdf").exists()
    assert no_leftovers(convert_tmp) == []  # profile and LibreOffice's lu*.tmp files too


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


# --- no network, no links: finding 5 of issue 11 ------------------------------------------


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
