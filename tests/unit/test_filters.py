"""Unit tests for the roles' filter plugin (``plugins/filter/mptcp_cpe.py``), every filter in
one file: the inventory's (WANs, platform, option codes, Kea, sysctls, limits, wand), the
converter's and the MCP's (the daemons' own loaders build the configs, and their errors
name the role's variables), the firewall's (its loader, errors naming the variable an
operator edits, the management-path guard), and mptcp_cpe_problems."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from mptcp_cpe import converter, firewall, inventory, mcp
from mptcp_cpe.wand import config as wand_config

TOP = Path(__file__).resolve().parents[2]
PLUGIN = TOP / "plugins" / "filter" / "mptcp_cpe.py"
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
        "mptcp_cpe_openwrt_network": f.openwrt_network,
        "mptcp_cpe_mwan3_conflicts": f.mwan3_conflicts,
        "mptcp_cpe_openwrt_firewall": f.openwrt_firewall,
        "mptcp_cpe_openwrt_image_settings": f.openwrt_image_settings,
        "mptcp_cpe_openwrt_make": f.openwrt_make,
        "mptcp_cpe_uci_defaults": f.uci_defaults,
        "mptcp_cpe_option_code": f.option_code,
        "mptcp_cpe_kea_config": f.kea_config,
        "mptcp_cpe_base_sysctls": f.cpe_base_sysctls,
        "mptcp_cpe_sysctl_drift": f.sysctl_drift,
        "mptcp_cpe_limits": f.mptcp_limits,
        "mptcp_cpe_limits_for": f.mptcp_limits_for,
        "mptcp_cpe_wand_config": f.wand_config_for,
        "mptcp_cpe_lan_dhcp_config": f.lan_dhcp_config,
        "mptcp_cpe_converter_config": f.converter_config,
        "mptcp_cpe_lan_prefixes": f.lan_prefixes,
        "mptcp_cpe_mptcp_buffers": f.mptcp_buffers,
        "mptcp_cpe_mcp_config": f.mcp_config,
        "mptcp_cpe_host_config": f.host_config_for,
        "mptcp_cpe_converter_sysctls": f.converter_sysctls,
        "mptcp_cpe_firewall_config": f.firewall_config,
        "mptcp_cpe_firewall_management_path": f.firewall_management_path,
        "mptcp_cpe_firmware_settings": f.firmware_settings,
        "mptcp_cpe_firmware_packages": f.firmware_packages,
        "mptcp_cpe_firmware_prune": f.firmware_prune,
        "mptcp_cpe_firmware_device": f.firmware_device,
        "mptcp_cpe_firmware_groups": f.firmware_groups,
        "mptcp_cpe_config_file": f.config_file,
        "mptcp_cpe_firmware_lan_unit": f.firmware_lan_unit,
        "mptcp_cpe_rollback_settings": f.rollback_settings,
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
    sysctls = f.cpe_base_sysctls(checked({**DSL, "ipv6": "slaac"}), extra)
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
    "mptcp_probe": {"enabled": True, "interval_s": 300, "backoff_min_s": 30, "backoff_max_s": 900, "stripped_count": 2,
                    "timeout_s": 3.0, "port": 5124, "mcps": [["203.0.113.1"]], "mcp_prefixes": ["203.0.113.0/24"]},
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
        "mptcp_probe": {"enabled": True, "interval_s": 300.0, "backoff_min_s": 30.0, "backoff_max_s": 900.0,
                        "stripped_count": 2, "timeout_s": 3.0, "port": 5124, "mcps": [], "mcp_prefixes": []},
        "route_protocol": 201, "rule_priority": 10000, "default_table": 200, "table_base": 100,
        "endpoint_id_base": 100, "nft_table": "mptcp_cpe_wand", "state_file": "/run/mptcp-cpe/wan.json",
        "mcp_state": "/run/mptcp-cpe/mcp.json",
        "wans": [{"name": "dsl", "device": "eth0", "kind": "dsl", "ipv4": "dhcp", "ipv6": "none", "weight": 1,
                  "backup": False, "nat": True, "probes": [{"kind": "icmp", "target": "gateway"}], "table": 101}],
        "lans": [],
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
        pytest.param([DSL], {"mptcp_probe": {"backoff_min_s": 60, "backoff_max_s": 30}},
                     f"{HOST}: mptcp_probe.backoff_max_s: shorter than mptcp_probe.backoff_min_s (60) (got 30)", id="mptcp-backoff"),
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


# ===========================================================================
# The converter's and the MCP's filters
# ===========================================================================

CV_HOST = "cpe-1"
MCP_HOST = "mcp-1"
CV_WANS = [{"name": "dsl", "device": "wan1", "kind": "dsl"}, {"name": "lte", "device": "wan2", "kind": "lte"}]


def role_yaml(role: str, path: str) -> dict:
    return yaml.safe_load((TOP / "roles" / role / path).read_text())


def role_settings(role: str, prefix: str) -> dict:
    """What the role passes to its filter with its defaults: vars/main.yml's settings, each
    "{{ <prefix><key> }}" replaced by the default of that variable."""
    defaults = role_yaml(role, "defaults/main.yml")
    settings = role_yaml(role, "vars/main.yml")[f"__{role}_settings"]
    return {key: defaults[f"{prefix}{key}"] for key in settings}


# ---------------------------------------------------------------------------
# The roles' settings are the daemons' config keys, each from the variable of that name
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("role", "prefix", "module"), [
    ("cpe_converter", "cpe_converter_", converter),
    ("mcp_converter", "mcp_converter_", mcp),
])
def test_settings_are_the_config_keys_by_their_variables(role, prefix, module):
    settings = role_yaml(role, "vars/main.yml")[f"__{role}_settings"]
    defaults = role_yaml(role, "defaults/main.yml")
    # Every key but host (the filter adds the inventory host), each from <prefix><key>: so
    # an error about a key names the variable an operator sets.
    assert set(settings) == module.TOP_KEYS - {"host"}
    for key, value in settings.items():
        assert value == f"{{{{ {prefix}{key} }}}}"
        assert f"{prefix}{key}" in defaults


@pytest.mark.parametrize(("role", "keys"), [
    ("cpe_converter", converter.TOP_KEYS),
    ("mcp_converter", mcp.TOP_KEYS),
])
def test_settings_read_only_at_start_are_config_keys(role, keys):
    assert set(role_yaml(role, "vars/main.yml")[f"__{role}_start_only"]) <= keys


# ---------------------------------------------------------------------------
# converter_config
# ---------------------------------------------------------------------------

# The defaults that read the inventory, as they render for a host without cpe_lans nor
# cpe_mcp_prefixes, and WANs that declare no line (test_converter_inventory_defaults_render
# renders them for real), with one LAN.
CONVERTER_DEFAULTS = {**role_settings("cpe_converter", "cpe_converter_"), "lan_interfaces": ["lan0"],
                      "lan_prefixes": [], "mcp_prefixes": [], "mptcp_rcvbuf": 4194304}


def test_converter_config_with_the_role_defaults():
    assert f.converter_config(CONVERTER_DEFAULTS, CV_HOST, CV_WANS) == {
        "host": CV_HOST, "lan_interfaces": ["lan0"], "mcp_port": 5124, "listen_port": 5125, "mcps": [],
        "mcp_file": "/run/mptcp-cpe/mcp.json", "mcp_prefixes": [], "lan_prefixes": [],
        "bypass": {"destinations": [], "ports": [], "sources": []}, "connect_timeout_s": 3.0, "reply_timeout_s": 15.0, "retry_after_s": 30.0, "replay_limit": 65536,
        "workers": 0, "pipe_size": 262144, "mptcp_rcvbuf": 4194304, "drain_timeout_s": 30.0, "fwmark": 8803, "route_table": 199,
        "rule_priority": 9000, "route_protocol": 202, "nft_table": "mptcp_cpe_converter", "fast_open": "auto",
    }


def test_converter_role_defaults_are_the_daemons():
    # The role's defaults say what the converter would do without them.
    assert f.converter_config(CONVERTER_DEFAULTS, CV_HOST) == f.converter_config({"lan_interfaces": ["lan0"]}, CV_HOST)


def test_converter_config_is_normalised():
    cfg = f.converter_config({
        **CONVERTER_DEFAULTS,
        "lan_interfaces": ["lan0", "lan1.10"],
        "mcps": [["203.0.113.1", "2001:DB8::1"], ["198.51.100.7"]],
        "bypass": {"destinations": ["192.0.2.0/24", "2001:db8:FFFF::/48"], "ports": [22, 443], "sources": ["198.18.1.64/26"]},
        "connect_timeout_s": 2, "workers": 4,
    }, CV_HOST, CV_WANS)
    assert cfg["lan_interfaces"] == ["lan0", "lan1.10"]
    assert cfg["mcps"] == [["203.0.113.1", "2001:db8::1"], ["198.51.100.7"]]
    assert cfg["bypass"] == {"destinations": ["192.0.2.0/24", "2001:db8:ffff::/48"], "ports": [22, 443],
                             "sources": ["198.18.1.64/26"]}
    assert cfg["connect_timeout_s"] == 2.0 and isinstance(cfg["connect_timeout_s"], float)
    assert cfg["workers"] == 4


def test_converter_config_round_trips_through_json_and_the_loader(tmp_path):
    # The role writes the filter's result with to_nice_json; `converter --check` loads that file.
    settings = {**CONVERTER_DEFAULTS, "mcps": [["203.0.113.1"]],
                "bypass": {"destinations": ["2001:db8::/32"], "ports": [22], "sources": []}}
    cfg = f.converter_config(settings, CV_HOST, CV_WANS)
    path = tmp_path / "converter.json"
    path.write_text(json.dumps(cfg, indent=4, sort_keys=True) + "\n")
    loaded = converter.load(path, "elsewhere")
    assert loaded == converter.from_dict({**settings, "host": CV_HOST})
    assert loaded.host == CV_HOST  # the file names its host; --check on the router reports it
    assert f._plain(loaded) == cfg


def test_converter_config_does_not_modify_arguments():
    settings = {**CONVERTER_DEFAULTS, "bypass": {"destinations": [], "ports": [22], "sources": []}}
    before = json.dumps(settings, sort_keys=True)
    f.converter_config(settings, CV_HOST, CV_WANS)
    assert json.dumps(settings, sort_keys=True) == before
    assert "host" not in settings


@pytest.mark.parametrize("wans", [None, []])
def test_converter_config_without_wans_checks_no_overlap(wans):
    assert f.converter_config({**CONVERTER_DEFAULTS, "lan_interfaces": ["wan1"]}, CV_HOST, wans)["lan_interfaces"] == ["wan1"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param({"bypass": {"destinations": [], "ports": [70000], "sources": []}},
                     "cpe_converter_bypass.ports[0]: must be an integer from 1 to 65535 (got 70000)", id="bypass-port"),
        pytest.param({"bypass": {"destinations": ["192.0.2.1/24"], "ports": [], "sources": []}},
                     "cpe_converter_bypass.destinations[0]: not a prefix (host bits must be zero) (got '192.0.2.1/24')",
                     id="bypass-host-bits"),
        pytest.param({"bypass": {"destinations": [], "ports": [], "sources": "198.18.1.0/24"}},
                     "cpe_converter_bypass.sources: must be a list of prefixes (got '198.18.1.0/24')", id="bypass-sources"),
        pytest.param({"bypass": {"dst": []}},
                     "cpe_converter_bypass: unknown keys ['dst']; allowed: ['destinations', 'ports', 'sources']",
                     id="bypass-unknown"),
        pytest.param({"lan_interfaces": []},
                     "cpe_converter_lan_interfaces: must be a list of at least 1 interface name(s) (got [])", id="no-lan"),
        pytest.param({"lan_interfaces": ["lan0", "eth0:1"]},
                     "cpe_converter_lan_interfaces[1]: not an interface name (1-15 octets, no '/', ':' or blanks) (got 'eth0:1')",
                     id="lan-name"),
        pytest.param({"lan_interfaces": ["lan0", "wan2"]},
                     "cpe_converter_lan_interfaces[1]: is the device of WAN lte: the converter would intercept "
                     "connections from the internet (got 'wan2')", id="lan-is-wan"),
        pytest.param({"mcps": [["203.0.113.1", "mcp.example.net"]]},
                     "cpe_converter_mcps[0][1]: not an IP address (got 'mcp.example.net')", id="mcp-address"),
        pytest.param({"mcps": [[]]}, "cpe_converter_mcps[0]: must be a non-empty list of addresses (got [])", id="mcp-empty"),
        pytest.param({"mcps": ["203.0.113.1"]},
                     "cpe_converter_mcps[0]: must be a non-empty list of addresses (got '203.0.113.1')", id="mcp-not-list"),
        pytest.param({"mcps": [["127.0.0.1"]]},
                     "cpe_converter_mcps[0][0]: must be a unicast address (not multicast, loopback or unspecified) "
                     "(got '127.0.0.1')", id="mcp-loopback"),
        pytest.param({"listen_port": 5124},
                     "cpe_converter_listen_port: is the cpe_converter_mcp_port: connections to MCPs are never "
                     "intercepted (got 5124)", id="listen-is-mcp-port"),
        pytest.param({"mcp_port": "5124"},
                     "cpe_converter_mcp_port: must be an integer from 1 to 65535 (got '5124')", id="port-str"),
        pytest.param({"reply_timeout_s": 2},
                     "cpe_converter_reply_timeout_s: shorter than cpe_converter_connect_timeout_s (3) (got 2.0)",
                     id="reply-shorter"),
        pytest.param({"connect_timeout_s": True},
                     "cpe_converter_connect_timeout_s: must be a number from 0.1 to 60 (got True)", id="timeout-bool"),
        pytest.param({"mcp_file": "run/mcp.json"},
                     "cpe_converter_mcp_file: must be an absolute path (got 'run/mcp.json')", id="mcp-file"),
        pytest.param({"route_table": 254},
                     "cpe_converter_route_table: is one of the kernel's own tables (253 default, 254 main, 255 local) "
                     "(got 254)", id="route-table"),
        pytest.param({"route_protocol": 4},
                     "cpe_converter_route_protocol: belongs to the kernel or a routing daemon "
                     "(see /etc/iproute2/rt_protos) (got 4)", id="route-protocol"),
        pytest.param({"rule_priority": 32766},
                     "cpe_converter_rule_priority: must be an integer from 1 to 32765 (got 32766)", id="rule-priority"),
        pytest.param({"nft_table": "mptcp-cpe"},
                     "cpe_converter_nft_table: must be 1-32 letters, digits and _, not starting with a digit "
                     "(got 'mptcp-cpe')", id="nft-table"),
        pytest.param({"workers": 257}, "cpe_converter_workers: must be an integer from 0 to 256 (got 257)", id="workers"),
        pytest.param({"replay_limit": 100},
                     "cpe_converter_replay_limit: must be an integer from 1024 to 16777216 (got 100)", id="replay"),
        pytest.param({"mcp_prefixes": ["198.51.100.1/24"]},
                     "cpe_converter_mcp_prefixes[0]: not a prefix (host bits must be zero) (got '198.51.100.1/24')",
                     id="mcp-prefixes-host-bits"),
        pytest.param({"mcp_prefixes": "198.51.100.0/24"},
                     "cpe_converter_mcp_prefixes: must be a list of prefixes (got '198.51.100.0/24')", id="mcp-prefixes-str"),
        pytest.param({"lan_prefixes": ["lan0"]},
                     "cpe_converter_lan_prefixes[0]: not a prefix (host bits must be zero) (got 'lan0')", id="lan-prefixes"),
        pytest.param({"mcp_prefixes": ["198.51.100.0/24"], "mcps": [["203.0.113.1"]]},
                     "cpe_converter_mcps[0][0]: cannot be an MCP: outside cpe_converter_mcp_prefixes (198.51.100.0/24) "
                     "(got '203.0.113.1')", id="static-mcp-outside"),
        pytest.param({"lan_prefixes": ["192.0.2.0/24"], "mcps": [["192.0.2.1"]]},
                     "cpe_converter_mcps[0][0]: cannot be an MCP: inside the LAN prefix 192.0.2.0/24 (got '192.0.2.1')",
                     id="static-mcp-in-lan"),
    ],
)
def test_converter_errors_name_host_variable_and_value(change, expected):
    with pytest.raises(AnsibleFilterError) as info:
        f.converter_config({**CONVERTER_DEFAULTS, **change}, CV_HOST, CV_WANS)
    assert info.value.message == f"{CV_HOST}: {expected}"
    # Raised "from None": the daemon's traceback is not chained into Ansible's output.
    assert info.value.__cause__ is None and info.value.__suppress_context__ is True


def test_converter_config_keeps_the_trust_prefixes():
    cfg = f.converter_config({**CONVERTER_DEFAULTS, "mcp_prefixes": ["198.51.100.0/24", "2001:DB8:A::/48"],
                              "lan_prefixes": ["192.0.2.0/24"], "mcps": [["198.51.100.1"]]}, CV_HOST, CV_WANS)
    assert cfg["mcp_prefixes"] == ["198.51.100.0/24", "2001:db8:a::/48"] and cfg["lan_prefixes"] == ["192.0.2.0/24"]


CV_LANS = [{"name": "home", "device": "br-lan", "ipv4": "192.0.2.1/24", "ipv6": ["2001:db8:1::1/64"]},
        {"name": "guest", "device": "br-guest", "ipv4": "198.18.7.1/24"}]


def test_lan_prefixes_are_every_prefix_of_the_lans():
    assert f.lan_prefixes(CV_LANS, CV_HOST) == ["192.0.2.0/24", "2001:db8:1::/64", "198.18.7.0/24"]
    assert f.lan_prefixes([], CV_HOST) == [] and f.lan_prefixes(None, CV_HOST) == []


@pytest.mark.parametrize(("lans", "expected"), [
    pytest.param([{"name": "home", "device": "br-lan", "ipv4": "192.0.2.1"}],
                 "cpe_lans[0] (home).ipv4: not the CPE's IPv4 address with the LAN's prefix length, like 198.18.1.1/24 "
                 "(got '192.0.2.1')", id="no-length"),
    pytest.param([CV_LANS[0], {**CV_LANS[1], "ipv4": "192.0.2.129/25"}],
                 "cpe_lans[1] (guest): prefix 192.0.2.128/25 overlaps 192.0.2.0/24 of LAN home (got '192.0.2.128/25')",
                 id="overlap"),
    pytest.param("br-lan", "cpe_lans: must be a non-empty list of LANs (got 'br-lan')", id="not-a-list"),
])
def test_lan_prefixes_errors_name_host_field_and_value(lans, expected):
    with pytest.raises(AnsibleFilterError) as info:
        f.lan_prefixes(lans, CV_HOST)
    assert info.value.message == f"{CV_HOST}: {expected}"


def _render(template: str, **context):
    """A role default rendered as Ansible would: Jinja2 with this plugin's filters."""
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters.update(f.FilterModule().filters())
    return env.from_string(template.replace("{{", "{{ (").replace("}}", ") | tojson }}")).render(
        inventory_hostname=CV_HOST, **context)


