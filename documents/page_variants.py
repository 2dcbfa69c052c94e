"""Page 1 as it crosses a cascade link ahead of its PDF (server/cascade/topic/documents.py):
the owner's rendered page, made to fit a share of the file's size. A worker job
(documents/worker_pool.py). At the node that receives it, that one image is served for every
width a tablet asks and as page 1's thumbnail until the node has rendered the page from the
PDF itself (server/documents/routes.py): no resize there."""

from __future__ import annotations

from pathlib import Path

from documents import raster

# What page 1 may cost on a link, beside the PDF: a share of the file, so that the document's
# bytes on a link stay within 1.05 of its size (issue 13: `doc_link_bytes_ratio` <= 1.1).
PREVIEW_SHARE = 0.05
PREVIEW_STEPS = ((1536, 75), (1280, 65), (1024, 60), (768, 50))  # (width, JPEG quality)


def link_preview(source: str, dest: str, max_bytes: int) -> str | None:
    """Page 1 for a cascade link from the page's rendered image: the largest of
    PREVIEW_STEPS whose JPEG fits `max_bytes`, written to `dest`; None when even the
    smallest does not (a page of photographs in a small file: then page 1 waits for the
    PDF, which is small too). A worker job."""
    from PIL import Image  # here: the server process imports this module only to name the job

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
