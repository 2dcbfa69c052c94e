"""Is an Office upload really the container its magic bytes claim? (runs in a worker)

The upload route sniffs only magic bytes, so eight bytes of OLE header followed by
anything used to reach LibreOffice, which imports junk as text (random bytes became
a two-page document). Before conversion, :func:`check_office_container` parses the
container for real and requires the main part of the format it claims:

* OLE2 (legacy .doc/.xls/.ppt): a well-formed compound file (olefile) holding a
  Word ``WordDocument`` stream with a Word FIB, an Excel ``Workbook``/``Book``
  stream starting with a BIFF BOF record, or a ``PowerPoint Document`` stream.
  An encrypted OOXML package (``EncryptedPackage``) is ``encrypted``.
* ZIP (OOXML/ODF): the package's main part (``word/document.xml``,
  ``xl/workbook.xml``, ``ppt/presentation.xml``, ``content.xml``) exists, is not
  absurdly large when inflated, and begins as XML.

A worker job: olefile is pure Python, and a crafted FAT could keep it busy; here
it runs with the pool's timeout and memory cap, not on the event loop.
"""

from __future__ import annotations

import zipfile

import olefile

from documents.errors import DocumentRejected, RejectCode
from documents.validation import FileKind

MAX_MAIN_PART_BYTES = 512 * 1024 * 1024  # inflated; LibreOffice could not open more anyway
_WORD_FIB = (b"\xec\xa5", b"\xdc\xa5")  # wIdent: Word 97+ and Word 6/95
_BIFF_BOF = (b"\x09\x08", b"\x09\x04", b"\x09\x02", b"\x09\x00")  # BIFF8/5, 4, 3, 2
_ZIP_MAIN_PARTS = {
    FileKind.DOCX: "word/document.xml",
    FileKind.XLSX: "xl/workbook.xml",
    FileKind.PPTX: "ppt/presentation.xml",
    FileKind.ODT: "content.xml",
    FileKind.ODS: "content.xml",
    FileKind.ODP: "content.xml",
}


def check_office_container(path: str, kind: str) -> str:
    """Raise DocumentRejected unless ``path`` is a sound ``kind`` container.

    Returns the format found ("doc", "xls", "ppt" or ``kind``)."""
    file_kind = FileKind(kind)
    if file_kind is FileKind.OLE:
        return _check_ole(path)
    if file_kind in _ZIP_MAIN_PARTS:
        _check_zip(path, _ZIP_MAIN_PARTS[file_kind])
        return file_kind.value
    raise DocumentRejected(RejectCode.NOT_PDF, f"not an Office kind: {kind}")


def _check_ole(path: str) -> str:
    try:
        with olefile.OleFileIO(path) as ole:
            if ole.exists("EncryptedPackage"):
                raise DocumentRejected(RejectCode.ENCRYPTED, "encrypted OOXML package")
            if ole.exists("WordDocument"):
                _require_prefix(ole, "WordDocument", _WORD_FIB)
                return "doc"
            for name in ("Workbook", "Book"):
                if ole.exists(name):
                    _require_prefix(ole, name, _BIFF_BOF)
                    return "xls"
            if ole.exists("PowerPoint Document") and ole.get_size("PowerPoint Document") > 0:
                return "ppt"
    except DocumentRejected:
        raise
    except Exception as exc:  # olefile raises OSError, ValueError, struct.error... on junk
        raise DocumentRejected(RejectCode.DAMAGED, f"compound file: {exc!r}"[:500]) from None
    raise DocumentRejected(RejectCode.NOT_PDF, "compound file without a Word, Excel or "
                                               "PowerPoint document in it")


def _require_prefix(ole: olefile.OleFileIO, name: str, prefixes: tuple[bytes, ...]) -> None:
    with ole.openstream(name) as stream:
        head = stream.read(2)
    if head not in prefixes:
        raise DocumentRejected(RejectCode.DAMAGED, f"{name} stream starts with {head!r}")


def _check_zip(path: str, main_part: str) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            try:
                info = zf.getinfo(main_part)
            except KeyError:
                raise DocumentRejected(RejectCode.DAMAGED, f"no {main_part}") from None
            if info.file_size > MAX_MAIN_PART_BYTES:  # a ZIP bomb, not a document
                raise DocumentRejected(RejectCode.DAMAGED, f"{main_part}: {info.file_size} B")
            with zf.open(info) as part:  # checks the local header, inflates 1 KiB only
                head = part.read(1024).lstrip(b"\xef\xbb\xbf \t\r\n")
    except DocumentRejected:
        raise
    except Exception as exc:  # BadZipFile, zlib.error, NotImplementedError (method)...
        raise DocumentRejected(RejectCode.DAMAGED, f"package: {exc!r}"[:500]) from None
    if not head.startswith((b"<", b"\xff\xfe<\x00", b"\xfe\xff\x00<")):  # UTF-8, UTF-16
        raise DocumentRejected(RejectCode.DAMAGED, f"{main_part} is not XML")