def test_converter_inventory_defaults_render():
    defaults = role_yaml("cpe_converter", "defaults/main.yml")
    names = ("cpe_converter_lan_interfaces", "cpe_converter_lan_prefixes", "cpe_converter_mcp_prefixes")
    # A host without cpe_lans nor cpe_mcp_prefixes: what CONVERTER_DEFAULTS says.
    assert [json.loads(_render(defaults[n])) for n in names] == [[], [], []]
    # With the inventory's LANs and MCP prefixes: their devices, their prefixes, the prefixes as given.
    rendered = [json.loads(_render(defaults[n], cpe_lans=CV_LANS, cpe_mcp_prefixes=["198.51.100.0/24"])) for n in names]
    assert rendered == [["br-lan", "br-guest"], ["192.0.2.0/24", "2001:db8:1::/64", "198.18.7.0/24"], ["198.51.100.0/24"]]
    cfg = f.converter_config({**CONVERTER_DEFAULTS, **dict(zip(("lan_interfaces", "lan_prefixes", "mcp_prefixes"), rendered))},
                             CV_HOST, CV_WANS)
    assert cfg["lan_interfaces"] == ["br-lan", "br-guest"] and cfg["mcp_prefixes"] == ["198.51.100.0/24"]


# The lines of test_buffers.py's worked examples: the (under the floor) and a fibre
# beside LTE (2 × 1050 Mbit/s × 60 ms = 15,750,000 octets: 3846 pages).
CV_LINES = {"dsl": {"rate": {"down_mbit": 40, "up_mbit": 10}, "rtt_ms": 20},
            "lte": {"rate": {"down_mbit": 20, "up_mbit": 5}, "rtt_ms": 60}}
