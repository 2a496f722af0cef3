# Metadata is in pyproject.toml; this file only hands the cffi module to setuptools.
from setuptools import setup

setup(cffi_modules=["src/mptcp_cpe/_codec_build.py:ffibuilder"])
