"""Office uploads converted by the REAL LibreOffice (``soffice``), end to end.

tests/documents/test_processing.py drives the pipeline with a fake ``soffice`` script; here
the real one converts small documents built by hand (minimal WordprocessingML / ODF / SpreadsheetML
packages with Vietnamese text), uploaded through the app. Without LibreOffice these tests skip
(locally) or fail (CI, where ``bash scripts/setup.sh --test`` installs it).
"""

from __future__ import annotations

import asyncio
import io
import time
import zipfile
from pathlib import Path
from typing import Any

import pymupdf
import pytest
from PIL import Image

from documents import office
from documents.errors import DocumentRejected, RejectCode
from documents.validation import FileKind, Limits, sniff_file
from server.documents.keys import DOCUMENTS
from tests.conftest import IN_CI, Harness
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
