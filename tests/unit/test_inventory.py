"""Unit tests for the inventory model checker (``mptcp_cpe.inventory``)."""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mptcp_cpe.checks import InventoryErrors
from mptcp_cpe.inventory import (
    MAX_WANS,
    WAN_KINDS,
    InventoryError,
    StaticAddress,
    Wan,
    parse_lans,
    parse_port_forwards,
    parse_prefixes,
    parse_wan,
    parse_wans,
    Probe,
    Rate,
    platform,
)

HOST = "cpe-test-01"

DSL = {"name": "dsl", "device": "eth0", "kind": "dsl"}
LTE = {"name": "lte", "device": "wwan0", "kind": "lte"}

V4 = {"address": "192.0.2.10/24", "gateway": "192.0.2.1"}
V6 = {"address": "2001:db8:0:1::10/64", "gateway": "fe80::1"}


def wans(second: dict | None = None, **first) -> list[dict]:
    """[dsl, lte] with keys of the first WAN overridden and the second WAN's merged in."""
    return [{**DSL, **first}, {**LTE, **(second or {})}]


def without(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}


def assert_error(exc: InventoryError, field: str, value=None, *, show_value: bool = True) -> None:
    """The message is ``<host>: <field>: <problem> (got <repr(value)>)``, field exactly as given."""
    msg = str(exc)
    assert exc.host == HOST
    assert exc.field == field
    assert msg.startswith(f"{HOST}: {field}: "), msg
    if show_value:
        assert msg.endswith(f" (got {value!r})"), msg
        assert exc.value == value
    else:
        assert "(got " not in msg, msg


# ---------------------------------------------------------------------------
# The valid case
# ---------------------------------------------------------------------------


def test_two_wans_normalise():
    raw = [
        {"name": "dsl", "device": "eth0", "kind": "dsl", "ipv4": "dhcp"},
        {
            "name": "lte",
            "device": "wwan0",
            "kind": "lte",
            "ipv4": {"address": "192.0.2.10/24", "gateway": "192.0.2.1"},
            # Upper case and uncompressed on input: normalised to the canonical text.
            "ipv6": {"address": "2001:DB8:0:1:0:0:0:10/64", "gateway": "FE80::1"},
            "weight": 3,
            "backup": True,
        },
    ]
    result = parse_wans(HOST, raw)
    assert [w.as_dict() for w in result] == [
        {
            "name": "dsl",
            "device": "eth0",
            "kind": "dsl",
            "ipv4": "dhcp",
            "ipv6": "none",  # default
            "weight": 1,  # default
            "backup": False,  # default
            "nat": True,  # default
            "probes": [{"kind": "icmp", "target": "gateway"}],  # default
        },
        {
            "name": "lte",
            "device": "wwan0",
            "kind": "lte",
            "ipv4": {"address": "192.0.2.10/24", "gateway": "192.0.2.1"},
            "ipv6": {"address": "2001:db8:0:1::10/64", "gateway": "fe80::1"},
            "weight": 3,
            "backup": True,
            "nat": True,
            "probes": [{"kind": "icmp", "target": "gateway"}],
        },
    ]
    lte = result[1]
    assert lte.ipv4 == StaticAddress(ipaddress.ip_interface("192.0.2.10/24"), ipaddress.ip_address("192.0.2.1"))
    assert lte.ipv6.interface.network == ipaddress.ip_network("2001:db8:0:1::/64")
    # The input is not modified.
    assert raw[0] == {"name": "dsl", "device": "eth0", "kind": "dsl", "ipv4": "dhcp"}


def test_defaults_when_only_required_keys():
    (wan,) = parse_wans(HOST, [DSL])
    assert wan == Wan(name="dsl", device="eth0", kind="dsl", ipv4="dhcp", ipv6="none", weight=1, backup=False)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"device": "eth0.100"}, id="vlan-device"),
        pytest.param({"device": "x" * 15}, id="device-15-chars"),
        pytest.param({"name": "a" * 15}, id="name-15-chars"),
        pytest.param({"name": "w_1-a"}, id="name-underscore-dash"),
        pytest.param({"ipv4": "none", "ipv6": "slaac"}, id="v4-none-v6-slaac"),
        pytest.param({"ipv6": "dhcp"}, id="v6-dhcp"),
        pytest.param({"weight": 1}, id="weight-min"),
        pytest.param({"weight": 256}, id="weight-max"),
        pytest.param({"ipv4": {"address": "192.0.2.10/31", "gateway": "192.0.2.11"}}, id="v4-slash31"),
        pytest.param({"ipv4": {"address": "192.0.2.0/31", "gateway": "192.0.2.1"}}, id="v4-slash31-low"),
        pytest.param({"ipv6": {"address": "2001:db8::10/64", "gateway": "2001:db8::1"}}, id="v6-gateway-in-prefix"),
    ],
)
def test_valid_variants(overrides):
    (wan,) = parse_wans(HOST, [{**DSL, **overrides}])
    d = wan.as_dict()
    for key, value in overrides.items():
        assert d[key] == value


@pytest.mark.parametrize("kind", sorted(WAN_KINDS))
def test_every_kind_is_accepted(kind):
    assert parse_wans(HOST, [{**DSL, "kind": kind}])[0].kind == kind


def test_parse_wan_uses_its_index_in_the_field():
    assert parse_wan(HOST, 5, DSL).name == "dsl"
    with pytest.raises(InventoryError) as info:
        parse_wan(HOST, 5, {**DSL, "kind": "adsl"})
    assert_error(info.value, "cpe_wans[5] (dsl).kind", "adsl")


def test_inventory_error_is_a_value_error():
    assert issubclass(InventoryError, ValueError)
    assert str(InventoryError("h", "f", "bad", [1])) == "h: f: bad (got [1])"
    assert str(InventoryError("h", "f", "missing", show_value=False)) == "h: f: missing"


# ---------------------------------------------------------------------------
# Every error path
# ---------------------------------------------------------------------------

# (raw cpe_wans, exact field, offending value); value NO_VALUE means the message shows none.
NO_VALUE = object()

