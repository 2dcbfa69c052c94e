"""Fuzz the C fan-out (media/fanout.py, media/fanout_build.py) through the cffi entry points
the forwarding uses, in a child process each (tests/media/fanout_fuzz_child.py: a crash
fails the test instead of killing the run): the shipped build, and a build under
AddressSanitizer that reports any read or write out of bounds. A positive control proves
the sanitizer run would catch one: a length longer than its tail is reported."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]
CHILD = ROOT / "tests" / "media" / "fanout_fuzz_child.py"
ASAN_BUILD = """
import sys
sys.path.insert(0, sys.argv[1])
from cffi import FFI
from media.fanout_build import CDEF, SOURCE
builder = FFI()
builder.cdef(CDEF)
builder.set_source("media._fanout_c", SOURCE, extra_link_args=["-fsanitize=address"],
                   extra_compile_args=["-O1", "-g", "-fsanitize=address",
                                       "-fno-omit-frame-pointer"])
print(builder.compile(tmpdir="."))
"""


def run_child(*args: str, env: dict[str, str] | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-X", "faulthandler", str(CHILD), *args],
                          cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_the_shipped_fan_out_survives_hostile_packets_and_lying_lengths() -> None:
    done = run_child(env={"HOPSO_FANOUT_EXAMPLES": "250"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "fan-out fuzz: ok" in done.stdout
    assert " 0 datagrams checked" not in done.stdout  # the C loop did send


def _libasan() -> str | None:
    if shutil.which("gcc") is None:
        return None
    found = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                           text=True, check=False).stdout.strip()
    return found if os.path.isabs(found) and os.path.exists(found) else None


@pytest.fixture(scope="module")
def asan_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    libasan = _libasan()
    if libasan is None:
        message = "gcc with libasan is needed for the AddressSanitizer fan-out fuzz"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    scratch = tmp_path_factory.mktemp("asan")
    built = subprocess.run([sys.executable, "-c", ASAN_BUILD, str(ROOT)], cwd=scratch,
                           capture_output=True, text=True, timeout=180, check=False)
    assert built.returncode == 0, built.stderr[-3000:]
    return {"HOPSO_FANOUT_SO": built.stdout.strip().splitlines()[-1], "LD_PRELOAD": libasan,
            "PYTHONMALLOC": "malloc",  # every allocation through ASan's malloc: redzones
            "ASAN_OPTIONS": "detect_leaks=0:exitcode=86"}


def test_under_address_sanitizer_nothing_is_read_or_written_out_of_bounds(
        asan_env: dict[str, str]) -> None:
    done = run_child(env={**asan_env, "HOPSO_FANOUT_EXAMPLES": "150"}, timeout=300)
    assert "AddressSanitizer" not in done.stderr, done.stderr[-4000:]
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "fan-out fuzz: ok" in done.stdout


def test_the_sanitizer_run_would_catch_an_overread(asan_env: dict[str, str]) -> None:
    done = run_child("overread", env=asan_env)
    assert done.returncode == 86, done.stdout[-1000:] + done.stderr[-2000:]
    assert "heap-buffer-overflow" in done.stderr and "hop_forward" in done.stderr
