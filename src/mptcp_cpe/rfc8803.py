"""RFC 8803 (0-RTT TCP Convert Protocol) messages as pure functions of bytes.

A Convert message opens the bytestream in each direction (§6): a 4-octet fixed header
``Version 1 | Total Length | Magic 0x2263`` then TLVs ``Type | Length | Value``. Both
lengths count 32-bit words, the header's including the header and a TLV's including its
Type and Length octets; Values are zero-padded to a word boundary. The client's first
message (a Connect TLV) rides in the SYN; the converter answers in the SYN+ACK. Relayed
data follows in the same stream, so `parse` says how many octets were the Convert message.

Dataclasses hold Values in their wire form: the padded octets a receiver sees, so that
``parse(build(tlvs))`` gives ``tlvs`` back. No sockets here (STYLE.md rule 11).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import ClassVar, Union

VERSION = 1  # §6.1; version 0 is reserved and MUST NOT be used
MAGIC = 0x2263
HEADER_LEN = 4
MAX_MESSAGE = 255 * 4  # Total Length is 8 bits of 32-bit words: at most 1020 octets (§6.1)
MAX_TLV = MAX_MESSAGE - HEADER_LEN  # the largest TLV that fits a message
# Malformed / Unsupported Message echo the message after a zero octet (Figure 23); what fits
# one message beside the header and the Error TLV's Type, Length, Error Code and Zeros.
MAX_ECHO = MAX_MESSAGE - HEADER_LEN - 4
DEFAULT_RETRY_AFTER = 30  # seconds: a delay Value of 0 means "at least 30 seconds" (§6.2.8)

# TCP option kinds a converter MUST NOT announce in Supported TCP Extensions: EOL, NOP and
# MSS (§6.2.4, §7.1), Window Scale (§7.2), SACK (§7.3), TCP-AO (§7.7).
NOT_ANNOUNCED = frozenset({0, 1, 2, 3, 5, 29})


class ErrorCode(IntEnum):
    """Error TLV codes (§6.2.8, Table 2) with the meaning of their Value field."""

    # 0-31, message validation and processing: an invalid message, or a valid one with
    # invalid or unknown TLVs.
    UNSUPPORTED_VERSION = 0  # the header's version is not supported; Value: supported versions, one octet each
    # cannot be parsed and validated (e.g. a Connect TLV to multicast, broadcast or loopback); Value: zero octet + echo
    MALFORMED_MESSAGE = 1
    UNSUPPORTED_MESSAGE = 2  # a TLV type received from a client is not supported; Value: zero octet + echo
    MISSING_COOKIE = 3  # the converter requires a Cookie TLV and computed one; Value: zero octet + that cookie
    # 32-63, client-side: the converter cannot accept the client's request.
    NOT_AUTHORIZED = 32  # no authorization (administratively prohibited, invalid Cookie, hairpinning); Value: zero
    UNSUPPORTED_TCP_OPTION = 33  # a TCP option of the Connect TLV cannot be safely used; Value: those kinds
    # 64-95, converter-side: problems on the converter itself.
    RESOURCE_EXCEEDED = 64  # no resources for a new connection; Value: seconds to wait (0: at least 30)
    NETWORK_FAILURE = 65  # the converter cannot forward the connection; Value: seconds to wait (0: at least 30)
    # 96-127, caused by the destination server.
    CONNECTION_RESET = 96  # the server answered with RST; Value: zero
    DESTINATION_UNREACHABLE = 97  # an ICMP hard error came back; Value: that ICMP message's Code

    @property
    def converter_teardown(self) -> Teardown:
        """What the MCP does to the client connection once this Error TLV is sent: close it,
        never RST right away, so the Error TLV reaches the client (§6.2.2). The RFC makes no
        exception by code; the client resets on receipt (`CLIENT_TEARDOWN`)."""
        return Teardown.CLOSE


class Teardown(Enum):
    CLOSE = "close"  # FIN after what is due has been sent
    RESET = "reset"  # RST, nothing more is sent


CLIENT_TEARDOWN = Teardown.RESET  # §6.2.8: a client receiving an Error TLV MUST reset the connection


class ConvertError(ValueError):
    """A Convert message the receiver must refuse. ``code`` is the ErrorCode an MCP answers
    with, ``offset`` the octet at fault. ``answer`` is False where the RFC has the MCP send
    nothing back: a Total Length of zero (§6.1: reset the connection) and a wrong Magic
    Number (not a Convert message; §6: SYNs without Convert TLVs are ignored)."""

    def __init__(self, code: ErrorCode, message: str, offset: int, answer: bool = True):
        self.code, self.offset, self.answer = code, offset, answer
        super().__init__(f"octet {offset}: {message}")

    def reply(self, received: bytes) -> bytes | None:
        """The Convert message an MCP sends before closing the connection (None: reset it
        without answering). ``received`` is what was read from the client; Malformed and
        Unsupported Message echo its Convert message, as much as fits."""
        if not self.answer:
            return None
        if self.code == ErrorCode.UNSUPPORTED_VERSION:
            return error_message(self.code, bytes([VERSION]))
        received = bytes(received)
        # The header says how long the message is, unless its Total Length is the fault.
        end = received[1] * 4 if len(received) > 1 and received[1] else len(received)
        return error_message(self.code, echo_value(received[:end]))


class Incomplete(Exception):
    """The data is a valid beginning of a Convert message: read at least ``needed`` more
    octets and parse again. Not a ConvertError: nothing is wrong yet."""

    def __init__(self, needed: int):
        self.needed = needed
        super().__init__(f"{needed} more octet(s) needed")


# ---------------------------------------------------------------- shared checks

def _pad(data: bytes, residue: int) -> bytes:
    """``data`` followed by the fewest zero octets making its length ``residue`` mod 4."""
    return data + bytes((residue - len(data)) % 4)


def _packed(address) -> bytes:
    """16 octets for an IPv4 or IPv6 address, IPv4 as IPv4-mapped (§6.2.5)."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return bytes(10) + b"\xff\xff" + ip.packed
    return ip.packed


