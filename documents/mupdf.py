"""PyMuPDF, quietened: MuPDF's errors and warnings go to its warnings buffer (read per job by
documents/jobs.py), not to stderr, where a worker has no terminal worth writing to.

Imported where PyMuPDF is used (``from documents.mupdf import pymupdf`` in the function), never
at module level: importing PyMuPDF costs ~0.15 s of CPU, paid by every server process that
imports a module naming a job, though only the workers and a few in-process renders use it.
"""

from __future__ import annotations

import pymupdf

__all__ = ["pymupdf"]

pymupdf.TOOLS.mupdf_display_errors(False)
pymupdf.TOOLS.mupdf_display_warnings(False)
