"""Worker job: export an annotated copy of a PDF to a file (runs in the worker pool)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from documents import raster
from documents.annotations import Annotation
from documents.export import export_annotated_pdf


def export_to_file(src: str, annotations: list[dict[str, Any]], flatten: bool,
                   watermark_lines: list[str], dst: str) -> int:
    """Write ``src`` with ``annotations`` (Annotation.to_dict form) to ``dst``; returns bytes."""
    anns = [Annotation.from_dict(a) for a in annotations]
    data = export_annotated_pdf(Path(src).read_bytes(), anns, flatten=flatten,
                                watermark_lines=watermark_lines or None)
    raster.write_atomic(dst, data)
    return len(data)
