"""The /etc/uci-defaults scripts firmware puts in OpenWrt images (mptcp_cpe.uci.defaults_script):
shellcheck and busybox ash accept them, and run by busybox ash against tests/openwrt/uci (a
double of OpenWrt's uci command over `uci show` state) they reach what the live module
reaches, keep what the operator set, skip a missing section with a log line, and change
nothing the second time."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from helpers import VENV_BIN, run_uci_defaults
from mptcp_cpe import uci
from mptcp_cpe.openwrt import firewall_want, network_want

BUSYBOX = shutil.which("busybox")
SHELLCHECK = shutil.which("shellcheck", path=str(VENV_BIN)) or shutil.which("shellcheck")
pytestmark = pytest.mark.skipif(BUSYBOX is None, reason="busybox is not installed (scripts/setup installs it)")

WANS = [{"name": "wan", "device": "eth1", "kind": "fibre", "ipv6": "dhcp"},
        {"name": "lte", "device": "wwan0", "kind": "lte", "uci_interface": "wwan"}]
NETWORK = """\
network.loopback=interface
network.loopback.device='lo'
network.lan=interface
network.lan.device='br-lan'
network.wan=interface
network.wan.device='eth1'
network.wan.proto='dhcp'
network.wan6=interface
network.wan6.device='@wan'
network.wan6.proto='dhcpv6'
network.wwan=interface
network.wwan.device='wwan0'
network.wwan.proto='dhcp'
network.wwan.reqopts='121'
"""
FIREWALL = """\
firewall.@defaults[0]=defaults
firewall.@zone[0]=zone
firewall.@zone[0].name='lan'
firewall.@zone[0].network='lan'
firewall.@zone[1]=zone
firewall.@zone[1].name='wan'
firewall.@zone[1].network='wan' 'wan6'
firewall.@rule[0]=rule
firewall.@rule[0].name='Allow-DHCP-Renew'
"""
FW_CONFIG = {"host": "cpe", "wans": WANS, "lans": [{"name": "lan", "device": "br-lan", "ipv4": "198.18.1.1/24"}],
             "management_prefixes": ["203.0.113.0/28", "2001:db8:ff::/48"],
             "port_forwards": [{"name": "web", "port": 443, "to": "198.18.1.12", "to_port": 8443}]}


def wants():
    return {"network": network_want("cpe", WANS, 224, 65000, 100), "firewall": firewall_want("cpe", FW_CONFIG, "wan", "lan")}


def run_script(tmp_path, config, state_text):
    script = tmp_path / f"90-mptcp-cpe-{config}"
    script.write_text(uci.defaults_script(config, wants()[config], "mptcp-cpe: test"))
    return run_uci_defaults(script, config, state_text, tmp_path / "uci")


@pytest.mark.parametrize("config", ["network", "firewall"])
def test_the_scripts_pass_shellcheck_and_ash(tmp_path, config):
    script = tmp_path / "s"
    script.write_text(uci.defaults_script(config, wants()[config], "mptcp-cpe: test"))
    assert subprocess.run([BUSYBOX, "ash", "-n", str(script)], capture_output=True).returncode == 0
    if SHELLCHECK:
        proc = subprocess.run([SHELLCHECK, "-s", "sh", "-S", "style", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("config, show", [("network", NETWORK), ("firewall", FIREWALL)])
def test_first_boot_reaches_what_the_live_module_reaches_and_a_second_changes_nothing(tmp_path, config, show):
    after, _ = run_script(tmp_path, config, show)
    current = uci.parse_show(config, show)
    assert after == uci.apply(config, current, uci.plan(config, current, wants()[config]))
    again, _ = run_script(tmp_path, config, uci.show(config, after))
    assert again == after


def test_the_operators_settings_are_kept(tmp_path):
    preset = NETWORK + "network.wan.metric='5'\n"
    after, _ = run_script(tmp_path, "network", preset)
    assert after["wan"]["metric"] == "5" and after["wan"]["reqopts"] == "224"
    assert after["wwan"]["reqopts"] == "121 224" and after["wwan"]["metric"] == "102"
    # An owned section the operator changed after a first boot stays as it is.
    fw = FIREWALL + "firewall.mptcp_cpe_ssh=rule\nfirewall.mptcp_cpe_ssh.src_ip='198.18.7.0/24'\n"
    after, _ = run_script(tmp_path, "firewall", fw)
    assert after["mptcp_cpe_ssh"] == {".type": "rule", "src_ip": "198.18.7.0/24"}
    assert after["@zone[1]"]["network"] == ["wan", "wan6", "wwan"]


def test_a_missing_section_is_logged_and_the_rest_applied(tmp_path):
    after, err = run_script(tmp_path, "network", NETWORK.replace("network.wwan", "network.other"))
    assert "mptcp-cpe: network.wwan: no such section: left as it is" in err
    assert after["wan"]["reqopts"] == "224"
    after, err = run_script(tmp_path, "firewall", FIREWALL.replace("name='wan'", "name='wan1'"))
    assert "the zone section with name 'wan': left as it is" in err
    assert after["mptcp_cpe_ssh"]["target"] == "ACCEPT"
