"""Vietnamese diacritic-insensitive search."""

from __future__ import annotations

import unicodedata

from documents.search_text import PageTextIndex, fold, search_pages

PAGES = [
    "ỦY BAN NHÂN DÂN\nTHÀNH PHỐ ĐỒNG HỚI\n",
    "BIÊN BẢN HỌP\nKỳ họp thứ nhất Hội đồng nhân dân\nBiên bản\nhọp lần hai",
    "Địa điểm: Hội trường UBND thành phố Đồng Hới, tỉnh Quảng Bình.",
]


def test_fold() -> None:
    assert fold("Biên bản họp") == "bien ban hop"
    assert fold("ĐỒNG HỚI") == "dong hoi"
    assert fold("  Nghị   quyết\n số 12 ") == "nghi quyet so 12"
    assert fold(unicodedata.normalize("NFD", "Quảng Bình")) == "quang binh"


def test_bien_ban_hop_found_without_diacritics() -> None:
    hits = search_pages(PAGES, "bien ban hop")
    assert [h.page_index for h in hits] == [1, 1]
    first = hits[0]
    assert first.snippet[first.start : first.end] == "BIÊN BẢN HỌP"
    second = hits[1]  # across a line break in the PDF text
    assert second.snippet[second.start : second.end] == "Biên bản họp"


def test_dong_hoi_found_on_each_page() -> None:
    hits = search_pages(PAGES, "dong hoi")
    assert [h.page_index for h in hits] == [0, 2]
    assert all(h.snippet[h.start : h.end].lower() == "đồng hới" for h in hits)
    # The query may also carry diacritics, or be upper case.
    assert [h.page_index for h in search_pages(PAGES, "ĐỒNG HỚI")] == [0, 2]


def test_snippet_context_and_ellipsis() -> None:
    [hit] = search_pages(PAGES, "hoi truong", context=6)
    assert hit.snippet == "…điểm: Hội trường UBND…"
    assert hit.snippet[hit.start : hit.end] == "Hội trường"
    [end] = search_pages(PAGES, "quang binh", context=6)
    assert end.snippet.startswith("…") and end.snippet.endswith("Quảng Bình.")


def test_limits_and_empty_queries() -> None:
    index = PageTextIndex(PAGES * 20)
    assert len(index.search("dong", max_hits=5)) == 5
    assert index.search("   ") == []
    assert index.search("khong co") == []
