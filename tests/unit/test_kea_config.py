"""The operator's Kea configuration, rendered from the inventory (role isp_dhcp)."""

from __future__ import annotations

import pytest

from mptcp_cpe.inventory import InventoryError
from mptcp_cpe.kea import render

HOST = "isp"
SUB4 = [
    {"id": 1, "subnet": "192.0.2.0/24", "interface": "wan1", "pool": "192.0.2.100 - 192.0.2.199",
     "router": "192.0.2.1", "mcps": [["203.0.113.1"]]},
    {"id": 2, "subnet": "198.51.100.0/24", "interface": "wan2", "pool": "198.51.100.100-198.51.100.199",
     "mcps": [["203.0.113.1"], ["203.0.113.2", "203.0.113.3"]]},
]
SUB6 = [{"id": 7, "subnet": "2001:db8:0:1::/64", "interface": "wan1",
         "pool": "2001:db8:0:1::100 - 2001:db8:0:1::1ff", "mcps": [["2001:db8::1"], ["::ffff:203.0.113.2"]]}]


def kea4(**kw):
    args = dict(subnets_raw=SUB4, classes_raw=[], mcps_raw=[], option_code_raw=224,
                hook_library="/usr/local/lib/mptcp-cpe/kea/libdhcp_mptcp.so",
                lease_file="/var/lib/kea/kea-leases4.csv", socket="/run/kea/kea4-ctrl-socket")
    args.update(kw)
    return render(HOST, 4, **args)


def test_v4_config():
    cfg = kea4(classes_raw=[{"name": "REGION_WEST", "test": "substring(option[60].hex,0,4) == 'west'",
                             "mcps": [["mcp-west.example.net"]]}],
               mcps_raw=[["203.0.113.50"]])["Dhcp4"]
    assert cfg["interfaces-config"] == {"interfaces": ["wan1", "wan2"]}
    assert cfg["subnet4"] == [
        {"id": 1, "subnet": "192.0.2.0/24", "interface": "wan1", "pools": [{"pool": "192.0.2.100 - 192.0.2.199"}],
         "option-data": [{"name": "routers", "data": "192.0.2.1"}]},
        {"id": 2, "subnet": "198.51.100.0/24", "interface": "wan2", "pools": [{"pool": "198.51.100.100 - 198.51.100.199"}]},
    ]
    hook = cfg["hooks-libraries"][0]
    assert hook["library"].endswith("libdhcp_mptcp.so")
    assert hook["parameters"] == {
        "v4-option-code": 224,
        "v4": {"mcps": [["203.0.113.50"]],
               "subnets": [{"id": 1, "mcps": [["203.0.113.1"]]},
                           {"id": 2, "mcps": [["203.0.113.1"], ["203.0.113.2", "203.0.113.3"]]}],
               "classes": [{"name": "REGION_WEST", "mcps": [["mcp-west.example.net"]]}]},
    }
    assert cfg["client-classes"] == [{"name": "REGION_WEST", "test": "substring(option[60].hex,0,4) == 'west'"}]
    assert cfg["lease-database"]["persist"] is True


def test_v6_config():
    cfg = render(HOST, 6, subnets_raw=SUB6, classes_raw=None, mcps_raw=None, option_code_raw=65000,
                 hook_library="/h.so", lease_file="/l6", socket="/s6")["Dhcp6"]
    assert cfg["hooks-libraries"][0]["parameters"] == {
        "v6-option-code": 65000, "v6": {"subnets": [{"id": 7, "mcps": [["2001:db8::1"], ["::ffff:203.0.113.2"]]}]}}
    assert cfg["subnet6"][0]["pools"] == [{"pool": "2001:db8:0:1::100 - 2001:db8:0:1::1ff"}]
    assert "preferred-lifetime" in cfg


def sub(**changes):
    s = dict(SUB4[0])
    s.update(changes)
    return [s]