CV_FIBRE = [{"name": "fibre", "device": "wan1", "kind": "fibre", "rate": {"down_mbit": 1000, "up_mbit": 500}, "rtt_ms": 10},
            {"name": "lte", "device": "wan2", "kind": "lte", "rate": {"down_mbit": 50, "up_mbit": 20}, "rtt_ms": 60}]


@pytest.mark.parametrize(("wans", "rcvbuf"), [
    pytest.param(None, 4194304, id="no-cpe_wans"),
    pytest.param(CV_WANS, 4194304, id="no-line-declared"),
    pytest.param([{**w, **CV_LINES[w["name"]]} for w in CV_WANS], 4194304, id="issue-lines-under-the-floor"),
    pytest.param(CV_FIBRE, 15753216, id="fibre-beside-lte"),
    pytest.param([CV_FIBRE[0], {**CV_FIBRE[1], "backup": True}], 4194304, id="lte-in-reserve"),
])
def test_converter_rcvbuf_default_renders_from_the_wans(wans, rcvbuf):
    defaults = role_yaml("cpe_converter", "defaults/main.yml")
    context = {} if wans is None else {"cpe_wans": wans}
    wans_rendered = json.loads(_render(defaults["cpe_converter_wans"], **context))
    rendered = json.loads(_render(defaults["cpe_converter_mptcp_rcvbuf"], cpe_converter_wans=wans_rendered))
    assert rendered == rcvbuf
    # The converter's own loader takes it as it comes (an integer, not text).
    cfg = f.converter_config({**CONVERTER_DEFAULTS, "mptcp_rcvbuf": rendered}, CV_HOST, wans_rendered)
    assert cfg["mptcp_rcvbuf"] == rcvbuf


