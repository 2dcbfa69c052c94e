"""Worker job: export an annotated copy of a PDF to a file (runs in the worker pool)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from documents.annotations import Annotation


def export_to_file(src: str, annotations: list[dict[str, Any]], flatten: bool,
                   watermark_lines: list[str], dst: str) -> int:
    """Write ``src`` with ``annotations`` (Annotation.to_dict form) to ``dst``; returns bytes.

    ``dst`` is a private path the caller owns (and passes as the pool's cleanup): it is
    written in place, so a killed worker leaves nothing but ``dst`` itself."""
    from documents.export import export_annotated_pdf  # PyMuPDF: only the worker needs it
    anns = [Annotation.from_dict(a) for a in annotations]
    data = export_annotated_pdf(Path(src).read_bytes(), anns, flatten=flatten,
                                watermark_lines=watermark_lines or None)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    Path(dst).write_bytes(data)
    return len(data)