ERRORS = [
    # -- the list itself
    pytest.param("eth0", "cpe_wans", "eth0", id="list-is-str"),
    pytest.param(None, "cpe_wans", None, id="list-is-none"),
    pytest.param({"dsl": DSL}, "cpe_wans", {"dsl": DSL}, id="list-is-mapping"),
    pytest.param([], "cpe_wans", [], id="list-empty"),
    pytest.param(
        [{**DSL, "name": f"w{i}", "device": f"eth{i}"} for i in range(MAX_WANS + 1)],
        "cpe_wans", MAX_WANS + 1, id="nine-wans",
    ),
    # -- a WAN that is not a mapping
    pytest.param(["eth0"], "cpe_wans[0]", "eth0", id="wan-is-str"),
    pytest.param([DSL, None], "cpe_wans[1]", None, id="wan-is-none"),
    pytest.param([DSL, [LTE]], "cpe_wans[1]", [LTE], id="wan-is-list"),
    # -- unknown and missing keys
    pytest.param([{**DSL, "colour": "red"}], "cpe_wans[0] (dsl)", NO_VALUE, id="unknown-key"),
    pytest.param([DSL, without(LTE, "name")], "cpe_wans[1].name", NO_VALUE, id="missing-name"),
    pytest.param([DSL, without(LTE, "device")], "cpe_wans[1] (lte).device", NO_VALUE, id="missing-device"),
    pytest.param([DSL, without(LTE, "kind")], "cpe_wans[1] (lte).kind", NO_VALUE, id="missing-kind"),
    # -- name
    pytest.param(wans(name=""), "cpe_wans[0] ().name", "", id="name-empty"),
    pytest.param(wans(name="DSL"), "cpe_wans[0] (DSL).name", "DSL", id="name-upper"),
    pytest.param(wans(name="1dsl"), "cpe_wans[0] (1dsl).name", "1dsl", id="name-digit-first"),
    pytest.param(wans(name="my dsl"), "cpe_wans[0] (my dsl).name", "my dsl", id="name-space"),
    pytest.param(wans(name="a" * 16), f"cpe_wans[0] ({'a' * 16}).name", "a" * 16, id="name-16-chars"),
    pytest.param(wans(name=3), "cpe_wans[0].name", 3, id="name-int"),
    pytest.param(wans(name=None), "cpe_wans[0].name", None, id="name-none"),
    # -- device
    pytest.param(wans(device=""), "cpe_wans[0] (dsl).device", "", id="device-empty"),
    pytest.param(wans(device="a/b"), "cpe_wans[0] (dsl).device", "a/b", id="device-slash"),
    pytest.param(wans(device="x" * 16), "cpe_wans[0] (dsl).device", "x" * 16, id="device-16-chars"),
    pytest.param(wans(device="."), "cpe_wans[0] (dsl).device", ".", id="device-dot"),
    pytest.param(wans(device=".."), "cpe_wans[0] (dsl).device", "..", id="device-dotdot"),
    pytest.param(wans(device="eth 0"), "cpe_wans[0] (dsl).device", "eth 0", id="device-space"),
    pytest.param(wans(device="eth0:1"), "cpe_wans[0] (dsl).device", "eth0:1", id="device-colon"),
    pytest.param(wans(device=0), "cpe_wans[0] (dsl).device", 0, id="device-int"),
    pytest.param(wans(device=None), "cpe_wans[0] (dsl).device", None, id="device-none"),
    # -- kind
    pytest.param(wans(kind="adsl"), "cpe_wans[0] (dsl).kind", "adsl", id="kind-unknown"),
    pytest.param(wans(kind="DSL"), "cpe_wans[0] (dsl).kind", "DSL", id="kind-upper"),
    pytest.param(wans(kind=None), "cpe_wans[0] (dsl).kind", None, id="kind-none"),
    # -- backup
    pytest.param(wans({"backup": "yes"}), "cpe_wans[1] (lte).backup", "yes", id="backup-str"),
    pytest.param(wans({"backup": 1}), "cpe_wans[1] (lte).backup", 1, id="backup-int"),
    pytest.param(wans({"backup": None}), "cpe_wans[1] (lte).backup", None, id="backup-none"),
    # -- addressing modes
    pytest.param(wans(ipv4="static"), "cpe_wans[0] (dsl).ipv4", "static", id="v4-mode-static"),
    pytest.param(wans(ipv4="DHCP"), "cpe_wans[0] (dsl).ipv4", "DHCP", id="v4-mode-upper"),
    pytest.param(wans(ipv4="slaac"), "cpe_wans[0] (dsl).ipv4", "slaac", id="v4-mode-slaac"),
    pytest.param(wans(ipv4=""), "cpe_wans[0] (dsl).ipv4", "", id="v4-mode-empty"),
    pytest.param(wans(ipv4=None), "cpe_wans[0] (dsl).ipv4", None, id="v4-none-value"),
    pytest.param(wans(ipv4=["192.0.2.10/24"]), "cpe_wans[0] (dsl).ipv4", ["192.0.2.10/24"], id="v4-list"),
    pytest.param(wans(ipv6="auto"), "cpe_wans[0] (dsl).ipv6", "auto", id="v6-mode-auto"),
    pytest.param(wans(ipv6=False), "cpe_wans[0] (dsl).ipv6", False, id="v6-false"),
    # -- static addresses: keys
    pytest.param(
        wans({"ipv4": {**V4, "mask": "255.255.255.0"}}),
        "cpe_wans[1] (lte).ipv4", {**V4, "mask": "255.255.255.0"}, id="static-unknown-key",
    ),
    pytest.param(wans({"ipv4": without(V4, "address")}), "cpe_wans[1] (lte).ipv4.address", NO_VALUE, id="static-missing-address"),
    pytest.param(wans({"ipv6": without(V6, "gateway")}), "cpe_wans[1] (lte).ipv6.gateway", NO_VALUE, id="static-missing-gateway"),
    # -- static addresses: the address
    pytest.param(wans({"ipv4": {**V4, "address": "192.0.2.10"}}), "cpe_wans[1] (lte).ipv4.address", "192.0.2.10", id="v4-no-prefix"),
    pytest.param(wans({"ipv6": {**V6, "address": "2001:db8::10"}}), "cpe_wans[1] (lte).ipv6.address", "2001:db8::10", id="v6-no-prefix"),
    pytest.param(wans({"ipv4": {**V4, "address": 3221225994}}), "cpe_wans[1] (lte).ipv4.address", 3221225994, id="v4-address-int"),
    pytest.param(wans({"ipv4": {**V4, "address": "192.0.2.300/24"}}), "cpe_wans[1] (lte).ipv4.address", "192.0.2.300/24", id="v4-bad-octet"),
    pytest.param(wans({"ipv4": {**V4, "address": "192.0.2.10/33"}}), "cpe_wans[1] (lte).ipv4.address", "192.0.2.10/33", id="v4-bad-prefix"),
    pytest.param(wans({"ipv4": {**V4, "address": "2001:db8::10/64"}}), "cpe_wans[1] (lte).ipv4.address", "2001:db8::10/64", id="v4-got-v6"),
    pytest.param(wans({"ipv6": {**V6, "address": "192.0.2.10/24"}}), "cpe_wans[1] (lte).ipv6.address", "192.0.2.10/24", id="v6-got-v4"),
    pytest.param(wans({"ipv4": {**V4, "address": "192.0.2.0/24"}}), "cpe_wans[1] (lte).ipv4.address", "192.0.2.0/24", id="v4-network-address"),
    pytest.param(wans({"ipv4": {**V4, "address": "192.0.2.255/24"}}), "cpe_wans[1] (lte).ipv4.address", "192.0.2.255/24", id="v4-broadcast-address"),
    pytest.param(
        wans({"ipv4": {"address": "192.0.2.3/30", "gateway": "192.0.2.1"}}),
        "cpe_wans[1] (lte).ipv4.address", "192.0.2.3/30", id="v4-broadcast-slash30",
    ),
    pytest.param(
        wans({"ipv4": {"address": "224.0.0.5/24", "gateway": "224.0.0.1"}}),
        "cpe_wans[1] (lte).ipv4.address", "224.0.0.5/24", id="v4-multicast",
    ),
    pytest.param(
        wans({"ipv4": {"address": "127.0.0.2/8", "gateway": "127.0.0.1"}}),
        "cpe_wans[1] (lte).ipv4.address", "127.0.0.2/8", id="v4-loopback",
    ),
    pytest.param(
        wans({"ipv4": {"address": "0.0.0.0/32", "gateway": "0.0.0.1"}}),
        "cpe_wans[1] (lte).ipv4.address", "0.0.0.0/32", id="v4-unspecified",
    ),
    pytest.param(
        wans({"ipv6": {"address": "ff02::5/64", "gateway": "fe80::1"}}),
        "cpe_wans[1] (lte).ipv6.address", "ff02::5/64", id="v6-multicast",
    ),
    pytest.param(
        wans({"ipv6": {"address": "::1/128", "gateway": "fe80::1"}}),
        "cpe_wans[1] (lte).ipv6.address", "::1/128", id="v6-loopback",
    ),
    pytest.param(
        wans({"ipv6": {"address": "::/128", "gateway": "fe80::1"}}),
        "cpe_wans[1] (lte).ipv6.address", "::/128", id="v6-unspecified",
    ),
    # -- static addresses: the gateway
    pytest.param(wans({"ipv4": {**V4, "gateway": "gw"}}), "cpe_wans[1] (lte).ipv4.gateway", "gw", id="v4-gateway-junk"),
    pytest.param(wans({"ipv4": {**V4, "gateway": None}}), "cpe_wans[1] (lte).ipv4.gateway", None, id="v4-gateway-none"),
    pytest.param(
        wans({"ipv4": {**V4, "gateway": "192.0.2.1/24"}}),
        "cpe_wans[1] (lte).ipv4.gateway", "192.0.2.1/24", id="v4-gateway-with-prefix",
    ),
    pytest.param(wans({"ipv4": {**V4, "gateway": "2001:db8::1"}}), "cpe_wans[1] (lte).ipv4.gateway", "2001:db8::1", id="v4-gateway-v6"),
    pytest.param(wans({"ipv6": {**V6, "gateway": "192.0.2.1"}}), "cpe_wans[1] (lte).ipv6.gateway", "192.0.2.1", id="v6-gateway-v4"),
    pytest.param(
        wans({"ipv4": {**V4, "gateway": "198.51.100.1"}}),
        "cpe_wans[1] (lte).ipv4.gateway", "198.51.100.1", id="v4-gateway-outside",
    ),
    pytest.param(
        # Only IPv6 link-local gateways are exempt from the prefix check.
        wans({"ipv4": {**V4, "gateway": "169.254.0.1"}}),
        "cpe_wans[1] (lte).ipv4.gateway", "169.254.0.1", id="v4-link-local-gateway-outside",
    ),
    pytest.param(
        wans({"ipv6": {**V6, "gateway": "2001:db8:0:2::1"}}),
        "cpe_wans[1] (lte).ipv6.gateway", "2001:db8:0:2::1", id="v6-gateway-outside",
    ),
    pytest.param(wans({"ipv4": {**V4, "gateway": "192.0.2.10"}}), "cpe_wans[1] (lte).ipv4.gateway", "192.0.2.10", id="v4-gateway-is-address"),
    pytest.param(
        wans({"ipv6": {**V6, "gateway": "2001:db8:0:1::10"}}),
        "cpe_wans[1] (lte).ipv6.gateway", "2001:db8:0:1::10", id="v6-gateway-is-address",
    ),
    pytest.param(
        wans({"ipv6": {"address": "fe80::1/64", "gateway": "fe80::1"}}),
        "cpe_wans[1] (lte).ipv6.gateway", "fe80::1", id="v6-link-local-gateway-is-address",
    ),
    # -- weight
    pytest.param(wans({"weight": True}), "cpe_wans[1] (lte).weight", True, id="weight-true"),
    pytest.param(wans({"weight": False}), "cpe_wans[1] (lte).weight", False, id="weight-false"),
    pytest.param(wans({"weight": 0}), "cpe_wans[1] (lte).weight", 0, id="weight-0"),
    pytest.param(wans({"weight": -1}), "cpe_wans[1] (lte).weight", -1, id="weight-negative"),
    pytest.param(wans({"weight": 257}), "cpe_wans[1] (lte).weight", 257, id="weight-257"),
    pytest.param(wans({"weight": "3"}), "cpe_wans[1] (lte).weight", "3", id="weight-str"),
    pytest.param(wans({"weight": 2.0}), "cpe_wans[1] (lte).weight", 2.0, id="weight-float"),
    pytest.param(wans({"weight": None}), "cpe_wans[1] (lte).weight", None, id="weight-none"),
    # -- pd_length (the delegated prefix a DHCPv6 WAN asks for)
    pytest.param(wans({"ipv6": "dhcp", "pd_length": 47}), "cpe_wans[1] (lte).pd_length", 47, id="pd-length-47"),
    pytest.param(wans({"ipv6": "dhcp", "pd_length": 65}), "cpe_wans[1] (lte).pd_length", 65, id="pd-length-65"),
    pytest.param(wans({"ipv6": "dhcp", "pd_length": "56"}), "cpe_wans[1] (lte).pd_length", "56", id="pd-length-str"),
    pytest.param(wans({"ipv6": "slaac", "pd_length": 56}), "cpe_wans[1] (lte).pd_length", 56, id="pd-length-not-dhcp"),
    # -- across WANs
    pytest.param(wans({"name": "dsl"}), "cpe_wans[1] (dsl).name", "dsl", id="duplicate-name"),
    pytest.param(wans({"device": "eth0"}), "cpe_wans[1] (lte).device", "eth0", id="duplicate-device"),
    pytest.param(
        [DSL, LTE, {**DSL, "device": "eth2"}], "cpe_wans[2] (dsl).name", "dsl", id="duplicate-name-not-adjacent",
    ),
    pytest.param(wans({"backup": True}, backup=True), "cpe_wans", ["dsl", "lte"], id="all-backup"),
    pytest.param([{**DSL, "backup": True}], "cpe_wans", ["dsl"], id="single-backup"),
]


