"""Builds media._packetlog_c (media/_packetlog_c.c, _packetlog_flush.c, _packetlog_read.c),
the recorder's packet-record encoder and the mux process's reader.

Built by `pip install -e .` (setup.py: ext_modules) or directly with
`python media/packetlog_build.py`. media/packetlog.py works without it, slower (the same
records encoded and read in Python).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from setuptools import Distribution, Extension
from setuptools.command.build_ext import build_ext

SOURCES = ["media/_packetlog_c.c", "media/_packetlog_flush.c",
           "media/_packetlog_read.c"]  # and media/_packetlog.h
EXTENSION = Extension("media._packetlog_c", SOURCES, extra_compile_args=["-O2"],
                      depends=["media/_packetlog.h"])


def build() -> Path:
    """Compile in a scratch folder, move the module into media/; its path."""
    package = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as scratch:
        cmd = build_ext(Distribution({"ext_modules": [Extension(
            EXTENSION.name, [str(package / Path(source).name) for source in SOURCES],
            extra_compile_args=EXTENSION.extra_compile_args)]}))
        cmd.build_lib = str(Path(scratch) / "lib")
        cmd.build_temp = str(Path(scratch) / "temp")
        cmd.ensure_finalized()
        cmd.run()
        (built,) = cmd.get_outputs()
        # Replaced, not overwritten: a running process keeps the copy it has mapped.
        target = package / Path(built).name
        staged = package / f".{target.name}.new"
        shutil.copy(built, staged)
        os.replace(staged, target)
        return target


if __name__ == "__main__":
    print(build())
