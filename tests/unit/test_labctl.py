"""The lab's model (lab/labctl.py): links to nowhere, the controller of a network-managed lab,
and hosts managed over SSH, each mistake naming host, field and value."""

from __future__ import annotations

import importlib.util
import ipaddress
import sys

import pytest

from helpers import TOP
from mptcp_cpe.checks import InventoryError

spec = importlib.util.spec_from_file_location("labctl_for_model", TOP / "lab" / "labctl.py")
labctl = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = labctl  # its dataclasses look their module up there
spec.loader.exec_module(labctl)

NETS = labctl.parse_networks("h", {"wan1": {"ipv4": "192.0.2.0/24"}, "ops": {"ipv4": "198.18.4.0/24"}})
WAN1 = {"network": "wan1", "device": "wan1", "ipv4": "192.0.2.11/24", "ipv4_gateway": "192.0.2.1"}


def test_a_link_with_no_network_is_a_lan_to_nowhere():
    host = labctl.parse_host("cpe01", {"lab_links": [WAN1, {"device": "lan0", "ipv4": "198.18.1.1/24"}]}, NETS)
    lan = host.links[1]
    assert lan.network is None and lan.ipv4 == ipaddress.ip_interface("198.18.1.1/24")
    # Its address is the host's own: two CPEs may use the same LAN plan.
    other = labctl.parse_host("cpe02", {"lab_links": [{**WAN1, "ipv4": "192.0.2.12/24"},
                                                      {"device": "lan0", "ipv4": "198.18.1.1/24"}]}, NETS)
    labctl.check_unique_addresses([host, other])


def test_a_host_managed_over_ssh_is_reached_at_one_of_its_addresses():
    host = labctl.parse_host("cpe01", {"lab_links": [WAN1], "lab_management": "ssh", "ansible_host": "192.0.2.11"}, NETS)
    assert host.ssh_address == "192.0.2.11"
    inst = labctl.instance("p", host, labctl.KEY_DIR / "p" / "id_ed25519")
    assert inst == {"instance": "cpe01", "address": "192.0.2.11", "user": "root", "port": 22,
                    "identity_file": "/var/lib/mptcp-cpe-lab/p/id_ed25519", "connection": "ssh"}
    docker = labctl.parse_host("isp", {"lab_links": [WAN1]}, NETS)
    assert labctl.instance("p", docker, None)["connection"] == "community.docker.docker"


def test_the_controller_sits_on_a_network_with_a_static_address():
    ctl = labctl.parse_controller("isp", {"network": "ops", "ipv4": "198.18.4.10/24", "ipv4_gateway": "198.18.4.1"}, NETS)
    assert ctl.link.device == "ctl0" and str(ctl.link.ipv4_gateway) == "198.18.4.1"
    assert labctl.parse_controller("isp", None, NETS) is None


@pytest.mark.parametrize("hostvars, line", [
    ({"lab_links": [{"device": "lan0", "ipv4": "198.18.1.1/32"}]},
     "cpe01: lab_links[0].ipv4: an unconnected link's address needs the prefix it stands for (got '198.18.1.1/32')"),
    ({"lab_links": [{"device": "lan0", "ipv4": "198.18.1.1/24", "ipv4_gateway": "198.18.1.254"}]},
     "cpe01: lab_links[0].ipv4_gateway: a link with no network has no gateway (got '198.18.1.254')"),
    ({"lab_links": [{"device": "lan0", "ipv4": "2001:db8::1/64"}]},
     "cpe01: lab_links[0].ipv4: not an IPv4 address with prefix length, nor dhcp (got '2001:db8::1/64')"),
    ({"lab_links": [WAN1], "lab_management": "telnet"}, "cpe01: lab_management: must be docker or ssh (got 'telnet')"),
    ({"lab_links": [WAN1], "lab_management": "ssh", "ansible_host": "192.0.2.99"},
     "cpe01: ansible_host: a host managed over SSH is reached at one of its static lab addresses (192.0.2.11) "
     "(got '192.0.2.99')"),
    ({"lab_links": [{**WAN1, "ipv4": "dhcp"}], "lab_management": "ssh", "ansible_host": "192.0.2.11"},
     "cpe01: ansible_host: a host managed over SSH is reached at one of its static lab addresses (none) "
     "(got '192.0.2.11')"),
])
def test_each_mistake_names_host_field_value(hostvars, line):
    with pytest.raises(InventoryError) as exc:
        labctl.parse_host("cpe01", hostvars, NETS)
    assert str(exc.value) == line


@pytest.mark.parametrize("raw, line", [
    ("ops", "isp: lab_controller: must be a mapping with the network the controller sits on and its address there "
            "(got 'ops')"),
    ({"network": "ops"}, "isp: lab_controller: needs a static ipv4 or ipv6 address (got {'network': 'ops'})"),
    ({"network": "mgmt", "ipv4": "198.18.4.10/24"},
     "isp: lab_controller.network: not one of lab_networks (wan1, ops) (got 'mgmt')"),
    ({"network": "ops", "ipv4": "198.18.5.10/24"},
     "isp: lab_controller.ipv4: must lie in the network's prefix 198.18.4.0/24 (got '198.18.5.10/24')"),
])
def test_a_bad_controller_names_the_field(raw, line):
    with pytest.raises(InventoryError) as exc:
        labctl.parse_controller("isp", raw, NETS)
    assert str(exc.value) == line


def test_the_fleet_inventory_is_a_network_managed_lab_of_twenty():
    nets, hosts, controller = labctl.load_lab(TOP / "inventories" / "fleet")
    cpes = [h for h in hosts if h.name.startswith("cpe")]
    assert len(cpes) == 20 and all(h.ssh_address for h in cpes)
    assert controller is not None and controller.link.network == "ops" and "ops" in nets
    assert next(h for h in hosts if h.name == "isp").ssh_address is None