@pytest.mark.parametrize(("raw", "field", "value"), ERRORS)
def test_parse_wans_errors(raw, field, value):
    with pytest.raises(InventoryError) as info:
        parse_wans(HOST, raw)
    if value is NO_VALUE:
        assert_error(info.value, field, show_value=False)
    else:
        assert_error(info.value, field, value)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        pytest.param([{**DSL, "colour": "red", "mtu": 1500}], ["['colour', 'mtu']"], id="unknown-keys-listed"),
        pytest.param(wans({"name": "dsl"}), ["already used by cpe_wans[0]"], id="duplicate-points-at-first"),
        pytest.param(wans({"ipv4": {**V4, "gateway": "198.51.100.1"}}), ["192.0.2.0/24"], id="outside-names-prefix"),
        pytest.param(wans({"ipv4": {**V4, "address": "192.0.2.255/24"}}), ["192.0.2.0/24"], id="broadcast-names-net"),
        pytest.param(wans({"weight": 0}), ["1 to 256"], id="weight-range"),
        pytest.param(wans(ipv6="auto"), ["dhcp, slaac, none"], id="v6-modes-listed"),
        pytest.param(wans(ipv4="slaac"), ["dhcp, none"], id="v4-modes-listed"),
    ],
)
def test_error_problem_text(raw, words):
    with pytest.raises(InventoryError) as info:
        parse_wans(HOST, raw)
    for w in words:
        assert w in info.value.problem


