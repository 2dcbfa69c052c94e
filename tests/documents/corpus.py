"""Generators for good and hostile test files (written on the fly, never committed).

Each ``make_*`` writes one file into ``directory`` and returns its path.
Sizes are chosen to be hostile to a renderer yet quick to generate (< 1 s).
"""

from __future__ import annotations

import random
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymupdf

from documents import fonts

Maker = Callable[[Path], Path]  # writes one file into a directory, returns its path

VIETNAMESE_LINES = [
    "UBND THÀNH PHỐ ĐỒNG HỚI",
    "BIÊN BẢN HỌP",
    "Kỳ họp thứ nhất, Hội đồng nhân dân thành phố Đồng Hới",
    "Thời gian: 8 giờ 00, ngày 27 tháng 11 năm 2026",
    "Nội dung: thông qua dự toán ngân sách và kế hoạch đầu tư công",
]


def make_text_pdf(directory: Path, pages: int = 5, name: str = "text.pdf") -> Path:
    """Vietnamese text on every page, an outline, page numbers in the text."""
    doc = pymupdf.open()
    toc = []
    for i in range(pages):
        page = doc.new_page()
        font = fonts.insert_font(page)
        y = 72.0
        for line in [*VIETNAMESE_LINES, f"Trang số {i + 1}"]:
            page.insert_text((72, y), line, fontname=font, fontsize=12)
            y += 20
        toc.append([1, f"Mục {i + 1}: Biên bản", i + 1])
    doc.set_toc(toc)
    doc.subset_fonts()
    path = directory / name
    doc.save(path, garbage=3, deflate=True)
    return path


def make_truncated_pdf(directory: Path) -> Path:
    full = make_text_pdf(directory, pages=5, name="full-for-truncation.pdf").read_bytes()
    path = directory / "truncated.pdf"
    path.write_bytes(full[: int(len(full) * 0.6)])
    return path


def make_garbage(directory: Path) -> Path:
    path = directory / "garbage.pdf"
    path.write_bytes(random.Random(7).randbytes(64 * 1024))
    return path


def make_fake_pdf_header_garbage(directory: Path) -> Path:
    """Passes the magic check, but nothing after it is a PDF."""
    path = directory / "header-only.pdf"
    path.write_bytes(b"%PDF-1.7\n" + random.Random(8).randbytes(32 * 1024))
    return path


def make_encrypted_pdf(directory: Path) -> Path:
    doc = pymupdf.open(make_text_pdf(directory, pages=1, name="plain-for-encryption.pdf"))
    path = directory / "encrypted.pdf"
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="mat-khau", owner_pw="chu")
    return path


def make_huge_page_pdf(directory: Path) -> Path:
    """200 × 200 inches (PDF's maximum user space without UserUnit)."""
    doc = pymupdf.open()
    page = doc.new_page(width=14400, height=14400)
    page.draw_circle((7200, 7200), 7000, color=(0, 0, 1), width=50)
    page.insert_text((500, 1000), "HUGE PAGE", fontsize=600)
    path = directory / "huge-page.pdf"
    doc.save(path)
    return path


def make_many_pages_pdf(directory: Path, pages: int = 10_000) -> Path:
    """Written by hand: PyMuPDF's new_page() takes ~1 ms per page."""
    objects = [b"<</Type/Catalog/Pages 2 0 R>>"]
    kids = " ".join(f"{i + 3} 0 R" for i in range(pages))
    objects.append(f"<</Type/Pages/Count {pages}/Kids[{kids}]>>".encode())
    objects += [b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>"] * pages
    path = directory / f"pages-{pages}.pdf"
    path.write_bytes(_assemble_pdf(objects))
    return path


def _assemble_pdf(objects: list[bytes]) -> bytes:
    """Objects numbered from 1 in order; object 1 is the catalog."""
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<</Size %d/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref_at,
    )
    return bytes(out)


# Page dictionaries whose geometry is hostile: strips, slivers, negative and inverted boxes,
# huge UserUnit and /Rotate. name -> the page dictionary's entries besides /Type and /Parent.
HOSTILE_PAGE_BOXES: dict[str, bytes] = {
    "tall_strip": b"/MediaBox[0 0 1 100000]",
    "wide_strip": b"/MediaBox[0 0 100000 1]",
    "sliver": b"/MediaBox[0 0 0.01 0.01]",
    "negative": b"/MediaBox[0 0 -100 -100000]",
    "inverted": b"/MediaBox[100000 1 0 0]",
    "huge_numbers": b"/MediaBox[-1e38 -1e38 1e38 1e38]",
    "user_unit_strip": b"/MediaBox[0 0 1 14400]/UserUnit 75000",
    "user_unit_square": b"/MediaBox[0 0 14400 14400]/UserUnit 75000",
    "huge_rotate": b"/MediaBox[0 0 1 100000]/Rotate 90000000000000000000",
    "crop_strip": b"/MediaBox[0 0 612 792]/CropBox[0 0 1 100000]",
}


