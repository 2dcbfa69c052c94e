"""Carrying annotations over to a new version of a document.

Each old page goes to the same index if its text is unchanged, else to the nearest new page
with identical text (a moved page), else it stays in place flagged for its author's review;
no annotation is silently dropped.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum

from .annotations import Annotation, AnnotationError, PageSize, parse_annotation


class FlagReason(str, Enum):
    PAGE_TEXT_CHANGED = "page_text_changed"
    PAGE_REMOVED = "page_removed"
    NO_TEXT = "page_has_no_text"  # scanned page: nothing to compare, so unverified
    OUT_OF_PAGE = "out_of_page"  # the new page is smaller and the shape no longer fits


@dataclass(frozen=True)
class PageMapping:
    old_page: int
    new_page: int
    reason: FlagReason | None  # None: content verified identical


_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\ufeff"))
_SPACE_RE = re.compile(r"\s+")


def normalise_page_text(text: str) -> str:
    """Compare-form of extracted text: NFC (producers differ on Vietnamese
    composed/decomposed marks), casefolded, whitespace dropped entirely (line
    breaks and word spacing differ between extractions of the same page)."""
    text = unicodedata.normalize("NFC", text).translate(_INVISIBLE).casefold()
    return _SPACE_RE.sub("", text)


def map_pages(old_texts: Sequence[str], new_texts: Sequence[str]) -> list[PageMapping]:
    """Where each old page went: same index if unchanged, else the nearest new
    page with identical text (page moved), else flagged in place."""
    if not new_texts:
        raise ValueError("the new version has no pages")
    old_n = [normalise_page_text(t) for t in old_texts]
    new_n = [normalise_page_text(t) for t in new_texts]
    last = len(new_n) - 1
    out = []
    for page, text in enumerate(old_n):
        fallback = min(page, last)
        if not text:
            out.append(PageMapping(page, fallback, FlagReason.NO_TEXT))
            continue
        if page <= last and new_n[page] == text:
            out.append(PageMapping(page, page, None))
            continue
        hits = [q for q, t in enumerate(new_n) if t == text]
        if hits:
            out.append(PageMapping(page, min(hits, key=lambda q: (abs(q - page), q)), None))
        else:
            reason = FlagReason.PAGE_TEXT_CHANGED if page <= last else FlagReason.PAGE_REMOVED
            out.append(PageMapping(page, fallback, reason))
    return out


def map_annotations_to_version(
    annotations: Sequence[Annotation],
    old_texts: Sequence[str],
    new_texts: Sequence[str],
    *,
    new_document_id: str | None = None,
    new_page_sizes: Sequence[PageSize] | None = None,
) -> list[Annotation]:
    """Carry annotations over to a new document version.

    Every annotation is kept (nobody's notes silently vanish); those whose
    page could not be verified come back ``flagged`` with a ``flag_reason``
    so the UI can ask the author to review them.
    """
    mapping = map_pages(old_texts, new_texts)
    out = []
    for ann in annotations:
        if not 0 <= ann.page < len(mapping):
            raise ValueError(f"annotation {ann.id} is on page {ann.page}, beyond the old version")
        m = mapping[ann.page]
        reason = m.reason.value if m.reason else None
        if reason is None and new_page_sizes is not None:
            try:
                parse_annotation(ann.to_dict(), new_page_sizes[m.new_page])
            except AnnotationError:
                reason = FlagReason.OUT_OF_PAGE.value
        # A flag still awaiting review survives a clean mapping.
        reason = reason or ann.flag_reason
        moved = replace(ann, document_id=new_document_id or ann.document_id, page=m.new_page)
        out.append(replace(moved, flagged=ann.flagged or reason is not None, flag_reason=reason))
    return out