def test_every_wans_mistake_at_once():
    # Each WAN's mistake is reported in one error, in list order, a line each.
    with pytest.raises(InventoryErrors) as info:
        parse_wans(HOST, [{**DSL, "kind": "adsl"}, {**LTE, "weight": 0}])
    assert [e.field for e in info.value.errors] == ["cpe_wans[0] (dsl).kind", "cpe_wans[1] (lte).weight"]
    assert str(info.value).splitlines() == [str(e) for e in info.value.errors]
    assert info.value.field == "cpe_wans[0] (dsl).kind"


def test_a_single_mistake_is_raised_as_itself():
    with pytest.raises(InventoryError) as info:
        parse_wans(HOST, [DSL, {**LTE, "weight": 0}])
    assert type(info.value) is InventoryError
    assert str(info.value) == f"{HOST}: cpe_wans[1] (lte).weight: must be an integer from 1 to 256 (got 0)"


def test_every_lans_and_forwards_mistake_at_once():
    lans = [{"name": "a", "device": "eth0", "ipv4": "198.18.1.0/24"},
            {"name": "b", "device": "eth1", "ipv4": "198.18.2.1/31"}]
    with pytest.raises(InventoryErrors) as info:
        parse_lans(HOST, lans)
    assert [e.field for e in info.value.errors] == ["cpe_lans[0] (a).ipv4", "cpe_lans[1] (b).ipv4"]
    good = parse_lans(HOST, [{"name": "a", "device": "eth0", "ipv4": "198.18.1.1/24"}])
    forwards = [{"name": "x", "port": 0, "to": "198.18.1.10"}, {"name": "y", "port": 80, "to": "198.51.100.1"}]
    with pytest.raises(InventoryErrors) as info:
        parse_port_forwards(HOST, forwards, good, parse_wans(HOST, [DSL]))
    assert [e.field for e in info.value.errors] == ["cpe_port_forwards[0] (x).port", "cpe_port_forwards[1] (y).to"]
    with pytest.raises(InventoryErrors) as info:
        parse_prefixes(HOST, "cpe_management_prefixes", ["198.18.200.1/24", "nonsense"])
    assert [e.field for e in info.value.errors] == ["cpe_management_prefixes[0]", "cpe_management_prefixes[1]"]


def test_exactly_max_wans_is_accepted():
    raw = [{**DSL, "name": f"w{i}", "device": f"eth{i}"} for i in range(MAX_WANS)]
    assert [w.name for w in parse_wans(HOST, raw)] == [f"w{i}" for i in range(MAX_WANS)]


# ---------------------------------------------------------------------------
# platform
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("distribution", ["Debian", "OpenWrt"])
def test_platform_supported(distribution):
    assert platform(HOST, distribution) == distribution


@pytest.mark.parametrize("distribution", ["Ubuntu", None, "debian", "", ["Debian"]])
def test_platform_unsupported(distribution):
    with pytest.raises(InventoryError) as info:
        platform(HOST, distribution)
    assert_error(info.value, "ansible_facts.distribution", distribution)
    assert "Debian or OpenWrt" in info.value.problem


# ---------------------------------------------------------------------------
# Regressions: cases the first version of the checker let through or crashed on
# ---------------------------------------------------------------------------


def test_name_with_trailing_newline_is_rejected():
    with pytest.raises(InventoryError) as info:
        parse_wans(HOST, [{**DSL, "name": "dsl\n"}])
    assert_error(info.value, "cpe_wans[0] (dsl\n).name", "dsl\n")


def test_device_with_trailing_newline_is_rejected():
    with pytest.raises(InventoryError) as info:
        parse_wans(HOST, [{**DSL, "device": "eth0\n"}])
    assert_error(info.value, "cpe_wans[0] (dsl).device", "eth0\n")


def test_device_longer_than_15_octets_is_rejected():
    device = "é" * 15
    assert len(device.encode()) > 15
    with pytest.raises(InventoryError) as info:
        parse_wans(HOST, [{**DSL, "device": device}])
    assert_error(info.value, "cpe_wans[0] (dsl).device", device)


@pytest.mark.parametrize("kind", [["dsl"], {"type": "dsl"}])
def test_unhashable_kind_is_an_inventory_error(kind):
    try:
        parse_wans(HOST, [{**DSL, "kind": kind}])
    except InventoryError as exc:
        assert_error(exc, "cpe_wans[0] (dsl).kind", kind)
    except Exception as exc:  # noqa: BLE001 - any other exception type is the failure
        raise AssertionError(f"not an InventoryError: {type(exc).__name__}: {exc}") from exc
    else:
        raise AssertionError("accepted")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        pytest.param([{**DSL, 1: "x", "mtu": 1500}], "cpe_wans[0] (dsl)", id="wan-keys"),
        pytest.param([{**DSL, "ipv4": {**V4, 1: "x", "mask": "/24"}}], "cpe_wans[0] (dsl).ipv4", id="static-keys"),
    ],
)
def test_mixed_type_unknown_keys_are_an_inventory_error(raw, field):
    try:
        parse_wans(HOST, raw)
    except InventoryError as exc:
        assert exc.field == field
    except Exception as exc:  # noqa: BLE001 - any other exception type is the failure
        raise AssertionError(f"not an InventoryError: {type(exc).__name__}: {exc}") from exc
    else:
        raise AssertionError("accepted")


@pytest.mark.parametrize("gateway", [3221225985, b"\xc0\x00\x02\x01"])
def test_non_string_gateway_is_rejected(gateway):
    with pytest.raises(InventoryError) as info:
        parse_wans(HOST, [{**DSL, "ipv4": {"address": "192.0.2.10/24", "gateway": gateway}}])
    assert_error(info.value, "cpe_wans[0] (dsl).ipv4.gateway", gateway)


@pytest.mark.parametrize("gateway", ["192.0.2.0", "192.0.2.255"])
def test_gateway_network_or_broadcast_is_rejected(gateway):
    with pytest.raises(InventoryError) as info:
        parse_wans(HOST, [{**DSL, "ipv4": {"address": "192.0.2.10/24", "gateway": gateway}}])
    assert_error(info.value, "cpe_wans[0] (dsl).ipv4.gateway", gateway)


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

V4_SPACE = ipaddress.ip_network("192.0.2.0/24")
V6_SPACE = ipaddress.ip_network("2001:db8::/32")

names = st.from_regex(r"[a-z][a-z0-9_-]{0,14}", fullmatch=True)
# ASCII only here: the octet limit on non-ASCII names has its own test above.
devices = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/:"),
    min_size=1, max_size=15,
).filter(lambda d: d not in (".", ".."))


@st.composite
def static4(draw):
    prefixlen = draw(st.integers(min_value=24, max_value=31))
    net = ipaddress.ip_network((V4_SPACE[draw(st.integers(0, 255))], prefixlen), strict=False)
    hosts = list(net.hosts())  # /31: both addresses
    address, gateway = draw(st.lists(st.sampled_from(hosts), min_size=2, max_size=2, unique=True))
    return {"address": f"{address}/{prefixlen}", "gateway": str(gateway)}


