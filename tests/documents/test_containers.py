"""Office containers are parsed for real before conversion: junk behind the right magic bytes
is rejected, real files (made by LibreOffice where it is installed) pass."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from documents.containers import check_office_container
from documents.errors import DocumentRejected, RejectCode
from documents.validation import FileKind, Limits, sniff_file
from tests.documents import corpus


def rejected(path: Path, kind: FileKind) -> RejectCode:
    with pytest.raises(DocumentRejected) as info:
        check_office_container(str(path), kind.value)
    return info.value.code


def test_sound_containers_pass(tmp_path: Path) -> None:
    assert check_office_container(str(corpus.make_word97_doc(tmp_path)), "ole") == "doc"
    workbook = corpus.make_ole(tmp_path, {"Workbook": b"\x09\x08" + bytes(4094)}, "b.xls")
    assert check_office_container(str(workbook), "ole") == "xls"
    slides = corpus.make_ole(tmp_path, {"PowerPoint Document": bytes(4096),
                                        "Current User": bytes(4096)}, "c.ppt")
    assert check_office_container(str(slides), "ole") == "ppt"
    assert check_office_container(str(corpus.make_docx_like(tmp_path)), "docx") == "docx"


@pytest.mark.parametrize("make", [corpus.make_ole_random, corpus.make_ole_header])
def test_junk_behind_an_ole_header_is_damaged(make: corpus.Maker, tmp_path: Path) -> None:
    path = make(tmp_path)
    assert sniff_file(path, Limits()) is FileKind.OLE  # the magic bytes are right
    assert rejected(path, FileKind.OLE) is RejectCode.DAMAGED


def test_ole_files_that_are_not_office_documents(tmp_path: Path) -> None:
    other = corpus.make_ole(tmp_path, {"__substg1.0_0037001F": bytes(4096)}, "mail.msg")
    assert rejected(other, FileKind.OLE) is RejectCode.NOT_PDF
    encrypted = corpus.make_ole(tmp_path, {"EncryptionInfo": bytes(4096),
                                           "EncryptedPackage": bytes(4096)}, "locked.docx")
    assert rejected(encrypted, FileKind.OLE) is RejectCode.ENCRYPTED
    no_fib = corpus.make_ole(tmp_path, {"WordDocument": bytes(4096)}, "nofib.doc")
    assert rejected(no_fib, FileKind.OLE) is RejectCode.DAMAGED


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_zip_packages_need_their_main_part_as_xml(tmp_path: Path) -> None:
    no_main = _zip(tmp_path / "a.docx", {"[Content_Types].xml": b"<Types/>", "word/x.xml": b"<x/>"})
    assert rejected(no_main, FileKind.DOCX) is RejectCode.DAMAGED
    not_xml = _zip(tmp_path / "b.xlsx", {"[Content_Types].xml": b"<Types/>",
                                         "xl/workbook.xml": b"\x00\x01junk"})
    assert rejected(not_xml, FileKind.XLSX) is RejectCode.DAMAGED
    odt = _zip(tmp_path / "c.odt", {"mimetype": b"application/vnd.oasis.opendocument.text",
                                    "content.xml": "\ufeff<office:document/>".encode()})
    assert check_office_container(str(odt), "odt") == "odt"


def test_a_main_part_that_inflates_absurdly_is_damaged(tmp_path: Path) -> None:
    path = _zip(tmp_path / "bomb.docx", {"[Content_Types].xml": b"<Types/>",
                                         "word/document.xml": b"<w/>"})
    data = bytearray(path.read_bytes())  # claim 4 GB inflated in the central directory
    at = data.rfind(b"PK\x01\x02", 0, data.rfind(b"PK\x05\x06"))
    data[at + 24:at + 28] = (0xFFFFFFF0).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    assert rejected(path, FileKind.DOCX) is RejectCode.DAMAGED


@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice is not installed")
def test_files_made_by_libreoffice_pass(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Biên bản họp\nĐồng Hới\n")
    (tmp_path / "b.csv").write_text("a,b\n1,2\n")
    for source, target in (("a.txt", "doc"), ("b.csv", "xls")):
        subprocess.run(["soffice", "--headless", f"-env:UserInstallation=file://{tmp_path}/p",
                        "--convert-to", target, "--outdir", str(tmp_path), str(tmp_path / source)],
                       check=True, capture_output=True, timeout=120)
    assert check_office_container(str(tmp_path / "a.doc"), "ole") == "doc"
    assert check_office_container(str(tmp_path / "b.xls"), "ole") == "xls"