def test_converter_rcvbuf_an_operator_sets_wins():
    # The default is a default: a value in host_vars replaces it, 0 (autotuning) too.
    assert f.converter_config({**CONVERTER_DEFAULTS, "mptcp_rcvbuf": 0}, CV_HOST, CV_FIBRE)["mptcp_rcvbuf"] == 0


def test_mptcp_buffers_filter():
    assert f.mptcp_buffers(CV_FIBRE, CV_HOST) == {"download": 15753216, "upload": 7802880, "declared": True}
    assert f.mptcp_buffers(CV_WANS, CV_HOST) == {"download": 4194304, "upload": 4194304, "declared": False}
    assert f.mptcp_buffers([], CV_HOST) == f.mptcp_buffers(None, CV_HOST) == f.mptcp_buffers(CV_WANS, CV_HOST)


@pytest.mark.parametrize(("wans", "expected"), [
    pytest.param([CV_FIBRE[0], {**CV_FIBRE[1], "rate": {"down_mbit": True, "up_mbit": 20}}],
                 ["cpe_wans[1] (lte).rate.down_mbit: must be a number from 0.064 to 100000 (got True)"], id="bool"),
    pytest.param([{**CV_FIBRE[0], "rtt_ms": "10"}, {**CV_FIBRE[1], "rate": {"down_mbit": 50}}],
                 ["cpe_wans[0] (fibre).rtt_ms: must be a number from 1 to 2000 (got '10')",
                  "cpe_wans[1] (lte).rate.up_mbit: missing"], id="every-mistake"),
    pytest.param("wan1", ["cpe_wans: must be a non-empty list of WANs (got 'wan1')"], id="not-a-list"),
])
def test_mptcp_buffers_errors_name_host_field_and_value(wans, expected):
    with pytest.raises(AnsibleFilterError) as info:
        f.mptcp_buffers(wans, CV_HOST)
    assert info.value.message.splitlines() == [f"{CV_HOST}: {line}" for line in expected]
    assert f.problems("mptcp_cpe_mptcp_buffers", wans, CV_HOST) == [f"{CV_HOST}: {line}" for line in expected]


