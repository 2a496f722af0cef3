"""What the roles want of an OpenWrt router's UCI (mptcp_cpe.openwrt), from the inventory."""

from __future__ import annotations

import pytest

from mptcp_cpe.checks import InventoryError
from mptcp_cpe.openwrt import mwan3_conflicts, network_want


def wan(name, **extra):
    return {"name": name, "device": f"e-{name}", "kind": "fibre", **extra}


def test_dhcp_wans_get_their_codes_and_metrics_in_order():
    want = network_want("cpe", [wan("wan", ipv4="dhcp", ipv6="dhcp"), wan("static1", ipv4={"address": "198.51.100.2/24", "gateway": "198.51.100.1"}),
                                wan("lte", ipv4="dhcp", uci_interface="wwan", uci_interface6="wwan_6")], 224, 65000, 100)
    assert want == [
        {"name": "wan", "options": {"metric": "101"}, "tokens": {"reqopts": ["224"]}},
        {"name": "wan6", "options": {"metric": "101"}, "tokens": {"reqopts": ["65000"]}},
        {"name": "wwan", "options": {"metric": "103"}, "tokens": {"reqopts": ["224"]}},
    ]


def test_a_wan_named_with_a_dash_must_name_its_interface():
    with pytest.raises(InventoryError, match=r"^cpe: cpe_wans\[1\] \(lte-2\)\.uci_interface: missing: the WAN's name is no netifd"):
        network_want("cpe", [wan("wan"), wan("lte-2")], 224, 65000, 100)
    # Not a DHCP WAN: no interface of it is touched, none is needed.
    assert network_want("cpe", [wan("wan"), wan("lte-2", ipv4="none", ipv6="slaac")], 224, 65000, 100) == [
        {"name": "wan", "options": {"metric": "101"}, "tokens": {"reqopts": ["224"]}}]


def test_a_long_interface_name_must_name_its_dhcpv6_interface():
    with pytest.raises(InventoryError, match=r"uci_interface6: missing: abcdefghijklmno6 is over 15"):
        network_want("cpe", [wan("wan", ipv6="dhcp", uci_interface="abcdefghijklmno")], 224, 65000, 100)


@pytest.mark.parametrize("value", ["wan-1", "", 5, "abcdefghijklmnop"])
def test_a_bad_interface_name_is_refused(value):
    with pytest.raises(InventoryError, match=r"cpe_wans\[0\] \(wan\)\.uci_interface: not a netifd interface name"):
        network_want("cpe", [wan("wan", uci_interface=value)], 224, 65000, 100)


def test_two_wans_on_one_interface_are_refused():
    with pytest.raises(InventoryError, match=r"cpe_wans\[1\] \(b\)\.uci_interface: already used by cpe_wans\[0\] \(a\)"):
        network_want("cpe", [wan("a", uci_interface="wan"), wan("b", uci_interface="wan")], 224, 65000, 100)


MWAN3 = """\
mwan3.globals=globals
mwan3.globals.mmx_mask='0x3F00'
mwan3.wan=interface
mwan3.wan.enabled='1'
mwan3.wan.family='ipv4'
mwan3.wan6=interface
mwan3.wan6.enabled='0'
mwan3.wanb=interface
mwan3.wanb.family='ipv4'
mwan3.lte=interface
mwan3.lte.enabled='1'
mwan3.wan_m1_w3=member
mwan3.wan_m1_w3.interface='wan'
"""


def test_mwan3_that_manages_a_wan_is_found():
    wans = [wan("wan", ipv6="dhcp"), wan("wanb"), wan("lte-x", uci_interface="lte"), wan("dsl-y")]
    # wan6 is disabled, wanb has mwan3's default (disabled), dsl-y has no interface name: not looked for.
    assert mwan3_conflicts("cpe", MWAN3, wans) == ["wan (wan)", "lte (lte-x)"]
    assert mwan3_conflicts("cpe", "", wans) == []
    assert mwan3_conflicts("cpe", MWAN3, [wan("fibre")]) == []