def _text(packed: bytes) -> str:
    ip = ipaddress.IPv6Address(packed)
    return str(ip.ipv4_mapped) if ip.ipv4_mapped else str(ip)


_THIS_HOST_V4 = ipaddress.IPv4Network("0.0.0.0/8")
_BROADCAST_V4 = ipaddress.IPv4Address("255.255.255.255")


def _address_fault(packed: bytes) -> str | None:
    """Why a Connect TLV may not carry this address, None when it may. §6.2.5 forbids
    multicast, broadcast and host loopback [RFC6890]; the unspecified address and 0.0.0.0/8
    are refused too, as a connect() to them reaches the converter itself (Linux)."""
    ip = ipaddress.IPv6Address(packed)
    v4 = ip.ipv4_mapped
    if v4 is not None:
        if v4.is_multicast:
            return f"{v4} is multicast"
        if v4 == _BROADCAST_V4:
            return f"{v4} is the broadcast address"
        if v4.is_loopback:
            return f"{v4} is loopback"
        if v4 in _THIS_HOST_V4:
            return f"{v4} is 'this host' (0.0.0.0/8)"
        return None
    if ip.is_multicast:
        return f"{ip} is multicast"
    if ip.is_loopback:
        return f"{ip} is loopback"
    if ip.is_unspecified:
        return f"{ip} is the unspecified address"
    if int(ip) >> 32 == 0:  # ::/96 less the two above: IPv4-compatible, deprecated by RFC 4291
        return f"{ip} is IPv4-compatible; IPv4 must be IPv4-mapped (::ffff:a.b.c.d)"
    return None


