"""What importing the app costs every server process: libraries only some paths use are
imported by those paths, not at start (docs/architecture.md (Start-up))."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# PyMuPDF, pikepdf, Pillow, olefile: document workers and in-thread typesetting; asn1crypto
# and pyHanko: signing; cffi/pycparser: only when the C fan-out is not built.
DEFERRED = ("pymupdf", "pikepdf", "PIL", "olefile", "asn1crypto", "pyhanko", "pycparser")


def test_importing_the_app_leaves_the_document_and_signing_libraries_unimported() -> None:
    probe = ("import json, sys, server.app\n"
             f"print(json.dumps(sorted(m for m in {DEFERRED!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    assert json.loads(out.stdout.splitlines()[-1]) == []