@st.composite
def static6(draw):
    prefixlen = draw(st.integers(min_value=32, max_value=127))
    base = V6_SPACE[draw(st.integers(0, V6_SPACE.num_addresses - 1))]
    net = ipaddress.ip_network((base, prefixlen), strict=False)
    address = net[draw(st.integers(0, net.num_addresses - 1))]
    if draw(st.booleans()):
        gateway = ipaddress.ip_address("fe80::") + draw(st.integers(1, 2**64 - 1))
    else:
        gateway = net[draw(st.integers(0, net.num_addresses - 1).filter(lambda i: net[i] != address))]
    # Sometimes write the address the long way (exploded, upper case): it must be normalised.
    text = address.exploded.upper() if draw(st.booleans()) else str(address)
    return {"address": f"{text}/{prefixlen}", "gateway": str(gateway)}


OPTIONAL = {
    "ipv4": st.one_of(st.sampled_from(["dhcp", "none"]), static4()),
    "ipv6": st.one_of(st.sampled_from(["dhcp", "slaac", "none"]), static6()),
    "weight": st.integers(min_value=1, max_value=256),
    "backup": st.booleans(),
    "nat": st.booleans(),
    "probes": st.lists(st.one_of(
        st.just({"kind": "icmp", "target": "gateway"}),
        st.builds(lambda port: {"kind": "tcp", "target": "gateway", "port": port}, st.integers(1, 65535)),
    ), min_size=1, max_size=3),
    "rate": st.fixed_dictionaries({key: st.one_of(st.integers(1, 100000), st.floats(0.064, 100000))
                                   for key in ("down_mbit", "up_mbit")}),
    "rtt_ms": st.one_of(st.integers(1, 2000), st.floats(1, 2000)),
}


@st.composite
def valid_wan(draw):
    wan = {"name": draw(names), "device": draw(devices), "kind": draw(st.sampled_from(sorted(WAN_KINDS)))}
    for key in draw(st.sets(st.sampled_from(sorted(OPTIONAL)))):
        wan[key] = draw(OPTIONAL[key])
    return wan


valid_wan_lists = st.lists(
    valid_wan(), min_size=1, max_size=MAX_WANS,
    unique_by=(lambda w: w["name"], lambda w: w["device"]),
).filter(lambda ws: not all(w.get("backup", False) for w in ws))


@PROPERTY_SETTINGS
@given(raw=valid_wan_lists)
def test_property_valid_lists_parse_and_round_trip(raw):
    result = parse_wans(HOST, raw)
    assert [w.name for w in result] == [w["name"] for w in raw]
    assert [w.device for w in result] == [w["device"] for w in raw]
    for wan, given_ in zip(result, raw):
        assert wan.weight == given_.get("weight", 1)
        assert wan.backup is given_.get("backup", False)
        for family, version in (("ipv4", 4), ("ipv6", 6)):
            addr = getattr(wan, family)
            if isinstance(given_.get(family), dict):
                assert isinstance(addr, StaticAddress)
                assert addr.interface == ipaddress.ip_interface(given_[family]["address"])
                assert addr.interface.version == addr.gateway.version == version
    again = parse_wans(HOST, [w.as_dict() for w in result])
    assert again == result
    # as_dict is already normal form: a second round changes nothing.
    assert [w.as_dict() for w in again] == [w.as_dict() for w in result]


# Inventory values come from YAML: scalars (including timestamps and !!binary), lists, and
# mappings whose keys are any hashable scalar.
yaml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(),
    st.binary(max_size=20),
    st.dates(),
    st.datetimes(),
    st.sampled_from(["dhcp", "slaac", "none", "eth0", "dsl", "192.0.2.1", "192.0.2.10/24", "fe80::1",
                     "2001:db8::10/64"]),
)
json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text()),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
yaml_like = st.recursive(
    yaml_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.one_of(st.text(max_size=8), st.integers(), st.booleans(), st.none()), children, max_size=4),
    max_leaves=12,
)

# A WAN with every field present, so that junk can replace any of them (nested ones too).
FULL_WAN = {**LTE, "ipv4": dict(V4), "ipv6": dict(V6), "weight": 2, "backup": False, "table": 102,
            "nat": True, "probes": [{"kind": "tcp", "target": "203.0.113.1", "port": 443}],
            "rate": {"down_mbit": 20, "up_mbit": 5}, "rtt_ms": 60}
FIELDS = ["name", "device", "kind", "weight", "backup", "ipv4", "ipv6", "table", "nat", "probes",
          "ipv4.address", "ipv4.gateway", "ipv6.address", "ipv6.gateway", "rate", "rate.down_mbit", "rate.up_mbit",
          "rtt_ms"]


def with_junk(field: str, value) -> list[dict]:
    wan = {k: (dict(v) if isinstance(v, dict) else v) for k, v in FULL_WAN.items()}
    if "." in field:
        outer, inner = field.split(".")
        wan[outer][inner] = value
    else:
        wan[field] = value
    return [DSL, wan]


@pytest.mark.parametrize("field", FIELDS)
@PROPERTY_SETTINGS
@given(value=st.one_of(json_like, yaml_like))
# Explicit examples keep two regressions in every run: a mapping with mixed-type keys is
# unhashable (kind) and has unsortable unknown keys (ipv4/ipv6).
@example(value={0: None, "": None})
@example(value=[])
def test_property_junk_in_one_field_is_an_inventory_error_or_accepted(field, value):
    raw = with_junk(field, value)
    try:
        result = parse_wans(HOST, raw)
    except InventoryError as exc:
        assert str(exc).startswith(f"{HOST}: cpe_wans")
        return
    # Accepted: then it is a valid WAN list and normalisation is stable.
    assert parse_wans(HOST, [w.as_dict() for w in result]) == result


@PROPERTY_SETTINGS
@given(value=json_like)
def test_property_junk_as_list_or_wan_is_an_inventory_error(value):
    for raw in (value, [value], [DSL, value]):
        with pytest.raises(InventoryError):
            parse_wans(HOST, raw)


@PROPERTY_SETTINGS
@given(value=st.one_of(json_like, yaml_like))
def test_property_platform_junk(value):
    try:
        assert platform(HOST, value) in ("Debian", "OpenWrt")
    except InventoryError as exc:
        assert exc.field == "ansible_facts.distribution"


# --- routing fields: table, nat, probes (read by cpe_multiwan / wand) ---

def test_routing_fields_parse():
    (wan,) = parse_wans(HOST, [{**DSL, "table": 110, "nat": False, "ipv6": "slaac", "probes": [
        {"kind": "tcp", "target": "203.0.113.1", "port": 443},
        {"kind": "icmp", "target": "2001:DB8::1"},
        {"target": "gateway"},  # kind defaults to icmp
    ]}])
    assert wan.table == 110 and wan.nat is False
    assert wan.probes == (Probe("tcp", "203.0.113.1", 443), Probe("icmp", "2001:db8::1"), Probe("icmp", "gateway"))
    assert parse_wans(HOST, [wan.as_dict()]) == [wan]


