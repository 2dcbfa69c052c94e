"""Carrying annotations to a new document version: page mapping by text, flags for review."""

from __future__ import annotations

import unicodedata
import uuid
from typing import Any

from documents.annotations import Annotation, parse_annotation
from documents.version_mapping import (
    FlagReason,
    map_annotations_to_version,
    map_pages,
    normalise_page_text,
)

A4 = (595.0, 842.0)


def _ink(page: int) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "document_id": "doc-1", "page": page, "author_id": "alice",
            "kind": "ink", "data": {"points": [[10, 10, 0.5], [100, 120]], "color": "#FF0000",
                                    "width": 2}}


OLD = ["Trang một: Báo cáo tình hình", "Trang hai: Dự toán ngân sách", "Trang ba: Phụ lục", ""]


def test_map_pages() -> None:
    # Page 1 moved to index 2 (a page was inserted), page 2 changed, page 3 blank.
    new = ["Trang một:  báo cáo\ntình hình", "Trang mới chèn", "Trang hai: Dự toán ngân sách", ""]
    m = map_pages(OLD, new)
    assert [(x.new_page, x.reason) for x in m] == [
        (0, None),
        (2, None),
        (2, FlagReason.PAGE_TEXT_CHANGED),
        (3, FlagReason.NO_TEXT),
    ]


def test_normalisation_handles_decomposed_vietnamese() -> None:
    nfd = unicodedata.normalize("NFD", "Dự toán NGÂN SÁCH")
    assert normalise_page_text(nfd) == normalise_page_text("dự  toán ngân\nsách")


def test_map_annotations_to_version() -> None:
    def on(page: int) -> Annotation:
        return parse_annotation(_ink(page), A4)

    anns = [on(0), on(1), on(2)]
    new = ["Trang hai: Dự toán ngân sách", "Trang một: Báo cáo tình hình"]  # swapped, page 3 gone
    out = map_annotations_to_version(anns, OLD, new, new_document_id="doc-2")
    assert [(a.page, a.flagged, a.flag_reason) for a in out] == [
        (1, False, None),
        (0, False, None),
        (1, True, "page_removed"),
    ]
    assert all(a.document_id == "doc-2" and a.id == b.id for a, b in zip(out, anns))
    small = map_annotations_to_version([on(0)], OLD, OLD, new_page_sizes=[(50.0, 50.0)] * 4)
    assert small[0].flagged and small[0].flag_reason == "out_of_page"
    # A flag awaiting review survives a later clean mapping.
    again = map_annotations_to_version(out[2:], ["Trang hai: Dự toán ngân sách"] * 2, new)
    assert again[0].flagged and again[0].flag_reason == "page_removed"
