"""Export: real PDF annotations, Vietnamese notes, flatten, watermark."""

from __future__ import annotations

import uuid
from typing import Any

import pymupdf
import pytest

from documents.annotations import Annotation, parse_annotation
from documents.export import export_annotated_pdf

NOTE_TEXT = "Ý kiến: đồng ý với phương án"
WM = "Nguyễn Văn Ánh – Phường Đồng Phú – 27/11/2026 10:00"


def source_pdf(rotations: tuple[int, ...] = (0, 0)) -> bytes:
    doc = pymupdf.open()
    for rot in rotations:
        page = doc.new_page()
        page.set_rotation(rot)
        page.insert_text(pymupdf.Point(72, 72) * page.derotation_matrix, "Agenda item", rotate=rot)
    return doc.tobytes()


def make(
    kind: str, data: dict[str, Any], page: int = 0, size: tuple[float, float] = (595, 842)
) -> Annotation:
    raw = {
        "id": str(uuid.uuid4()),
        "document_id": "d",
        "page": page,
        "author_id": "alice",
        "kind": kind,
        "data": data,
    }
    return parse_annotation(raw, size)


def sample() -> list[Annotation]:
    return [
        make(
            "ink", {"points": [[50, 100], [150, 120], [250, 100]], "color": "#ff0000", "width": 3}
        ),
        make(
            "highlighter", {"points": [[60, 300], [300, 300]], "color": "#ffeb3b", "opacity": 0.35}
        ),
        make("highlighter", {"rects": [[70, 60, 160, 76]], "color": "#00ff00"}),
        make("note", {"x": 60, "y": 400, "text": NOTE_TEXT, "color": "#0000ff", "box_width": 300}),
    ]


def by_type(items: list[pymupdf.Annot]) -> dict[str, list[pymupdf.Annot]]:
    out: dict[str, list[pymupdf.Annot]] = {}
    for a in items:
        out.setdefault(a.type[1], []).append(a)
    return out


def test_real_annotations_with_colours_and_opacity() -> None:
    anns = sample()
    out = export_annotated_pdf(source_pdf(), anns)
    doc = pymupdf.open("pdf", out)
    page = doc[0]  # keep a reference: annots die with their page object
    got = by_type(list(page.annots()))
    assert {k: len(v) for k, v in got.items()} == {"Ink": 2, "Highlight": 1, "FreeText": 1}
    pen = next(a for a in got["Ink"] if a.opacity < 0)  # opacity -1: fully opaque
    assert pen.colors["stroke"] == pytest.approx([1, 0, 0]) and pen.border[
        "width"
    ] == pytest.approx(3)
    marker = next(a for a in got["Ink"] if a.opacity > 0)
    assert marker.opacity == pytest.approx(0.35, abs=0.01)
    assert got["Highlight"][0].colors["stroke"] == pytest.approx([0, 1, 0])
    # Our ids and authors travel in /NM and /T.
    names = {doc.xref_get_key(a.xref, "NM")[1] for a in page.annots()}
    assert {a.id for a in anns} <= names
    assert all(doc.xref_get_key(a.xref, "T")[1] == "alice" for a in page.annots())


def test_note_text_extracts_exactly_in_embedded_noto_sans() -> None:
    out = export_annotated_pdf(source_pdf(), sample())
    page = pymupdf.open("pdf", out)[0]
    note = by_type(list(page.annots()))["FreeText"][0]
    assert note.info["content"] == NOTE_TEXT
    assert page.get_text(clip=note.rect).strip() == NOTE_TEXT
    spans = [
        s for b in page.get_text("dict")["blocks"] for ln in b.get("lines", []) for s in ln["spans"]
        if "kiến" in s["text"]
    ]  # fmt: skip
    # One font for the whole line: no glyph-by-glyph fallback mixing.
    assert spans and {s["font"] for s in spans} == {"Noto Sans Regular"}


def test_long_note_grows_and_stays_on_page() -> None:
    text = " ".join([NOTE_TEXT] * 40)
    out = export_annotated_pdf(
        source_pdf(), [make("note", {"x": 400, "y": 780, "text": text, "box_width": 180})]
    )
    page = pymupdf.open("pdf", out)[0]
    note = next(page.annots())
    assert note.rect.height > 100 and page.rect.contains(note.rect)
    assert " ".join(page.get_text(clip=note.rect).split()) == text


def test_rotated_pages_keep_text_upright() -> None:
    anns = [
        make(
            "note",
            {"x": 60, "y": 100, "text": NOTE_TEXT, "box_width": 300},
            page=i,
            size=(842, 595),
        )
        for i in range(2)
    ]
    out = export_annotated_pdf(source_pdf((90, 270)), anns)
    doc = pymupdf.open("pdf", out)
    for page in doc:
        lines = {
            "".join(s["text"] for s in ln["spans"]): ln["dir"]
            for b in page.get_text("dict")["blocks"]
            for ln in b.get("lines", [])
        }
        # Same reading direction as the page's own upright text.
        assert lines[NOTE_TEXT] == lines["Agenda item"]
        assert page.rotation in (90, 270) and lines[NOTE_TEXT] != (1.0, 0.0)


def test_flatten_bakes_everything_into_content() -> None:
    out = export_annotated_pdf(source_pdf(), sample(), flatten=True)
    page = pymupdf.open("pdf", out)[0]
    assert list(page.annots()) == []
    assert NOTE_TEXT in page.get_text()
    assert len(page.get_drawings()) >= 2  # the strokes are now page content


def test_watermark_on_export() -> None:
    out = export_annotated_pdf(source_pdf(), sample(), watermark_lines=[WM])
    doc = pymupdf.open("pdf", out)
    assert all(WM in p.get_text() for p in doc)
    assert len(list(doc[0].annots())) == 4


def test_bad_input() -> None:
    with pytest.raises(ValueError):
        export_annotated_pdf(source_pdf(), [make("ink", {"points": [[1, 1]]}, page=5)])
    enc = pymupdf.open("pdf", source_pdf())
    locked = enc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="u", owner_pw="o")
    with pytest.raises(ValueError):
        export_annotated_pdf(locked, [])


def test_single_point_tap_still_draws() -> None:
    out = export_annotated_pdf(source_pdf(), [make("ink", {"points": [[100, 100]], "width": 6})])
    doc = pymupdf.open("pdf", out)
    assert len(list(doc[0].annots())) == 1