def _walk_options(area: bytes, padded: bool) -> tuple[int, tuple[str, int] | None]:
    """Where the TCP options of a Connect TLV's TCP Options field (Figure 19) end, and why
    the field is wrong with the index at fault (None when it is right). Each option is
    kind | length (>= 2) | value; EOL and NOP MUST NOT appear. ``padded``: the field as
    received, ending in fewer than 4 zero octets; else the options alone."""
    i = 0
    while i < len(area):
        kind = area[i]
        if kind == 0:
            if not padded:
                return i, ("TCP option kind 0 (EOL) must not be in a Connect TLV", i)
            break
        if kind == 1:
            return i, ("TCP option kind 1 (NOP) must not be in a Connect TLV", i)
        if i + 1 >= len(area):
            return i, (f"TCP option kind {kind} has no length octet", i)
        length = area[i + 1]
        if length < 2:
            return i, (f"TCP option kind {kind} has length {length}, at least 2 is needed", i + 1)
        if i + length > len(area):
            return i, (f"TCP option kind {kind} of length {length} runs past the options field", i + 1)
        i += length
    for j in range(i, len(area)):
        if area[j]:
            return i, ("only zero padding may follow a zero octet in the TCP options", j)
    if len(area) - i >= 4:
        return i, (f"{len(area) - i} octets of zero padding after the TCP options, at most 3", i)
    return i, None


def _tlv(tlv_type: int, value: bytes) -> bytes:
    words = (2 + len(value)) // 4
    if words > MAX_TLV // 4:
        raise ValueError(f"TLV type {tlv_type} is {2 + len(value)} octets, at most {MAX_TLV} fit a message")
    return bytes((tlv_type, words)) + value


# ---------------------------------------------------------------- TLVs

@dataclass(frozen=True)
class Info:
    """Type 1 (§6.2.3): the client asks which TCP extensions the converter supports. Its
    only field, Zero, is two zero octets."""

    type: ClassVar[int] = 1

    def encode(self) -> bytes:
        return _tlv(self.type, bytes(2))


@dataclass(frozen=True)
class Connect:
    """Type 10 (§6.2.5): connect to ``address`` (16 octets, IPv4 as IPv4-mapped), ``port``.
    ``tcp_options`` (unpadded) lists TCP options to put in the SYN to the server; with none
    this is the Base Connect TLV, else the Extended Connect TLV."""

    type: ClassVar[int] = 10
    port: int
    address: bytes
    tcp_options: bytes = b""

    def __post_init__(self):
        object.__setattr__(self, "address", bytes(self.address))
        object.__setattr__(self, "tcp_options", bytes(self.tcp_options))
        if not 0 <= self.port <= 0xFFFF:
            raise ValueError(f"port {self.port} is not 0-65535")
        if len(self.address) != 16:
            raise ValueError(f"the address is {len(self.address)} octets, 16 are needed")
        fault = _address_fault(self.address)
        if fault:
            raise ValueError(f"Connect TLV address: {fault}")
        _, fault = _walk_options(self.tcp_options, padded=False)
        if fault:
            raise ValueError(f"Connect TLV TCP options, octet {fault[1]}: {fault[0]}")

    @classmethod
    def to(cls, address, port: int, tcp_options: bytes = b"") -> Connect:
        """A Connect TLV for an address as text (IPv4 or IPv6) or an ipaddress object."""
        try:
            packed = _packed(address)
        except ValueError:
            raise ValueError(f"{address!r} is not an IP address") from None
        return cls(port, packed, tcp_options)

    @property
    def host(self) -> str:
        """The address as text, IPv4-mapped turned back into IPv4."""
        return _text(self.address)

    def options(self) -> tuple[tuple[int, bytes], ...]:
        """(kind, value) of each TCP option asked for, in order."""
        out, i, raw = [], 0, self.tcp_options
        while i < len(raw):
            out.append((raw[i], raw[i + 2:i + raw[i + 1]]))
            i += raw[i + 1]
        return tuple(out)

    def encode(self) -> bytes:
        value = self.port.to_bytes(2, "big") + self.address + self.tcp_options
        return _tlv(self.type, _pad(value, 2))


