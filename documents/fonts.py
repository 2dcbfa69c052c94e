"""Fonts with full Vietnamese coverage for text we draw into PDFs.

PDF base-14 fonts (Helvetica etc.) lack most Vietnamese letters (ả, ệ, ữ …),
so everything we write — minutes, notes, watermarks, test documents — uses
embedded fonts: Noto Sans from pymupdf-fonts (a declared dependency, so always
present) or, for documents that prefer a serif, a system serif that passes a
Vietnamese coverage check.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pymupdf
# PyMuPDF is imported where used (documents/mupdf.py).

# Every letter that base-14 fonts lack, plus đ/Đ; a family must cover all.
VIETNAMESE_SAMPLE = (
    "ÀÁÂÃÈÉÊÌÍÒÓÔÕÙÚÝàáâãèéêìíòóôõùúýĂăĐđĨĩŨũƠơƯư"
    "ẠạẢảẤấẦầẨẩẪẫẬậẮắẰằẲẳẴẵẶặẸẹẺẻẼẽẾếỀềỂểỄễỆệỈỉỊịỌọỎỏỐốỒồỔổỖỗỘộỚớỜờỞởỠỡỢợỤụỦủỨứỪừỬửỮữỰựỲỳỴỵỶỷỸỹ"
)


class FontStyle(Enum):
    REGULAR = "regular"
    BOLD = "bold"
    ITALIC = "italic"
    BOLD_ITALIC = "bold-italic"


@dataclass(frozen=True)
class FontFamily:
    """Font programs (TTF/OTF bytes) for the four styles of one family."""

    name: str
    regular: bytes
    bold: bytes
    italic: bytes
    bold_italic: bytes

    def buffer(self, style: FontStyle = FontStyle.REGULAR) -> bytes:
        return {
            FontStyle.REGULAR: self.regular,
            FontStyle.BOLD: self.bold,
            FontStyle.ITALIC: self.italic,
            FontStyle.BOLD_ITALIC: self.bold_italic,
        }[style]


_NOTO_CODES = {
    FontStyle.REGULAR: "notos",
    FontStyle.BOLD: "notosbo",
    FontStyle.ITALIC: "notosit",
    FontStyle.BOLD_ITALIC: "notosbi",
}

# System serifs worth trying, best first; each entry is the four style files.
_SERIF_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts")
_SERIF_CANDIDATES: tuple[tuple[str, tuple[str, str, str, str]], ...] = (
    ("Times New Roman", ("times.ttf", "timesbd.ttf", "timesi.ttf", "timesbi.ttf")),
    ("Noto Serif", ("NotoSerif-Regular.ttf", "NotoSerif-Bold.ttf", "NotoSerif-Italic.ttf",
                    "NotoSerif-BoldItalic.ttf")),
    ("Liberation Serif", ("LiberationSerif-Regular.ttf", "LiberationSerif-Bold.ttf",
                          "LiberationSerif-Italic.ttf", "LiberationSerif-BoldItalic.ttf")),
    ("DejaVu Serif", ("DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
                      "DejaVuSerif-BoldItalic.ttf")),
)  # fmt: skip


@lru_cache(maxsize=1)
def sans_family() -> FontFamily:
    """Noto Sans; always available because pymupdf-fonts ships it."""
    from documents.mupdf import pymupdf
    buffers = [pymupdf.Font(_NOTO_CODES[s]).buffer for s in FontStyle]
    return FontFamily("Noto Sans", *(bytes(b) for b in buffers))


@lru_cache(maxsize=1)
def serif_family() -> FontFamily | None:
    """The first installed system serif covering Vietnamese, or None."""
    from documents.mupdf import pymupdf
    for name, files in _SERIF_CANDIDATES:
        paths = [_find_font_file(f) for f in files]
        if any(p is None for p in paths):
            continue
        buffers = [p.read_bytes() for p in paths if p is not None]
        if all(covers_vietnamese(pymupdf.Font(fontbuffer=b)) for b in buffers):
            return FontFamily(name, *buffers)
    return None


def document_family(prefer_serif: bool = True) -> FontFamily:
    """Serif if wanted and available, else Noto Sans."""
    if prefer_serif:
        serif = serif_family()
        if serif is not None:
            return serif
    return sans_family()


@lru_cache(maxsize=16)
def get_font(
    style: FontStyle = FontStyle.REGULAR, family: FontFamily | None = None
) -> pymupdf.Font:
    """A cached pymupdf.Font (for text_length, buffers); default Noto Sans."""
    from documents.mupdf import pymupdf
    return pymupdf.Font(fontbuffer=(family or sans_family()).buffer(style))


def covers_vietnamese(font: pymupdf.Font) -> bool:
    return all(font.has_glyph(ord(c)) for c in VIETNAMESE_SAMPLE)


def vietnamese_font(bold: bool = False) -> pymupdf.Font:
    """Noto Sans regular/bold; what the processing code uses for overlays."""
    return get_font(FontStyle.BOLD if bold else FontStyle.REGULAR)


def insert_font(page: pymupdf.Page, bold: bool = False) -> str:
    """Embed Noto Sans in ``page``'s resources and return its resource name."""
    name = "hopso-notosbo" if bold else "hopso-notos"
    page.insert_font(fontname=name, fontbuffer=vietnamese_font(bold).buffer)
    return name


@lru_cache(maxsize=64)
def _find_font_file(filename: str) -> Path | None:
    for root in _SERIF_DIRS:
        base = Path(root)
        if base.is_dir():
            for path in base.rglob(filename):
                return path
    return None
