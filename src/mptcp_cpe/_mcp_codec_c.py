"""The codec's backend functions (see `_mcp_codec_py` for the interface) over the compiled
hooks/kea/mcp_codec.c, `mptcp_cpe._mcp_codec`: importing this module fails where that was
not built. Buffers are sized by the caps given, so C reports NOSPACE where it would."""

from __future__ import annotations

from collections.abc import Sequence

from ._mcp_codec import ffi, lib
from ._mcp_codec_py import Encoded, V4Decoded, V6Decoded, require_addrs, v6_count

NAME = "c"

# Set before each decode: C leaves *err_offset alone on some errors.
_UNSET = int(ffi.cast("size_t", -1))


def _offset(box) -> int | None:
    return None if box[0] == _UNSET else box[0]


def _octets(buf, n: int) -> bytes:
    return ffi.buffer(buf, n)[:]


def _writable(octets: bytes):
    """A C copy of ``octets`` for the functions that filter in place."""
    buf = ffi.new("uint8_t[]", len(octets))
    ffi.memmove(buf, octets, len(octets))
    return buf


def strerror(code: int) -> str:
    return ffi.string(lib.mcp_strerror(code)).decode()


def v4_decode(data: bytes, addrs_cap: int, lists_cap: int) -> V4Decoded:
    addrs = ffi.new("uint8_t[]", addrs_cap * 4)
    counts = ffi.new("uint16_t[]", lists_cap)
    n_addrs = ffi.new("size_t *")
    offset = ffi.new("size_t *", _UNSET)
    n = lib.mcp_v4_decode(data, len(data), addrs, addrs_cap, counts, lists_cap, n_addrs, offset)
    if n < 0:
        return V4Decoded(n, b"", (), _offset(offset))
    return V4Decoded(n, _octets(addrs, n_addrs[0] * 4), tuple(counts[0:n]), None)


def v4_encode(addrs: bytes, counts: Sequence[int], out_cap: int) -> Encoded:
    require_addrs(addrs, sum(counts), 4, "v4_encode")
    out = ffi.new("uint8_t[]", out_cap)
    n = lib.mcp_v4_encode(addrs, list(counts), len(counts), out, out_cap)
    return Encoded(n, _octets(out, n) if n >= 0 else b"")


def v4_client_filter(addrs: bytes, counts: Sequence[int]) -> tuple[bytes, tuple[int, ...]]:
    require_addrs(addrs, sum(counts), 4, "v4_client_filter")
    buf = _writable(addrs)
    list_counts = ffi.new("uint16_t[]", list(counts))
    n_addrs = ffi.new("size_t *")
    n = lib.mcp_v4_client_filter(buf, list_counts, len(counts), n_addrs)
    return _octets(buf, n_addrs[0] * 4), tuple(list_counts[0:n])


def v6_decode(data: bytes, addrs_cap: int) -> V6Decoded:
    addrs = ffi.new("uint8_t[]", addrs_cap * 16)
    offset = ffi.new("size_t *", _UNSET)
    n = lib.mcp_v6_decode(data, len(data), addrs, addrs_cap, offset)
    if n < 0:
        return V6Decoded(n, b"", _offset(offset))
    return V6Decoded(n, _octets(addrs, n * 16), None)


def v6_encode(addrs: bytes, out_cap: int) -> Encoded:
    n = v6_count(addrs, "v6_encode")
    out = ffi.new("uint8_t[]", out_cap)
    written = lib.mcp_v6_encode(addrs, n, out, out_cap)
    return Encoded(written, _octets(out, written) if written >= 0 else b"")


def v6_client_filter(addrs: bytes) -> bytes:
    n = v6_count(addrs, "v6_client_filter")
    buf = _writable(addrs)
    return _octets(buf, lib.mcp_v6_client_filter(buf, n) * 16)


def v4_addr_check(addr: bytes) -> int:
    require_addrs(addr, 1, 4, "v4_addr_check")
    return lib.mcp_v4_addr_check(addr)


def v6_addr_check(addr: bytes) -> int:
    require_addrs(addr, 1, 16, "v6_addr_check")
    return lib.mcp_v6_addr_check(addr)
