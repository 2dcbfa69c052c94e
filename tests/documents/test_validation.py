"""Limits, magic-byte sniffing and the bilingual rejection/warning catalogue."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import pytest

from documents.errors import (
    MESSAGES,
    DocumentRejected,
    DocumentWarning,
    RejectCode,
    WarningCode,
    messages_for,
)
from documents.validation import FileKind, Limits, check_size, sniff_bytes, sniff_file
from tests.documents import corpus

VIETNAMESE_MARKS = set("ăâđêôơưàáảãạệếềểễốồổỗộớờởỡợụủứừửữựỳýỷỹỵ")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_defaults_match_the_product_limits() -> None:
    limits = Limits()
    assert limits.max_bytes == 100 * 1024 * 1024 and limits.max_pages == 2000
    assert limits.raster_width == 1536 and limits.max_mb == 100


def test_pdf_magic_within_first_kib(tmp_path: Path) -> None:
    assert sniff_file(corpus.make_text_pdf(tmp_path, pages=1), Limits()) is FileKind.PDF
    assert sniff_bytes(b"\x00" * 1000 + b"%PDF-1.4") is FileKind.PDF  # junk prefix, as Acrobat
    late = _write(tmp_path / "late.pdf", b"\x00" * 1100 + b"%PDF-1.4\n")
    with pytest.raises(DocumentRejected) as info:
        sniff_file(late, Limits())
    assert info.value.code is RejectCode.NOT_PDF


def test_size_limits(tmp_path: Path) -> None:
    with pytest.raises(DocumentRejected) as info:
        check_size(0, Limits())
    assert info.value.code is RejectCode.EMPTY
    with pytest.raises(DocumentRejected) as info:
        check_size(101 * 1024 * 1024, Limits())
    assert info.value.code is RejectCode.TOO_LARGE
    assert "100 MB" in info.value.message_en and "100 MB" in info.value.message_vi
    check_size(5, Limits(max_bytes=5))


@pytest.mark.parametrize(
    ("members", "kind"),
    [
        ({"[Content_Types].xml": "x", "word/document.xml": "x"}, FileKind.DOCX),
        ({"[Content_Types].xml": "x", "xl/workbook.xml": "x"}, FileKind.XLSX),
        ({"[Content_Types].xml": "x", "ppt/presentation.xml": "x"}, FileKind.PPTX),
        ({"mimetype": "application/vnd.oasis.opendocument.text"}, FileKind.ODT),
        ({"mimetype": "application/vnd.oasis.opendocument.spreadsheet"}, FileKind.ODS),
    ],
)
def test_office_formats_detected(tmp_path: Path, members: dict[str, str], kind: FileKind) -> None:
    path = tmp_path / "upload"
    with zipfile.ZipFile(path, "w") as zf:
        for name, body in members.items():
            zf.writestr(name, body)
    assert sniff_file(path, Limits()) is kind
    assert kind.is_office


def test_ole_and_plain_zip(tmp_path: Path) -> None:
    assert sniff_file(corpus.make_ole_header(tmp_path), Limits()) is FileKind.OLE
    plain = tmp_path / "photos.zip"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("a.jpg", "x")
    with pytest.raises(DocumentRejected) as info:
        sniff_file(plain, Limits())
    assert info.value.code is RejectCode.NOT_PDF


def test_office_can_be_disallowed(tmp_path: Path) -> None:
    with pytest.raises(DocumentRejected) as info:
        sniff_file(corpus.make_docx_like(tmp_path), Limits(allow_office=False))
    assert info.value.code is RejectCode.NOT_PDF


def test_every_code_has_english_and_vietnamese() -> None:
    for code in [*RejectCode, *WarningCode]:
        en, vi = MESSAGES[code]
        assert en and vi and en != vi, code
        assert VIETNAMESE_MARKS & set(vi.lower()), f"{code}: Vietnamese text lacks diacritics"


def test_rejection_is_stable_and_picklable() -> None:
    exc = DocumentRejected(RejectCode.TOO_MANY_PAGES, "detail", pages=10000, limit=2000)
    assert exc.code == "too_many_pages"  # StrEnum: compares to the wire string
    assert "10000" in exc.message_en and "10000 trang" in exc.message_vi
    copy = pickle.loads(pickle.dumps(exc))  # raised inside worker processes
    assert (copy.code, copy.message_vi, copy.detail) == (exc.code, exc.message_vi, "detail")


def test_missing_parameters_never_crash() -> None:
    en, vi = messages_for(RejectCode.TOO_MANY_PAGES)
    assert "{pages}" in en and "{pages}" in vi


def test_warning_page_numbers_are_one_based() -> None:
    warning = DocumentWarning.make(WarningCode.PAGE_FAILED, 4)
    assert warning.page_index == 4
    assert warning.message_en == "Page 5 could not be displayed."
    assert warning.message_vi == "Không hiển thị được trang 5."