def test_converter_wan_errors_keep_the_inventory_names():
    # The WAN list is the inventory's cpe_wans, checked by the one WAN checker.
    with pytest.raises(AnsibleFilterError) as info:
        f.converter_config(CONVERTER_DEFAULTS, CV_HOST, [{**CV_WANS[0], "kind": "adsl"}])
    assert info.value.message.startswith(f"{CV_HOST}: cpe_wans[0] (dsl).kind: must be one of ")


# ---------------------------------------------------------------------------
# mcp_config
# ---------------------------------------------------------------------------

MCP_DEFAULTS = {**role_settings("mcp_converter", "mcp_converter_"), "clients": ["192.0.2.0/24", "2001:db8:0:1::/64"]}


def test_mcp_config_with_the_role_defaults():
    assert f.mcp_config(MCP_DEFAULTS, MCP_HOST) == {
        "host": MCP_HOST, "listen": "::", "port": 5124, "clients": ["192.0.2.0/24", "2001:db8:0:1::/64"],
        "deny_destinations": [], "max_connections": 20000, "max_connections_per_client": 2000, "max_subflows": 8,
        "connect_timeout_s": 10.0, "handshake_timeout_s": 10.0, "cookie_syn_rate": 0, "retry_after_s": 30,
        "workers": 0, "pipe_size": 262144, "mptcp_rcvbuf": 4194304, "drain_timeout_s": 30.0,
    }


def test_mcp_role_defaults_are_the_daemons():
    assert f.mcp_config(MCP_DEFAULTS, MCP_HOST) == f.mcp_config({"clients": MCP_DEFAULTS["clients"]}, MCP_HOST)


def test_mcp_config_max_subflows_null_leaves_the_kernel_alone():
    assert f.mcp_config({**MCP_DEFAULTS, "max_subflows": None}, MCP_HOST)["max_subflows"] is None


def test_mcp_config_round_trips_through_json_and_the_loader(tmp_path):
    settings = {**MCP_DEFAULTS, "deny_destinations": ["2001:DB8:FFFF::/48"], "max_subflows": None,
                "listen": "203.0.113.1"}
    cfg = f.mcp_config(settings, MCP_HOST)
    assert cfg["deny_destinations"] == ["2001:db8:ffff::/48"]
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(cfg, indent=4, sort_keys=True) + "\n")
    loaded = mcp.load(path, "elsewhere")
    assert loaded == mcp.from_dict({**settings, "host": MCP_HOST})
    assert f._plain(loaded) == cfg


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param({"clients": []}, "mcp_converter_clients: empty: the MCP would refuse everyone (got [])", id="no-clients"),
        pytest.param({"clients": ["192.0.2.0/24", "0.0.0.0/0"]},
                     "mcp_converter_clients[1]: a default prefix would make the MCP an open proxy (got '0.0.0.0/0')",
                     id="open-proxy"),
        pytest.param({"clients": ["192.0.2.1/24"]},
                     "mcp_converter_clients[0]: not a prefix (host bits must be zero) (got '192.0.2.1/24')", id="host-bits"),
        pytest.param({"deny_destinations": ["2001:db8::/129"]},
                     "mcp_converter_deny_destinations[0]: not a prefix (host bits must be zero) (got '2001:db8::/129')",
                     id="deny"),
        pytest.param({"listen": "any"}, "mcp_converter_listen: not an IP address (got 'any')", id="listen"),
        pytest.param({"port": 0}, "mcp_converter_port: must be an integer from 1 to 65535 (got 0)", id="port"),
        pytest.param({"max_connections": 100},
                     "mcp_converter_max_connections_per_client: above mcp_converter_max_connections (100) (got 2000)",
                     id="per-client-above"),
        pytest.param({"max_subflows": 9}, "mcp_converter_max_subflows: must be an integer from 0 to 8 (got 9)",
                     id="subflows"),
        pytest.param({"retry_after_s": 30.0},
                     "mcp_converter_retry_after_s: must be an integer from 1 to 255 (got 30.0)", id="retry-float"),
        pytest.param({"handshake_timeout_s": 0},
                     "mcp_converter_handshake_timeout_s: must be a number from 0.1 to 300 (got 0)", id="handshake"),
        pytest.param({"pipe_size": 1 << 21},
                     "mcp_converter_pipe_size: must be an integer from 4096 to 1048576 (got 2097152)", id="pipe"),
    ],
)
def test_mcp_errors_name_host_variable_and_value(change, expected):
    with pytest.raises(AnsibleFilterError) as info:
        f.mcp_config({**MCP_DEFAULTS, **change}, MCP_HOST)
    assert info.value.message == f"{MCP_HOST}: {expected}"
    assert info.value.__cause__ is None and info.value.__suppress_context__ is True


