# Metadata is in pyproject.toml; this file hands setuptools what depends on the build kind.
# MPTCP_CPE_PURE=1 builds a pure wheel (py3-none-any): no compiled codec and no cffi, for
# routers without a compiler (options.py then runs the pure-Python codec).
import os

from setuptools import setup

RUNTIME = ["pyroute2>=0.9,<0.10"]
# The compiled MCP option codec (hooks/kea/mcp_codec.c) needs cffi's backend at run time.
CODEC = ["cffi>=1.17,<3"]

if os.environ.get("MPTCP_CPE_PURE") == "1":
    setup(install_requires=RUNTIME)
else:
    setup(install_requires=RUNTIME + CODEC, cffi_modules=["src/mptcp_cpe/_codec_build.py:ffibuilder"])
