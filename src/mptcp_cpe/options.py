"""The MCP DHCP options (draft-boucadair-mptcp-dhc) through the C codec Kea's hook uses.

DHCPv4 OPTION_V4_MPTCP data: one or more lists, each ``list-len | n x IPv4`` and each one
MCP. DHCPv6 OPTION_V6_MPTCP: one instance per MCP, ``n x IPv6``. Data here never includes
the option's code and length octets; a DHCPv4 option split over 255 octets (RFC 3396) is
passed joined.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from ._mcp_codec import ffi, lib

ERRORS = {
    lib.MCP_E_SHORT: "MCP_E_SHORT",
    lib.MCP_E_LIST_LEN: "MCP_E_LIST_LEN",
    lib.MCP_E_TRUNCATED: "MCP_E_TRUNCATED",
    lib.MCP_E_V6_LEN: "MCP_E_V6_LEN",
    lib.MCP_E_NOSPACE: "MCP_E_NOSPACE",
    lib.MCP_E_LIST_TOO_LONG: "MCP_E_LIST_TOO_LONG",
    lib.MCP_E_EMPTY_LIST: "MCP_E_EMPTY_LIST",
    lib.MCP_E_ADDR: "MCP_E_ADDR",
    lib.MCP_E_ARG: "MCP_E_ARG",
}


class OptionError(ValueError):
    """Malformed option data, or lists that cannot be encoded. ``code`` is the codec's
    MCP_E_* value, ``offset`` the octet at fault when decoding (else None)."""

    def __init__(self, code: int, message: str, offset: int | None = None):
        self.code, self.offset = code, offset
        super().__init__(f"octet {offset}: {message}" if offset is not None else message)


def _decode_error(code: int, data: bytes, offset: int, family: int) -> OptionError:
    if code == lib.MCP_E_SHORT:
        need = 5 if family == 4 else 16
        return OptionError(code, f"option is {len(data)} octets, at least {need} needed", offset)
    if code == lib.MCP_E_LIST_LEN:
        return OptionError(code, f"list-len {data[offset]} is not a non-zero multiple of 4", offset)
    if code == lib.MCP_E_TRUNCATED:
        return OptionError(code, f"list-len {data[offset]} runs past the end of the {len(data)}-octet option", offset)
    if code == lib.MCP_E_V6_LEN:
        return OptionError(code, f"{len(data)} octets is not a whole number of IPv6 addresses (16 each)", offset)
    return OptionError(code, ffi.string(lib.mcp_strerror(code)).decode(), offset)


def _v4(addrs, i: int) -> str:
    return str(ipaddress.IPv4Address(bytes(addrs[i * 4:(i + 1) * 4])))


def _v6_text(packed: bytes) -> str:
    addr = ipaddress.IPv6Address(packed)
    # ::ffff:a.b.c.d, as the draft and operators write it (Python 3.11 would say ::ffff:c000:201).
    return f"::ffff:{addr.ipv4_mapped}" if addr.ipv4_mapped else str(addr)


def decode_v4(data: bytes, client_rule: bool = True) -> list[list[str]]:
    """The MCP lists of OPTION_V4_MPTCP data; with the client rule, multicast and loopback
    addresses are dropped and so are lists left empty."""
    data = bytes(data)
    cap_addrs, cap_lists = max(len(data) // 4, 1), max(len(data) // 5, 1)
    addrs = ffi.new("uint8_t[]", cap_addrs * 4)
    counts = ffi.new("uint16_t[]", cap_lists)
    n_addrs = ffi.new("size_t *")
    offset = ffi.new("size_t *")
    n_lists = lib.mcp_v4_decode(data, len(data), addrs, cap_addrs, counts, cap_lists, n_addrs, offset)
    if n_lists < 0:
        raise _decode_error(n_lists, data, offset[0], 4)
    if client_rule:
        n_lists = lib.mcp_v4_client_filter(addrs, counts, n_lists, n_addrs)
    out, i = [], 0
    buf = ffi.buffer(addrs)
    for li in range(n_lists):
        out.append([_v4(buf, i + k) for k in range(counts[li])])
        i += counts[li]
    return out


def _parse(text: str, family: int) -> bytes:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise OptionError(lib.MCP_E_ADDR, f"{text!r} is not an IPv{family} address") from None
    if addr.version != family:
        raise OptionError(lib.MCP_E_ADDR, f"{text!r} is not an IPv{family} address")
    return addr.packed


def encode_v4(lists: Sequence[Sequence[str]]) -> bytes:
    """OPTION_V4_MPTCP data for these MCPs (each a list of IPv4 addresses)."""
    if not lists:
        raise OptionError(lib.MCP_E_EMPTY_LIST, "no MCP list")
    packed, counts = bytearray(), []
    for i, mcp in enumerate(lists):
        if not mcp:
            raise OptionError(lib.MCP_E_EMPTY_LIST, f"MCP {i + 1} has no address")
        if len(mcp) > lib.MCP_V4_LIST_MAX:
            raise OptionError(lib.MCP_E_LIST_TOO_LONG, f"MCP {i + 1} has {len(mcp)} addresses, at most {lib.MCP_V4_LIST_MAX} fit one list")
        for a in mcp:
            raw = _parse(a, 4)
            if lib.mcp_v4_addr_check(raw) != lib.MCP_OK:
                raise OptionError(lib.MCP_E_ADDR, f"{a} is multicast, loopback or unspecified: not an MCP address")
            packed += raw
        counts.append(len(mcp))
    cap = len(packed) + len(counts)
    out = ffi.new("uint8_t[]", cap)
    n = lib.mcp_v4_encode(bytes(packed), counts, len(counts), out, cap)
    if n < 0:
        raise OptionError(n, ffi.string(lib.mcp_strerror(n)).decode())
    return bytes(ffi.buffer(out, n))


def decode_v6(data: bytes, client_rule: bool = True) -> list[str]:
    """The addresses of one OPTION_V6_MPTCP instance (one MCP); [] when the client rule
    leaves none (the instance is then dropped)."""
    data = bytes(data)
    cap = max(len(data) // 16, 1)
    addrs = ffi.new("uint8_t[]", cap * 16)
    offset = ffi.new("size_t *")
    n = lib.mcp_v6_decode(data, len(data), addrs, cap, offset)
    if n < 0:
        raise _decode_error(n, data, offset[0], 6)
    if client_rule:
        n = lib.mcp_v6_client_filter(addrs, n)
    buf = ffi.buffer(addrs)
    return [_v6_text(bytes(buf[i * 16:(i + 1) * 16])) for i in range(n)]


def encode_v6(addrs: Sequence[str]) -> bytes:
    """One OPTION_V6_MPTCP instance for one MCP (IPv6 or IPv4-mapped addresses)."""
    if not addrs:
        raise OptionError(lib.MCP_E_EMPTY_LIST, "the MCP has no address")
    packed = bytearray()
    for a in addrs:
        raw = _parse(a, 6)
        if lib.mcp_v6_addr_check(raw) != lib.MCP_OK:
            raise OptionError(lib.MCP_E_ADDR, f"{a} is multicast, loopback or unspecified: not an MCP address")
        packed += raw
    out = ffi.new("uint8_t[]", len(packed))
    n = lib.mcp_v6_encode(bytes(packed), len(addrs), out, len(packed))
    if n < 0:
        raise OptionError(n, ffi.string(lib.mcp_strerror(n)).decode())
    return bytes(ffi.buffer(out, n))
