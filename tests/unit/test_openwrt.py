"""What the roles want of an OpenWrt router's UCI (mptcp_cpe.openwrt), from the inventory."""

from __future__ import annotations

import pytest

from mptcp_cpe.checks import InventoryError, InventoryErrors
from mptcp_cpe.openwrt import firewall_want, mwan3_conflicts, network_want


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


# ---------------------------------------------------------------------------
# The firewall as fw4 sections
# ---------------------------------------------------------------------------

FW_WANS = [{"name": "wan", "device": "eth1", "kind": "fibre", "ipv6": "dhcp"},
           {"name": "lte", "device": "wwan0", "kind": "lte", "uci_interface": "wwan"}]
FW_LANS = [{"name": "lan", "device": "br-lan", "ipv4": "198.18.1.1/24", "ipv6": ["2001:db8:0:100::1/64"]}]


def fw_config(**kw):
    return {"host": "cpe", "wans": FW_WANS, "lans": FW_LANS, "management_prefixes": ["203.0.113.0/28", "2001:db8:ff::/48"],
            **kw}


def test_firewall_want_zones_and_ssh():
    want = firewall_want("cpe", fw_config(), "wan", "lan")
    assert want[0] == {"match": {"type": "zone", "name": "wan"}, "items": {"network": ["wan", "wan6", "wwan"]}}
    assert want[1] == {"name": "mptcp_cpe_ssh", "type": "rule", "options": {
        "name": "mptcp-cpe: SSH from the management prefixes", "src": "wan", "proto": "tcp", "dest_port": "22",
        "src_ip": ["203.0.113.0/28", "2001:db8:ff::/48"], "target": "ACCEPT"}}
    assert len(want) == 2
    assert firewall_want("cpe", fw_config(management_prefixes=[]), "wan", "lan")[1:] == []


def test_port_forwards_become_redirects_and_rules():
    forwards = [{"name": "web", "port": 443, "to": "198.18.1.12", "to_port": 8443},
                {"name": "same-range", "proto": "udp", "port": "5000-5001", "to": "198.18.1.13"},
                {"name": "shift", "proto": "udp", "port": "8000-8001", "to": "198.18.1.11", "to_port": "9000-9001"},
                {"name": "game6", "port": 2223, "to": "2001:db8:0:100::10"}]
    want = {w["name"]: w for w in firewall_want("cpe", fw_config(port_forwards=forwards), "wan", "lan")[2:]}
    assert want["mptcp_cpe_fwd_web"]["options"] == {
        "name": "mptcp-cpe: port forward web", "src": "wan", "dest": "lan", "proto": "tcp", "family": "ipv4",
        "dest_ip": "198.18.1.12", "target": "DNAT", "src_dport": "443", "dest_port": "8443"}
    assert want["mptcp_cpe_fwd_same_range"]["options"]["src_dport"] == "5000-5001"
    assert "dest_port" not in want["mptcp_cpe_fwd_same_range"]["options"]
    assert [(want[n]["options"]["src_dport"], want[n]["options"]["dest_port"]) for n in ("mptcp_cpe_fwd_shift_8000",
                                                                                         "mptcp_cpe_fwd_shift_8001")] == [
        ("8000", "9000"), ("8001", "9001")]
    assert want["mptcp_cpe_fwd_game6"]["type"] == "rule" and want["mptcp_cpe_fwd_game6"]["options"]["target"] == "ACCEPT"


def test_firewall_want_refuses_what_fw4_cannot_say_all_at_once():
    forwards = [{"name": "game", "port": 2223, "to": "198.18.1.10", "wans": ["lte"]}]
    with pytest.raises(InventoryErrors) as err:
        firewall_want("cpe", fw_config(port_forwards=forwards), "wan-zone", "lan")
    lines = [str(e) for e in err.value.errors]
    assert lines == [
        "cpe: cpe_firewall_openwrt_wan_zone: not an fw4 zone name (1-11 characters of A-Z, a-z, 0-9 and _) (got 'wan-zone')",
        "cpe: cpe_port_forwards[0] (game).wans: a port forward on some WANs only cannot be told to fw4, whose redirects "
        "name a zone (all of the WANs): leave wans out on OpenWrt (got ['lte'])",
    ]


def test_the_firewall_want_applies_to_openwrts_default_zones():
    from mptcp_cpe import uci
    current = uci.parse_show("firewall", "firewall.@zone[0]=zone\nfirewall.@zone[0].name='lan'\n"
                                         "firewall.@zone[1]=zone\nfirewall.@zone[1].name='wan'\n"
                                         "firewall.@zone[1].network='wan' 'wan6'\n")
    want = firewall_want("cpe", fw_config(), "wan", "lan")
    after = uci.apply("firewall", current, uci.plan("firewall", current, want))
    assert after["@zone[1]"]["network"] == ["wan", "wan6", "wwan"]
    assert uci.plan("firewall", after, want) == []
