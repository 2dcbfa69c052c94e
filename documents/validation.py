"""Upload limits and cheap, pre-parse checks (size, magic bytes, Office sniffing).

Everything here runs in the server process and reads at most the first KiB of
the file plus, for ZIP containers, the central directory. Anything that needs
MuPDF runs in a worker (see documents.jobs).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from documents.errors import DocumentRejected, RejectCode

PDF_MAGIC = b"%PDF-"
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
SNIFF_BYTES = 1024  # Acrobat accepts %PDF- anywhere in the first 1024 bytes


@dataclass(frozen=True)
class Limits:
    """Per-document limits. Defaults are production values; tests shrink timeouts."""

    max_bytes: int = 100 * 1024 * 1024
    max_pages: int = 2000
    raster_width: int = 1536  # tablet fallback raster
    thumb_width: int = 200
    jpeg_quality: int = 80
    thumb_quality: int = 70
    max_raster_height: int = 4096
    max_raster_pixels: int = 25_000_000
    max_aspect: float = 20.0  # pages more elongated are stretched to this (raster.fit)
    oversized_page_pt: float = 4768.0  # twice A0's long side; larger pages get a warning
    inspect_timeout: float = 30.0
    page_timeout: float = 10.0
    text_timeout: float = 20.0  # per chunk of text_chunk_pages
    text_chunk_pages: int = 50
    sanitize_timeout: float = 60.0
    convert_timeout: float = 120.0
    document_timeout: float = 900.0
    max_failed_pages: int = 10  # beyond this the document is rejected as too_complex
    max_outline_entries: int = 5000
    allow_office: bool = True
    # Convert Office files even where LibreOffice cannot be cut off the network (no network
    # namespace can be made): the operator's explicit choice (--office-without-sandbox).
    office_without_sandbox: bool = False

    @property
    def max_mb(self) -> int:
        return max(1, self.max_bytes // (1024 * 1024))


class FileKind(StrEnum):
    PDF = "pdf"
    DOCX = "docx"
    XLSX = "xlsx"
    PPTX = "pptx"
    ODT = "odt"
    ODS = "ods"
    ODP = "odp"
    OLE = "ole"  # legacy .doc/.xls/.ppt; LibreOffice sniffs which one

    @property
    def is_office(self) -> bool:
        return self is not FileKind.PDF

    @property
    def extension(self) -> str:
        return ".doc" if self is FileKind.OLE else f".{self.value}"


_ODF_MIMETYPES = {
    b"application/vnd.oasis.opendocument.text": FileKind.ODT,
    b"application/vnd.oasis.opendocument.spreadsheet": FileKind.ODS,
    b"application/vnd.oasis.opendocument.presentation": FileKind.ODP,
}
_OOXML_DIRS = (("word/", FileKind.DOCX), ("xl/", FileKind.XLSX), ("ppt/", FileKind.PPTX))


def check_size(size: int, limits: Limits) -> None:
    if size <= 0:
        raise DocumentRejected(RejectCode.EMPTY)
    if size > limits.max_bytes:
        raise DocumentRejected(
            RejectCode.TOO_LARGE, f"{size} bytes", limit_mb=limits.max_mb
        )


def sniff_bytes(head: bytes) -> FileKind | None:
    """Classify by magic only. ZIP needs the directory, so it returns None here."""
    if PDF_MAGIC in head[:SNIFF_BYTES]:
        return FileKind.PDF
    if head.startswith(OLE_MAGIC):
        return FileKind.OLE
    return None


def sniff_file(path: Path | str, limits: Limits) -> FileKind:
    """Size + magic check. Raises DocumentRejected; blocking I/O (use a thread)."""
    path = Path(path)
    check_size(os.stat(path).st_size, limits)
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    kind = sniff_bytes(head)
    if kind is None and head.startswith(ZIP_MAGIC):
        kind = _sniff_zip(path)
    if kind is None:
        raise DocumentRejected(RejectCode.NOT_PDF, f"magic={head[:8]!r}")
    if kind.is_office and not limits.allow_office:
        raise DocumentRejected(RejectCode.NOT_PDF, f"office format {kind} not allowed")
    return kind


def _sniff_zip(path: Path) -> FileKind | None:
    # Only the central directory and the tiny 'mimetype' member are read, so a
    # ZIP bomb is harmless here; the converter has its own timeout.
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if "mimetype" in names and zf.getinfo("mimetype").file_size < 200:
                kind = _ODF_MIMETYPES.get(zf.read("mimetype").strip())
                if kind:
                    return kind
            if "[Content_Types].xml" in names:
                for prefix, ooxml in _OOXML_DIRS:
                    if any(n.startswith(prefix) for n in names):
                        return ooxml
    except (zipfile.BadZipFile, OSError, KeyError, ValueError):
        return None
    return None