def make_page_box_pdf(directory: Path, name: str, entries: bytes) -> Path:
    """A ~300-byte, one-page PDF whose page dictionary carries ``entries``."""
    objects = [b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Count 1/Kids[3 0 R]>>",
               b"<</Type/Page/Parent 2 0 R" + entries + b">>"]
    path = directory / f"box-{name}.pdf"
    path.write_bytes(_assemble_pdf(objects))
    return path


def make_many_links_pdf(directory: Path, links: int = 60_000) -> Path:
    """One page with ``links`` link annotations, each its own object: ~7 MB, quick to read
    and render, seconds to sanitise (every object is walked)."""
    refs = b" ".join(b"%d 0 R" % (i + 4) for i in range(links))
    objects = [b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Count 1/Kids[3 0 R]>>",
               b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]/Annots[" + refs + b"]>>"]
    objects += [b"<</Type/Annot/Subtype/Link/Rect[0 0 1 1]/A<</S/URI/URI(https://x.vn/)>>>>"] * links
    path = directory / f"links-{links}.pdf"
    path.write_bytes(_assemble_pdf(objects))
    return path


def make_many_paths_pdf(directory: Path, segments: int = 10_000, width: float = 5.0) -> Path:
    """Long, thick random strokes: 10k take ~11 s to render at 1536 px here."""
    rnd = random.Random(1)
    ops = [f"{width} w 1 J 0 0 1 RG\n"]
    for _ in range(segments):
        x0, y0, x1, y1 = (rnd.uniform(0, 595) for _ in range(4))
        ops.append(f"{x0:.1f} {y0:.1f} m {x1:.1f} {y1:.1f} l S\n")
    return _single_page_pdf(directory / f"paths-{segments}.pdf", "".join(ops).encode())


def make_decompression_bomb_pdf(directory: Path, side: int = 32768) -> Path:
    """A ~3 MB file whose image inflates to side² × 3 bytes (3.2 GB by default)."""
    raw = side * side * 3
    block = side * 3 * 8
    doc = pymupdf.open()
    page = doc.new_page()
    img = doc.get_new_xref()
    doc.update_object(
        img,
        f"<</Type/XObject/Subtype/Image/Width {side}/Height {side}"
        "/ColorSpace/DeviceRGB/BitsPerComponent 8>>",
    )
    doc.update_stream(img, _zeros_zlib(raw, block), compress=False)
    doc.xref_set_key(img, "Filter", "/FlateDecode")
    doc.xref_set_key(page.xref, "Resources", f"<</XObject<</Im0 {img} 0 R>>>>")
    contents = doc.get_new_xref()
    doc.update_object(contents, "<<>>")
    doc.update_stream(contents, b"q 500 0 0 700 50 50 cm /Im0 Do Q")
    doc.xref_set_key(page.xref, "Contents", f"{contents} 0 R")
    path = directory / "bomb.pdf"
    doc.save(path)
    return path


def _zeros_zlib(total: int, block: int) -> bytes:
    """zlib stream of ``total`` zero bytes without compressing them all.

    After a full flush deflate restarts from an empty window, so the
    compressed form of one zero block can simply be repeated.
    """
    assert total % block == 0
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    zero = bytes(block)
    co.compress(zero)
    co.flush(zlib.Z_FULL_FLUSH)
    chunk = co.compress(zero) + co.flush(zlib.Z_FULL_FLUSH)
    tail = co.flush(zlib.Z_FINISH)
    adler = 1 | ((total % 65521) << 16)  # Adler-32 of all-zero data
    return b"\x78\xda" + chunk * (total // block) + tail + struct.pack(">I", adler)


def make_active_content_pdf(directory: Path) -> Path:
    """JavaScript (OpenAction, names tree, /AA), embedded file, attachment, bad links."""
    doc = pymupdf.open()
    page = doc.new_page()
    doc.new_page()
    page = doc[0]
    page.insert_text((72, 72), "Active content")
    cat = doc.pdf_catalog()
    js = doc.get_new_xref()
    doc.update_object(js, "<</S/JavaScript/JS(app.alert\\('xin chao'\\))>>")
    doc.xref_set_key(cat, "OpenAction", f"{js} 0 R")
    doc.xref_set_key(cat, "AA", "<</WC<</S/JavaScript/JS(app.alert\\(2\\))>>>>")
    doc.xref_set_key(cat, "Names", f"<</JavaScript<</Names[(init) {js} 0 R]>>>>")
    doc.embfile_add("payload.exe", b"MZ\x90\x00 not really", filename="payload.exe")
    page.add_file_annot((100, 100), b"secret", "note.txt")
    links: list[dict[str, Any]] = [
        {"kind": pymupdf.LINK_LAUNCH, "file": "cmd.exe"},
        {"kind": pymupdf.LINK_URI, "uri": "javascript:alert(1)"},
        {"kind": pymupdf.LINK_URI, "uri": "https://example.gov.vn/"},
        {"kind": pymupdf.LINK_GOTO, "page": 1},
    ]
    for i, link in enumerate(links):
        page.insert_link({**link, "from": pymupdf.Rect(10 + 50 * i, 10, 50 + 50 * i, 50)})
    note = page.add_text_annot((300, 300), "ghi chú")
    doc.xref_set_key(note.xref, "AA", "<</E<</S/JavaScript/JS(1)>>>>")
    path = directory / "active.pdf"
    doc.save(path)
    return path


def make_docx_like(directory: Path) -> Path:
    """Enough of an OOXML package for magic sniffing (not a real Word file)."""
    path = directory / "upload.bin"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("word/document.xml", "<w:document/>")
    return path


def make_ole_header(directory: Path) -> Path:
    """An OLE signature followed by zeros: not a compound file."""
    path = directory / "legacy.doc"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(4096))
    return path


