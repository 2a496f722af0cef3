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
