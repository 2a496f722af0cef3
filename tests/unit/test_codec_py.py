"""The pure-Python MCP option codec (mptcp_cpe._mcp_codec_py) against hooks/kea/mcp_codec.c
compiled (through mptcp_cpe._mcp_codec_c): the same result, or the same error code and
offset, for every input, function by function; mptcp_cpe.options the same on both, messages
included; and how options chooses between them. test_options.py runs the draft's vectors
on each codec."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import TOP, option_codec
from mptcp_cpe import _mcp_codec_py as py
from mptcp_cpe import options
from mptcp_cpe.options import OptionError

pytest.importorskip("mptcp_cpe._mcp_codec", reason="the compiled codec is not built: nothing to compare with")
from mptcp_cpe import _mcp_codec_c as c  # noqa: E402
from mptcp_cpe._mcp_codec import lib  # noqa: E402

EXAMPLES = 500


def test_the_codes_are_the_c_headers():
    in_c = {name: getattr(lib, name) for name in dir(lib) if name.startswith("MCP_")}
    in_py = {name: value for name, value in vars(py).items() if name.startswith("MCP_")}
    assert in_py == in_c
    assert {name: getattr(options, name) for name in in_c} == in_c


@pytest.mark.parametrize("code", range(-12, 3))
def test_strerror(code):
    assert py.strerror(code) == c.strerror(code)


# ---------------------------------------------------------------- choosing the codec

def test_unset_means_the_compiled_codec_where_it_imports():
    assert options.load_codec("") is c
    assert options.load_codec("c") is c
    assert options.load_codec("python") is py


def test_without_the_compiled_codec(monkeypatch):
    # As on a router given the pure wheel: mptcp_cpe._mcp_codec does not import.
    monkeypatch.setitem(sys.modules, "mptcp_cpe._mcp_codec", None)
    monkeypatch.delitem(sys.modules, "mptcp_cpe._mcp_codec_c")
    assert options.load_codec("") is py
    with pytest.raises(ImportError, match=r"MPTCP_CPE_CODEC=c, but the compiled codec mptcp_cpe\._mcp_codec does not import"):
        options.load_codec("c")


def test_an_unknown_choice_is_refused():
    with pytest.raises(ImportError, match=r"MPTCP_CPE_CODEC='C': say c .* or python"):
        options.load_codec("C")


@pytest.mark.parametrize(("choice", "backend"), [(None, "c"), ("c", "c"), ("python", "python")])
def test_the_environment_chooses_at_import(choice, backend):
    env = {k: v for k, v in os.environ.items() if k != "MPTCP_CPE_CODEC"}
    env["PYTHONPATH"] = os.pathsep.join([str(TOP / "src"), env.get("PYTHONPATH", "")])
    if choice:
        env["MPTCP_CPE_CODEC"] = choice
    code = ("import sys; from mptcp_cpe import cli, options; print(options.BACKEND); "
            "sys.exit(cli.main(['option', 'decode', 'v4', '04c0000201']))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == [backend, '[["192.0.2.1"]]']


def test_a_codec_the_environment_cannot_give_is_one_line_from_the_command():
    env = {**os.environ, "MPTCP_CPE_CODEC": "fast", "PYTHONPATH": str(TOP / "src")}
    proc = subprocess.run([sys.executable, "-m", "mptcp_cpe.cli", "option", "decode", "v4", "04c0000201"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("mptcp-cpe: MPTCP_CPE_CODEC='fast': say c (the compiled codec) or python (the pure one), "
                           "or leave it unset\n")


# ---------------------------------------------------------------- inputs

# Addresses where the rules differ: loopback, multicast, unspecified, their neighbours.
V4_EDGES = [bytes([a, b, 0, d]) for a in (0, 1, 126, 127, 128, 223, 224, 239, 240, 255) for b, d in ((0, 0), (0, 1), (255, 255))]
V6_EDGES = [ipaddress.IPv6Address(a).packed for a in (
    "::", "::1", "::2", "ff02::1", "ff00::", "fe80::1", "2001:db8::1", "::ffff:0:0", "::fffe:7f00:1", "::7f00:1")]
V6_EDGES += [bytes(10) + b"\xff\xff" + a for a in V4_EDGES]  # IPv4-mapped

v4_addr = st.one_of(st.sampled_from(V4_EDGES), st.binary(min_size=4, max_size=4))
v6_addr = st.one_of(st.sampled_from(V6_EDGES), st.binary(min_size=16, max_size=16),
                    v4_addr.map(lambda a: bytes(10) + b"\xff\xff" + a))
v4_lists = st.lists(st.lists(v4_addr, min_size=0, max_size=66), min_size=0, max_size=5)


def v4_wire(lists) -> bytes:
    """DHCPv4 data as the draft lays it out, written here without either codec."""
    return b"".join(bytes([(4 * len(m)) % 256]) + b"".join(m) for m in lists)


@st.composite
def near_v4(draw):
    """Valid DHCPv4 data, then perhaps one octet changed, a list-len changed, a cut or an
    octet more."""
    data = bytearray(v4_wire(draw(st.lists(st.lists(v4_addr, min_size=1, max_size=8), min_size=1, max_size=4))))
    how = draw(st.sampled_from(["valid", "octet", "list-len", "cut", "extra"]))
    if how == "octet":
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif how == "list-len":
        starts, pos = [], 0
        while pos < len(data):
            starts.append(pos)
            pos += 1 + data[pos]
        data[draw(st.sampled_from(starts))] = draw(st.sampled_from([0, 1, 3, 4, 5, 8, 12, 252, 255]))
    elif how == "cut":
        data = data[:draw(st.integers(0, len(data)))]
    elif how == "extra":
        data.append(draw(st.integers(0, 255)))
    return bytes(data)


v4_data = st.one_of(st.binary(max_size=80), near_v4())
# Around whole numbers of addresses: 16 k - 2 .. 16 k + 2 octets.
v6_data = st.one_of(
    st.binary(max_size=80),
    st.builds(lambda k, d, fill: (fill * 100)[:max(16 * k + d, 0)], st.integers(0, 5), st.integers(-2, 2),
              st.lists(v6_addr, min_size=1, max_size=6).map(b"".join)))


def caps(n: int):
    """A buffer size: the one that always suffices, or around what is needed."""
    return st.one_of(st.just(max(n, 1)), st.integers(0, n + 2))


# ---------------------------------------------------------------- the codec, function by function

TWO_V4_LISTS = bytes.fromhex("04c0000201" "04c0000202")
TWO_V6 = ipaddress.IPv6Address("2001:db8::1").packed + ipaddress.IPv6Address("2001:db8::2").packed


@pytest.mark.parametrize(("call", "expected"), [
    (("v4_decode", TWO_V4_LISTS, 2, 2), (2, bytes.fromhex("c0000201c0000202"), (1, 1), None)),
    (("v4_decode", TWO_V4_LISTS, 2, 1), (py.MCP_E_NOSPACE, b"", (), 5)),   # no room for the 2nd list
    (("v4_decode", TWO_V4_LISTS, 1, 2), (py.MCP_E_NOSPACE, b"", (), 5)),   # nor for its address
    (("v4_decode", TWO_V4_LISTS, 0, 2), (py.MCP_E_NOSPACE, b"", (), 0)),
    (("v4_decode", TWO_V4_LISTS[:9], 2, 2), (py.MCP_E_TRUNCATED, b"", (), 5)),
    (("v6_decode", TWO_V6, 1), (py.MCP_E_NOSPACE, b"", 16)),
    (("v6_decode", TWO_V6[:31], 2), (py.MCP_E_V6_LEN, b"", 16)),
    (("v4_encode", bytes.fromhex("c0000201c0000202"), [1, 1], 9), (py.MCP_E_NOSPACE, b"")),
    (("v4_encode", bytes.fromhex("c0000201e0000001"), [1, 1], 9), (py.MCP_E_ADDR, b"")),
    (("v4_encode", bytes.fromhex("c0000201e0000001"), [1, 1], 4), (py.MCP_E_NOSPACE, b"")),  # list by list
    (("v4_encode", b"", [], 9), (py.MCP_E_EMPTY_LIST, b"")),
    (("v6_encode", TWO_V6, 31), (py.MCP_E_NOSPACE, b"")),
    (("v6_encode", b"", 16), (py.MCP_E_EMPTY_LIST, b"")),
])
def test_vectors_on_both(call, expected):
    name, *args = call
    assert getattr(py, name)(*args) == expected
    assert getattr(c, name)(*args) == expected


@settings(max_examples=EXAMPLES, deadline=None)
@given(data=v4_data, st_caps=st.data())
def test_v4_decode(data, st_caps):
    addrs_cap = st_caps.draw(caps(len(data) // 4))
    lists_cap = st_caps.draw(caps(len(data) // 5))
    assert py.v4_decode(data, addrs_cap, lists_cap) == c.v4_decode(data, addrs_cap, lists_cap)


@settings(max_examples=EXAMPLES, deadline=None)
@given(data=v6_data, st_caps=st.data())
def test_v6_decode(data, st_caps):
    addrs_cap = st_caps.draw(caps(len(data) // 16))
    assert py.v6_decode(data, addrs_cap) == c.v6_decode(data, addrs_cap)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.lists(v4_addr, min_size=1, max_size=12), max_size=6))
def test_v4_client_filter(lists):
    addrs, counts = b"".join(a for m in lists for a in m), [len(m) for m in lists]
    assert py.v4_client_filter(addrs, counts) == c.v4_client_filter(addrs, counts)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(v6_addr, max_size=12))
def test_v6_client_filter(addrs):
    assert py.v6_client_filter(b"".join(addrs)) == c.v6_client_filter(b"".join(addrs))


@settings(max_examples=EXAMPLES, deadline=None)
@given(v4_addr, v6_addr)
def test_addr_checks(a4, a6):
    assert py.v4_addr_check(a4) == c.v4_addr_check(a4)
    assert py.v6_addr_check(a6) == c.v6_addr_check(a6)


@pytest.mark.parametrize("addr", V4_EDGES)
def test_v4_addr_check_every_edge(addr):
    assert py.v4_addr_check(addr) == c.v4_addr_check(addr)


@pytest.mark.parametrize("addr", V6_EDGES)
def test_v6_addr_check_every_edge(addr):
    assert py.v6_addr_check(addr) == c.v6_addr_check(addr)


@settings(max_examples=EXAMPLES, deadline=None)
@given(lists=v4_lists, st_caps=st.data())
def test_v4_encode(lists, st_caps):
    addrs, counts = b"".join(a for m in lists for a in m), [len(m) for m in lists]
    out_cap = st_caps.draw(caps(len(addrs) + len(counts)))
    assert py.v4_encode(addrs, counts, out_cap) == c.v4_encode(addrs, counts, out_cap)


@settings(max_examples=EXAMPLES, deadline=None)
@given(addrs=st.lists(v6_addr, max_size=8).map(b"".join), st_caps=st.data())
def test_v6_encode(addrs, st_caps):
    out_cap = st_caps.draw(caps(len(addrs)))
    assert py.v6_encode(addrs, out_cap) == c.v6_encode(addrs, out_cap)


# ---------------------------------------------------------------- mptcp_cpe.options on each

def on_each_codec(fn, *args):
    """fn(*args) under each codec: its result, or its OptionError's code, offset and message."""
    seen = {}
    for name in options.BACKENDS:
        with option_codec(name):
            try:
                seen[name] = ("ok", fn(*args))
            except OptionError as exc:
                seen[name] = ("error", exc.code, exc.offset, str(exc))
    return seen


@settings(max_examples=EXAMPLES, deadline=None)
@given(v4_data, v6_data, st.booleans())
def test_options_decode(data4, data6, client_rule):
    for fn, data in ((options.decode_v4, data4), (options.decode_v6, data6)):
        seen = on_each_codec(fn, data, client_rule)
        assert seen["c"] == seen["python"]


def v4_text(a: bytes) -> str:
    return str(ipaddress.IPv4Address(a))


def v6_text(a: bytes) -> str:
    addr = ipaddress.IPv6Address(a)
    return f"::ffff:{addr.ipv4_mapped}" if addr.ipv4_mapped else str(addr)


@settings(max_examples=EXAMPLES, deadline=None)
@given(v4_lists.map(lambda ls: [[v4_text(a) for a in m] for m in ls]),
       st.lists(st.one_of(v6_addr.map(v6_text), v4_addr.map(v4_text), st.just("not-an-address")), max_size=6))
def test_options_encode(lists4, addrs6):
    for fn, arg in ((options.encode_v4, lists4), (options.encode_v6, addrs6)):
        seen = on_each_codec(fn, arg)
        assert seen["c"] == seen["python"]