def test_mcp_without_clients_says_so():
    settings = dict(MCP_DEFAULTS)
    del settings["clients"]
    with pytest.raises(AnsibleFilterError) as info:
        f.mcp_config(settings, MCP_HOST)
    assert info.value.message == f"{MCP_HOST}: mcp_converter_clients: missing: an MCP accepts only the client prefixes it is given"


# ---------------------------------------------------------------------------
# _role_error: which names are rewritten
# ---------------------------------------------------------------------------


def test_role_error_rewrites_only_the_config_keys():
    exc = converter.ConfigError(CV_HOST, "reply_timeout_s", "shorter than connect_timeout_s (3), see host and port", 1)
    assert f._role_error(exc, "p_", converter.TOP_KEYS).message == (
        f"{CV_HOST}: p_reply_timeout_s: shorter than p_connect_timeout_s (3), see host and port (got 1)")
    # A field that is no config key (the inventory's, a file's) is left as it is.
    for field in ("cpe_wans[0] (dsl).kind", "(config)", "/etc/mptcp-cpe/converter.json"):
        exc = converter.ConfigError(CV_HOST, field, "something about mcp_port", show_value=False)
        assert f._role_error(exc, "p_", converter.TOP_KEYS).message == f"{CV_HOST}: {field}: something about mcp_port"


def test_role_error_does_not_rewrite_inside_longer_names():
    exc = mcp.ConfigError(MCP_HOST, "max_connections", "below max_connections_per_client", 1)
    assert f._role_error(exc, "m_", mcp.TOP_KEYS).message == (
        f"{MCP_HOST}: m_max_connections: below m_max_connections_per_client (got 1)")


# ---------------------------------------------------------------------------
# converter_sysctls
# ---------------------------------------------------------------------------

VAR = "cpe_converter_tcp_fastopen"


@pytest.mark.parametrize(("value", "bit", "expected"), [(1, 1, "1"), (3, 1, "3"), (3, 2, "3"), (2, 2, "2"),
                                                        ("3", 1, "3"), (0x603, 2, "1539")])
def test_converter_sysctls(value, bit, expected):
    result = f.converter_sysctls(value, CV_HOST, VAR, bit)
    assert result == {"net.mptcp.enabled": "1", "net.ipv4.tcp_fastopen": expected}
    assert list(result) == ["net.mptcp.enabled", "net.ipv4.tcp_fastopen"]


@pytest.mark.parametrize("extra", [None, {}, {"net.ipv4.tcp_ecn": 1}, {"net.ipv4.tcp_fastopen": 3},
                                   {"net.ipv4.tcp_fastopen": "3"}, {"net.ipv4.tcp_fastopen": " 3 "}])
def test_converter_sysctls_agree_with_cpe_base(extra):
    assert f.converter_sysctls(3, CV_HOST, VAR, 1, extra)["net.ipv4.tcp_fastopen"] == "3"


@pytest.mark.parametrize(
    ("value", "bit", "extra", "expected"),
    [
        pytest.param(2, 1, None, f"{VAR}: must include the client bit (1) (got 2)", id="no-client-bit"),
        pytest.param(1, 2, None, f"{VAR}: must include the server bit (2) (got 1)", id="no-server-bit"),
        pytest.param(0, 1, None, f"{VAR}: must include the client bit (1) (got 0)", id="off"),
        pytest.param("yes", 1, None, f"{VAR}: must be an integer from 0 to 65535 (got 'yes')", id="word"),
        pytest.param(True, 1, None, f"{VAR}: must be an integer from 0 to 65535 (got True)", id="bool"),
        pytest.param(1, 1, {"net.ipv4.tcp_fastopen": 3},
                     f"{VAR}: differs from cpe_base_extra_sysctls['net.ipv4.tcp_fastopen'] (3): cpe_base and this "
                     "role would set it back and forth (got 1)", id="clash"),
        pytest.param(1, 1, {"net.ipv4.tcp_fastopen": True},
                     None, id="true-is-1"),
    ],
)
def test_converter_sysctls_errors(value, bit, extra, expected):
    if expected is None:
        assert f.converter_sysctls(value, CV_HOST, VAR, bit, extra)["net.ipv4.tcp_fastopen"] == "1"
        return
    with pytest.raises(AnsibleFilterError) as info:
        f.converter_sysctls(value, CV_HOST, VAR, bit, extra)
    assert info.value.message == f"{CV_HOST}: {expected}"


def test_role_fastopen_defaults():
    assert role_yaml("mcp_converter", "defaults/main.yml")["mcp_converter_tcp_fastopen"] == 3
    # The CPE's follows cpe_base_extra_sysctls when that sets it, else the client bit alone.
    default = role_yaml("cpe_converter", "defaults/main.yml")["cpe_converter_tcp_fastopen"]
    assert re.search(r"cpe_base_extra_sysctls.*\['net\.ipv4\.tcp_fastopen'\].*default\(1\)", default)


# ===========================================================================
# The firewall's filters
# ===========================================================================

FW_HOST = "cpe"
FW_WANS = [{"name": "dsl", "device": "wan1", "kind": "dsl"},
        {"name": "lte", "device": "wan2", "kind": "lte", "table": 77,
         "ipv4": {"address": "192.0.2.10/24", "gateway": "192.0.2.1"}}]
FW_LANS = [{"name": "home", "device": "lan0", "ipv4": "198.18.1.1/24", "ipv6": ["2001:db8:0:100::1/64"]}]
FW_FORWARDS = [{"name": "game", "port": 2223, "to": "198.18.1.10", "wans": ["lte"]},
            {"name": "game6", "port": 2223, "to": "2001:db8:0:100::10"}]
