"""Page 1 at every width a tablet asks for, made from the one image that crossed a cascade
link (server/cascade/topic/documents_mirror.py): until the node has the document's PDF, a
tablet whose screen asks for 1280 or 2560 px sees page 1 too, not a stand-in. A worker job
(documents/worker_pool.py): the web process never decodes an image from another server.
The variants are removed once the node has rendered the page from the PDF itself."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from documents import raster

MAX_SIDE_PX = 8192  # the image the owner rendered: 1536 px wide by default


def page1_variants(source: str, derived: str, widths: list[int], thumb_width: int,
                   quality: int) -> list[str]:
    """Write ``w<width>/0000.jpg`` for each width and ``thumbs/0000.jpg`` under
    ``derived``; returns the paths written. Raises ValueError for an implausible image."""
    out = Path(derived)
    written = []
    with Image.open(source) as img:
        if img.format != "JPEG" or max(img.size) > MAX_SIDE_PX or min(img.size) < 16:
            raise ValueError(f"not a page image: {img.format} {img.size}")
        img.load()
        rgb = img.convert("RGB")
        for width in widths:
            height = max(1, round(rgb.height * width / rgb.width))
            resized = rgb.resize((width, height), Image.Resampling.LANCZOS)
            path = out / f"w{width}" / "0000.jpg"
            raster.write_atomic(path, raster.encode_jpeg(resized, quality))
            written.append(str(path))
        thumb = rgb.resize((thumb_width, max(1, round(rgb.height * thumb_width / rgb.width))),
                           Image.Resampling.BILINEAR, reducing_gap=2.0)
        path = out / "thumbs" / "0000.jpg"
        raster.write_atomic(path, raster.encode_jpeg(thumb, 70))
    return written


# What page 1 may cost on a link, beside the PDF: a share of the file, so that the document's
# bytes on a link stay within 1.05 of its size (issue 13: `doc_link_bytes_ratio` <= 1.1).
PREVIEW_SHARE = 0.05
PREVIEW_STEPS = ((1536, 75), (1280, 65), (1024, 60), (768, 50))  # (width, JPEG quality)


def link_preview(source: str, dest: str, max_bytes: int) -> str | None:
    """Page 1 for a cascade link from the page's rendered image: the largest of
    PREVIEW_STEPS whose JPEG fits `max_bytes`, written to `dest`; None when even the
    smallest does not (a page of photographs in a small file: then page 1 waits for the
    PDF, which is small too). A worker job."""
    with Image.open(source) as img:
        img.load()
        rgb = img.convert("RGB")
    for width, quality in PREVIEW_STEPS:
        width = min(width, rgb.width)
        height = max(1, round(rgb.height * width / rgb.width))
        sized = rgb if width == rgb.width else rgb.resize((width, height),
                                                          Image.Resampling.LANCZOS)
        data = raster.encode_jpeg(sized, quality)
        if len(data) <= max_bytes:
            raster.write_atomic(Path(dest), data)
            return dest
    return None
