"""cffi (API mode) build of hooks/kea/mcp_codec.c into mptcp_cpe._mcp_codec.

The very C file the Kea hook is built from, so Python tools and tests see the bytes Kea
sends. Paths are relative to this file: building from a copy of the tree works.
"""

import os
import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
# setuptools refuses absolute source paths: relative to where setup.py runs (the tree's root).
CODEC = Path(os.path.relpath(HERE.parent.parent / "hooks" / "kea"))


def cdef_from_header(text: str) -> str:
    """The header's constants and prototypes as cffi wants them: mcp_codec.h is the one
    source, and in API mode `#define NAME ...` takes each value from the real header."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    consts = re.findall(r"^#define\s+(MCP_\w+)\s+\S", text, flags=re.M)
    protos = re.findall(r"^((?:const\s+)?\w+\s*\*?\s*mcp_\w+\([^;]*\);)", text, flags=re.M)
    return "\n".join([f"#define {c} ..." for c in consts] + [" ".join(p.split()) for p in protos])


ffibuilder = FFI()
ffibuilder.cdef(cdef_from_header((CODEC / "mcp_codec.h").read_text()))
ffibuilder.set_source(
    "mptcp_cpe._mcp_codec",
    '#include "mcp_codec.h"',
    sources=[(CODEC / "mcp_codec.c").as_posix()],
    include_dirs=[CODEC.as_posix()],
    extra_compile_args=["-std=c99", "-O2", "-Wall"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