@pytest.mark.parametrize(("kw", "field", "value"), [
    ({"subnets_raw": []}, "isp_dhcp_v4_subnets", []),
    ({"subnets_raw": sub(pool="192.0.3.1 - 192.0.3.9")}, "isp_dhcp_v4_subnets[0].pool", "192.0.3.1 - 192.0.3.9"),
    ({"subnets_raw": sub(pool="192.0.2.9 - 192.0.2.1")}, "isp_dhcp_v4_subnets[0].pool", "192.0.2.9 - 192.0.2.1"),
    ({"subnets_raw": sub(router="198.51.100.1")}, "isp_dhcp_v4_subnets[0].router", "198.51.100.1"),
    ({"subnets_raw": sub(subnet="2001:db8::/64")}, "isp_dhcp_v4_subnets[0].subnet", "2001:db8::/64"),
    ({"subnets_raw": sub(mcps=[["224.0.0.5"]])}, "isp_dhcp_v4_subnets[0].mcps[0][0]", "224.0.0.5"),
    ({"subnets_raw": sub(mcps=[["127.0.0.1"]])}, "isp_dhcp_v4_subnets[0].mcps[0][0]", "127.0.0.1"),
    ({"subnets_raw": sub(mcps=[[]])}, "isp_dhcp_v4_subnets[0].mcps[0]", []),
    ({"subnets_raw": sub(mcps=[["2001:db8::1"]])}, "isp_dhcp_v4_subnets[0].mcps[0][0]", "2001:db8::1"),
    ({"subnets_raw": sub(mcps=[["192.0.2.%d" % i for i in range(1, 65)]])}, "isp_dhcp_v4_subnets[0].mcps[0]", 64),
    ({"subnets_raw": [SUB4[0], dict(SUB4[1], id=1)]}, "isp_dhcp_v4_subnets[1].id", 1),
    ({"subnets_raw": [SUB4[0], dict(SUB4[1], subnet="192.0.2.0/24", pool="192.0.2.10-192.0.2.20")]},
     "isp_dhcp_v4_subnets[1].subnet", "192.0.2.0/24"),
    ({"subnets_raw": [SUB4[0], dict(SUB4[1], subnet="192.0.2.128/25", pool="192.0.2.130-192.0.2.140")]},
     "isp_dhcp_v4_subnets[1].subnet", "192.0.2.128/25"),
    ({"subnets_raw": sub(interface="eth 0")}, "isp_dhcp_v4_subnets[0].interface", "eth 0"),
    ({"option_code_raw": 300}, "isp_dhcp_v4_option_code", 300),
    ({"option_code_raw": "224"}, "isp_dhcp_v4_option_code", "224"),
    ({"classes_raw": [{"name": "A", "test": "", "mcps": [["192.0.2.1"]]}]}, "isp_dhcp_v4_classes[0].test", ""),
    ({"classes_raw": [{"name": "A", "test": "x", "mcps": [["192.0.2.1"]]}] * 2}, "isp_dhcp_v4_classes[1].name", "A"),
    ({"mcps_raw": [["192.0.2.1", "not-an-address!"]]}, "isp_dhcp_v4_mcps[0][1]", "not-an-address!"),
])
def test_bad_inventory_names_the_field(kw, field, value):
    with pytest.raises(InventoryError) as info:
        kea4(**kw)
    assert info.value.host == HOST and info.value.field == field and info.value.value == value
    assert str(info.value).startswith(f"{HOST}: {field}: ")


def test_overlapping_subnets_are_named():
    with pytest.raises(InventoryError, match=r"isp_dhcp_v4_subnets\[1\].subnet: overlaps isp_dhcp_v4_subnets\[0\] "
                                             r"\(192.0.2.0/24\)"):
        kea4(subnets_raw=[SUB4[0], dict(SUB4[1], subnet="192.0.2.128/25", pool="192.0.2.130-192.0.2.140")])


