"""The MCP options (mptcp_cpe.options) and `mptcp-cpe option`, each test run on both codecs:
hooks/kea/mcp_codec.c through cffi, and its pure-Python twin (test_codec_py.py compares the
two directly).

Vectors follow draft-boucadair-mptcp-dhc's wire format: OPTION_V4_MPTCP data is one or
more `list-len | n x IPv4` lists (list-len in octets), OPTION_V6_MPTCP one instance of
`n x IPv6` per MCP. Data excludes the option's code and length octets.
"""

from __future__ import annotations

import ipaddress
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import option_codec
from mptcp_cpe import cli, options
from mptcp_cpe.options import OptionError, decode_v4, decode_v6, encode_v4, encode_v6

lib = options  # the MCP_E_* codes


@pytest.fixture(scope="module", params=options.BACKENDS, autouse=True)
def codec(request):
    """Every test of this module once with each codec (module scope: hypothesis allows it)."""
    with option_codec(request.param) as module:
        yield module

# One MCP, one address: list-len 04 | 192.0.2.1
ONE = "04" "c0000201"
# Three MCPs with 1, 2 and 3 addresses:
MULTI = ("04" "c0000201"                       # [192.0.2.1]
         "08" "c6336407" "c6336408"            # [198.51.100.7, 198.51.100.8]
         "0c" "cb007101" "cb007102" "cb007103")  # [203.0.113.1, .2, .3]
MULTI_LISTS = [["192.0.2.1"], ["198.51.100.7", "198.51.100.8"], ["203.0.113.1", "203.0.113.2", "203.0.113.3"]]


def test_one_list():
    assert decode_v4(bytes.fromhex(ONE)) == [["192.0.2.1"]]
    assert encode_v4([["192.0.2.1"]]).hex() == ONE


def test_multi_list():
    assert decode_v4(bytes.fromhex(MULTI)) == MULTI_LISTS
    assert encode_v4(MULTI_LISTS).hex() == MULTI


def big_lists():
    # 63 addresses (list-len 252, the most one list holds) and 3 more: 4 + 253 + 13 = 266 octets.
    first = [f"198.18.{i // 250}.{i % 250 + 1}" for i in range(63)]
    return [first, ["203.0.113.7", "203.0.113.8", "203.0.113.9"]]


def test_over_255_octets_split_on_the_wire_and_joined_again(capsys):
    data = encode_v4(big_lists())
    assert len(data) == 1 + 252 + 1 + 12 and data[0] == 252 and data[253] == 12
    # RFC 3396: the option is sent as several options of the same code, at most 255 octets
    # of data each; the receiver joins them in order. The CLI takes the parts as arguments.
    parts = [data[:255].hex(), data[255:].hex()]
    assert cli.main(["option", "decode", "v4", *parts]) == 0
    assert json.loads(capsys.readouterr().out) == big_lists()


def test_v6_instances_and_ipv4_mapped(capsys):
    assert cli.main(["option", "encode", "v6", "2001:db8::1", "::ffff:203.0.113.2,2001:db8::2"]) == 0
    lines = capsys.readouterr().out.split()
    assert lines == ["20010db8000000000000000000000001",
                     "00000000000000000000ffffcb007102" "20010db8000000000000000000000002"]
    assert cli.main(["option", "decode", "v6", *lines]) == 0
    assert json.loads(capsys.readouterr().out) == [["2001:db8::1"], ["::ffff:203.0.113.2", "2001:db8::2"]]


@pytest.mark.parametrize(("hexdata", "code", "offset"), [
    ("", lib.MCP_E_SHORT, 0),
    ("04c00002", lib.MCP_E_SHORT, 4),
    ("00c0000201", lib.MCP_E_LIST_LEN, 0),
    ("03c0000201", lib.MCP_E_LIST_LEN, 0),
    ("08c0000201", lib.MCP_E_TRUNCATED, 0),
    ("04c0000201" "05c000020100", lib.MCP_E_LIST_LEN, 5),
    ("04c0000201" "08c0000202", lib.MCP_E_TRUNCATED, 5),
    ("04c0000201" "04", lib.MCP_E_TRUNCATED, 5),
])
def test_v4_malformed_with_the_octet_at_fault(hexdata, code, offset):
    with pytest.raises(OptionError) as info:
        decode_v4(bytes.fromhex(hexdata))
    assert info.value.code == code and info.value.offset == offset
    assert str(info.value).startswith(f"octet {offset}: ")


def test_every_truncation_of_a_valid_option():
    data = bytes.fromhex(MULTI)
    boundaries = {5, 14}  # ends of the first and second lists: shorter but valid options
    for cut in range(len(data)):
        if cut in boundaries:
            assert decode_v4(data[:cut]) == MULTI_LISTS[: 1 if cut == 5 else 2]
        else:
            with pytest.raises(OptionError):
                decode_v4(data[:cut])


