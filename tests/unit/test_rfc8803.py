"""RFC 8803 Convert messages (mptcp_cpe.rfc8803), pure bytes in and out.

Vectors are written octet by octet from the RFC's figures: the fixed header (Figure 13),
the generic TLV (Figure 14), Info (15), Supported TCP Extensions (16), Base and Extended
Connect (17, 18) with the TCP Options field (19), Extended TCP Header (20), Cookie (21),
Error (22) and its echo layout (23). Lengths count 32-bit words.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mptcp_cpe import rfc8803
from mptcp_cpe.rfc8803 import (
    CLIENT_TEARDOWN, MAX_MESSAGE, NOT_ANNOUNCED, Connect, ConvertError, Cookie, Error, ErrorCode,
    ExtendedTcpHeader, Incomplete, Info, SupportedTcpExtensions, Teardown, UnknownTlv, build,
    connect_message, connect_target, cookie_value, echo_value, error_message, info_message, parse,
    supported_extensions_message,
)


def v4_mapped(text: str) -> bytes:
    return bytes(10) + b"\xff\xff" + ipaddress.IPv4Address(text).packed


# The client's first message: a Base Connect TLV to 192.0.2.1:443.
CONNECT_V4 = ("01" "06" "2263"             # Version 1 | Total Length 6 words (24 octets) | Magic Number
              "0a" "05" "01bb"             # Connect TLV: Type 10 | Length 5 words | Remote Peer Port 443
              "00000000" "00000000"        # Remote Peer IP Address (128 bits): ::ffff:192.0.2.1,
              "0000ffff" "c0000201")       #   IPv4 as IPv4-mapped
# An Extended Connect TLV to 198.51.100.7:80 sending a TFO cookie to the server (§7.6).
CONNECT_TFO = ("01" "08" "2263"            # Version 1 | Total Length 8 words (32 octets) | Magic Number
               "0a" "07" "0050"            # Connect TLV: Type 10 | Length 7 words | Remote Peer Port 80
               "00000000" "00000000"       # Remote Peer IP Address ::ffff:198.51.100.7
               "0000ffff" "c6336407"
               "22" "06" "a1b2c3d4"        # TCP option: Kind 34 (TFO) | Length 6 | cookie a1b2c3d4
               "0000")                     # zero padding to the 32-bit boundary
# An Extended Connect TLV to [2001:db8::80]:8080 asking for MPTCP and a TFO cookie, with the
# Cookie TLV the converter gave in an earlier Missing Cookie error.
CONNECT_V6 = ("01" "0a" "2263"             # Version 1 | Total Length 10 words (40 octets) | Magic Number
              "0a" "06" "1f90"             # Connect TLV: Type 10 | Length 6 words | Remote Peer Port 8080
              "20010db8" "00000000"        # Remote Peer IP Address 2001:db8::80
              "00000000" "00000080"
              "1e" "02"                    # TCP option: Kind 30 (MPTCP) | Length 2: no content (§7.5)
              "22" "02"                    # TCP option: Kind 34 (TFO) | Length 2: cookie request (§7.6)
              "16" "03" "0000"             # Cookie TLV: Type 22 | Length 3 words | Zero
              "0123456789abcdef")          # Opaque Cookie
INFO = ("01" "02" "2263"                   # Version 1 | Total Length 2 words | Magic Number
        "01" "01" "0000")                  # Info TLV: Type 1 | Length 1 word | Zero
SUPPORTED = ("01" "03" "2263"              # Version 1 | Total Length 3 words | Magic Number
             "15" "02" "0000"              # Supported TCP Extensions TLV: Type 21 | Length 2 words | Unassigned
             "1e" "22" "08"                # Kind #1 30 (MPTCP), #2 34 (TFO), #3 8 (Timestamp)
             "00")                         # zero padding
EXT_HEADER = ("01" "05" "2263"             # Version 1 | Total Length 5 words | Magic Number
              "14" "04" "0000"             # Extended TCP Header TLV: Type 20 | Length 4 words | Unassigned
              "020405b4"                   # the server's SYN+ACK options: MSS 1460,
              "01010402"                   #   NOP NOP SACK-Permitted,
              "01030307")                  #   NOP Window Scale 7
BARE = ("01" "01" "2263")                  # a header alone: the reply to a Base Connect (Figure 5, "[ ]")
RESET = ("01" "02" "2263"                  # Version 1 | Total Length 2 words | Magic Number
         "1e" "01" "60" "00")              # Error TLV: Type 30 | Length 1 word | Error Code 96 | Value 0
UNREACHABLE = ("01" "02" "2263"
               "1e" "01" "61" "03")        # Error 97 Destination Unreachable | ICMP Code 3 (port unreachable)
RESOURCES = ("01" "02" "2263"
             "1e" "01" "40" "3c")          # Error 64 Resource Exceeded | retry after 60 seconds
VERSION_ERR = ("01" "02" "2263"
               "1e" "01" "00" "01")        # Error 0 Unsupported Version | supported: version 1
MISSING_COOKIE = ("01" "04" "2263"         # Version 1 | Total Length 4 words | Magic Number
                  "1e" "03" "03" "00"      # Error TLV: Length 3 words | Error Code 3 | first Value octet zero
                  "0123456789abcdef")      # the cookie computed for this client
MULTICAST_CONNECT = ("01" "06" "2263" "0a" "05" "01bb"
                     "ff020000" "00000000" "00000000" "00000001")  # Connect to ff02::1: refused
MALFORMED_ECHO = ("01" "08" "2263"         # Version 1 | Total Length 8 words | Magic Number
                  "1e" "07" "01" "00"      # Error TLV: Length 7 words | Error Code 1 | Zeros (Figure 23)
                  + MULTICAST_CONNECT)     # the message that triggered the error, aligned
WITH_UNKNOWN = ("01" "04" "2263"           # Version 1 | Total Length 4 words | Magic Number
                "01" "01" "0000"           # Info TLV
                "c8" "02" "aabbccddeeff")  # TLV Type 200 (private use) | Length 2 words | Value

VECTORS = [
    (CONNECT_V4, [Connect(443, v4_mapped("192.0.2.1"))]),
    (CONNECT_TFO, [Connect(80, v4_mapped("198.51.100.7"), bytes.fromhex("2206a1b2c3d4"))]),
    (CONNECT_V6, [Connect(8080, ipaddress.IPv6Address("2001:db8::80").packed, bytes.fromhex("1e022202")),
                  Cookie(bytes.fromhex("0123456789abcdef"))]),
    (INFO, [Info()]),
    (SUPPORTED, [SupportedTcpExtensions((30, 34, 8))]),
    (EXT_HEADER, [ExtendedTcpHeader(bytes.fromhex("020405b4" "01010402" "01030307"))]),
    (BARE, []),
    (RESET, [Error(ErrorCode.CONNECTION_RESET)]),
    (UNREACHABLE, [Error(ErrorCode.DESTINATION_UNREACHABLE, b"\x03")]),
    (RESOURCES, [Error(ErrorCode.RESOURCE_EXCEEDED, b"\x3c")]),
    (VERSION_ERR, [Error(ErrorCode.UNSUPPORTED_VERSION, b"\x01")]),
    (MISSING_COOKIE, [Error(ErrorCode.MISSING_COOKIE, bytes.fromhex("00" "0123456789abcdef"))]),
    (MALFORMED_ECHO, [Error(ErrorCode.MALFORMED_MESSAGE, bytes.fromhex("00" + MULTICAST_CONNECT))]),
    (WITH_UNKNOWN, [Info(), UnknownTlv(200, bytes.fromhex("aabbccddeeff"))]),
]
VALID = [bytes.fromhex(h) for h, _ in VECTORS]


@pytest.mark.parametrize(("hexdata", "tlvs"), VECTORS)
def test_vectors(hexdata, tlvs):
    data = bytes.fromhex(hexdata)
    assert len(data) == data[1] * 4
    assert parse(data) == (tlvs, len(data))
    assert build(tlvs) == data


def test_what_the_daemons_send():
    assert connect_message("192.0.2.1", 443).hex() == CONNECT_V4
    assert connect_message("198.51.100.7", 80, bytes.fromhex("2206a1b2c3d4")).hex() == CONNECT_TFO
    assert connect_message("2001:db8::80", 8080, bytes.fromhex("1e022202"),
                           cookie=bytes.fromhex("0123456789abcdef")).hex() == CONNECT_V6
    assert info_message().hex() == INFO
    assert supported_extensions_message([30, 34, 8]).hex() == SUPPORTED
    assert build([]).hex() == BARE
    assert error_message(ErrorCode.CONNECTION_RESET).hex() == RESET
    assert error_message(ErrorCode.DESTINATION_UNREACHABLE, b"\x03").hex() == UNREACHABLE
    assert error_message(ErrorCode.MISSING_COOKIE, cookie_value(bytes.fromhex("0123456789abcdef"))).hex() == MISSING_COOKIE
    assert error_message(ErrorCode.MALFORMED_MESSAGE, echo_value(bytes.fromhex(MULTICAST_CONNECT))).hex() == MALFORMED_ECHO


@pytest.mark.parametrize(("address", "port", "target"), [
    ("192.0.2.1", 443, ("192.0.2.1", 443)),
    ("192.0.2.1", 0, ("192.0.2.1", 0)),
    ("203.0.113.9", 65535, ("203.0.113.9", 65535)),
    ("::ffff:192.0.2.1", 443, ("192.0.2.1", 443)),  # written mapped, the same 16 octets
    ("2001:db8::80", 8080, ("2001:db8::80", 8080)),
    ("2001:db8::80", 0, ("2001:db8::80", 0)),
    ("2001:db8:0:0:0:0:0:1", 65535, ("2001:db8::1", 65535)),
    (ipaddress.IPv4Address("198.51.100.7"), 80, ("198.51.100.7", 80)),
])
def test_connect_targets(address, port, target):
    data = connect_message(address, port)
    assert data[6:8] == port.to_bytes(2, "big")  # Remote Peer Port right after the TLV's Type and Length
    tlvs, consumed = parse(data)
    assert consumed == len(data) == 24
    assert connect_target(tlvs) == target


def test_connect_target_of_a_message_without_connect():
    assert connect_target(parse(bytes.fromhex(INFO))[0]) is None


def test_connect_options_listed():
    tlvs, _ = parse(bytes.fromhex(CONNECT_V6))
    assert tlvs[0].options() == ((30, b""), (34, b""))
    assert parse(bytes.fromhex(CONNECT_TFO))[0][0].options() == ((34, bytes.fromhex("a1b2c3d4")),)
    assert Connect.to("192.0.2.1", 1).options() == ()


def test_payload_after_the_message_is_not_consumed():
    for data in VALID:
        for payload in (b"", b"GET / HTTP/1.1\r\n", bytes.fromhex(INFO), data, bytes(2000)):
            tlvs, consumed = parse(data + payload)
            assert consumed == len(data)
            assert (tlvs, consumed) == parse(data)


def test_memoryview_and_bytearray():
    data = bytes.fromhex(CONNECT_V6) + b"payload"
    assert parse(memoryview(data)) == parse(bytearray(data)) == parse(data)


def test_error_helpers():
    (err,), _ = parse(bytes.fromhex(MISSING_COOKIE))
    assert err.cookie() == Cookie(bytes.fromhex("0123456789abcdef"))
    assert parse(bytes.fromhex(RESOURCES))[0][0].retry_after() == 60
    assert Error(ErrorCode.NETWORK_FAILURE).retry_after() == 30  # a Value of zero: at least 30 s
    with pytest.raises(ValueError, match="carries no cookie"):
        Error(ErrorCode.NOT_AUTHORIZED).cookie()
    with pytest.raises(ValueError, match="suggests no delay"):
        Error(ErrorCode.CONNECTION_RESET).retry_after()


def test_error_codes_and_teardown():
    assert {c.name: int(c) for c in ErrorCode} == {
        "UNSUPPORTED_VERSION": 0, "MALFORMED_MESSAGE": 1, "UNSUPPORTED_MESSAGE": 2, "MISSING_COOKIE": 3,
        "NOT_AUTHORIZED": 32, "UNSUPPORTED_TCP_OPTION": 33, "RESOURCE_EXCEEDED": 64, "NETWORK_FAILURE": 65,
        "CONNECTION_RESET": 96, "DESTINATION_UNREACHABLE": 97}
    # §6.2.2: the converter sends the Error TLV then closes, never RST at once; §6.2.8: the client resets.
    assert {c.converter_teardown for c in ErrorCode} == {Teardown.CLOSE}
    assert CLIENT_TEARDOWN is Teardown.RESET


def test_unassigned_and_private_error_codes_stay_ints():
    (err,), _ = parse(bytes.fromhex("01022263" "1e01" "c8" "07"))
    assert err.code == 200 and not isinstance(err.code, ErrorCode) and err.value == b"\x07"
    assert build([err]).hex() == "01022263" "1e01" "c8" "07"


def test_values_are_held_in_wire_form():
    assert Cookie(b"abc") == Cookie(b"abc\0") and Cookie(b"abc").cookie == b"abc\0"
    assert Error(96) == Error(ErrorCode.CONNECTION_RESET, b"\0")
    assert Error(33, b"\x1d").value == b"\x1d"  # 1 octet: Type, Length, Code, Value fill one word
    assert Error(33, b"\x1d\x22").value == b"\x1d\x22\0\0\0"
    assert ExtendedTcpHeader(b"\x01").tcp_options == b"\x01\0\0\0"
    assert UnknownTlv(200, b"").value == b"\0\0" and UnknownTlv(200, b"abc").value == b"abc\0\0\0"


def test_unassigned_fields_are_ignored_on_receipt():
    # §6.2.4, §6.2.6: Unassigned is set to zero by the sender and ignored by the receiver.
    assert parse(bytes.fromhex("01032263" "1502ffff" "1e220800"))[0] == [SupportedTcpExtensions((30, 34, 8))]
    assert parse(bytes.fromhex("01032263" "1402abcd" "020405b4"))[0] == [ExtendedTcpHeader(bytes.fromhex("020405b4"))]


def test_kinds_never_announced_are_read_but_not_sent():
    # MSS (2) and Window Scale (3) MUST NOT be announced (§7.1, §7.2); a client keeps what came.
    (tlv,), _ = parse(bytes.fromhex("01032263" "15020000" "1e020300"))
    assert tlv.kinds == (30, 2, 3)
    for kind in sorted(NOT_ANNOUNCED - {0}):
        with pytest.raises(ValueError, match=f"kind {kind} must not be announced"):
            supported_extensions_message([30, kind])


def test_largest_message():
    cookie = Cookie(bytes(range(256)) * 3 + bytes(244))  # 1012 octets: header 4 + Type, Length, Zero 4
    data = build([cookie])
    assert len(data) == MAX_MESSAGE == 1020 and data[1] == 255 and data[5] == 254
    assert parse(data + b"payload") == ([cookie], 1020)
    with pytest.raises(ValueError, match="at most 1016 fit"):
        build([Cookie(bytes(1016))])
    with pytest.raises(ValueError, match="the message is 1024 octets, at most 1020"):
        build([Cookie(bytes(1000)), Info(), Error(96, bytes(9))])


# ---------------------------------------------------------------- refusals

@pytest.mark.parametrize(("hexdata", "code", "offset", "answer"), [
    ("02", ErrorCode.UNSUPPORTED_VERSION, 0, True),
    ("00012263", ErrorCode.UNSUPPORTED_VERSION, 0, True),   # version 0 is reserved
    ("02022263" "01010000", ErrorCode.UNSUPPORTED_VERSION, 0, True),
    ("0100", ErrorCode.MALFORMED_MESSAGE, 1, False),        # Total Length 0: reset (§6.1)
    ("01002263", ErrorCode.MALFORMED_MESSAGE, 1, False),
    ("0102aa", ErrorCode.MALFORMED_MESSAGE, 2, False),      # Magic Number: not a Convert message
    ("01022264" "01010000", ErrorCode.MALFORMED_MESSAGE, 3, False),
    ("02022264" "01010000", ErrorCode.MALFORMED_MESSAGE, 3, False),  # no magic: the version is not judged
    (b"GET / HTTP/1.1\r\n".hex(), ErrorCode.MALFORMED_MESSAGE, 2, False),  # ignored, not answered (§6)
    ("01022263" "00010000", ErrorCode.UNSUPPORTED_MESSAGE, 4, True),  # TLV type 0 is reserved (§6.2.2)
    ("01022263" "00", ErrorCode.UNSUPPORTED_MESSAGE, 4, True),        # known before the rest arrives
    ("01022263" "0100", ErrorCode.MALFORMED_MESSAGE, 5, True),        # TLV length 0
    ("01022263" "1602", ErrorCode.MALFORMED_MESSAGE, 5, True),        # 8-octet Cookie TLV in a 4-octet space
    ("01032263" "01020000" "00000000", ErrorCode.MALFORMED_MESSAGE, 5, True),  # Info TLV is 1 word
    ("01052263" "0a04", ErrorCode.MALFORMED_MESSAGE, 5, True),        # Connect TLV is at least 5 words
    ("01032263" "01010000" "01010000", ErrorCode.MALFORMED_MESSAGE, 8, True),  # a TLV appears once (§6.2.1)
    ("01042263" "c8010000" "1e016000" "c8010000", ErrorCode.MALFORMED_MESSAGE, 12, True),
    ("01022263" "01010001", ErrorCode.MALFORMED_MESSAGE, 7, True),    # Info's Zero field
    ("01032263" "16020100" "12345678", ErrorCode.MALFORMED_MESSAGE, 6, True),  # Cookie's Zero field
    ("01032263" "1502" "0000" "1e002200", ErrorCode.MALFORMED_MESSAGE, 9, True),  # kind 0 inside the list
    ("01042263" "1503" "0000" "1e000000" "00000000", ErrorCode.MALFORMED_MESSAGE, 9, True),  # a word of padding
    (MULTICAST_CONNECT, ErrorCode.MALFORMED_MESSAGE, 8, True),
])
def test_malformed_with_the_octet_at_fault(hexdata, code, offset, answer):
    with pytest.raises(ConvertError) as info:
        parse(bytes.fromhex(hexdata))
    assert (info.value.code, info.value.offset, info.value.answer) == (code, offset, answer)
    assert str(info.value).startswith(f"octet {offset}: ")


def connect_hex(address_hex: str, options_hex: str = "") -> str:
    words = 5 + len(options_hex) // 8
    return f"01{words + 1:02x}2263" f"0a{words:02x}01bb" + address_hex + options_hex


@pytest.mark.parametrize(("address", "fragment"), [
    ("ff020000000000000000000000000001", "ff02::1 is multicast"),
    ("00000000000000000000000000000001", "::1 is loopback"),
    ("00000000000000000000000000000000", ":: is the unspecified address"),
    ("00000000000000000000ffffe0000001", "224.0.0.1 is multicast"),
    ("00000000000000000000ffffefffffff", "239.255.255.255 is multicast"),
    ("00000000000000000000ffffffffffff", "255.255.255.255 is the broadcast address"),
    ("00000000000000000000ffff7f000001", "127.0.0.1 is loopback"),
    ("00000000000000000000ffff7f0a0b0c", "127.10.11.12 is loopback"),
    ("00000000000000000000ffff00000000", "0.0.0.0 is 'this host'"),
    ("00000000000000000000ffff00010203", "0.1.2.3 is 'this host'"),
    ("000000000000000000000000c0000201", "::c000:201 is IPv4-compatible"),
])
def test_connect_addresses_refused(address, fragment):
    with pytest.raises(ConvertError) as info:
        parse(bytes.fromhex(connect_hex(address)))
    assert info.value.code == ErrorCode.MALFORMED_MESSAGE and info.value.offset == 8
    assert fragment in str(info.value)
    with pytest.raises(ValueError, match="Connect TLV address"):
        Connect(443, bytes.fromhex(address))


V4 = "00000000000000000000ffffc0000201"


@pytest.mark.parametrize(("options", "offset", "fragment"), [
    ("01000000", 24, "kind 1 (NOP)"),           # EOL and NOP MUST NOT be in the field (§6.2.5)
    ("1e020100", 26, "kind 1 (NOP)"),
    ("1e060000", 25, "length 6 runs past"),
    ("1e010000", 25, "has length 1"),           # the minimum TCP option Length is 2
    ("1e000000", 25, "has length 0"),
    ("1e030008", 27, "kind 8 has no length octet"),
    ("00000000", 24, "4 octets of zero padding"),  # padding only up to the boundary
    ("1e020000" "00000000", 26, "6 octets of zero padding"),
    ("001e0200", 25, "only zero padding"),
    ("1e0200ff", 27, "only zero padding"),
])
def test_connect_tcp_options_refused(options, offset, fragment):
    with pytest.raises(ConvertError) as info:
        parse(bytes.fromhex(connect_hex(V4, options)))
    assert info.value.code == ErrorCode.MALFORMED_MESSAGE and info.value.offset == offset
    assert fragment in str(info.value)


@pytest.mark.parametrize(("make", "fragment"), [
    (lambda: Connect.to("192.0.2.1", 65536), "port 65536 is not 0-65535"),
    (lambda: Connect.to("192.0.2.1", -1), "port -1"),
    (lambda: Connect.to("example.org", 80), "'example.org' is not an IP address"),
    (lambda: Connect.to("224.0.0.1", 80), "224.0.0.1 is multicast"),
    (lambda: Connect.to("127.0.0.1", 80), "127.0.0.1 is loopback"),
    (lambda: Connect.to("::1", 80), "::1 is loopback"),
    (lambda: Connect(80, bytes(4)), "the address is 4 octets"),
    (lambda: Connect.to("192.0.2.1", 80, b"\x1e"), "kind 30 has no length octet"),
    (lambda: Connect.to("192.0.2.1", 80, b"\x1e\x02\x00"), "kind 0 (EOL) must not"),  # no padding: options only
    (lambda: Connect.to("192.0.2.1", 80, b"\x01\x1e\x02"), "kind 1 (NOP) must not"),
    (lambda: Connect.to("192.0.2.1", 80, b"\x1e\x05\x00"), "runs past"),
    (lambda: SupportedTcpExtensions((30, 0)), "kind 0 is not 1-255"),
    (lambda: SupportedTcpExtensions((256,)), "kind 256 is not 1-255"),
    (lambda: Error(256), "error code 256"),
    (lambda: UnknownTlv(1), "TLV type 1 is not an unknown type"),
    (lambda: UnknownTlv(0), "TLV type 0 is not an unknown type"),
    (lambda: UnknownTlv(256), "TLV type 256"),
    (lambda: build([Info(), Info()]), "a second TLV of type 1"),
    (lambda: build([UnknownTlv(200), Error(1), UnknownTlv(200, b"x")]), "a second TLV of type 200"),
    (lambda: build([Connect.to("192.0.2.1", 80, (bytes([30, 255]) + bytes(253)) * 4)]), "at most 1016 fit"),
])
def test_build_refuses(make, fragment):
    with pytest.raises(ValueError) as info:
        make()
    assert fragment in str(info.value)
    assert not isinstance(info.value, ConvertError)  # a sender's mistake, not a received message


def test_reply_of_an_mcp():
    received = bytes.fromhex(MULTICAST_CONNECT) + b"data the client sent after it"
    with pytest.raises(ConvertError) as info:
        parse(received)
    assert info.value.reply(received).hex() == MALFORMED_ECHO  # the echo stops at the Total Length
    with pytest.raises(ConvertError) as info:
        parse(b"\x02\x02\x22\x63\x01\x01\x00\x00")
    assert info.value.reply(b"\x02\x02\x22\x63\x01\x01\x00\x00").hex() == VERSION_ERR
    bad_type = bytes.fromhex("01022263" "00010000")
    with pytest.raises(ConvertError) as info:
        parse(bad_type)
    assert info.value.reply(bad_type).hex() == "01042263" "1e030200" "01022263" "00010000"
    for silent in (bytes.fromhex("01002263"), b"GET / HTTP/1.1\r\n"):
        with pytest.raises(ConvertError) as info:
            parse(silent)
        assert info.value.reply(silent) is None  # reset without answering


def test_an_echo_is_cut_to_fit_a_message():
    received = bytes.fromhex("01ff2263") + bytes(1016)  # a 1020-octet message
    data = error_message(ErrorCode.MALFORMED_MESSAGE, echo_value(received))
    assert len(data) == MAX_MESSAGE
    (err,), _ = parse(data)
    assert err.value == b"\0" + received[:1012]


# ---------------------------------------------------------------- every prefix, every corruption

@pytest.mark.parametrize("data", VALID, ids=[h[:16] for h, _ in VECTORS])
def test_every_truncation_is_incomplete(data):
    for cut in range(len(data)):
        with pytest.raises(Incomplete) as info:
            parse(data[:cut])
        assert info.value.needed == (len(data) if cut >= 2 else 4) - cut


@pytest.mark.parametrize("data", VALID, ids=[h[:16] for h, _ in VECTORS])
def test_every_single_octet_corruption(data):
    for pos in range(len(data)):
        for octet in range(256):
            if octet == data[pos]:
                continue
            corrupt = data[:pos] + bytes([octet]) + data[pos + 1:]
            try:
                tlvs, consumed = parse(corrupt)
            except ConvertError as exc:
                assert 0 <= exc.offset < len(corrupt)
            except Incomplete as exc:
                # Only a larger Total Length makes the octets a valid beginning again.
                assert pos == 1 and octet > data[1] and exc.needed == 4 * octet - len(data)
            else:
                assert consumed <= len(corrupt) and consumed % 4 == 0
                check_rebuilds(tlvs)


def check_rebuilds(tlvs) -> None:
    """What parses is canonical: rebuilt, it parses to itself. Kinds a converter must not
    announce are the exception: read as they came, never sent."""
    if any(isinstance(t, SupportedTcpExtensions) and set(t.kinds) & NOT_ANNOUNCED for t in tlvs):
        return
    assert parse(build(tlvs))[0] == tlvs


# ---------------------------------------------------------------- properties

def connectable(ip) -> bool:
    """The addresses §6.2.5 (and this codec) let a Connect TLV carry, decided independently."""
    if ip.version == 4:
        return not (ip.is_multicast or ip.is_loopback or ip == ipaddress.IPv4Address("255.255.255.255")
                    or ip in ipaddress.IPv4Network("0.0.0.0/8"))
    return not (ip.is_multicast or ip.is_loopback or ip.is_unspecified or ip.ipv4_mapped
                or ip in ipaddress.IPv6Network("::/96"))


tcp_option = st.builds(lambda kind, value: bytes([kind, 2 + len(value)]) + value,
                       st.integers(2, 255), st.binary(max_size=12))
connects = st.builds(lambda ip, port, opts: Connect.to(ip, port, b"".join(opts)),
                     st.ip_addresses().filter(connectable), st.integers(0, 65535),
                     st.lists(tcp_option, max_size=4))
kinds = st.integers(1, 255).filter(lambda k: k not in NOT_ANNOUNCED)
KNOWN_TYPES = {1, 10, 20, 21, 22, 30}
tlv_strategies = {
    "info": st.just(Info()),
    "connect": connects,
    "extended": st.builds(ExtendedTcpHeader, st.binary(max_size=60)),
    "supported": st.builds(SupportedTcpExtensions, st.lists(kinds, max_size=40).map(tuple)),
    "cookie": st.builds(Cookie, st.binary(max_size=64)),
    "error": st.builds(Error, st.integers(0, 255), st.binary(max_size=64)),
    "unknown": st.builds(UnknownTlv, st.integers(1, 255).filter(lambda t: t not in KNOWN_TYPES), st.binary(max_size=64)),
}
any_tlv = st.one_of(*tlv_strategies.values())
messages = st.lists(any_tlv, max_size=7, unique_by=lambda t: t.type)


@pytest.mark.parametrize("kind", sorted(tlv_strategies))
def test_round_trip_of_each_tlv(kind):
    @settings(max_examples=300, deadline=None)
    @given(tlv_strategies[kind], st.binary(max_size=20))
    def check(tlv, payload):
        data = build([tlv])
        assert data[1] * 4 == len(data) and len(data) % 4 == 0
        assert parse(data + payload) == ([tlv], len(data))

    check()


@settings(max_examples=500, deadline=None)
@given(messages, st.binary(max_size=40))
def test_round_trip_of_mixed_messages(tlvs, payload):
    assume(sum(len(t.encode()) for t in tlvs) <= MAX_MESSAGE - 4)
    data = build(tlvs)
    assert parse(data + payload) == (tlvs, len(data))
    assert connect_target(tlvs) == next(((t.host, t.port) for t in tlvs if isinstance(t, Connect)), None)


@settings(max_examples=300, deadline=None)
@given(messages, st.data())
def test_truncated_and_corrupted_random_messages(tlvs, draw):
    assume(sum(len(t.encode()) for t in tlvs) <= MAX_MESSAGE - 4)
    data = build(tlvs)
    cut = draw.draw(st.integers(0, len(data) - 1))
    with pytest.raises(Incomplete):
        parse(data[:cut])
    pos, octet = draw.draw(st.integers(0, len(data) - 1)), draw.draw(st.integers(0, 255))
    try:
        parse(data[:pos] + bytes([octet]) + data[pos + 1:])
    except (ConvertError, Incomplete):
        pass


def check_junk(data: bytes) -> None:
    try:
        tlvs, consumed = parse(data)
    except ConvertError as exc:
        assert 0 <= exc.offset < min(len(data), MAX_MESSAGE) and isinstance(exc.code, ErrorCode)
    except Incomplete as exc:
        assert 0 < exc.needed <= MAX_MESSAGE - len(data)
    else:
        assert 4 <= consumed <= min(len(data), MAX_MESSAGE) and consumed % 4 == 0
        check_rebuilds(tlvs)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=1100))
def test_parsing_junk_only_raises_incomplete_or_convert_error(data):
    check_junk(data)


@settings(max_examples=1000, deadline=None)
@given(st.integers(1, 255), st.binary(max_size=1100))
def test_parsing_junk_behind_a_valid_header(words, body):
    # Past the header, so the TLV walk and every TLV decoder see the junk.
    check_junk(bytes([1, words, 0x22, 0x63]) + body)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from([1, 10, 20, 21, 22, 30, 200]), min_size=1, max_size=6), st.data())
def test_parsing_junk_tlvs_of_known_types(types, draw):
    # Junk values under plausible Type and Length octets reach each decoder's own checks.
    body = b""
    for t in types:
        words = draw.draw(st.integers(1, 8))
        body += bytes([t, words]) + draw.draw(st.binary(min_size=4 * words - 2, max_size=4 * words - 2))
    check_junk(bytes([1, 1 + len(body) // 4, 0x22, 0x63]) + body)
