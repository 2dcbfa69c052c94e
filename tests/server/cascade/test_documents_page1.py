"""Page 1 as it crosses a link ahead of its PDF (documents/page_variants.py), and the
documents entry's checks."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from server.cascade.schemas import NodeError, validate
from server.cascade.topic.documents import DocumentData


def jpeg(path: Path, size: tuple[int, int], kind: str = "JPEG") -> Path:
    buf = io.BytesIO()
    Image.new("RGB", size, (250, 250, 250)).save(buf, kind)
    path.write_bytes(buf.getvalue())
    return path


def test_a_documents_entry_with_impossible_pages_or_files_is_refused() -> None:
    """What a parent sends is checked before a node writes a row of it."""
    base = {"document": 1, "title": "Tờ trình", "filename": "to-trinh.pdf",
            "confidential": False, "published": True, "version": 1,
            "file": {"sha256": "a" * 64, "size": 10}, "page_count": 1,
            "page_sizes": [[595.0, 842.0]]}
    assert validate(DocumentData, base).page_sizes == [[595.0, 842.0]]
    for change in ({"page_sizes": [[1.0]]}, {"page_sizes": [[-5.0, 3.0]]},
                   {"page_sizes": [[1e30, 3.0]]}, {"file": {"sha256": "../x", "size": 10}},
                   {"file": {"sha256": "a" * 64, "size": 0}}, {"first_page": "a" * 64},
                   {"document": 0}, {"title": ""}, {"version": -1}, {"extra": 1}):
        with pytest.raises(NodeError):
            validate(DocumentData, {**base, **change})


def test_page_1_crosses_a_link_only_within_its_share_of_the_file(tmp_path: Path) -> None:
    """A plain page is sent at full width; a page of noise (photographs) is made smaller to
    fit its share, or not sent at all: a document's bytes on a link stay near its size
    (the bench's 1 MB PDF of noise pages crossed at 1.69 times its size before)."""
    from documents.page_variants import PREVIEW_SHARE, link_preview

    plain = jpeg(tmp_path / "plain.jpg", (1536, 2172))
    out = tmp_path / "link.jpg"
    assert link_preview(str(plain), str(out), int(5_000_000 * PREVIEW_SHARE)) == str(out)
    with Image.open(out) as img:
        assert img.width == 1536
    noisy = tmp_path / "noise.jpg"
    Image.frombytes("RGB", (1536, 2172), os.urandom(1536 * 2172 * 3)).save(
        noisy, "JPEG", quality=85)
    budget = int(5_000_000 * PREVIEW_SHARE)  # 250 kB of a 5 MB file
    made = link_preview(str(noisy), str(out), budget)
    if made is not None:
        assert out.stat().st_size <= budget
        with Image.open(out) as img:
            assert img.width < 1536
    assert link_preview(str(noisy), str(tmp_path / "none.jpg"), 20_000) is None
    assert not (tmp_path / "none.jpg").exists()
