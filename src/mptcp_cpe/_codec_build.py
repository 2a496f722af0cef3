"""cffi (API mode) build of hooks/kea/mcp_codec.c into mptcp_cpe._mcp_codec.

The very C file the Kea hook is built from, so Python tools and tests see the bytes Kea
sends. Paths are relative to this file: building from a copy of the tree works.
"""

import os
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
# setuptools refuses absolute source paths: relative to where setup.py runs (the tree's root).
CODEC = Path(os.path.relpath(HERE.parent.parent / "hooks" / "kea"))

ffibuilder = FFI()
ffibuilder.cdef("""
#define MCP_OK 0
#define MCP_E_SHORT -1
#define MCP_E_LIST_LEN -2
#define MCP_E_TRUNCATED -3
#define MCP_E_V6_LEN -4
#define MCP_E_NOSPACE -5
#define MCP_E_LIST_TOO_LONG -6
#define MCP_E_EMPTY_LIST -7
#define MCP_E_ADDR -8
#define MCP_E_ARG -9
#define MCP_V4_LIST_MAX 63
const char *mcp_strerror(int code);
int mcp_v4_decode(const uint8_t *data, size_t len, uint8_t *addrs, size_t addrs_cap,
                  uint16_t *list_counts, size_t lists_cap, size_t *n_addrs, size_t *err_offset);
int mcp_v4_encode(const uint8_t *addrs, const uint16_t *list_counts, size_t n_lists,
                  uint8_t *out, size_t out_cap);
size_t mcp_v4_client_filter(uint8_t *addrs, uint16_t *list_counts, size_t n_lists, size_t *n_addrs);
int mcp_v6_decode(const uint8_t *data, size_t len, uint8_t *addrs, size_t addrs_cap, size_t *err_offset);
int mcp_v6_encode(const uint8_t *addrs, size_t n, uint8_t *out, size_t out_cap);
size_t mcp_v6_client_filter(uint8_t *addrs, size_t n);
int mcp_v4_addr_check(const uint8_t addr[4]);
int mcp_v6_addr_check(const uint8_t addr[16]);
""")
ffibuilder.set_source(
    "mptcp_cpe._mcp_codec",
    '#include "mcp_codec.h"',
    sources=[(CODEC / "mcp_codec.c").as_posix()],
    include_dirs=[CODEC.as_posix()],
    extra_compile_args=["-std=c99", "-O2", "-Wall"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
