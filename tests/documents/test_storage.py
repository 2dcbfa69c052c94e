"""Content-addressed blob store and upload-name handling."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from documents.errors import DocumentRejected, RejectCode
from documents.storage import BlobStore, content_disposition, sanitize_display_name


def test_put_bytes_is_content_addressed_and_sharded(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = b"%PDF-1.7 hello"
    blob = store.put_bytes(data, "Biên bản.pdf")
    digest = hashlib.sha256(data).hexdigest()
    assert blob.digest == digest and blob.size == len(data) and not blob.duplicate
    assert blob.path == tmp_path / "blobs" / digest[:2] / digest[2:4] / digest
    assert blob.path.read_bytes() == data
    assert blob.display_name == "Biên bản.pdf"
    assert not os.access(blob.path, os.W_OK) or os.geteuid() == 0  # stored read-only
    assert oct(blob.path.stat().st_mode & 0o777) == "0o444"


def test_same_bytes_twice_is_a_duplicate(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    first = store.put_bytes(b"same", "a.pdf")
    second = store.put_stream(iter([b"sa", b"me"]), original_name="b.pdf")
    assert second.digest == first.digest and second.duplicate and second.path == first.path
    assert second.display_name == "b.pdf"  # names are per upload, not per blob
    assert list((tmp_path / "tmp").iterdir()) == []  # no temp files left behind


def test_size_limit_enforced_while_streaming(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(100):
            yield b"x" * 1024

    with pytest.raises(DocumentRejected) as info:
        store.put_stream(chunks(), max_bytes=10 * 1024)
    assert info.value.code is RejectCode.TOO_LARGE
    assert list((tmp_path / "tmp").iterdir()) == []
    assert list((tmp_path / "blobs").iterdir()) == []


def test_writer_abort_on_exception(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(RuntimeError), store.writer() as writer:
        writer.write(b"partial")
        raise RuntimeError("client disconnected")
    assert list((tmp_path / "tmp").iterdir()) == []


def test_digests_are_validated(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    for bad in ["../../etc/passwd", "A" * 64, "abc", "0" * 63 + "/"]:
        with pytest.raises(ValueError):
            store.path_for(bad)
    with pytest.raises(ValueError):
        store.derived_dir("0" * 64, "../x")


def test_open_exists_delete(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, durable=False)
    blob = store.put_bytes(b"data")
    derived = store.derived_dir(blob.digest)
    derived.mkdir(parents=True)
    (derived / "0000.jpg").write_bytes(b"x")
    with store.open(blob.digest) as fh:
        assert fh.read() == b"data"
    assert store.exists(blob.digest)
    assert store.delete(blob.digest) and not store.exists(blob.digest) and not derived.exists()
    assert not store.delete(blob.digest)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Biên bản họp.pdf", "Biên bản họp.pdf"),
        ("C:\\fakepath\\Tờ trình.pdf", "Tờ trình.pdf"),
        ("../../etc/passwd", "passwd"),
        ("bad\u202egpj.exe", "badgpj.exe"),  # bidi override removed
        ("tab\tand\nnewline.pdf", "tab and newline.pdf"),
        (".hidden.pdf", "hidden.pdf"),
        ("", "tai-lieu.pdf"),
        (None, "tai-lieu.pdf"),
        ("...", "tai-lieu.pdf"),
    ],
)
def test_display_names(raw: str | None, expected: str) -> None:
    assert sanitize_display_name(raw) == expected


def test_long_names_keep_their_extension() -> None:
    name = sanitize_display_name("Nghị quyết " * 40 + ".docx")
    assert len(name) <= 180 and name.endswith(".docx")


def test_content_disposition_has_ascii_fallback() -> None:
    header = content_disposition('Biên bản "Đà Nẵng".pdf')
    assert header.startswith('attachment; filename="Bien ban _Da Nang_.pdf"; ')
    assert "filename*=UTF-8''Bi%C3%AAn%20b%E1%BA%A3n" in header
    assert header.isascii() and "\n" not in header
    assert content_disposition("a.pdf", inline=True).startswith("inline;")


def test_purge_temp_removes_stale_uploads(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    stale = tmp_path / "tmp" / "upload-stale"
    stale.write_bytes(b"x")
    os.utime(stale, (0, 0))
    writer = store.writer()  # an upload in progress is recent, so it stays
    assert store.purge_temp() == 1 and not stale.exists()
    writer.abort()