@pytest.mark.parametrize(
    "overrides, field, value",
    [
        pytest.param({"table": 254}, "cpe_wans[0] (dsl).table", 254, id="table-main"),
        pytest.param({"table": 0}, "cpe_wans[0] (dsl).table", 0, id="table-zero"),
        pytest.param({"table": 2**32}, "cpe_wans[0] (dsl).table", 2**32, id="table-too-big"),
        pytest.param({"table": "101"}, "cpe_wans[0] (dsl).table", "101", id="table-text"),
        pytest.param({"nat": "yes"}, "cpe_wans[0] (dsl).nat", "yes", id="nat-text"),
        pytest.param({"probes": []}, "cpe_wans[0] (dsl).probes", [], id="probes-empty"),
        pytest.param({"probes": {"kind": "icmp"}}, "cpe_wans[0] (dsl).probes", {"kind": "icmp"}, id="probes-mapping"),
        pytest.param({"probes": [{"kind": "udp", "target": "gateway"}]}, "cpe_wans[0] (dsl).probes[0].kind", "udp", id="probe-kind"),
        pytest.param({"probes": [{"kind": "icmp"}]}, "cpe_wans[0] (dsl).probes[0].target", None, id="probe-no-target"),
        pytest.param({"probes": [{"target": "example.net"}]}, "cpe_wans[0] (dsl).probes[0].target", "example.net", id="probe-name"),
        pytest.param({"probes": [{"target": "224.0.0.1"}]}, "cpe_wans[0] (dsl).probes[0].target", "224.0.0.1", id="probe-multicast"),
        pytest.param({"probes": [{"target": "2001:db8::1"}]}, "cpe_wans[0] (dsl).probes[0].target", "2001:db8::1", id="probe-v6-on-v4-only"),
        pytest.param({"probes": [{"kind": "tcp", "target": "gateway"}]}, "cpe_wans[0] (dsl).probes[0].port", None, id="tcp-no-port"),
        pytest.param({"probes": [{"kind": "tcp", "target": "gateway", "port": 0}]}, "cpe_wans[0] (dsl).probes[0].port", 0, id="tcp-port-0"),
        pytest.param({"probes": [{"target": "gateway", "port": 80}]}, "cpe_wans[0] (dsl).probes[0].port", 80, id="icmp-port"),
        pytest.param({"probes": [{"target": "gateway", "ttl": 3}]}, "cpe_wans[0] (dsl).probes[0]", None, id="probe-unknown-key"),
    ],
)
def test_routing_field_errors(overrides, field, value):
    with pytest.raises(InventoryError) as exc:
        parse_wans(HOST, [{**DSL, **overrides}])
    assert exc.value.field == field
    if value is not None:
        assert exc.value.value == value


def test_duplicate_table():
    with pytest.raises(InventoryError) as exc:
        parse_wans(HOST, wans({"table": 101}, table=101))
    assert str(exc.value) == f"{HOST}: cpe_wans[1] (lte).table: already used by cpe_wans[0] (dsl) (got 101)"


def test_field_name_for_daemon_configs():
    with pytest.raises(InventoryError) as exc:
        parse_wans(HOST, [{**DSL, "weight": 0}], field="wans")
    assert exc.value.field == "wans[0] (dsl).weight"


# --- line fields: rate, rtt_ms (they size the converter's MPTCP buffers: test_buffers.py) ---

def test_line_fields_parse_and_round_trip():
    (dsl, lte) = parse_wans(HOST, wans({"rate": {"down_mbit": 20, "up_mbit": 5.5}}, rate={"down_mbit": 40, "up_mbit": 10},
                                       rtt_ms=20))
    assert (dsl.rate, dsl.rtt_ms) == (Rate(40.0, 10.0), 20.0)
    assert (lte.rate, lte.rtt_ms) == (Rate(20.0, 5.5), None)  # each is optional on its own
    assert dsl.as_dict()["rate"] == {"down_mbit": 40.0, "up_mbit": 10.0} and dsl.as_dict()["rtt_ms"] == 20.0
    assert "rtt_ms" not in lte.as_dict()
    assert parse_wans(HOST, [dsl.as_dict(), lte.as_dict()]) == [dsl, lte]


def test_line_fields_are_absent_unless_declared():
    (wan,) = parse_wans(HOST, [DSL])
    assert wan.rate is None and wan.rtt_ms is None
    assert "rate" not in wan.as_dict() and "rtt_ms" not in wan.as_dict()


@pytest.mark.parametrize("overrides", [
    pytest.param({"rate": {"down_mbit": 0.064, "up_mbit": 100000}}, id="rate-bounds"),
    pytest.param({"rtt_ms": 1}, id="rtt-min"),
    pytest.param({"rtt_ms": 2000}, id="rtt-max"),
    pytest.param({"rtt_ms": 12.5}, id="rtt-float"),
])
def test_line_fields_in_range(overrides):
    (wan,) = parse_wans(HOST, [{**DSL, **overrides}])
    d = wan.as_dict()
    for key, value in overrides.items():
        assert d[key] == value


RATE_PROBLEM = "must be a number from 0.064 to 100000"
RTT_PROBLEM = "must be a number from 1 to 2000"


@pytest.mark.parametrize("second, field, problem, value", [
    pytest.param({"rate": {"down_mbit": 0, "up_mbit": 5}}, "rate.down_mbit", RATE_PROBLEM, 0, id="rate-zero"),
    pytest.param({"rate": {"down_mbit": -20, "up_mbit": 5}}, "rate.down_mbit", RATE_PROBLEM, -20, id="rate-negative"),
    pytest.param({"rate": {"down_mbit": 0.05, "up_mbit": 5}}, "rate.down_mbit", RATE_PROBLEM, 0.05, id="rate-below-64k"),
    pytest.param({"rate": {"down_mbit": 20, "up_mbit": 100001}}, "rate.up_mbit", RATE_PROBLEM, 100001, id="rate-too-big"),
    pytest.param({"rate": {"down_mbit": True, "up_mbit": 5}}, "rate.down_mbit", RATE_PROBLEM, True, id="rate-bool"),
    pytest.param({"rate": {"down_mbit": "20", "up_mbit": 5}}, "rate.down_mbit", RATE_PROBLEM, "20", id="rate-string"),
    pytest.param({"rate": {"down_mbit": "20M", "up_mbit": 5}}, "rate.down_mbit", RATE_PROBLEM, "20M", id="rate-unit"),
    pytest.param({"rate": {"down_mbit": float("nan"), "up_mbit": 5}}, "rate.down_mbit", RATE_PROBLEM, None, id="rate-nan"),
    pytest.param({"rate": {"down_mbit": float("inf"), "up_mbit": 5}}, "rate.down_mbit", RATE_PROBLEM, float("inf"),
                 id="rate-inf"),
    pytest.param({"rate": {"down_mbit": 20}}, "rate.up_mbit", "missing", NO_VALUE, id="rate-half"),
    pytest.param({"rate": 20}, "rate", "must be a mapping with down_mbit and up_mbit (the line's rates in Mbit/s)", 20,
                 id="rate-scalar"),
    pytest.param({"rate": {"down": 20, "up_mbit": 5}}, "rate",
                 "unknown keys ['down']; allowed: ['down_mbit', 'up_mbit']", {"down": 20, "up_mbit": 5}, id="rate-key"),
    pytest.param({"rtt_ms": 0}, "rtt_ms", RTT_PROBLEM, 0, id="rtt-zero"),
    pytest.param({"rtt_ms": 2001}, "rtt_ms", RTT_PROBLEM, 2001, id="rtt-too-long"),
    pytest.param({"rtt_ms": False}, "rtt_ms", RTT_PROBLEM, False, id="rtt-bool"),
    pytest.param({"rtt_ms": "60ms"}, "rtt_ms", RTT_PROBLEM, "60ms", id="rtt-string"),
    pytest.param({"rtt_ms": [60]}, "rtt_ms", RTT_PROBLEM, [60], id="rtt-list"),
])
def test_line_field_errors_name_host_field_and_value(second, field, problem, value):
    with pytest.raises(InventoryError) as info:
        parse_wans(HOST, wans(second))
    where = f"cpe_wans[1] (lte).{field}"
    if value is NO_VALUE:
        assert str(info.value) == f"{HOST}: {where}: {problem}"
    elif value is None:  # NaN: not equal to itself, its text is the same
        assert str(info.value) == f"{HOST}: {where}: {problem} (got nan)"
    else:
        assert str(info.value) == f"{HOST}: {where}: {problem} (got {value!r})"
        assert_error(info.value, where, value)