FW_RESERVED = [{"proto": "tcp", "port": 5125, "what": "converter's listen port (cpe_converter_listen_port)"},
            {"proto": "tcp", "port": 5124, "what": "MCP port (cpe_converter_mcp_port)"}]


def firewall_settings(**overrides) -> dict:
    """What the role passes to its filter: its own defaults, the shared inventory data and
    the other roles' numbers (templated defaults) given here."""
    defaults = role_yaml("cpe_firewall", "defaults/main.yml")
    out = {}
    for key in role_yaml("cpe_firewall", "vars/main.yml")["__cpe_firewall_settings"]:
        value = defaults[f"cpe_firewall_{key}"]
        if "{{" not in json.dumps(value):
            out[key] = value
    out.update(wans=FW_WANS, lans=FW_LANS, management_prefixes=["203.0.113.0/28"], port_forwards=[],
               diverted_mark=8803, reserved_ports=FW_RESERVED, table_base=100)
    out.update(overrides)
    return out


def test_firewall_settings_are_the_config_keys_by_their_variables():
    settings = role_yaml("cpe_firewall", "vars/main.yml")["__cpe_firewall_settings"]
    assert set(settings) == firewall.TOP_KEYS - {"host"}
    for key, value in settings.items():
        assert value == f"{{{{ cpe_firewall_{key} }}}}"


def test_the_shared_data_is_the_inventorys():
    defaults = role_yaml("cpe_firewall", "defaults/main.yml")
    assert defaults["cpe_firewall_wans"] == "{{ cpe_wans }}"
    assert defaults["cpe_firewall_lans"] == "{{ cpe_lans }}"
    assert defaults["cpe_firewall_management_prefixes"] == "{{ cpe_management_prefixes | default([]) }}"
    assert defaults["cpe_firewall_port_forwards"] == "{{ cpe_port_forwards | default([]) }}"
    assert defaults["cpe_firewall_diverted_mark"] == "{{ cpe_converter_fwmark | default(8803) }}"


def test_filter_is_the_firewalls_own_loader():
    rendered = f.firewall_config(firewall_settings(port_forwards=FW_FORWARDS), FW_HOST)
    assert rendered == firewall.from_dict(rendered).as_dict()
    assert rendered["host"] == FW_HOST and rendered["wans"][0]["table"] == 101
    json.dumps(rendered)  # what to_nice_json writes


@pytest.mark.parametrize(("settings", "line"), [
    # A port forward to a WAN's address.
    ({"port_forwards": [{"name": "web", "port": 80, "to": "192.0.2.10"}]},
     "cpe: cpe_port_forwards[0] (web).to: not inside a LAN prefix (the LANs' IPv4 prefixes: 198.18.1.0/24) "
     "(got '192.0.2.10')"),
    # A management prefix that is not a prefix.
    ({"management_prefixes": ["203.0.113.7"]},
     "cpe: cpe_management_prefixes[0]: not a prefix with its length, like 192.0.2.0/24 or 2001:db8::/32 "
     "(got '203.0.113.7')"),
    ({"management_prefixes": ["203.0.113.7/24"]},
     "cpe: cpe_management_prefixes[0]: not a prefix (an address and a length, host bits zero) (got '203.0.113.7/24')"),
    # A forward clashing with the converter's port.
    ({"port_forwards": [{"name": "web", "port": "5120-5130", "to": "198.18.1.10"}]},
     "cpe: cpe_port_forwards[0] (web).port: includes tcp port 5125, the converter's listen port "
     "(cpe_converter_listen_port) (got '5120-5130')"),
    ({"port_forwards": [{"name": "mcp", "port": 5124, "to": "198.18.1.10"}]},
     "cpe: cpe_port_forwards[0] (mcp).port: includes tcp port 5124, the MCP port (cpe_converter_mcp_port) (got 5124)"),
    ({"lans": [{"name": "home", "device": "wan1", "ipv4": "198.18.1.1/24"}]},
     "cpe: cpe_lans[0] (home).device: is the device of WAN dsl (got 'wan1')"),
    ({"connmark_mask": 0x3F00}, "cpe: cpe_firewall_connmark_mask: shares bits with cpe_firewall_diverted_mark "
     "(0x2263): the converter's packets would look like a forward's (got '0x3f00')"),
    ({"ssh_port": "22"}, "cpe: cpe_firewall_ssh_port: must be an integer from 1 to 65535 (got '22')"),
])
def test_filter_errors_are_one_line_naming_host_field_value(settings, line):
    with pytest.raises(AnsibleFilterError) as e:
        f.firewall_config(firewall_settings(**settings), FW_HOST)
    assert str(e.value) == line


def test_management_path_filter_reads_ip_route_get():
    rendered = f.firewall_config(firewall_settings(management_prefixes=["198.51.100.0/24"]), FW_HOST)
    route = json.dumps([{"dst": "192.0.2.7", "dev": "wan1", "prefsrc": "192.0.2.10", "flags": [], "uid": 0, "cache": []}])
    with pytest.raises(AnsibleFilterError) as e:
        f.firewall_management_path("192.0.2.7 50000 192.0.2.10 22", FW_HOST, rendered, route)
    assert str(e.value) == ("cpe: cpe_firewall_management_prefixes: would cut this Ansible run's SSH session "
                            "from 192.0.2.7 (got ['198.51.100.0/24'])")
    assert f.firewall_management_path("198.51.100.9 50000 192.0.2.10 22", FW_HOST, rendered, route) is rendered
    assert f.firewall_management_path("", FW_HOST, rendered, "") is rendered
    trusted = f.firewall_config(firewall_settings(trusted_interfaces=["mgmt0"]), FW_HOST)
    on_trusted = json.dumps([{"dst": "192.0.2.7", "dev": "mgmt0"}])
    assert f.firewall_management_path("192.0.2.7 50000 10.0.0.1 22", FW_HOST, trusted, on_trusted) is trusted


