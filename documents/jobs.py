"""Job functions that run inside worker processes (never in the event loop).

Every function takes plain, picklable arguments (paths as str) and returns a
small dataclass; big outputs (images) go to disk, not through the pipe.
Exceptions propagate to the caller through the pool: DocumentRejected for
problems with the file, anything else is treated as a failure of the job.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from documents import raster
from documents.errors import DocumentRejected, RejectCode

if TYPE_CHECKING:
    import pymupdf
# PyMuPDF (quietened) is imported in the functions that use it: documents/mupdf.py.

MAX_TEXT_CHARS_PER_PAGE = 200_000
MAX_TITLE_CHARS = 300
_CACHE_SIZE = 2  # open documents kept per worker; blobs are immutable


@dataclass(frozen=True)
class PageSize:
    width: float  # points, as displayed (rotation applied)
    height: float


@dataclass(frozen=True)
class OutlineEntry:
    level: int
    title: str
    page_index: int | None  # None when the entry points nowhere


@dataclass(frozen=True)
class Inspection:
    page_count: int
    page_sizes: list[PageSize]
    outline: list[OutlineEntry]
    repaired: bool
    mupdf_warnings: str
    unreadable_pages: list[int] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PageRaster:
    page_index: int
    raster_path: str
    thumb_path: str | None
    width_px: int
    height_px: int
    downscaled: bool
    mupdf_warnings: str = ""
    reshaped: bool = False  # stretched to the aspect cap (raster.fit)


_docs: OrderedDict[str, pymupdf.Document] = OrderedDict()


def open_cached(path: str) -> pymupdf.Document:
    """Open (or reuse) a PDF. Keyed by path + size + mtime; LRU of 2."""
    st = os.stat(path)
    key = f"{path}:{st.st_size}:{st.st_mtime_ns}"
    doc = _docs.get(key)
    if doc is not None:
        _docs.move_to_end(key)
        return doc
    from documents.mupdf import pymupdf
    doc = pymupdf.open(path, filetype="pdf")
    _docs[key] = doc
    while len(_docs) > _CACHE_SIZE:
        _docs.popitem(last=False)[1].close()
    return doc


def _warnings() -> str:
    from documents.mupdf import pymupdf
    return str(pymupdf.TOOLS.mupdf_warnings(reset=True) or "")


def inspect_pdf(path: str, max_pages: int, max_outline: int = 5000) -> Inspection:
    """Open, check encryption and page count, collect sizes/outline/damage.

    Only the file can make this fail: whatever MuPDF raises while reading the
    structure (``code=7: Invalid number of pages`` at ``page_count``, a broken
    page tree, ...) means the file is damaged, never an internal error."""
    _warnings()  # reset: the buffer is per process
    try:
        return _inspect(path, max_pages, max_outline)
    except (DocumentRejected, MemoryError):
        raise
    except Exception as exc:  # MuPDF raises plain RuntimeError/FzError for junk
        detail = f"{type(exc).__name__}: {exc}"[:500]
        raise DocumentRejected(RejectCode.DAMAGED, detail) from None


def _inspect(path: str, max_pages: int, max_outline: int) -> Inspection:
    doc = open_cached(path)
    if doc.needs_pass:
        raise DocumentRejected(RejectCode.ENCRYPTED)
    count = doc.page_count
    if count == 0:
        raise DocumentRejected(RejectCode.DAMAGED, f"no pages; {_warnings()}")
    if count > max_pages:
        raise DocumentRejected(RejectCode.TOO_MANY_PAGES, pages=count, limit=max_pages)
    sizes, unreadable = _page_sizes(doc)
    if len(unreadable) == count:
        raise DocumentRejected(RejectCode.DAMAGED, "no readable page")
    return Inspection(
        page_count=count,
        page_sizes=sizes,
        outline=_outline(doc, max_outline),
        repaired=bool(doc.is_repaired),
        mupdf_warnings=_warnings(),
        unreadable_pages=unreadable,
        metadata=_metadata(doc),
    )


def _metadata(doc: pymupdf.Document) -> dict[str, str]:
    try:
        return {k: str(v)[:MAX_TITLE_CHARS] for k, v in (doc.metadata or {}).items() if v}
    except Exception:
        return {}  # a broken /Info must not sink the document


def _page_sizes(doc: pymupdf.Document) -> tuple[list[PageSize], list[int]]:
    from documents.mupdf import pymupdf
    a4 = pymupdf.paper_rect("a4")
    sizes: list[PageSize] = []
    unreadable: list[int] = []
    for i in range(doc.page_count):
        try:
            r = doc[i].rect
            sizes.append(PageSize(round(r.width, 2), round(r.height, 2)))
        except Exception:
            unreadable.append(i)  # rendered as a placeholder later
            sizes.append(PageSize(a4.width, a4.height))
    return sizes, unreadable


def _outline(doc: pymupdf.Document, limit: int) -> list[OutlineEntry]:
    try:
        toc = doc.get_toc(simple=True)
    except Exception:
        return []  # a broken outline must not sink the document
    out: list[OutlineEntry] = []
    for level, title, page in toc[:limit]:
        title = " ".join(str(title).split())[:MAX_TITLE_CHARS]
        page_index = page - 1 if 1 <= page <= doc.page_count else None
        out.append(OutlineEntry(int(level), title, page_index))
    return out


def render_page(
    path: str,
    page_index: int,
    raster_path: str,
    thumb_path: str | None,
    spec: raster.RasterSpec,
    thumb_width: int = 200,
    thumb_quality: int = 70,
    tag: str | None = None,
) -> PageRaster:
    """Render one page to a JPEG (and thumbnail) on disk.

    ``tag`` names the temporary files (raster.temp_for), which the caller removes
    if this job is killed mid-write."""
    _warnings()
    page = open_cached(path)[page_index]
    rendered = raster.render_image(page, spec)
    img = rendered.image
    _write(raster_path, raster.encode_jpeg(img, spec.quality), tag)
    if thumb_path:
        thumb = raster.thumbnail(img, raster.thumb_spec(thumb_width, thumb_quality))
        _write(thumb_path, raster.encode_jpeg(thumb, thumb_quality), tag)
    return PageRaster(
        page_index, raster_path, thumb_path, img.width, img.height, rendered.plan.downscaled,
        _warnings(), rendered.plan.reshaped,
    )  # fmt: skip


def write_placeholder(
    raster_path: str,
    thumb_path: str | None,
    width_pt: float,
    height_pt: float,
    spec: raster.RasterSpec,
    thumb_width: int = 200,
    tag: str | None = None,
) -> tuple[int, int]:
    """The placeholder image (and thumbnail) of a page that could not be rendered, sized
    like the page would have been (within the caps). Returns its pixel size."""
    plan = raster.fit(width_pt, height_pt, spec)
    _write(raster_path, raster.placeholder_jpeg(plan.width_px, plan.height_px), tag)
    if thumb_path:
        thumb = raster.fit(plan.width_px, plan.height_px, raster.thumb_spec(thumb_width))
        _write(thumb_path, raster.placeholder_jpeg(thumb.width_px, thumb.height_px), tag)
    return plan.width_px, plan.height_px


def placeholder_view(width_pt: float, height_pt: float, spec: raster.RasterSpec) -> bytes:
    """A placeholder JPEG for a page view that could not be rendered."""
    plan = raster.fit(width_pt, height_pt, spec)
    return raster.placeholder_jpeg(plan.width_px, plan.height_px)


def _write(path: str, data: bytes, tag: str | None) -> None:
    raster.write_atomic(path, data, raster.temp_for(path, tag) if tag else None)


def extract_text(path: str, page_indices: list[int]) -> tuple[dict[int, str], list[int]]:
    """Plain text per page for search, and the pages whose extraction failed."""
    doc = open_cached(path)
    out: dict[int, str] = {}
    failed: list[int] = []
    for i in page_indices:
        try:
            out[i] = doc[i].get_text("text")[:MAX_TEXT_CHARS_PER_PAGE]
        except Exception:
            out[i] = ""
            failed.append(i)
    _warnings()
    return out, failed
