"""Only for the C extensions (media/fanout_build.py, media/_packetlog_c.c); everything else is
in pyproject.toml."""

from setuptools import Extension, setup

setup(cffi_modules=["media/fanout_build.py:ffibuilder"],
      # media/packetlog_build.py builds the same without pip
      ext_modules=[Extension("media._packetlog_c",
                             ["media/_packetlog_c.c", "media/_packetlog_flush.c",
                              "media/_packetlog_read.c"],
                             extra_compile_args=["-O2"], depends=["media/_packetlog.h"])])