@pytest.mark.parametrize(("hexdata", "code", "offset"), [
    ("", lib.MCP_E_SHORT, 0),
    ("20010db8", lib.MCP_E_V6_LEN, 0),
    ("20010db8000000000000000000000001" "20010db8", lib.MCP_E_V6_LEN, 16),
])
def test_v6_malformed(hexdata, code, offset):
    with pytest.raises(OptionError) as info:
        decode_v6(bytes.fromhex(hexdata))
    assert (info.value.code, info.value.offset) == (code, offset)


def test_client_rule_v4():
    data = bytes.fromhex(
        "08" "7f000001" "c0000205"      # [127.0.0.1 (dropped), 192.0.2.5]
        "04" "e0000001"                 # [224.0.0.1]: emptied, dropped
        "04" "ef000001"                 # [239.0.0.1]: emptied, dropped
        "04" "c0000206")                # [192.0.2.6]
    assert decode_v4(data) == [["192.0.2.5"], ["192.0.2.6"]]
    assert decode_v4(data, client_rule=False) == [["127.0.0.1", "192.0.2.5"], ["224.0.0.1"], ["239.0.0.1"], ["192.0.2.6"]]
    assert decode_v4(bytes.fromhex("047f000001")) == []


@pytest.mark.parametrize("dropped", ["::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:224.0.0.1"])
def test_client_rule_v6(dropped):
    keep = ipaddress.IPv6Address("2001:db8::9").packed
    data = ipaddress.IPv6Address(dropped).packed + keep
    assert decode_v6(data) == ["2001:db8::9"]
    assert decode_v6(ipaddress.IPv6Address(dropped).packed) == []


@pytest.mark.parametrize(("lists", "code", "fragment"), [
    ([], lib.MCP_E_EMPTY_LIST, "no MCP list"),
    ([[]], lib.MCP_E_EMPTY_LIST, "MCP 1 has no address"),
    ([["192.0.2.1"], ["224.0.0.5"]], lib.MCP_E_ADDR, "224.0.0.5"),
    ([["127.0.0.1"]], lib.MCP_E_ADDR, "127.0.0.1"),
    ([["0.0.0.0"]], lib.MCP_E_ADDR, "0.0.0.0"),
    ([["2001:db8::1"]], lib.MCP_E_ADDR, "'2001:db8::1' is not an IPv4 address"),
    ([["192.0.2.%d" % i for i in range(1, 65)]], lib.MCP_E_LIST_TOO_LONG, "64 addresses"),
])
def test_v4_encode_refuses(lists, code, fragment):
    with pytest.raises(OptionError) as info:
        encode_v4(lists)
    assert info.value.code == code and fragment in str(info.value)


def test_encode_one_byte_short_is_nospace_in_the_codec(codec):
    assert codec.v4_encode(bytes.fromhex("c0000201"), [1], 4) == (lib.MCP_E_NOSPACE, b"")
    assert codec.v6_encode(ipaddress.IPv6Address("2001:db8::1").packed, 15) == (lib.MCP_E_NOSPACE, b"")


@pytest.mark.parametrize(("argv", "message"), [
    (["option", "decode", "v4", "04c0000201", "03aa"], "mptcp-cpe: option decode v4: octet 5: list-len 3 is not a non-zero multiple of 4"),
    (["option", "decode", "v4", "zz"], "mptcp-cpe: option decode v4: argument 1 is not hex: 'zz'"),
    (["option", "decode", "v6", "20010db8"], "mptcp-cpe: option decode v6: octet 0: 4 octets is not a whole number"),
    (["option", "encode", "v4", "192.0.2.1,", "198.51.100.1"], "MCP 1 ('192.0.2.1,') has an empty address"),
    (["option", "encode", "v4", "192.0.2.1,239.1.1.1"], "239.1.1.1 is multicast"),
    (["option", "encode", "v6", "2001:db8::1,ff02::1"], "ff02::1 is multicast"),
])
def test_cli_errors(capsys, argv, message):
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# ---------------------------------------------------------------- properties

v4_addr = st.ip_addresses(v=4).filter(lambda a: not (a.is_multicast or a.is_loopback or a.is_unspecified)).map(str)
v6_addr = st.one_of(
    st.ip_addresses(v=6).filter(lambda a: not (a.is_multicast or a.is_loopback or a.is_unspecified or a.ipv4_mapped)),
    v4_addr.map(lambda a: ipaddress.IPv6Address("::ffff:" + a)),
).map(lambda a: f"::ffff:{a.ipv4_mapped}" if a.ipv4_mapped else str(a))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.lists(v4_addr, min_size=1, max_size=63), min_size=1, max_size=8))
def test_v4_round_trip(lists):
    data = encode_v4(lists)
    assert len(data) == sum(1 + 4 * len(m) for m in lists)
    assert decode_v4(data) == lists


@settings(max_examples=500, deadline=None)
@given(st.lists(v6_addr, min_size=1, max_size=16))
def test_v6_round_trip(addrs):
    assert decode_v6(encode_v6(addrs)) == addrs


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600))
def test_decoding_junk_returns_or_raises_option_error(data):
    for fn in (decode_v4, decode_v6):
        for rule in (True, False):
            try:
                result = fn(data, client_rule=rule)
            except OptionError as exc:
                assert exc.offset is not None and 0 <= exc.offset <= len(data)
            else:
                assert isinstance(result, list)
