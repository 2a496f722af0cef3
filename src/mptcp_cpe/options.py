"""The MCP DHCP options (draft-boucadair-mptcp-dhc): parsing and building their data.

DHCPv4 OPTION_V4_MPTCP data: one or more lists, each ``list-len | n x IPv4`` and each one
MCP. DHCPv6 OPTION_V6_MPTCP: one instance per MCP, ``n x IPv6``. Data here never includes
the option's code and length octets; a DHCPv4 option split over 255 octets (RFC 3396) is
passed joined.

The octets are handled by one of two codecs with the same functions and results:
hooks/kea/mcp_codec.c compiled through cffi (``mptcp_cpe._mcp_codec``, the very code Kea's
hook sends with) where it is built, else its pure-Python twin (``_mcp_codec_py``, for
routers with no compiler such as OpenWrt's, installed from a pure wheel). ``BACKEND`` says
which is in use ("c" or "python"); the environment variable MPTCP_CPE_CODEC=c or =python
forces one (=c fails with ImportError where the compiled codec is missing). Everything
above the octets, messages included, is this module's, the same for both.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
from collections.abc import Sequence
from types import ModuleType

from . import _mcp_codec_py
# Every code, for callers too (cli, tests): options.MCP_E_EMPTY_LIST whichever codec runs.
from ._mcp_codec_py import (
    MCP_E_ADDR,
    MCP_E_ARG,
    MCP_E_EMPTY_LIST,
    MCP_E_LIST_LEN,
    MCP_E_LIST_TOO_LONG,
    MCP_E_NOSPACE,
    MCP_E_SHORT,
    MCP_E_TRUNCATED,
    MCP_E_V6_LEN,
    MCP_OK,
    MCP_V4_LIST_MAX,
)

ERRORS = {value: name for name, value in vars(_mcp_codec_py).items() if name.startswith("MCP_E_")}
BACKENDS = ("c", "python")


def load_codec(choice: str = "") -> ModuleType:
    """The codec backend: "c" (the compiled one), "python", or "" for the compiled one when
    it imports and the pure one otherwise (a .so missing or built for another CPU)."""
    if choice not in ("", *BACKENDS):
        raise ImportError(f"MPTCP_CPE_CODEC={choice!r}: say c (the compiled codec) or python (the pure one), or leave it unset")
    if choice == "python":
        return _mcp_codec_py
    try:
        compiled = importlib.import_module("._mcp_codec_c", __package__)
    except ImportError as exc:
        if choice == "c":
            raise ImportError(f"MPTCP_CPE_CODEC=c, but the compiled codec mptcp_cpe._mcp_codec does not import ({exc}); "
                              "unset MPTCP_CPE_CODEC to use the pure-Python one") from exc
        return _mcp_codec_py
    return compiled


codec = load_codec(os.environ.get("MPTCP_CPE_CODEC", ""))
BACKEND = codec.NAME


class OptionError(ValueError):
    """Malformed option data, or lists that cannot be encoded. ``code`` is the codec's
    MCP_E_* value, ``offset`` the octet at fault when decoding (else None)."""

    def __init__(self, code: int, message: str, offset: int | None = None):
        self.code, self.offset = code, offset
        super().__init__(f"octet {offset}: {message}" if offset is not None else message)


def _decode_error(code: int, data: bytes, offset: int | None, family: int) -> OptionError:
    if code == MCP_E_SHORT:
        need = 5 if family == 4 else 16
        return OptionError(code, f"option is {len(data)} octets, at least {need} needed", offset)
    if code == MCP_E_LIST_LEN:
        return OptionError(code, f"list-len {data[offset]} is not a non-zero multiple of 4", offset)
    if code == MCP_E_TRUNCATED:
        return OptionError(code, f"list-len {data[offset]} runs past the end of the {len(data)}-octet option", offset)
    if code == MCP_E_V6_LEN:
        return OptionError(code, f"{len(data)} octets is not a whole number of IPv6 addresses (16 each)", offset)
    return OptionError(code, codec.strerror(code), offset)


def _v6_text(packed: bytes) -> str:
    addr = ipaddress.IPv6Address(packed)
    # ::ffff:a.b.c.d, as the draft and operators write it (Python 3.11 would say ::ffff:c000:201).
    return f"::ffff:{addr.ipv4_mapped}" if addr.ipv4_mapped else str(addr)


def decode_v4(data: bytes, client_rule: bool = True) -> list[list[str]]:
    """The MCP lists of OPTION_V4_MPTCP data; with the client rule, multicast and loopback
    addresses are dropped and so are lists left empty."""
    data = bytes(data)
    # Room for every address and list the data could hold (mcp_codec.h: len/4, len/5).
    got = codec.v4_decode(data, max(len(data) // 4, 1), max(len(data) // 5, 1))
    if got.result < 0:
        raise _decode_error(got.result, data, got.err_offset, 4)
    addrs, counts = codec.v4_client_filter(got.addrs, got.counts) if client_rule else (got.addrs, got.counts)
    out, i = [], 0
    for n in counts:
        out.append([str(ipaddress.IPv4Address(addrs[k * 4:(k + 1) * 4])) for k in range(i, i + n)])
        i += n
    return out


def _parse(text: str, family: int) -> bytes:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise OptionError(MCP_E_ADDR, f"{text!r} is not an IPv{family} address") from None
    if addr.version != family:
        raise OptionError(MCP_E_ADDR, f"{text!r} is not an IPv{family} address")
    return addr.packed


def _mcp_address(text: str, family: int) -> bytes:
    """The packed address, refused with its text where it cannot be an MCP's."""
    raw = _parse(text, family)
    check = codec.v4_addr_check if family == 4 else codec.v6_addr_check
    if check(raw) != MCP_OK:
        raise OptionError(MCP_E_ADDR, f"{text} is multicast, loopback or unspecified: not an MCP address")
    return raw