def test_v6_rejects_mapped_loopback_and_a_router():
    with pytest.raises(InventoryError, match=r"isp_dhcp_v6_subnets\[0\].mcps\[0\]\[0\]"):
        render(HOST, 6, subnets_raw=[dict(SUB6[0], mcps=[["::ffff:127.0.0.1"]])], classes_raw=[], mcps_raw=[],
               option_code_raw=65000, hook_library="/h", lease_file="/l", socket="/s")
    with pytest.raises(InventoryError, match=r"unknown keys \['router'\]"):
        render(HOST, 6, subnets_raw=[dict(SUB6[0], router="2001:db8::1")], classes_raw=[], mcps_raw=[],
               option_code_raw=65000, hook_library="/h", lease_file="/l", socket="/s")


def test_every_variables_mistake_at_once():
    with pytest.raises(InventoryError) as exc:
        kea4(option_code_raw=0, lease_lifetime=1, classes_raw={})
    assert [e.field for e in exc.value.errors] == ["isp_dhcp_v4_option_code", "isp_dhcp_v4_classes", "isp_dhcp_lease_lifetime"]
    assert len(str(exc.value).splitlines()) == 3


# ---------------------------------------------------------------- prefix delegation (IA_PD)

RUN_SCRIPT = "/usr/lib/x86_64-linux-gnu/kea/hooks/libdhcp_run_script.so"
PD_SCRIPT = "/usr/local/lib/mptcp-cpe/isp-pd-route"
SUB6_PD = [dict(SUB6[0], pd_pool={"prefix": "2001:db8:1000::/40", "delegated_length": 56}),
           {"id": 8, "subnet": "2001:db8:0:2::/64", "interface": "wan2", "pool": "2001:db8:0:2::100 - 2001:db8:0:2::1ff",
            "pd_pool": {"prefix": "2001:db8:2000::/40", "delegated_length": 56}}]


def kea6(subnets, **kw):
    args = dict(subnets_raw=subnets, classes_raw=[], mcps_raw=[], option_code_raw=65000, hook_library="/h.so",
                lease_file="/l6", socket="/s6", run_script_library=RUN_SCRIPT, pd_route_script=PD_SCRIPT)
    args.update(kw)
    return render(HOST, 6, **args)


def test_v6_pd_pools_and_their_route_script():
    cfg = kea6(SUB6_PD)["Dhcp6"]
    assert [s["pd-pools"] for s in cfg["subnet6"]] == [
        [{"prefix": "2001:db8:1000::", "prefix-len": 40, "delegated-len": 56}],
        [{"prefix": "2001:db8:2000::", "prefix-len": 40, "delegated-len": 56}],
    ]
    assert cfg["subnet6"][0]["pools"] == [{"pool": "2001:db8:0:1::100 - 2001:db8:0:1::1ff"}]
    # The MCP hook first (unchanged), then Kea's run_script with the role's script, not waited for.
    assert cfg["hooks-libraries"][0]["library"] == "/h.so"
    assert cfg["hooks-libraries"][1:] == [{"library": RUN_SCRIPT, "parameters": {"name": PD_SCRIPT, "sync": False}}]


@pytest.mark.parametrize("kw", [
    {"run_script_library": None, "pd_route_script": None},  # the callers from before
    {"run_script_library": "", "pd_route_script": ""},      # isp_dhcp_v6_pd_routes: false
])
def test_pd_pools_without_routes(kw):
    cfg = kea6(SUB6_PD, **kw)["Dhcp6"]
    assert len(cfg["hooks-libraries"]) == 1 and "pd-pools" in cfg["subnet6"][0]


def test_no_route_script_without_pd_pools():
    cfg = kea6(SUB6)["Dhcp6"]
    assert len(cfg["hooks-libraries"]) == 1 and "pd-pools" not in cfg["subnet6"][0]


def test_v4_never_runs_the_route_script():
    cfg = kea4(run_script_library=RUN_SCRIPT, pd_route_script=PD_SCRIPT)["Dhcp4"]
    assert len(cfg["hooks-libraries"]) == 1


