"""The archive's file format alone: a write cut short by the file system (here the process's
file-size limit, the same OSError path as a full disk) leaves nothing under the archive's name
and no partial file; member paths that could escape an extraction are refused; an archive
with no audit chain does not verify."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from documents import archive
from documents.archive_format import Member, write_archive
from tests.conftest import ROOT

CUT_SHORT = """
import resource, signal, sys
from pathlib import Path
from documents.archive_format import ArchiveWriteError, Member, write_archive
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails (EFBIG) instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
try:
    write_archive(Path(sys.argv[1]), {}, [Member("recordings/a.webm", "recording",
                                                 data=bytes(1024 * 1024))])
except ArchiveWriteError as exc:
    print("REFUSED", exc)
"""


def test_a_write_cut_short_leaves_no_archive_and_says_why(tmp_path: Path) -> None:
    target = tmp_path / "out" / "hopso-meeting-1.zip"
    done = subprocess.run([sys.executable, "-c", CUT_SHORT, str(target)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.startswith("REFUSED cannot write hopso-meeting-1.zip: File too large"), \
        done.stdout + done.stderr
    assert list(target.parent.iterdir()) == []  # neither the archive nor its .partial


@pytest.mark.parametrize("path", ["../x.pdf", "/etc/passwd", "a/../../b", ".hidden/x",
                                  "a\\b.pdf", "", "manifest.json", "a//b"])
def test_member_paths_that_could_escape_are_refused(path: str) -> None:
    with pytest.raises(ValueError):
        Member(path, "document", data=b"x")


def test_an_archive_without_its_audit_chain_does_not_verify(tmp_path: Path) -> None:
    target = tmp_path / "a.zip"
    write_archive(target, {"audit_head": {"seq": 0, "hash": "0" * 64}},
                  [Member("timeline/x.json", "timeline", data=b"{}")])
    report = archive.verify(target)
    assert report.problems == ["no audit member in the archive"]
    with zipfile.ZipFile(target) as zf:
        assert zf.namelist() == ["timeline/x.json", "manifest.json"]
    assert archive.main(["verify", str(target)]) == 1