@dataclass(frozen=True)
class ExtendedTcpHeader:
    """Type 20 (§6.2.6): the converter returns the TCP options of the server's SYN+ACK, as
    received (NOP and EOL included), zero-padded to a word boundary."""

    type: ClassVar[int] = 20
    tcp_options: bytes = b""

    def __post_init__(self):
        object.__setattr__(self, "tcp_options", _pad(bytes(self.tcp_options), 0))

    def encode(self) -> bytes:
        return _tlv(self.type, bytes(2) + self.tcp_options)  # the Unassigned field, then the options


@dataclass(frozen=True)
class SupportedTcpExtensions:
    """Type 21 (§6.2.4): the TCP option kinds the converter provides conversion for, in
    reply to an Info TLV. Padded with zero octets, so kind 0 cannot be listed. A received
    list is kept as it came; `encode` refuses the kinds the RFC forbids announcing."""

    type: ClassVar[int] = 21
    kinds: tuple[int, ...] = ()

    def __post_init__(self):
        kinds = tuple(self.kinds)
        object.__setattr__(self, "kinds", kinds)
        for kind in kinds:
            if not 1 <= kind <= 255:
                raise ValueError(f"TCP option kind {kind} is not 1-255 (zero octets are the padding)")

    def encode(self) -> bytes:
        for kind in self.kinds:
            if kind in NOT_ANNOUNCED:
                raise ValueError(f"TCP option kind {kind} must not be announced as supported (RFC 8803 §6.2.4, §7)")
        return _tlv(self.type, _pad(bytes(2) + bytes(self.kinds), 2))  # Unassigned, then the kinds


@dataclass(frozen=True)
class Cookie:
    """Type 22 (§6.2.7): an opaque cookie the converter computed for this client (returned
    in a Missing Cookie error), zero-padded to a word boundary; the client echoes it."""

    type: ClassVar[int] = 22
    cookie: bytes = b""

    def __post_init__(self):
        object.__setattr__(self, "cookie", _pad(bytes(self.cookie), 0))

    def encode(self) -> bytes:
        return _tlv(self.type, bytes(2) + self.cookie)  # the Zero field, then the cookie


@dataclass(frozen=True)
class Error:
    """Type 30 (§6.2.8): Error Code and Value; the Value is at least one octet and padded
    to end on a word boundary (a Value of zero is one zero octet)."""

    type: ClassVar[int] = 30
    code: int
    value: bytes = b""

    def __post_init__(self):
        if not 0 <= self.code <= 255:
            raise ValueError(f"error code {self.code} is not 0-255")
        try:
            object.__setattr__(self, "code", ErrorCode(self.code))
        except ValueError:
            pass  # an unassigned or private-use code stays an int
        object.__setattr__(self, "value", _pad(bytes(self.value) or b"\0", 1))

    def cookie(self) -> Cookie:
        """The cookie of a Missing Cookie error, for the client's next Convert message."""
        if self.code != ErrorCode.MISSING_COOKIE:
            raise ValueError(f"error {self.code} carries no cookie")
        return Cookie(self.value[1:])

    def retry_after(self) -> int:
        """Seconds to wait after Resource Exceeded or Network Failure: the Value's first
        octet, a zero meaning the RFC's default of (at least) 30."""
        if self.code not in (ErrorCode.RESOURCE_EXCEEDED, ErrorCode.NETWORK_FAILURE):
            raise ValueError(f"error {self.code} suggests no delay")
        return self.value[0] or DEFAULT_RETRY_AFTER

    def encode(self) -> bytes:
        return _tlv(self.type, bytes([self.code]) + self.value)


_NAMES = {Info.type: "Info", Connect.type: "Connect", ExtendedTcpHeader.type: "Extended TCP Header",
          SupportedTcpExtensions.type: "Supported TCP Extensions", Cookie.type: "Cookie", Error.type: "Error"}


