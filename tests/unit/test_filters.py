"""Unit tests for the roles' filter plugin (``plugins/filter/mptcp_cpe.py``)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from mptcp_cpe import inventory
from mptcp_cpe.wand import config as wand_config

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "mptcp_cpe.py"
HOST = "cpe-test-01"


def _load():
    spec = importlib.util.spec_from_file_location("mptcp_cpe_filters", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


f = _load()

DSL = {"name": "dsl", "device": "eth0", "kind": "dsl"}
LTE = {"name": "lte", "device": "wwan0", "kind": "lte"}


# ---------------------------------------------------------------------------
# FilterModule
# ---------------------------------------------------------------------------


def test_filter_module_exposes_the_filters():
    assert f.FilterModule().filters() == {
        "mptcp_cpe_wans": f.cpe_wans,
        "mptcp_cpe_platform": f.cpe_platform,
        "mptcp_cpe_option_code": f.option_code,
        "mptcp_cpe_kea_config": f.kea_config,
        "mptcp_cpe_base_sysctls": f.cpe_base_sysctls,
        "mptcp_cpe_sysctl_drift": f.sysctl_drift,
        "mptcp_cpe_limits": f.mptcp_limits,
        "mptcp_cpe_limits_for": f.mptcp_limits_for,
        "mptcp_cpe_wand_config": f.wand_config_for,
        "mptcp_cpe_converter_config": f.converter_config,
        "mptcp_cpe_lan_prefixes": f.lan_prefixes,
        "mptcp_cpe_mcp_config": f.mcp_config,
        "mptcp_cpe_converter_sysctls": f.converter_sysctls,
        "mptcp_cpe_firewall_config": f.firewall_config,
        "mptcp_cpe_firewall_management_path": f.firewall_management_path,
        "mptcp_cpe_problems": f.problems,
    }


def test_plugin_uses_the_package_checker():
    # One checker for every consumer: the plugin must not carry its own copy.
    assert f.inventory is inventory


# ---------------------------------------------------------------------------
# cpe_wans / cpe_platform
# ---------------------------------------------------------------------------


def test_cpe_wans_returns_normalised_dicts():
    raw = [
        {**DSL, "ipv4": {"address": "192.0.2.10/24", "gateway": "192.0.2.1"}},
        {**LTE, "ipv6": {"address": "2001:DB8::10/64", "gateway": "fe80::1"}, "backup": True},
    ]
    assert f.cpe_wans(raw, HOST) == [
        {"name": "dsl", "device": "eth0", "kind": "dsl", "ipv4": {"address": "192.0.2.10/24", "gateway": "192.0.2.1"},
         "ipv6": "none", "weight": 1, "backup": False, "nat": True, "probes": [{"kind": "icmp", "target": "gateway"}]},
        {"name": "lte", "device": "wwan0", "kind": "lte", "ipv4": "dhcp",
         "ipv6": {"address": "2001:db8::10/64", "gateway": "fe80::1"}, "weight": 1, "backup": True,
         "nat": True, "probes": [{"kind": "icmp", "target": "gateway"}]},
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param([], f"{HOST}: cpe_wans: must be a non-empty list of WANs (got [])", id="empty"),
        pytest.param(
            [DSL, {**LTE, "ipv4": {"address": "192.0.2.10/24", "gateway": "198.51.100.1"}}],
            f"{HOST}: cpe_wans[1] (lte).ipv4.gateway: outside the WAN's prefix 192.0.2.0/24 (got '198.51.100.1')",
            id="gateway-outside",
        ),
        pytest.param(
            [DSL, {**LTE, "weight": "3"}],
            f"{HOST}: cpe_wans[1] (lte).weight: must be an integer from 1 to 256 (got '3')",
            id="weight-str",
        ),
    ],
)
def test_cpe_wans_error_is_an_ansible_filter_error(raw, expected):
    with pytest.raises(AnsibleFilterError) as info:
        f.cpe_wans(raw, HOST)
    assert info.value.message == expected
    assert expected in str(info.value)
    # Raised "from None": the InventoryError traceback is not chained into Ansible's output.
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ is True


@pytest.mark.parametrize("distribution", ["Debian", "OpenWrt"])
def test_cpe_platform(distribution):
    assert f.cpe_platform(distribution, HOST) == distribution


@pytest.mark.parametrize("distribution", ["Ubuntu", None])
def test_cpe_platform_error(distribution):
    with pytest.raises(AnsibleFilterError) as info:
        f.cpe_platform(distribution, HOST)
    assert info.value.message.startswith(f"{HOST}: ansible_facts.distribution: ")
    assert info.value.message.endswith(f"(got {distribution!r})")


def test_other_errors_are_not_swallowed():
    # Only InventoryError is translated; a programming error stays what it is.
    def boom(*args):
        raise KeyError("x")

    with pytest.raises(KeyError):
        f._checked(boom, HOST)


# ---------------------------------------------------------------------------
# sysctl_key / cpe_base_sysctls
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "leaf", "family", "expected"),
    [
        ("eth0", "rp_filter", "ipv4", "net.ipv4.conf.eth0.rp_filter"),
        ("eth0.100", "rp_filter", "ipv4", "net.ipv4.conf.eth0/100.rp_filter"),
        ("eth0.100.200", "accept_ra", "ipv6", "net.ipv6.conf.eth0/100/200.accept_ra"),
    ],
)
def test_sysctl_key(device, leaf, family, expected):
    assert f.sysctl_key(device, leaf, family) == expected


def test_sysctl_key_defaults_to_ipv4():
    assert f.sysctl_key("wwan0", "rp_filter") == "net.ipv4.conf.wwan0.rp_filter"


def checked(*raw):
    return f.cpe_wans(list(raw), HOST)


def test_base_sysctls_for_wans():
    wans = checked(
        {**DSL, "device": "eth0.100", "ipv6": "dhcp"},
        {**LTE, "ipv6": "slaac"},
        {"name": "fibre", "device": "eth1", "kind": "fibre", "ipv6": "none"},
        {"name": "cable", "device": "eth2", "kind": "cable",
         "ipv6": {"address": "2001:db8::10/64", "gateway": "fe80::1"}},
    )
    assert f.cpe_base_sysctls(wans) == {
        "net.mptcp.enabled": "1",
        "net.ipv4.ip_forward": "1",
        "net.ipv6.conf.all.forwarding": "1",
        "net.ipv4.conf.eth0/100.rp_filter": "2",
        "net.ipv6.conf.eth0/100.accept_ra": "2",
        "net.ipv4.conf.wwan0.rp_filter": "2",
        "net.ipv6.conf.wwan0.accept_ra": "2",
        "net.ipv4.conf.eth1.rp_filter": "2",
        "net.ipv4.conf.eth2.rp_filter": "2",
    }


def test_base_sysctls_values_are_strings():
    sysctls = f.cpe_base_sysctls(checked(DSL), {"net.ipv4.tcp_fastopen": 3})
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in sysctls.items())


@pytest.mark.parametrize("extra", [None, {}])
def test_base_sysctls_without_extra(extra):
    assert f.cpe_base_sysctls(checked(DSL), extra) == {
        "net.mptcp.enabled": "1",
        "net.ipv4.ip_forward": "1",
        "net.ipv6.conf.all.forwarding": "1",
        "net.ipv4.conf.eth0.rp_filter": "2",
    }


def test_base_sysctls_extra_override_and_convert():
    extra = {
        "net.ipv4.conf.eth0.rp_filter": 1,  # overrides the role's own value
        "net.ipv4.ip_forward": False,  # bool -> "0", not "False"
        "net.ipv4.tcp_ecn": True,  # bool -> "1", not "True"
        "net.ipv4.tcp_rmem": "4096 131072 6291456",
        "net.ipv4.tcp_fastopen": 3,
    }
    sysctls = f.cpe_base_sysctls(checked({**DSL, "ipv6": "dhcp"}), extra)
    assert sysctls == {
        "net.mptcp.enabled": "1",
        "net.ipv4.ip_forward": "0",
        "net.ipv6.conf.all.forwarding": "1",
        "net.ipv4.conf.eth0.rp_filter": "1",
        "net.ipv6.conf.eth0.accept_ra": "2",
        "net.ipv4.tcp_ecn": "1",
        "net.ipv4.tcp_rmem": "4096 131072 6291456",
        "net.ipv4.tcp_fastopen": "3",
    }
    # The order is the role's keys first, then the operator's new ones (sysctl -n reads them in this order).
    assert list(sysctls)[:5] == [
        "net.mptcp.enabled", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding",
        "net.ipv4.conf.eth0.rp_filter", "net.ipv6.conf.eth0.accept_ra",
    ]


def test_base_sysctls_does_not_modify_arguments():
    wans = checked(DSL)
    extra = {"net.ipv4.tcp_ecn": True}
    f.cpe_base_sysctls(wans, extra)
    assert extra == {"net.ipv4.tcp_ecn": True}
    assert wans == checked(DSL)


# ---------------------------------------------------------------------------
# sysctl_drift
# ---------------------------------------------------------------------------

DESIRED = {
    "net.mptcp.enabled": "1",
    "net.ipv4.conf.eth0/100.rp_filter": "2",
    "net.ipv4.tcp_rmem": "4096 131072 6291456",
}


def test_drift_none_when_equal():
    assert f.sysctl_drift(DESIRED, ["1", "2", "4096 131072 6291456"]) == []


def test_drift_multi_valued_whitespace_insensitive():
    # sysctl -n prints multi-valued keys with tabs.
    assert f.sysctl_drift(DESIRED, ["1", "2", "4096\t131072\t6291456"]) == []
    assert f.sysctl_drift(DESIRED, ["1", "2", " 4096  131072\t6291456 "]) == []


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        pytest.param(["0", "2", "4096\t131072\t6291456"], ["net.mptcp.enabled=1"], id="first"),
        pytest.param(["1", "0", "4096\t131072\t6291456"], ["net.ipv4.conf.eth0/100.rp_filter=2"], id="vlan-key"),
        pytest.param(["1", "2", "4096\t87380\t6291456"], ["net.ipv4.tcp_rmem=4096 131072 6291456"], id="multi-valued"),
        pytest.param(["1", "2", "4096 131072"], ["net.ipv4.tcp_rmem=4096 131072 6291456"], id="fewer-words"),
        pytest.param(
            ["0", "1", ""],
            ["net.mptcp.enabled=1", "net.ipv4.conf.eth0/100.rp_filter=2", "net.ipv4.tcp_rmem=4096 131072 6291456"],
            id="all",
        ),
    ],
)
def test_drift_reports_differing_keys_in_order(current, expected):
    assert f.sysctl_drift(DESIRED, current) == expected


def test_drift_compares_non_string_desired_values_as_text():
    assert f.sysctl_drift({"net.ipv4.tcp_fastopen": 3}, ["3"]) == []
    assert f.sysctl_drift({"net.ipv4.tcp_fastopen": 3}, ["1"]) == ["net.ipv4.tcp_fastopen=3"]


def test_drift_accepts_any_iterable_of_lines():
    assert f.sysctl_drift(DESIRED, iter(["1", "2", "4096\t131072\t6291456"])) == []


@pytest.mark.parametrize("current", [[], ["1", "2"], ["1", "2", "3", "4"]])
def test_drift_line_count_mismatch_raises(current):
    with pytest.raises(AnsibleFilterError) as info:
        f.sysctl_drift(DESIRED, current)
    assert info.value.message == f"sysctl -n returned {len(current)} values for 3 keys"


def test_drift_round_trip_with_base_sysctls():
    desired = f.cpe_base_sysctls(checked({**DSL, "device": "eth0.100"}), {"net.ipv4.tcp_ecn": True})
    in_force = list(desired.values())
    assert f.sysctl_drift(desired, in_force) == []


# ---------------------------------------------------------------------------
# mptcp_limits / mptcp_limits_for
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("add_addr_accepted 0 subflows 2 ", {"add_addr_accepted": 0, "subflows": 2}),
        ("add_addr_accepted 0 subflows 2 \n", {"add_addr_accepted": 0, "subflows": 2}),
        ("subflows 8", {"subflows": 8}),
        ("add_addr_accepted\t3\tsubflows\t3", {"add_addr_accepted": 3, "subflows": 3}),
    ],
)
def test_mptcp_limits(text, expected):
    result = f.mptcp_limits(text)
    assert result == expected
    assert all(type(v) is int for v in result.values())


@pytest.mark.parametrize("text", ["", "   ", "subflows", "subflows x", "add_addr_accepted 0 subflows", "subflows 2.5"])
def test_mptcp_limits_rejects(text):
    with pytest.raises(AnsibleFilterError) as info:
        f.mptcp_limits(text)
    assert info.value.message == f"cannot read MPTCP limits from {text!r}"


def test_mptcp_limits_compare_equal_to_limits_for():
    # limits.yml compares the parsed kernel state with mptcp_limits_for: equal means no change.
    wans = checked(DSL, LTE)
    assert f.mptcp_limits("add_addr_accepted 2 subflows 2 ") == f.mptcp_limits_for(wans)
    assert f.mptcp_limits("add_addr_accepted 0 subflows 2 ") != f.mptcp_limits_for(wans)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 12])
def test_mptcp_limits_for(n):
    wans = [{"name": f"w{i}", "device": f"eth{i}"} for i in range(n)]
    expected = min(n, 8)
    assert f.mptcp_limits_for(wans) == {"add_addr_accepted": expected, "subflows": expected}


def test_mptcp_limit_max_is_the_kernel_maximum():
    assert f.MPTCP_LIMIT_MAX == 8 == inventory.MAX_WANS


# ---------------------------------------------------------------------------
# wand_config_for
# ---------------------------------------------------------------------------

# What the role cpe_multiwan passes: every setting, by the config's own key.
ROLE_SETTINGS = {
    "policy": "balance",
    "probe": {"interval_s": 0.5, "timeout_s": 0.5, "down_count": 3, "up_count": 2},
    "route_protocol": 201,
    "rule_priority": 10000,
    "default_table": 200,
    "table_base": 100,
    "endpoint_id_base": 100,
    "nft_table": "mptcp_cpe_wand",
}


def test_wand_config_is_the_daemons_own_normalised_config():
    raw = [DSL, {**LTE, "backup": True, "weight": 2}]
    cfg = f.wand_config_for(raw, HOST, **ROLE_SETTINGS)
    assert cfg == wand_config.from_dict({**ROLE_SETTINGS, "host": HOST, "wans": raw}).as_dict()
    assert cfg["host"] == HOST
    assert cfg["probe"] == {"interval_s": 0.5, "timeout_s": 0.5, "down_count": 3, "up_count": 2}
    assert cfg["state_file"] == "/run/mptcp-cpe/wan.json"
    # Every WAN carries its table: table_base + 1 + its index unless it has one.
    assert [(w["name"], w["table"]) for w in cfg["wans"]] == [("dsl", 101), ("lte", 102)]
    assert cfg["wans"][1]["backup"] is True and cfg["wans"][1]["weight"] == 2


def test_wand_config_defaults_without_settings():
    cfg = f.wand_config_for([DSL], HOST)
    assert cfg == {
        "host": HOST, "policy": "balance",
        "probe": {"interval_s": 1.0, "timeout_s": 1.0, "down_count": 3, "up_count": 2},
        "route_protocol": 201, "rule_priority": 10000, "default_table": 200, "table_base": 100,
        "endpoint_id_base": 100, "nft_table": "mptcp_cpe_wand", "state_file": "/run/mptcp-cpe/wan.json",
        "wans": [{"name": "dsl", "device": "eth0", "kind": "dsl", "ipv4": "dhcp", "ipv6": "none", "weight": 1,
                  "backup": False, "nat": True, "probes": [{"kind": "icmp", "target": "gateway"}], "table": 101}],
    }


def test_wand_config_keeps_explicit_tables_and_static_addresses():
    raw = [{**DSL, "table": 150, "ipv4": {"address": "192.0.2.10/24", "gateway": "192.0.2.1"}}, LTE]
    cfg = f.wand_config_for(raw, HOST, table_base=300)
    assert [w["table"] for w in cfg["wans"]] == [150, 302]
    assert cfg["wans"][0]["ipv4"] == {"address": "192.0.2.10/24", "gateway": "192.0.2.1"}


def test_wand_config_round_trips_through_json_and_the_loader(tmp_path):
    # The role writes the filter's result with to_nice_json; wand --check loads that file.
    cfg = f.wand_config_for([DSL, {**LTE, "probes": [{"kind": "tcp", "target": "203.0.113.1", "port": 443}]}],
                            HOST, **ROLE_SETTINGS)
    path = tmp_path / "wand.json"
    path.write_text(json.dumps(cfg, indent=4, sort_keys=True))
    assert wand_config.load(path).as_dict() == cfg


def test_wand_config_does_not_modify_arguments():
    raw = [DSL, LTE]
    settings = {"probe": {"interval_s": 2}}
    f.wand_config_for(raw, HOST, **settings)
    assert raw == [DSL, LTE] and settings == {"probe": {"interval_s": 2}}
    assert "table" not in raw[0]


@pytest.mark.parametrize(
    ("wans", "settings", "expected"),
    [
        pytest.param([DSL], {"policy": "roundrobin"},
                     f"{HOST}: policy: must be one of balance, failover (got 'roundrobin')", id="policy"),
        pytest.param([DSL], {"probe": {"interval_s": 1, "timeout_s": 2}},
                     f"{HOST}: probe.timeout_s: longer than probe.interval_s (1) (got 2)", id="timeout"),
        pytest.param([DSL], {"route_protocol": 4},
                     f"{HOST}: route_protocol: belongs to the kernel or a routing daemon (see /etc/iproute2/rt_protos) (got 4)",
                     id="protocol"),
        pytest.param([DSL], {"nft_table": "mptcp-cpe"},
                     f"{HOST}: nft_table: must be 1-32 letters, digits and _, not starting with a digit (got 'mptcp-cpe')",
                     id="nft-table"),
        pytest.param([DSL], {"rules": 1},
                     f"{HOST}: (config): unknown keys ['rules']; allowed: {sorted(wand_config.TOP_KEYS)}", id="unknown"),
        pytest.param([DSL, {**LTE, "table": 200}], {},
                     f"{HOST}: wans[1] (lte).table: is the default_table, which holds the balanced default route (got 200)",
                     id="default-table"),
        pytest.param([DSL, LTE], {"policy": "failover"},
                     f"{HOST}: wans: more than one primary WAN: with policy failover mark all but one backup: true "
                     "(got ['dsl', 'lte'])", id="failover-primaries"),
        pytest.param([], {}, f"{HOST}: wans: must be a non-empty list of WANs (got [])", id="no-wans"),
        pytest.param([{**DSL, "kind": "adsl"}], {},
                     f"{HOST}: wans[0] (dsl).kind: must be one of 5g, cable, dsl, ethernet, fibre, lte, satellite (got 'adsl')",
                     id="wan-kind"),
    ],
)
def test_wand_config_errors_are_ansible_filter_errors(wans, settings, expected):
    with pytest.raises(AnsibleFilterError) as info:
        f.wand_config_for(wans, HOST, **settings)
    assert info.value.message == expected
    assert info.value.__cause__ is None and info.value.__suppress_context__ is True



# ---------------------------------------------------------------------------
# mptcp_cpe_problems: every mistake a check finds, a line each, for a fail task
# ---------------------------------------------------------------------------


def test_problems_lists_every_mistake_a_line_each():
    lines = f.problems("mptcp_cpe_wans", [{**DSL, "kind": "adsl"}, {**LTE, "weight": 0}], HOST)
    assert lines == [
        f"{HOST}: cpe_wans[0] (dsl).kind: must be one of 5g, cable, dsl, ethernet, fibre, lte, satellite (got 'adsl')",
        f"{HOST}: cpe_wans[1] (lte).weight: must be an integer from 1 to 256 (got 0)",
    ]
    # The filter itself fails with the same lines.
    with pytest.raises(AnsibleFilterError) as exc:
        f.cpe_wans([{**DSL, "kind": "adsl"}, {**LTE, "weight": 0}], HOST)
    assert str(exc.value.message).splitlines() == lines


def test_problems_none_for_good_data():
    assert f.problems("mptcp_cpe_wans", [DSL, LTE], HOST) == []
    assert f.problems("mptcp_cpe_option_code", 224, 4, HOST, "cpe_dhcp_client_v4_option_code") == []


def test_problems_runs_only_the_checks():
    with pytest.raises(AnsibleFilterError, match="not one of the checks"):
        f.problems("mptcp_cpe_limits", "subflows 2", HOST)


def test_problems_name_the_roles_variables():
    settings = {"lan_interfaces": ["lan0"], "listen_port": 0, "workers": -1}
    assert f.problems("mptcp_cpe_converter_config", settings, HOST, [{**DSL, "device": "lan0"}]) == [
        f"{HOST}: cpe_converter_listen_port: must be an integer from 1 to 65535 (got 0)",
        f"{HOST}: cpe_converter_workers: must be an integer from 0 to 256 (got -1)",
    ]
    assert f.problems("mptcp_cpe_mcp_config", {"clients": ["0.0.0.0/0"], "port": 0}, "mcp-1") == [
        "mcp-1: mcp_converter_clients[0]: a default prefix would make the MCP an open proxy (got '0.0.0.0/0')",
        "mcp-1: mcp_converter_port: must be an integer from 1 to 65535 (got 0)",
    ]