def test_every_line_mistake_at_once():
    # Both rates and the round trip of one WAN, and another WAN's, in one error, a line each.
    with pytest.raises(InventoryErrors) as info:
        parse_wans(HOST, wans({"rtt_ms": "60"}, rate={"down_mbit": True, "up_mbit": 0}, rtt_ms=0))
    assert [e.field for e in info.value.errors] == [
        "cpe_wans[0] (dsl).rate.down_mbit", "cpe_wans[0] (dsl).rate.up_mbit", "cpe_wans[0] (dsl).rtt_ms",
        "cpe_wans[1] (lte).rtt_ms"]
    assert [e.value for e in info.value.errors] == [True, 0, 0, "60"]


# ---------------------------------------------------------------------------
# The LANs, prefix lists and port forwards
# ---------------------------------------------------------------------------

from mptcp_cpe.inventory import parse_lans, parse_port_forwards, parse_prefixes  # noqa: E402

LAN = {"name": "lan", "device": "lan0", "ipv4": "198.18.1.1/24", "ipv6": ["2001:db8:0:100::1/64"]}
RESERVED = {("tcp", 5125): "converter's listen port (cpe_converter_listen_port)",
            ("tcp", 5124): "MCP port (cpe_converter_mcp_port)"}


def the_lans(*extra: dict, **first) -> list:
    return parse_lans(HOST, [{**LAN, **first}, *extra], parse_wans(HOST, wans()))


def test_a_lan_normalises_with_its_prefixes():
    (lan,) = the_lans()
    assert lan.device == "lan0"
    assert [str(p) for p in lan.prefixes] == ["198.18.1.0/24", "2001:db8:0:100::/64"]
    assert lan.as_dict() == {"name": "lan", "device": "lan0", "ipv4": "198.18.1.1/24", "ipv6": ["2001:db8:0:100::1/64"],
                             "pd_subnet": 0}


def test_an_ipv6_only_lan_and_ipv6_none():
    (lan,) = the_lans(ipv4="none")
    assert lan.ipv4 is None and len(lan.ipv6) == 1
    (lan,) = the_lans(ipv6="none")
    assert lan.ipv6 == () and str(lan.ipv4) == "198.18.1.1/24"


@pytest.mark.parametrize("raw, field, value", [
    ({**LAN, "ipv4": "198.18.1.0/24"}, "cpe_lans[0] (lan).ipv4", "198.18.1.0/24"),
    ({**LAN, "ipv4": "198.18.1.1"}, "cpe_lans[0] (lan).ipv4", "198.18.1.1"),
    ({**LAN, "ipv4": "2001:db8::1/64"}, "cpe_lans[0] (lan).ipv4", "2001:db8::1/64"),
    ({**LAN, "ipv4": "198.18.1.1/32"}, "cpe_lans[0] (lan).ipv4", "198.18.1.1/32"),
    ({**LAN, "ipv6": "2001:db8::1/64"}, "cpe_lans[0] (lan).ipv6", "2001:db8::1/64"),
    ({**LAN, "ipv6": ["fe80::1/64"]}, "cpe_lans[0] (lan).ipv6[0]", "fe80::1/64"),
    ({**LAN, "ipv6": ["2001:db8::1/96"]}, "cpe_lans[0] (lan).ipv6[0]", "2001:db8::1/96"),
    ({**LAN, "device": "eth0/1"}, "cpe_lans[0] (lan).device", "eth0/1"),
    ({**LAN, "name": "LAN"}, "cpe_lans[0] (LAN).name", "LAN"),
])
def test_bad_lan_values_name_the_field(raw, field, value):
    with pytest.raises(InventoryError) as e:
        parse_lans(HOST, [raw])
    assert_error(e.value, field, value)


def test_delegated_prefix_length_and_lan_subnets():
    dhcp6 = parse_wans(HOST, wans({"ipv6": "dhcp", "pd_length": 60}, ipv6="dhcp"))
    assert [w.pd_length for w in dhcp6] == [56, 60]
    assert dhcp6[1].as_dict()["pd_length"] == 60 and "pd_length" not in parse_wans(HOST, wans())[0].as_dict()
    lans = parse_lans(HOST, [LAN, {"name": "guest", "device": "lan1", "ipv4": "198.18.2.1/24", "pd_subnet": 15},
                             {"name": "iot", "device": "lan2", "ipv4": "198.18.3.1/24", "pd_subnet": "none"}], dhcp6)
    assert [lan.pd_subnet for lan in lans] == [0, 15, None]
    # A /60 has 16 /64s: number 16 does not exist in it.
    with pytest.raises(InventoryError) as e:
        parse_lans(HOST, [LAN, {"name": "guest", "device": "lan1", "ipv4": "198.18.2.1/24", "pd_subnet": 16}], dhcp6)
    assert_error(e.value, "cpe_lans[1] (guest).pd_subnet", 16)
    assert "WAN lte's /60 has only 16 /64s (0-15)" in str(e.value)
    with pytest.raises(InventoryError) as e:
        parse_lans(HOST, [LAN, {"name": "guest", "device": "lan1", "ipv4": "198.18.2.1/24", "pd_subnet": 0}], dhcp6)
    assert_error(e.value, "cpe_lans[1] (guest).pd_subnet", 0)
    for bad in (-1, True, "1", 2 ** 16):
        with pytest.raises(InventoryError) as e:
            parse_lans(HOST, [{**LAN, "pd_subnet": bad}])
        assert_error(e.value, "cpe_lans[0] (lan).pd_subnet", bad)