@dataclass(frozen=True)
class UnknownTlv:
    """A TLV type this module does not know, kept so the receiver can decide: an MCP answers
    a client's with Unsupported Message (§6.2.8). Value zero-padded like any TLV's."""

    type: int
    value: bytes = b""

    def __post_init__(self):
        if not 1 <= self.type <= 255 or self.type in _NAMES:
            raise ValueError(f"TLV type {self.type} is not an unknown type (1-255 less {sorted(_NAMES)})")
        object.__setattr__(self, "value", _pad(bytes(self.value), 2))

    def encode(self) -> bytes:
        return _tlv(self.type, self.value)


Tlv = Union[Info, Connect, ExtendedTcpHeader, SupportedTcpExtensions, Cookie, Error, UnknownTlv]


# ---------------------------------------------------------------- build and parse

def build(tlvs: Iterable[Tlv]) -> bytes:
    """A Convert message: the fixed header and these TLVs. No TLVs gives the bare header
    the converter answers a Base Connect TLV with (Figure 5's "SYN+ACK [ ]")."""
    body, seen = bytearray(), set()
    for tlv in tlvs:
        if tlv.type in seen:
            raise ValueError(f"a second TLV of type {tlv.type}: a TLV MUST appear only once (RFC 8803 §6.2.1)")
        seen.add(tlv.type)
        body += tlv.encode()
    total = HEADER_LEN + len(body)
    if total > MAX_MESSAGE:
        raise ValueError(f"the message is {total} octets, at most {MAX_MESSAGE}")
    return bytes((VERSION, total // 4)) + MAGIC.to_bytes(2, "big") + bytes(body)


def _zero_field(value: bytes, at: int, tlv_type: int) -> None:
    for j in range(2):
        if value[j]:
            raise ConvertError(ErrorCode.MALFORMED_MESSAGE, f"the Zero field of the {_NAMES[tlv_type]} TLV is not zero", at + j)


def _decode(tlv_type: int, value: bytes, at: int) -> Tlv:
    """One complete TLV; ``value`` follows its Type and Length octets, ``at`` is its offset."""
    malformed = ErrorCode.MALFORMED_MESSAGE
    if tlv_type == Info.type:
        _zero_field(value, at + 2, tlv_type)
        return Info()
    if tlv_type == Connect.type:
        address = value[2:18]
        fault = _address_fault(address)
        if fault:
            raise ConvertError(malformed, f"Connect TLV address: {fault}", at + 4)
        area = value[18:]
        stop, fault = _walk_options(area, padded=True)
        if fault:
            raise ConvertError(malformed, f"Connect TLV: {fault[0]}", at + 20 + fault[1])
        return Connect(int.from_bytes(value[:2], "big"), address, area[:stop])
    if tlv_type == ExtendedTcpHeader.type:
        return ExtendedTcpHeader(value[2:])  # the Unassigned field is ignored by the receiver
    if tlv_type == SupportedTcpExtensions.type:
        kinds = value[2:]  # after the Unassigned field, ignored by the receiver
        listed = len(kinds.rstrip(b"\0"))
        if 0 in kinds[:listed]:
            raise ConvertError(malformed, "TCP option kind 0 listed as supported", at + 4 + kinds.index(0))
        if len(kinds) - listed >= 4:
            raise ConvertError(malformed, f"{len(kinds) - listed} octets of zero padding after the kinds, at most 3",
                               at + 4 + listed)
        return SupportedTcpExtensions(tuple(kinds[:listed]))
    if tlv_type == Cookie.type:
        _zero_field(value, at + 2, tlv_type)
        return Cookie(value[2:])
    if tlv_type == Error.type:
        return Error(value[0], value[1:])
    return UnknownTlv(tlv_type, value)


def parse(data: bytes) -> tuple[list[Tlv], int]:
    """The TLVs of the Convert message at the start of ``data`` and its length in octets;
    relayed data may follow it. Raises Incomplete while ``data`` is a valid beginning of a
    message, ConvertError as soon as it cannot be one."""
    data = bytes(data[:MAX_MESSAGE])
    n = len(data)
    malformed = ErrorCode.MALFORMED_MESSAGE
    # The Magic Number says whether this is Convert at all, so it is judged before the
    # version: other data sent to the converter's port gets no answer (§6).
    for i, want in ((2, MAGIC >> 8), (3, MAGIC & 0xFF)):
        if n > i and data[i] != want:
            raise ConvertError(malformed, f"magic number octet 0x{data[i]:02x}, 0x{want:02x} expected: not a Convert message",
                               i, answer=False)
    if n > 0 and data[0] != VERSION:
        raise ConvertError(ErrorCode.UNSUPPORTED_VERSION, f"version {data[0]}, only {VERSION} is supported", 0)
    if n > 1 and data[1] == 0:
        raise ConvertError(malformed, "Total Length 0", 1, answer=False)
    if n < HEADER_LEN:
        raise Incomplete((data[1] * 4 if n > 1 else HEADER_LEN) - n)
    end = data[1] * 4
    tlvs: list[Tlv] = []
    seen: dict[int, int] = {}
    i = HEADER_LEN
    while i < min(n, end):
        tlv_type = data[i]
        name = _NAMES.get(tlv_type, f"type {tlv_type}")
        if tlv_type == 0:
            raise ConvertError(ErrorCode.UNSUPPORTED_MESSAGE, "TLV type 0 is reserved", i)
        if tlv_type in seen:
            raise ConvertError(malformed, f"a second {name} TLV (the first is at octet {seen[tlv_type]})", i)
        seen[tlv_type] = i
        if i + 1 >= n:
            break
        words = data[i + 1]
        if words == 0:
            raise ConvertError(malformed, f"{name} TLV of length 0", i + 1)
        if i + 4 * words > end:
            raise ConvertError(malformed, f"{name} TLV of {4 * words} octets runs past the end of the {end}-octet message", i + 1)
        if tlv_type == Info.type and words != 1:
            raise ConvertError(malformed, f"Info TLV of length {words}, 1 expected", i + 1)
        if tlv_type == Connect.type and words < 5:
            raise ConvertError(malformed, f"Connect TLV of length {words}, at least 5 needed", i + 1)
        if i + 4 * words > n:
            break
        tlvs.append(_decode(tlv_type, data[i + 2:i + 4 * words], i))
        i += 4 * words
    if n < end:
        raise Incomplete(end - n)
    return tlvs, end


# ---------------------------------------------------------------- what the daemons send

def connect_message(address, port: int, tcp_options: bytes = b"", cookie: bytes | None = None) -> bytes:
    """The client's first message (in its SYN): connect to ``address``:``port`` (IPv4 or
    IPv6 text), with the TCP options to ask for and the cookie the converter gave, if any."""
    tlvs: list[Tlv] = [Connect.to(address, port, tcp_options)]
    if cookie is not None:
        tlvs.append(Cookie(cookie))
    return build(tlvs)


def connect_target(tlvs: Iterable[Tlv]) -> tuple[str, int] | None:
    """(address, port) of the Connect TLV, IPv4-mapped turned back into IPv4; None when the
    message has none (an Info-only message)."""
    for tlv in tlvs:
        if isinstance(tlv, Connect):
            return tlv.host, tlv.port
    return None


def info_message() -> bytes:
    """The client's question for the converter's supported TCP extensions."""
    return build([Info()])


def supported_extensions_message(kinds: Iterable[int]) -> bytes:
    """The converter's answer to an Info TLV."""
    return build([SupportedTcpExtensions(tuple(kinds))])


def error_message(code: int, value: bytes = b"") -> bytes:
    """A message of one Error TLV; an empty ``value`` is the single zero octet the RFC asks
    for where the Value is zero."""
    return build([Error(code, value)])


def echo_value(received: bytes) -> bytes:
    """The Value of a Malformed or Unsupported Message error: a zero octet, then the received
    message, keeping its alignment (Figure 23), cut to what fits a message."""
    return b"\0" + bytes(received[:MAX_ECHO])


def cookie_value(cookie: bytes) -> bytes:
    """The Value of a Missing Cookie error: a zero octet, then the cookie (§6.2.8)."""
    return b"\0" + bytes(cookie)