def make_ole_random(directory: Path) -> Path:
    """An OLE signature followed by random bytes (LibreOffice made a 2-page text of it)."""
    path = directory / "random.doc"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + random.Random(11).randbytes(24 * 1024))
    return path


def make_word97_doc(directory: Path, name: str = "legacy-word.doc") -> Path:
    """A compound file holding a WordDocument stream that starts with a Word 97 FIB.

    Enough for container validation and magic sniffing, not a document Word would open."""
    fib = b"\xec\xa5\xc1\x00" + bytes(4092)
    return make_ole(directory, {"WordDocument": fib, "1Table": bytes(4096)}, name)


def make_ole(directory: Path, streams: dict[str, bytes], name: str) -> Path:
    """A version 3 compound file (512-byte sectors) with ``streams`` in its root storage.

    Streams of 4096 bytes or more only (smaller ones would belong in the mini stream):
    sector 0 is the FAT, sector 1 the directory, then each stream's sectors in turn."""
    end, free, fat_sect, no_stream = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF
    assert all(len(data) >= 4096 for data in streams.values()) and len(streams) <= 3
    fat = [fat_sect, end]
    data_sectors, entries = bytearray(), []
    for index, (stream, data) in enumerate(streams.items(), start=1):
        padded = data + bytes(-len(data) % 512)
        first = 2 + len(data_sectors) // 512
        count = len(padded) // 512
        fat += [first + i + 1 for i in range(count - 1)] + [end]
        data_sectors += padded
        sibling = index + 1 if index < len(streams) else no_stream
        entries.append(_ole_entry(stream, 2, no_stream, sibling, no_stream, first, len(data)))
    assert len(fat) <= 128
    root = _ole_entry("Root Entry", 5, no_stream, no_stream, 1 if streams else no_stream, end, 0)
    directory_sector = root + b"".join(entries)
    directory_sector += b"".join(_ole_entry("", 0, no_stream, no_stream, no_stream, 0, 0)
                                 for _ in range(4 - 1 - len(entries)))
    header = struct.pack(
        "<8s16sHHHHH6sIIIIIIIII", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", bytes(16), 0x3E, 3,
        0xFFFE, 9, 6, bytes(6), 0, 1, 1, 0, 4096, end, 0, end, 0,
    ) + struct.pack("<109I", 0, *([free] * 108))
    fat_sector = struct.pack("<128I", *(fat + [free] * (128 - len(fat))))
    path = directory / name
    path.write_bytes(header + fat_sector + directory_sector + bytes(data_sectors))
    return path


def _ole_entry(name: str, kind: int, left: int, right: int, child: int, start: int,
               size: int) -> bytes:
    raw = (name + "\0").encode("utf-16-le") if name else b""
    return struct.pack("<64sHBBIII16sIQQIQ", raw, len(raw), kind, 1, left, right, child,
                       bytes(16), 0, 0, 0, start, size)


def make_invalid_page_count_pdf(directory: Path) -> Path:
    """/Count -1: MuPDF raises 'code=7: Invalid number of pages' at page_count."""
    objects = [b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Count -1/Kids[3 0 R]>>",
               b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>"]
    path = directory / "page-count.pdf"
    path.write_bytes(_assemble_pdf(objects))
    return path


def make_page_tree_cycle_pdf(directory: Path) -> Path:
    """The page tree's only kid is the tree itself."""
    objects = [b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Count 1/Kids[2 0 R]>>"]
    path = directory / "page-cycle.pdf"
    path.write_bytes(_assemble_pdf(objects))
    return path


def _single_page_pdf(path: Path, content: bytes) -> Path:
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((10, 10), ".")  # creates a content stream we can replace
    doc.update_stream(page.get_contents()[0], content)
    doc.save(path, deflate=True)
    return path
