"""The filters of the role cpe_firewall (``plugins/filter/mptcp_cpe.py``): the firewall's own
loader builds its config, errors are one line naming the host, the variable an operator
edits and the value, and the management-path guard reads what the router says."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from mptcp_cpe import firewall

TOP = Path(__file__).resolve().parents[2]
PLUGIN = TOP / "plugins" / "filter" / "mptcp_cpe.py"
HOST = "cpe"
WANS = [{"name": "dsl", "device": "wan1", "kind": "dsl"},
        {"name": "lte", "device": "wan2", "kind": "lte", "table": 77,
         "ipv4": {"address": "192.0.2.10/24", "gateway": "192.0.2.1"}}]
LANS = [{"name": "home", "device": "lan0", "ipv4": "198.18.1.1/24", "ipv6": ["2001:db8:0:100::1/64"]}]
FORWARDS = [{"name": "game", "port": 2223, "to": "198.18.1.10", "wans": ["lte"]},
            {"name": "game6", "port": 2223, "to": "2001:db8:0:100::10"}]
RESERVED = [{"proto": "tcp", "port": 5125, "what": "converter's listen port (cpe_converter_listen_port)"},
            {"proto": "tcp", "port": 5124, "what": "MCP port (cpe_converter_mcp_port)"}]


def _load_plugin():
    spec = importlib.util.spec_from_file_location("mptcp_cpe_filters_firewall", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


plugin = _load_plugin()


def role_yaml(path: str) -> dict:
    return yaml.safe_load((TOP / "roles" / "cpe_firewall" / path).read_text())


def role_settings(**overrides) -> dict:
    """What the role passes to its filter: its own defaults, the shared inventory data and
    the other roles' numbers (templated defaults) given here."""
    defaults = role_yaml("defaults/main.yml")
    out = {}
    for key in role_yaml("vars/main.yml")["__cpe_firewall_settings"]:
        value = defaults[f"cpe_firewall_{key}"]
        if "{{" not in json.dumps(value):
            out[key] = value
    out.update(wans=WANS, lans=LANS, management_prefixes=["203.0.113.0/28"], port_forwards=[],
               diverted_mark=8803, reserved_ports=RESERVED, table_base=100)
    out.update(overrides)
    return out


def test_settings_are_the_config_keys_by_their_variables():
    settings = role_yaml("vars/main.yml")["__cpe_firewall_settings"]
    assert set(settings) == firewall.TOP_KEYS - {"host"}
    for key, value in settings.items():
        assert value == f"{{{{ cpe_firewall_{key} }}}}"


def test_the_shared_data_is_the_inventorys():
    defaults = role_yaml("defaults/main.yml")
    assert defaults["cpe_firewall_wans"] == "{{ cpe_wans }}"
    assert defaults["cpe_firewall_lans"] == "{{ cpe_lans }}"
    assert defaults["cpe_firewall_management_prefixes"] == "{{ cpe_management_prefixes | default([]) }}"
    assert defaults["cpe_firewall_port_forwards"] == "{{ cpe_port_forwards | default([]) }}"
    assert defaults["cpe_firewall_diverted_mark"] == "{{ cpe_converter_fwmark | default(8803) }}"


def test_filter_is_the_firewalls_own_loader():
    rendered = plugin.firewall_config(role_settings(port_forwards=FORWARDS), HOST)
    assert rendered == firewall.from_dict(rendered).as_dict()
    assert rendered["host"] == HOST and rendered["wans"][0]["table"] == 101
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
        plugin.firewall_config(role_settings(**settings), HOST)
    assert str(e.value) == line


def test_management_path_filter_reads_ip_route_get():
    rendered = plugin.firewall_config(role_settings(management_prefixes=["198.51.100.0/24"]), HOST)
    route = json.dumps([{"dst": "192.0.2.7", "dev": "wan1", "prefsrc": "192.0.2.10", "flags": [], "uid": 0, "cache": []}])
    with pytest.raises(AnsibleFilterError) as e:
        plugin.firewall_management_path("192.0.2.7 50000 192.0.2.10 22", HOST, rendered, route)
    assert str(e.value) == ("cpe: cpe_firewall_management_prefixes: would cut this Ansible run's SSH session "
                            "from 192.0.2.7 (got ['198.51.100.0/24'])")
    assert plugin.firewall_management_path("198.51.100.9 50000 192.0.2.10 22", HOST, rendered, route) is rendered
    assert plugin.firewall_management_path("", HOST, rendered, "") is rendered
    trusted = plugin.firewall_config(role_settings(trusted_interfaces=["mgmt0"]), HOST)
    on_trusted = json.dumps([{"dst": "192.0.2.7", "dev": "mgmt0"}])
    assert plugin.firewall_management_path("192.0.2.7 50000 10.0.0.1 22", HOST, trusted, on_trusted) is trusted


def test_every_mistake_of_the_firewalls_data_at_once():
    settings = role_settings(management_prefixes=["198.18.200.1/24"], ssh_port=0,
                             port_forwards=[{"name": "cam", "port": 8443, "to": "198.51.100.7"}])
    assert plugin.problems("mptcp_cpe_firewall_config", settings, HOST) == [
        f"{HOST}: cpe_management_prefixes[0]: not a prefix (an address and a length, host bits zero) (got '198.18.200.1/24')",
        f"{HOST}: cpe_firewall_ssh_port: must be an integer from 1 to 65535 (got 0)",
    ]
    # The forward is checked once the port it must not take is known.
    settings = role_settings(management_prefixes=["198.18.200.1/24"],
                             port_forwards=[{"name": "cam", "port": 8443, "to": "198.51.100.7"}])
    assert plugin.problems("mptcp_cpe_firewall_config", settings, HOST) == [
        f"{HOST}: cpe_management_prefixes[0]: not a prefix (an address and a length, host bits zero) (got '198.18.200.1/24')",
        f"{HOST}: cpe_port_forwards[0] (cam).to: not inside a LAN prefix (the LANs' IPv4 prefixes: 198.18.1.0/24) (got '198.51.100.7')",
    ]