def test_a_lan_needs_an_address_and_known_keys():
    with pytest.raises(InventoryError) as e:
        parse_lans(HOST, [{"name": "lan", "device": "lan0"}])
    assert e.value.field == "cpe_lans[0] (lan)" and "no address" in str(e.value)
    with pytest.raises(InventoryError) as e:
        parse_lans(HOST, [{**LAN, "vlan": 3}])
    assert e.value.field == "cpe_lans[0] (lan)" and "'vlan'" in str(e.value)


def test_a_lan_on_a_wan_device_or_overlapping_is_refused():
    with pytest.raises(InventoryError) as e:
        the_lans(device="eth0")
    assert_error(e.value, "cpe_lans[0] (lan).device", "eth0")
    assert "WAN dsl" in str(e.value)
    with pytest.raises(InventoryError) as e:
        the_lans({"name": "guest", "device": "lan1", "ipv4": "198.18.1.129/25"})
    assert e.value.field == "cpe_lans[1] (guest)" and "overlaps 198.18.1.0/24 of LAN lan" in str(e.value)
    with pytest.raises(InventoryError) as e:
        the_lans({"name": "guest", "device": "lan0", "ipv4": "198.18.2.1/24"})
    assert_error(e.value, "cpe_lans[1] (guest).device", "lan0")
    static = parse_wans(HOST, wans(ipv4={"address": "198.18.1.200/24", "gateway": "198.18.1.254"}))
    with pytest.raises(InventoryError) as e:
        parse_lans(HOST, [LAN], static)
    assert "overlaps 198.18.1.0/24 of WAN dsl" in str(e.value)


@pytest.mark.parametrize("raw, field", [
    ("192.0.2.0/24", "cpe_management_prefixes"),
    (["192.0.2.1"], "cpe_management_prefixes[0]"),
    (["192.0.2.1/24"], "cpe_management_prefixes[0]"),
    (["not-a-prefix/8"], "cpe_management_prefixes[0]"),
    ([24], "cpe_management_prefixes[0]"),
])
def test_a_management_prefix_that_is_not_a_prefix(raw, field):
    with pytest.raises(InventoryError) as e:
        parse_prefixes(HOST, "cpe_management_prefixes", raw)
    assert_error(e.value, field, raw if field == "cpe_management_prefixes" else raw[0])


def test_prefixes_parse_both_families():
    assert [str(p) for p in parse_prefixes(HOST, "f", ["192.0.2.0/28", "2001:db8::/32"])] == ["192.0.2.0/28", "2001:db8::/32"]


def forwards(*items: dict, wans_=None) -> list:
    w = parse_wans(HOST, wans_ or wans())
    return parse_port_forwards(HOST, list(items), parse_lans(HOST, [LAN], w), w, reserved=RESERVED)


def test_port_forwards_normalise():
    v4, v6, rng = forwards({"name": "game", "port": 2223, "to": "198.18.1.10"},
                           {"name": "game6", "proto": "udp", "port": "2223", "to": "2001:db8:0:100::10", "wans": ["lte"]},
                           {"name": "rng", "port": "8000-8009", "to": "198.18.1.11", "to_port": "9000-9009"})
    assert v4.as_dict() == {"name": "game", "proto": "tcp", "port": 2223, "to": "198.18.1.10", "to_port": 2223, "wans": []}
    assert v6.proto == "udp" and v6.wans == ("lte",) and v6.ports == (2223, 2223)
    assert rng.ports == (8000, 8009) and rng.to_ports == (9000, 9009)


@pytest.mark.parametrize("item, field, problem", [
    ({"name": "x", "port": 80, "to": "192.0.2.100"}, "cpe_port_forwards[0] (x).to", "not inside a LAN prefix"),
    ({"name": "x", "port": 80, "to": "198.18.1.1"}, "cpe_port_forwards[0] (x).to", "the CPE's own address"),
    ({"name": "x", "port": 80, "to": "198.18.1.255"}, "cpe_port_forwards[0] (x).to", "broadcast"),
    ({"name": "x", "port": 5125, "to": "198.18.1.10"}, "cpe_port_forwards[0] (x).port", "cpe_converter_listen_port"),
    ({"name": "x", "port": "5100-5124", "to": "198.18.1.10"}, "cpe_port_forwards[0] (x).port", "cpe_converter_mcp_port"),
    ({"name": "x", "port": 0, "to": "198.18.1.10"}, "cpe_port_forwards[0] (x).port", "1-65535"),
    ({"name": "x", "port": "90-80", "to": "198.18.1.10"}, "cpe_port_forwards[0] (x).port", "low to high"),
    ({"name": "x", "port": 80, "to": "198.18.1.10", "proto": "sctp"}, "cpe_port_forwards[0] (x).proto", "tcp, udp"),
    ({"name": "x", "port": 80, "to": "198.18.1.10", "wans": ["adsl"]}, "cpe_port_forwards[0] (x).wans", "dsl, lte"),
    ({"name": "x", "port": "80-81", "to": "198.18.1.10", "to_port": 80}, "cpe_port_forwards[0] (x).to_port", "as many ports"),
    ({"name": "x", "port": 80, "to": "2001:db8:0:100::10", "to_port": 8080}, "cpe_port_forwards[0] (x).to_port", "not translated"),
    ({"name": "x", "to": "198.18.1.10"}, "cpe_port_forwards[0] (x).port", "missing"),
])
def test_bad_port_forwards_name_host_and_field(item, field, problem):
    with pytest.raises(InventoryError) as e:
        forwards(item)
    assert e.value.host == HOST and e.value.field == field
    assert str(e.value).startswith(f"{HOST}: {field}: ") and problem in str(e.value), str(e.value)


def test_a_port_forward_to_a_wan_address():
    static = wans(ipv4={"address": "192.0.2.10/24", "gateway": "192.0.2.1"})
    with pytest.raises(InventoryError) as e:
        forwards({"name": "x", "port": 80, "to": "192.0.2.10"}, wans_=static)
    assert_error(e.value, "cpe_port_forwards[0] (x).to", "192.0.2.10")


def test_overlapping_forwards_on_a_shared_wan_are_refused():
    with pytest.raises(InventoryError) as e:
        forwards({"name": "a", "port": "8000-8010", "to": "198.18.1.10"},
                 {"name": "b", "port": 8005, "to": "198.18.1.11", "wans": ["lte"]})
    assert e.value.field == "cpe_port_forwards[1] (b).port" and "overlaps cpe_port_forwards[0] (a) on WAN lte" in str(e.value)
    # Different WANs, or another protocol: no clash.
    forwards({"name": "a", "port": 8000, "to": "198.18.1.10", "wans": ["dsl"]},
             {"name": "b", "port": 8000, "to": "198.18.1.11", "wans": ["lte"]},
             {"name": "c", "port": 8000, "proto": "udp", "to": "198.18.1.11"})


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(1, 65535), st.integers(0, 50), st.ip_addresses(v=4))
def test_any_accepted_forward_lands_inside_a_lan_and_clear_of_reserved_ports(port, span, to):
    hi = min(65535, port + span)
    try:
        (fw,) = forwards({"name": "p", "port": f"{port}-{hi}", "to": str(to)})
    except InventoryError:
        return
    assert to in ipaddress.ip_network("198.18.1.0/24") and str(to) != "198.18.1.1"
    assert not any(fw.ports[0] <= p <= fw.ports[1] for _, p in RESERVED)