def _encoded(got) -> bytes:
    if got.result < 0:
        raise OptionError(got.result, codec.strerror(got.result))
    return got.data


def encode_v4(lists: Sequence[Sequence[str]]) -> bytes:
    """OPTION_V4_MPTCP data for these MCPs (each a list of IPv4 addresses)."""
    if not lists:
        raise OptionError(MCP_E_EMPTY_LIST, "no MCP list")
    packed, counts = bytearray(), []
    for i, mcp in enumerate(lists):
        if not mcp:
            raise OptionError(MCP_E_EMPTY_LIST, f"MCP {i + 1} has no address")
        if len(mcp) > MCP_V4_LIST_MAX:
            raise OptionError(MCP_E_LIST_TOO_LONG, f"MCP {i + 1} has {len(mcp)} addresses, at most {MCP_V4_LIST_MAX} fit one list")
        for a in mcp:
            packed += _mcp_address(a, 4)
        counts.append(len(mcp))
    return _encoded(codec.v4_encode(bytes(packed), counts, len(packed) + len(counts)))


def decode_v6(data: bytes, client_rule: bool = True) -> list[str]:
    """The addresses of one OPTION_V6_MPTCP instance (one MCP); [] when the client rule
    leaves none (the instance is then dropped)."""
    data = bytes(data)
    got = codec.v6_decode(data, max(len(data) // 16, 1))
    if got.result < 0:
        raise _decode_error(got.result, data, got.err_offset, 6)
    addrs = codec.v6_client_filter(got.addrs) if client_rule else got.addrs
    return [_v6_text(addrs[i:i + 16]) for i in range(0, len(addrs), 16)]


def encode_v6(addrs: Sequence[str]) -> bytes:
    """One OPTION_V6_MPTCP instance for one MCP (IPv6 or IPv4-mapped addresses)."""
    if not addrs:
        raise OptionError(MCP_E_EMPTY_LIST, "the MCP has no address")
    packed = b"".join(_mcp_address(a, 6) for a in addrs)
    return _encoded(codec.v6_encode(packed, len(packed)))
