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