def pd(i=0, **changes):
    subs = [dict(s) for s in SUB6_PD]
    subs[i]["pd_pool"] = {**subs[i]["pd_pool"], **changes}
    return subs


F = "isp_dhcp_v6_subnets"


@pytest.mark.parametrize(("subnets", "field", "value", "problem"), [
    (pd(prefix="2001:db8:1000::1/40"), f"{F}[0].pd_pool.prefix", "2001:db8:1000::1/40", "host bits must be zero"),
    (pd(prefix="192.0.2.0/24"), f"{F}[0].pd_pool.prefix", "192.0.2.0/24", "not an IPv6 prefix"),
    (pd(prefix="nonsense"), f"{F}[0].pd_pool.prefix", "nonsense", "not an IPv6 prefix"),
    (pd(prefix=40), f"{F}[0].pd_pool.prefix", 40, "not an IPv6 prefix"),
    (pd(prefix="2001:db8:1000::/64"), f"{F}[0].pd_pool.prefix", "2001:db8:1000::/64", "shorter than /64"),
    (pd(1, delegated_length=40), f"{F}[1].pd_pool.delegated_length", 40, "from 41 to 64"),
    (pd(1, delegated_length=36), f"{F}[1].pd_pool.delegated_length", 36, "from 41 to 64"),
    (pd(1, delegated_length=65), f"{F}[1].pd_pool.delegated_length", 65, "from 41 to 64"),
    (pd(1, delegated_length="56"), f"{F}[1].pd_pool.delegated_length", "56", "integer"),
    (pd(1, delegated_length=True), f"{F}[1].pd_pool.delegated_length", True, "integer"),
    (pd(prefix="2001:db8::/32"), f"{F}[0].pd_pool.prefix", "2001:db8::/32", "overlaps its own subnet (2001:db8:0:1::/64)"),
    (pd(1, prefix="2001:db8::/40"), f"{F}[1].pd_pool.prefix", "2001:db8::/40",
     f"overlaps the subnet of {F}[0] (2001:db8:0:1::/64)"),
    (pd(1, prefix="2001:db8:1000::/48"), f"{F}[1].pd_pool.prefix", "2001:db8:1000::/48",
     f"overlaps {F}[0].pd_pool.prefix (2001:db8:1000::/40)"),
    ([dict(SUB6_PD[0], pd_pool="2001:db8:1000::/40")], f"{F}[0].pd_pool", "2001:db8:1000::/40", "must be a mapping"),
])
def test_bad_pd_pool_names_host_field_value(subnets, field, value, problem):
    with pytest.raises(InventoryError) as info:
        kea6(subnets)
    assert (info.value.host, info.value.field, info.value.value) == (HOST, field, value)
    assert str(info.value).startswith(f"{HOST}: {field}: ") and problem in info.value.problem
    assert str(info.value).endswith(f"(got {value!r})")


def test_pd_pool_keys():
    with pytest.raises(InventoryError, match=r"isp: isp_dhcp_v6_subnets\[0\].pd_pool.delegated_length: missing"):
        kea6([dict(SUB6[0], pd_pool={"prefix": "2001:db8:1000::/40"})])
    with pytest.raises(InventoryError, match=r"isp: isp_dhcp_v6_subnets\[0\].pd_pool: unknown keys \['length'\]"):
        kea6([dict(SUB6[0], pd_pool={"prefix": "2001:db8:1000::/40", "delegated_length": 56, "length": 56})])


def test_pd_pool_on_a_v4_subnet_names_the_field():
    value = {"prefix": "2001:db8:1000::/40", "delegated_length": 56}
    with pytest.raises(InventoryError) as info:
        kea4(subnets_raw=sub(pd_pool=value))
    assert (info.value.host, info.value.field, info.value.value) == (HOST, "isp_dhcp_v4_subnets[0].pd_pool", value)
    assert "DHCPv6 only" in str(info.value)
