"""Vietnamese diacritic-insensitive search over per-page text.

Delegates type without tone marks on tablets ("bien ban hop"), so both the
text and the query are folded: NFD, drop combining marks, đ→d, casefold, and
whitespace runs collapse to one space (PDF text breaks lines mid-phrase).
A position map from folded back to original text keeps snippets accented.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

_WS = re.compile(r"\s+")
_SPECIAL = {"đ": "d", "Đ": "d", "ð": "d", "Ð": "d"}


@lru_cache(maxsize=4096)
def _fold_char(ch: str) -> str:
    if ch in _SPECIAL:
        return _SPECIAL[ch]
    if ch.isspace():
        return " "
    decomposed = unicodedata.normalize("NFD", ch)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return stripped.casefold()


def fold(text: str) -> str:
    """Fold text for comparison: 'Biên bản  Họp' -> 'bien ban hop'."""
    return _fold_with_map(text)[0].rstrip()


def _fold_with_map(text: str) -> tuple[str, list[int]]:
    """Return folded text and, per folded char, the index of its source char."""
    out: list[str] = []
    src: list[int] = []
    # NFC first so a decomposed input (e.g. from macOS) maps char-by-char too.
    text = unicodedata.normalize("NFC", text)
    for i, ch in enumerate(text):
        piece = _fold_char(ch)
        if piece == " " and (not out or out[-1] == " "):
            continue  # collapse whitespace runs, drop leading space
        for c in piece:
            out.append(c)
            src.append(i)
    return "".join(out), src


@dataclass(frozen=True)
class SearchHit:
    page_index: int  # 0-based
    snippet: str  # original (accented) text around the match
    start: int  # match offsets within ``snippet``
    end: int


class PageTextIndex:
    """Folded per-page text, built once per document, searched many times."""

    def __init__(self, pages: Sequence[str]) -> None:
        self._pages = [unicodedata.normalize("NFC", p) for p in pages]
        self._folded = [_fold_with_map(p) for p in self._pages]

    def search(self, query: str, *, max_hits: int = 50, context: int = 40) -> list[SearchHit]:
        needle = fold(query).strip()
        if not needle:
            return []
        hits: list[SearchHit] = []
        for page_index, (folded, src) in enumerate(self._folded):
            pos = folded.find(needle)
            while pos != -1 and len(hits) < max_hits:
                hits.append(self._hit(page_index, src, pos, pos + len(needle), context))
                pos = folded.find(needle, pos + len(needle))
            if len(hits) >= max_hits:
                break
        return hits

    def _hit(self, page_index: int, src: list[int], start: int, end: int, ctx: int) -> SearchHit:
        text = self._pages[page_index]
        o_start, o_end = src[start], src[end - 1] + 1
        s_from = max(0, o_start - ctx)
        s_to = min(len(text), o_end + ctx)
        raw = text[s_from:s_to]
        # Collapse whitespace for display and keep the match offsets in step.
        lead = ("…" if s_from > 0 else "") + _squash(raw[: o_start - s_from]).lstrip()
        match = _squash(raw[o_start - s_from : o_end - s_from])
        tail = _squash(raw[o_end - s_from :]).rstrip() + ("…" if s_to < len(text) else "")
        return SearchHit(page_index, lead + match + tail, len(lead), len(lead) + len(match))


def _squash(s: str) -> str:
    return _WS.sub(" ", s)


def search_pages(
    pages: Sequence[str], query: str, *, max_hits: int = 50, context: int = 40
) -> list[SearchHit]:
    """One-shot search; build a PageTextIndex instead when searching repeatedly."""
    return PageTextIndex(pages).search(query, max_hits=max_hits, context=context)
