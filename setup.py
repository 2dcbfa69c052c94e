"""Only for the C extension (media/fanout_build.py); everything else is in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["media/fanout_build.py:ffibuilder"])
