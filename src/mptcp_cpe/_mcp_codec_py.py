"""The MCP option codec in pure Python: hooks/kea/mcp_codec.c function by function, for
routers that cannot run the compiled one (OpenWrt: musl on MIPS, ARM or x86, no compiler).

The C file stays the reference (Kea's hook sends its bytes); tests/unit/test_codec_py.py
holds the two to the same results, error codes and error offsets. This module is also the
one place the MCP_E_* values are written down for Python (a test checks them against
mcp_codec.h). Both backends offer the same functions (`_mcp_codec_c` over cffi):

    v4_decode(data, addrs_cap, lists_cap) -> V4Decoded
    v4_encode(addrs, counts, out_cap)     -> Encoded
    v4_client_filter(addrs, counts)       -> (addrs, counts)
    v6_decode(data, addrs_cap)            -> V6Decoded
    v6_encode(addrs, out_cap)             -> Encoded
    v6_client_filter(addrs)               -> addrs
    v4_addr_check(addr), v6_addr_check(addr) -> MCP_OK or MCP_E_ADDR
    strerror(code)                        -> str

Addresses are packed octets, 4 per IPv4 address and 16 per IPv6, all of them one after the
other; counts are the addresses of each v4 list. What C returns through pointers is
returned here; the caps are C's buffer sizes in addresses, lists or octets, so NOSPACE
comes exactly where it does in C. MCP_E_ARG (a NULL pointer) cannot happen from Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

NAME = "python"

# mcp_codec.h's values.
MCP_OK = 0
MCP_E_SHORT = -1
MCP_E_LIST_LEN = -2
MCP_E_TRUNCATED = -3
MCP_E_V6_LEN = -4
MCP_E_NOSPACE = -5
MCP_E_LIST_TOO_LONG = -6
MCP_E_EMPTY_LIST = -7
MCP_E_ADDR = -8
MCP_E_ARG = -9
MCP_V4_LIST_MAX = 63

_STRERROR = {
    MCP_OK: "ok",
    MCP_E_SHORT: "option too short",
    MCP_E_LIST_LEN: "list-len is not a non-zero multiple of 4",
    MCP_E_TRUNCATED: "list runs past the end of the option",
    MCP_E_V6_LEN: "length is not a multiple of 16",
    MCP_E_NOSPACE: "output buffer too small",
    MCP_E_LIST_TOO_LONG: "more than 63 addresses in one list",
    MCP_E_EMPTY_LIST: "empty MCP list",
    MCP_E_ADDR: "multicast, loopback or unspecified address",
    MCP_E_ARG: "missing argument",
}

# C returns an int: a count that would not fit one is NOSPACE there.
_INT_MAX = 0x7FFFFFFF
_V6_LOOPBACK = bytes(15) + b"\x01"
_V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


class V4Decoded(NamedTuple):
    result: int                # the number of lists (>= 1), or an MCP_E_* code
    addrs: bytes               # every list's addresses; b"" on error
    counts: tuple[int, ...]    # the addresses of each list; () on error
    err_offset: int | None     # on error, the octet at fault (None where C leaves it unset)


class V6Decoded(NamedTuple):
    result: int                # the number of addresses (>= 1), or an MCP_E_* code
    addrs: bytes
    err_offset: int | None


class Encoded(NamedTuple):
    result: int                # the octets written, or an MCP_E_* code
    data: bytes                # b"" on error


def require_addrs(addrs: bytes, n: int, size: int, what: str) -> None:
    """The precondition C cannot check: ``addrs`` holds the ``n`` addresses the counts say.
    Both backends refuse a short buffer here rather than read past it."""
    if len(addrs) < n * size:
        raise ValueError(f"{what}: {len(addrs)} octets hold fewer than the {n} addresses of {size} octets given")


def strerror(code: int) -> str:
    return _STRERROR.get(code, "unknown error")


def v4_decode(data: bytes, addrs_cap: int, lists_cap: int) -> V4Decoded:
    length = len(data)
    if length < 5:
        return V4Decoded(MCP_E_SHORT, b"", (), length)
    pos, total, counts, chunks = 0, 0, [], []
    while pos < length:
        list_len = data[pos]
        n = list_len // 4
        if list_len == 0 or list_len % 4 != 0:
            return V4Decoded(MCP_E_LIST_LEN, b"", (), pos)
        if list_len > length - pos - 1:
            return V4Decoded(MCP_E_TRUNCATED, b"", (), pos)
        if len(counts) >= lists_cap or n > addrs_cap - total:
            return V4Decoded(MCP_E_NOSPACE, b"", (), pos)
        chunks.append(data[pos + 1:pos + 1 + list_len])
        counts.append(n)
        total += n
        pos += 1 + list_len
    return V4Decoded(len(counts), b"".join(chunks), tuple(counts), None)


def v4_addr_check(addr: bytes) -> int:
    require_addrs(addr, 1, 4, "v4_addr_check")
    if addr[0] == 127 or (addr[0] & 0xF0) == 0xE0:
        return MCP_E_ADDR  # loopback 127/8, multicast 224/4
    if addr[:4] == bytes(4):
        return MCP_E_ADDR
    return MCP_OK


def v4_encode(addrs: bytes, counts: Sequence[int], out_cap: int) -> Encoded:
    require_addrs(addrs, sum(counts), 4, "v4_encode")
    if not counts:
        return Encoded(MCP_E_EMPTY_LIST, b"")
    out, at = bytearray(), 0
    for n in counts:
        if n == 0:
            return Encoded(MCP_E_EMPTY_LIST, b"")
        if n > MCP_V4_LIST_MAX:
            return Encoded(MCP_E_LIST_TOO_LONG, b"")
        block = addrs[at * 4:(at + n) * 4]
        if any(v4_addr_check(block[j * 4:j * 4 + 4]) != MCP_OK for j in range(n)):
            return Encoded(MCP_E_ADDR, b"")
        if out_cap - len(out) < 1 + n * 4:
            return Encoded(MCP_E_NOSPACE, b"")
        out.append(n * 4)
        out += block
        at += n
    if len(out) > _INT_MAX:
        return Encoded(MCP_E_NOSPACE, b"")
    return Encoded(len(out), bytes(out))


def _v4_client_drops(a: bytes) -> bool:
    """The client rule drops loopback and multicast only (the draft's MUST); an unspecified
    address is no use either, but discarding it is not the client's rule to apply."""
    return a[0] == 127 or (a[0] & 0xF0) == 0xE0


def v4_client_filter(addrs: bytes, counts: Sequence[int]) -> tuple[bytes, tuple[int, ...]]:
    require_addrs(addrs, sum(counts), 4, "v4_client_filter")
    kept_addrs, kept_counts, at = bytearray(), [], 0
    for n in counts:
        kept = 0
        for a in (addrs[(at + j) * 4:(at + j) * 4 + 4] for j in range(n)):
            if not _v4_client_drops(a):
                kept_addrs += a
                kept += 1
        at += n
        if kept:
            kept_counts.append(kept)
    return bytes(kept_addrs), tuple(kept_counts)


def v6_decode(data: bytes, addrs_cap: int) -> V6Decoded:
    length = len(data)
    if length == 0:
        return V6Decoded(MCP_E_SHORT, b"", 0)
    if length % 16 != 0:
        return V6Decoded(MCP_E_V6_LEN, b"", length - length % 16)
    n = length // 16
    if n > addrs_cap:
        return V6Decoded(MCP_E_NOSPACE, b"", addrs_cap * 16)
    if n > _INT_MAX:
        return V6Decoded(MCP_E_NOSPACE, b"", None)
    return V6Decoded(n, bytes(data), None)


def _v6_is_v4_mapped(a: bytes) -> bool:
    return a[:12] == _V4_MAPPED_PREFIX


def _v6_client_drops(a: bytes) -> bool:
    if a[0] == 0xFF or a[:16] == _V6_LOOPBACK:
        return True
    return _v6_is_v4_mapped(a) and _v4_client_drops(a[12:16])


def v6_addr_check(addr: bytes) -> int:
    require_addrs(addr, 1, 16, "v6_addr_check")
    if _v6_client_drops(addr) or addr[:16] == bytes(16):
        return MCP_E_ADDR
    if _v6_is_v4_mapped(addr) and v4_addr_check(addr[12:16]) != MCP_OK:
        return MCP_E_ADDR
    return MCP_OK


def v6_count(addrs: bytes, what: str) -> int:
    """The addresses in a v6 buffer, which C is given as n: a whole number of them."""
    if len(addrs) % 16:
        raise ValueError(f"{what}: {len(addrs)} octets are not a whole number of IPv6 addresses")
    return len(addrs) // 16


def v6_encode(addrs: bytes, out_cap: int) -> Encoded:
    n = v6_count(addrs, "v6_encode")
    if n == 0:
        return Encoded(MCP_E_EMPTY_LIST, b"")
    if any(v6_addr_check(addrs[i * 16:(i + 1) * 16]) != MCP_OK for i in range(n)):
        return Encoded(MCP_E_ADDR, b"")
    if n > out_cap // 16:
        return Encoded(MCP_E_NOSPACE, b"")
    if n * 16 > _INT_MAX:
        return Encoded(MCP_E_NOSPACE, b"")
    return Encoded(n * 16, bytes(addrs))


def v6_client_filter(addrs: bytes) -> bytes:
    n = v6_count(addrs, "v6_client_filter")
    return b"".join(a for a in (addrs[i * 16:(i + 1) * 16] for i in range(n)) if not _v6_client_drops(a))
