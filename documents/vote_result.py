"""A closed vote's result ("kết quả biểu quyết") as a one-page PDF, signed like the minutes.

The lines are the minutes' own (documents.minutes: base, options, outcome), so a signed
result and the minutes say the same; the fonts are embedded the same way (Story + Archive).
"""

from __future__ import annotations

import io
from datetime import date
from html import escape

import pymupdf

from rooms.vote_record import VoteRecord

from . import fonts
from .fonts import FontStyle
from .minutes import (
    BODY,
    PAGE,
    format_date_line,
    vote_base_line,
    vote_option_line,
    vote_outcome_line,
)

_CSS = """
* {font-family: doc; font-size: 13pt; line-height: 1.3;}
p {margin: 0 0 5pt 0; text-align: justify;}
h1 {font-size: 14pt; font-weight: bold; text-align: center; margin: 0 0 4pt 0;}
.c {text-align: center;} .b {font-weight: bold;} .i {font-style: italic;}
.r {text-align: right;} .sig {margin-top: 18pt; text-align: right;}
.name {margin-top: 56pt; text-align: right; font-weight: bold;}
"""


def _html(record: VoteRecord) -> str:
    vote = record.result
    unit = "phiếu" if vote.election else "đại biểu"
    lines = [
        f'<p class="b">{escape(record.unit.upper())}</p>',
        f'<p class="r i">{escape(format_date_line(record.place_name, date.fromisoformat(record.issued_on_iso)))}</p>',
        "<h1>KẾT QUẢ BIỂU QUYẾT</h1>",
        f'<p class="c">{escape(record.meeting_title)}</p>',
        f'<p class="b">{escape(vote.question)}</p>',
        f"<p>{escape(vote_base_line(vote))}</p>",
    ]
    if vote.nodes_note:
        lines.append(f"<p>{escape(vote.nodes_note)}</p>")
    lines += [f"<p>- {escape(vote_option_line(o, vote.eligible, unit))};</p>" for o in vote.options]
    lines += [f'<p class="b">{escape(vote_outcome_line(vote))}</p>',
              '<p class="sig b">CHỦ TRÌ</p>', f'<p class="name">{escape(record.chair)}</p>']
    return "\n".join(lines)


def render_vote_result(record: VoteRecord, *, prefer_serif: bool = True) -> bytes:
    """Typeset one vote's result on A4 (one page: a result never needs more). Blocking."""
    family = fonts.document_family(prefer_serif)
    archive = pymupdf.Archive()
    faces = ""
    for style, (weight, slant) in {FontStyle.REGULAR: ("normal", "normal"),
                                   FontStyle.BOLD: ("bold", "normal"),
                                   FontStyle.ITALIC: ("normal", "italic")}.items():
        archive.add(family.buffer(style), f"{style.value}.ttf")
        faces += (f"@font-face {{font-family: doc; src: url({style.value}.ttf); "
                  f"font-weight: {weight}; font-style: {slant};}}")
    story = pymupdf.Story(_html(record), user_css=faces + _CSS, archive=archive)
    buf = io.BytesIO()
    writer = pymupdf.DocumentWriter(buf)
    more = 1
    pages = 0
    while more and pages < 5:  # a long list of candidates may need a second page
        device = writer.begin_page(PAGE)
        more, _ = story.place(BODY)
        story.draw(device)
        writer.end_page()
        pages += 1
    writer.close()
    doc = pymupdf.open("pdf", buf.getvalue())
    try:
        doc.set_metadata({"title": f"Kết quả biểu quyết - {record.result.question}"[:300],
                          "producer": "Hopso"})
        doc.subset_fonts()
        return doc.tobytes(garbage=3, deflate=True)
    finally:
        doc.close()
