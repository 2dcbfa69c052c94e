"""Watermark: Vietnamese text survives extraction, on every page and rotation."""

from __future__ import annotations

import pymupdf
import pytest

from documents.watermark import apply_watermark, watermark_pdf

WM = "Nguyễn Văn Ánh – Phường Đồng Phú – 27/11/2026 10:00"


def pdf(rotations: tuple[int, ...] = (0,), size: tuple[float, float] = (595, 842)) -> bytes:
    doc = pymupdf.open()
    for rot in rotations:
        page = doc.new_page(width=size[0], height=size[1])
        page.set_rotation(rot)
    return doc.tobytes()


def test_watermark_text_extracts_with_diacritics() -> None:
    out = pymupdf.open("pdf", watermark_pdf(pdf(), [WM]))
    text = out[0].get_text()
    assert text.count(WM) >= 2  # repeated, not a single stamp
    fonts = {f[3] for f in out[0].get_fonts(full=True)}
    assert any("Noto Sans" in name for name in fonts)


def test_multiple_lines_and_every_page() -> None:
    lines = [WM, "Phòng Tư pháp – Bản sao số 7"]
    out = pymupdf.open("pdf", watermark_pdf(pdf((0, 0, 0)), lines))
    for page in out:
        text = page.get_text()
        assert all(line in text for line in lines)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_pages(rotation: int) -> None:
    out = pymupdf.open("pdf", watermark_pdf(pdf((rotation,)), [WM]))
    assert WM in out[0].get_text()


def test_is_diagonal_and_transparent() -> None:
    out = pymupdf.open("pdf", watermark_pdf(pdf(), [WM], opacity=0.2))
    page = out[0]
    line = next(ln for b in page.get_text("dict")["blocks"] for ln in b.get("lines", []))
    dx, dy = line["dir"]
    assert abs(dx) > 0.3 and abs(dy) > 0.3  # neither horizontal nor vertical
    # Stamp is semi-transparent: its graphics state carries the opacity.
    assert "/ca .2" in "".join(
        page.parent.xref_object(x) for x in range(1, page.parent.xref_length())
    )


def test_apply_watermark_on_open_page_and_empty_lines() -> None:
    doc = pymupdf.open("pdf", pdf((0, 0), size=(842, 595)))
    apply_watermark(doc[0], [WM])
    apply_watermark(doc[1], ["  "])  # nothing to write: no-op, no error
    assert WM in doc[0].get_text() and doc[1].get_text().strip() == ""
    with pytest.raises(ValueError):
        apply_watermark(doc[0], [WM], opacity=0)
