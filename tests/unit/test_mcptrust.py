"""The MCP verdicts (`mcptrust`): which MCP addresses the converter may use, and why not the
others; a property test that nothing inside a LAN prefix, link-local, the CPE's own or
outside mcp_prefixes ever comes out usable."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mptcp_cpe.mcptrust import Refused, address_problem, mcp_verdicts, state_verdicts


# ---------------------------------------------------------------- MCP verdicts

LAN = (ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8:1::/64"))
MCP_NETS = (ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("2001:db8:a::/48"))
OWN = frozenset({ipaddress.ip_address("203.0.113.2"), ipaddress.ip_address("2001:db8:a::2")})


@pytest.mark.parametrize(("address", "problem"), [
    ("198.51.100.1", None),
    ("2001:db8:a::1", None),
    ("::ffff:198.51.100.1", None),  # IPv4-mapped, as DHCPv6 may carry it: judged as IPv4
    ("203.0.113.1", "outside mcp_prefixes (198.51.100.0/24, 2001:db8:a::/48)"),
    ("203.0.113.2", "one of the CPE's own addresses"),
    ("2001:db8:a::2", "one of the CPE's own addresses"),
    ("192.0.2.50", "inside the LAN prefix 192.0.2.0/24"),
    ("::ffff:192.0.2.50", "inside the LAN prefix 192.0.2.0/24"),
    ("2001:db8:1::99", "inside the LAN prefix 2001:db8:1::/64"),
    ("fe80::1", "a link-local address"),
    ("169.254.0.1", "a link-local address"),
    ("127.0.0.1", "a loopback address"),
    ("::ffff:127.0.0.1", "a loopback address"),
    ("224.0.0.1", "a multicast or broadcast address"),
    ("ff02::1", "a multicast or broadcast address"),
    ("0.0.0.0", "the unspecified address"),
    ("mcp.example", "not an IP address"),
])
def test_address_problem(address, problem):
    assert address_problem(address, MCP_NETS, LAN, OWN) == problem


def test_without_mcp_prefixes_any_other_address_is_usable():
    assert address_problem("203.0.113.1", (), LAN, OWN) is None
    assert address_problem("192.0.2.50", (), LAN, OWN) == "inside the LAN prefix 192.0.2.0/24"


def test_verdicts_keep_order_drop_empty_mcps_and_name_each_refusal_once():
    usable, refused = mcp_verdicts([["192.0.2.9", "198.51.100.1"], ["203.0.113.2"], ["198.51.100.7"], ["192.0.2.9"]],
                                   MCP_NETS, LAN, OWN)
    assert usable == (("198.51.100.1",), ("198.51.100.7",))
    assert refused == (Refused("192.0.2.9", "inside the LAN prefix 192.0.2.0/24"),
                       Refused("203.0.113.2", "one of the CPE's own addresses"))
    assert str(refused[0]) == "192.0.2.9 (inside the LAN prefix 192.0.2.0/24)"


addresses = st.one_of(
    st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str),
    st.sampled_from(["192.0.2.1", "192.0.2.200", "2001:db8:1::5", "fe80::9", "169.254.1.1", "198.51.100.3",
                     "2001:db8:a::7", "::ffff:192.0.2.4", "::ffff:169.254.0.2", "203.0.113.2"]))
prefixes = st.lists(st.one_of(
    st.builds(lambda a, n: ipaddress.ip_network(f"{a}/{n}", strict=False), st.ip_addresses(v=4), st.integers(0, 32)),
    st.builds(lambda a, n: ipaddress.ip_network(f"{a}/{n}", strict=False), st.ip_addresses(v=6), st.integers(0, 128)),
    st.sampled_from(LAN + MCP_NETS)), max_size=4)


def _plain(a):
    ip = ipaddress.ip_address(a)
    return ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip


@given(st.lists(st.lists(addresses, min_size=1, max_size=4), max_size=5), prefixes, prefixes)
@settings(max_examples=400)
def test_nothing_in_a_lan_link_local_own_or_outside_mcp_prefixes_is_ever_usable(mcps, mcp_nets, lan_nets):
    usable, refused = mcp_verdicts(mcps, mcp_nets, lan_nets, OWN)
    out = [a for m in usable for a in m]
    for a in out:
        ip = _plain(a)
        assert not any(ip in n for n in lan_nets if n.version == ip.version)
        assert not (ip.is_link_local or ip.is_loopback or ip.is_multicast or ip.is_unspecified)
        assert ip not in OWN
        assert not mcp_nets or any(ip in n for n in mcp_nets if n.version == ip.version)
    # Every address given is either usable or refused, never lost.
    assert set(out) | {r.address for r in refused} == {a for m in mcps for a in m}
    assert not set(out) & {r.address for r in refused}


def test_state_verdicts_per_wan_and_family_for_status():
    state = {"wans": {"wan1": {"v4": {"mcps": [["198.51.100.1"], ["203.0.113.5"]]},
                               "v6": {"mcps": [["2001:db8:a::1", "fe80::1"]]}},
                      "wan2": {"v4": {"mcps": [["198.51.100.9"]]}}, "junk": 3}}
    assert state_verdicts(state, MCP_NETS, LAN, OWN) == {"wan1": {
        "v4": [{"address": "203.0.113.5", "reason": "outside mcp_prefixes (198.51.100.0/24, 2001:db8:a::/48)"}],
        "v6": [{"address": "fe80::1", "reason": "a link-local address"}]}}
    assert state_verdicts(None) == {} and state_verdicts({"wans": {"wan1": {"v4": {"mcps": "x"}}}}) == {}