def test_every_mistake_of_the_firewalls_data_at_once():
    settings = firewall_settings(management_prefixes=["198.18.200.1/24"], ssh_port=0,
                             port_forwards=[{"name": "cam", "port": 8443, "to": "198.51.100.7"}])
    assert f.problems("mptcp_cpe_firewall_config", settings, FW_HOST) == [
        f"{FW_HOST}: cpe_management_prefixes[0]: not a prefix (an address and a length, host bits zero) (got '198.18.200.1/24')",
        f"{FW_HOST}: cpe_firewall_ssh_port: must be an integer from 1 to 65535 (got 0)",
    ]
    # The forward is checked once the port it must not take is known.
    settings = firewall_settings(management_prefixes=["198.18.200.1/24"],
                             port_forwards=[{"name": "cam", "port": 8443, "to": "198.51.100.7"}])
    assert f.problems("mptcp_cpe_firewall_config", settings, FW_HOST) == [
        f"{FW_HOST}: cpe_management_prefixes[0]: not a prefix (an address and a length, host bits zero) (got '198.18.200.1/24')",
        f"{FW_HOST}: cpe_port_forwards[0] (cam).to: not inside a LAN prefix (the LANs' IPv4 prefixes: 198.18.1.0/24) (got '198.51.100.7')",
    ]


def test_firmware_filters_check_and_render_the_base_inputs():
    raw = {"arch": "amd64", "kernel": "stable", "source_date_epoch": "", "base_epoch": 1735689600,
           "packages_extra": ["htop"], "prune_extra": ["/usr/share/zoneinfo/*"]}
    settings = f.firmware_settings(raw, "cpe1")
    assert settings["kernel"] == "stable" and settings["source_date_epoch"] is None
    assert f.firmware_packages("systemd\n", settings) == ["systemd", "linux-image-amd64", "htop"]
    assert f.firmware_prune("path-exclude=/usr/share/doc/*\n", settings).splitlines()[-1] == "path-exclude=/usr/share/zoneinfo/*"
    assert f.problems("mptcp_cpe_firmware_settings", {**raw, "arch": "mips"}, "cpe1") == [
        "cpe1: cpe_firmware_arch: must be one of amd64, arm64 (got 'mips')"]


def test_a_config_in_an_image_names_no_device():
    cfg = {"host": "cpe01", "wans": [], "policy": "aggregate"}
    assert f.config_file(cfg) is cfg and f.config_file(cfg, False) is cfg
    assert f.config_file(cfg, True) == {"wans": [], "policy": "aggregate"}


# ---------------------------------------------------------------------------
# host_config (role mptcp_host)
# ---------------------------------------------------------------------------

HOST_DEFAULTS = {**role_settings("mptcp_host", "mptcp_host_"), "interface": "eth0"}


def test_host_role_defaults_are_the_daemons():
    from mptcp_cpe.host import config as host_config

    assert f.host_config_for(HOST_DEFAULTS, "laptop-7") == host_config.from_dict(
        {"host": "laptop-7", "interface": "eth0"}).as_dict()


def test_host_config_errors_name_the_role_variables():
    lines = f.problems("mptcp_cpe_host_config", {**HOST_DEFAULTS, "interface": "", "table_base": 250}, "laptop-7")
    assert lines == [
        "laptop-7: mptcp_host_interface: not an interface name (1-15 octets, no '/', ':' or blanks) (got '')",
        "laptop-7: mptcp_host_table_base: tables mptcp_host_table_base+1..+8 would take the kernel's table 253 (got 250)",
    ]


# ---------------------------------------------------------------------------
# cpe_multiwan: the probes' settings by their variables, rendered into wand's config
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("section", ["probe", "mptcp_probe"])
def test_multiwan_probe_settings_are_the_config_keys_by_their_variables(section):
    settings = role_yaml("cpe_multiwan", "vars/main.yml")["__cpe_multiwan_settings"][section]
    defaults = role_yaml("cpe_multiwan", "defaults/main.yml")
    keys = wand_config.PROBE_KEYS if section == "probe" else wand_config.MPTCP_PROBE_KEYS
    # Every key, each from cpe_multiwan_<section>_<key>: an error about mptcp_probe.port is
    # about cpe_multiwan_mptcp_probe_port.
    assert set(settings) == keys
    for key, value in settings.items():
        assert value.startswith(f"{{{{ cpe_multiwan_{section}_{key} ") and value.endswith("}}")
        assert f"cpe_multiwan_{section}_{key}" in defaults


def test_multiwan_mptcp_probe_defaults_render_to_wands_defaults_or_the_converters_mcps():
    defaults = role_yaml("cpe_multiwan", "defaults/main.yml")
    settings = role_yaml("cpe_multiwan", "vars/main.yml")["__cpe_multiwan_settings"]["mptcp_probe"]

    def rendered(**context):
        values = {k: json.loads(_render(str(defaults[f"cpe_multiwan_mptcp_probe_{k}"]), **context))
                  if isinstance(defaults[f"cpe_multiwan_mptcp_probe_{k}"], str) else defaults[f"cpe_multiwan_mptcp_probe_{k}"]
                  for k in settings}
        return f.wand_config_for([DSL], HOST, mptcp_probe=values)["mptcp_probe"]

    # Without the converter's variables: wand's own defaults.
    assert rendered() == f.wand_config_for([DSL], HOST)["mptcp_probe"]
    # With them: the converter's MCP port and static MCPs.
    got = rendered(cpe_converter_mcp_port=8803, cpe_converter_mcps=[["203.0.113.1"]], cpe_mcp_prefixes=["203.0.113.0/24"])
    assert (got["port"], got["mcps"], got["mcp_prefixes"]) == (8803, [["203.0.113.1"]], ["203.0.113.0/24"])
    # The converter's own prefixes win over the inventory's, as for the converter.
    got = rendered(cpe_mcp_prefixes=["203.0.113.0/24"], cpe_converter_mcp_prefixes=["198.51.100.0/24"])
    assert got["mcp_prefixes"] == ["198.51.100.0/24"]
