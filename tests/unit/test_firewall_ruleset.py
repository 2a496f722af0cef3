"""The CPE firewall (``mptcp_cpe.firewall``): its config loader, the ruleset it builds (pure
text), the management-path guard and the command."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mptcp_cpe import firewall
from mptcp_cpe.inventory import InventoryError

TOP = Path(__file__).resolve().parents[2]
HOST = "cpe"
WANS = [{"name": "dsl", "device": "wan1", "kind": "dsl"},
        {"name": "lte", "device": "wan2", "kind": "lte", "table": 77,
         "ipv4": {"address": "192.0.2.10/24", "gateway": "192.0.2.1"}}]
LANS = [{"name": "home", "device": "lan0", "ipv4": "198.18.1.1/24", "ipv6": ["2001:db8:0:100::1/64"]}]
FORWARDS = [{"name": "game", "port": 2223, "to": "198.18.1.10", "wans": ["lte"]},
            {"name": "rng", "proto": "udp", "port": "8000-8002", "to": "198.18.1.11", "to_port": "9000-9002"},
            {"name": "web", "port": 443, "to": "198.18.1.12", "to_port": 8443},
            {"name": "game6", "port": 2223, "to": "2001:db8:0:100::10"}]
RESERVED = [{"proto": "tcp", "port": 5125, "what": "converter's listen port (cpe_converter_listen_port)"},
            {"proto": "tcp", "port": 5124, "what": "MCP port (cpe_converter_mcp_port)"}]


def raw(**kw) -> dict:
    return {"host": HOST, "wans": WANS, "lans": LANS, "management_prefixes": ["203.0.113.0/28", "2001:db8:ff::/48"],
            "port_forwards": FORWARDS, "reserved_ports": RESERVED, **kw}


def cfg(**kw) -> firewall.FirewallConfig:
    return firewall.from_dict(raw(**kw))


# ---------------------------------------------------------------------------
# The config
# ---------------------------------------------------------------------------

def test_defaults_and_table_numbers_like_wand():
    c = firewall.from_dict({"wans": WANS, "lans": LANS}, "cpe-9")
    assert c.host == "cpe-9" and c.nft_table == "mptcp_cpe_firewall" and c.ssh_port == 22
    assert [w.table for w in c.wans] == [101, 77]  # table_base + 1 + index, or the WAN's own
    assert c.lan_services == ("dhcp", "dhcpv6") and c.management_prefixes == () and c.port_forwards == ()
    assert (c.connmark_mask, c.rule_priority, c.route_protocol, c.diverted_mark) == (0x00FF0000, 9900, 203, 8803)


def test_the_rendered_config_loads_back_unchanged():
    c = cfg(lan_services=["dns"], trusted_interfaces=["wg0"], icmp_echo_rate=0)
    again = firewall.from_dict(json.loads(json.dumps(c.as_dict())))
    assert again == c


@pytest.mark.parametrize(("edit", "field", "problem"), [
    ({"nft_table": "my-table"}, "nft_table", "letters, digits and _"),
    ({"ssh_port": 0}, "ssh_port", "from 1 to 65535"),
    ({"lan_services": ["dhcp", "ntp"]}, "lan_services", "dhcp, dhcpv6, dns"),
    ({"trusted_interfaces": ["lan0"]}, "trusted_interfaces[0]", "the device of LAN home"),
    ({"trusted_interfaces": ["wan2"]}, "trusted_interfaces[0]", "the device of WAN lte"),
    ({"trusted_interfaces": ["lo"]}, "trusted_interfaces[0]", "loopback"),
    ({"icmp_echo_rate": -1}, "icmp_echo_rate", "from 0 to 10000"),
    ({"connmark_mask": 0x00FF00FF}, "connmark_mask", "contiguous"),
    ({"connmark_mask": 0x0000FF00}, "connmark_mask", "shares bits with diverted_mark (0x2263)"),
    ({"connmark_mask": 0x01000000}, "connmark_mask", "too narrow for 2 WANs"),
    ({"rule_priority": 32760}, "rule_priority", "from 1 to 32758"),
    ({"route_protocol": 2}, "route_protocol", "rt_protos"),
    ({"reserved_ports": [{"port": 5125}]}, "reserved_ports[0].what", "what uses the port"),
    ({"management_prefixes": ["203.0.113.1/28"]}, "management_prefixes[0]", "host bits zero"),
    ({"port_forwards": [{"name": "x", "port": 5125, "to": "198.18.1.10"}]}, "port_forwards[0] (x).port",
     "the converter's listen port"),
    ({"port_forwards": [{"name": "x", "port": "20-30", "to": "198.18.1.10"}]}, "port_forwards[0] (x).port",
     "includes tcp port 22, the CPE's SSH port"),
    ({"bogus": 1}, "(config)", "unknown keys ['bogus']"),
    ({"table_base": 76}, "wans[1] (lte).table", "already used by wans[0] (dsl)"),
])
def test_bad_config_names_host_field_and_value(edit, field, problem):
    with pytest.raises(InventoryError) as e:
        cfg(**edit)
    assert e.value.host == HOST and e.value.field == field, str(e.value)
    assert problem in str(e.value)


def test_missing_lans_are_named():
    with pytest.raises(InventoryError, match=r"^cpe: lans: missing$"):
        firewall.from_dict({"host": HOST, "wans": WANS})


# ---------------------------------------------------------------------------
# The ruleset
# ---------------------------------------------------------------------------

def rules_of(text: str, chain: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(f"\tchain {chain} {{")
    end = lines.index("\t}", start)
    return [line.strip() for line in lines[start + 1:end]]


def test_replaces_its_own_table_in_one_transaction():
    text = firewall.ruleset(cfg(nft_table="fw"))
    assert text.splitlines()[:3] == ["table inet fw", "delete table inet fw", "table inet fw {"]
    # Nothing but its own table: no flush, no other table touched.
    statements = [line for line in text.splitlines() if line.startswith(("table", "delete", "flush", "add"))]
    assert statements == ["table inet fw", "delete table inet fw", "table inet fw {"]


def test_input_chain_order():
    assert rules_of(firewall.ruleset(cfg()), "input") == [
        "type filter hook input priority filter; policy drop;",
        "iif lo accept",
        # Neighbour discovery first: never dropped, whatever conntrack thinks of it.
        f"icmpv6 type {{ {firewall.ND_TYPES} }} ip6 hoplimit 255 accept",
        "ct state established,related accept",
        "ct state invalid counter name input_invalid drop",
        "iifname @trusted_ifaces accept",
        "tcp dport 22 ip saddr @management_v4 accept",
        "tcp dport 22 ip6 saddr @management_v6 accept",
        "iifname @wan_ifaces jump input_wan",
        "iifname @lan_ifaces jump input_lan",
        "counter name input_other_dropped drop",
    ]


def test_sets_hold_devices_and_management_prefixes():
    text = firewall.ruleset(cfg(trusted_interfaces=["wg0"]))
    assert '\tset wan_ifaces { type ifname; elements = { "wan1", "wan2" }; }' in text
    assert '\tset lan_ifaces { type ifname; elements = { "lan0" }; }' in text
    assert '\tset trusted_ifaces { type ifname; elements = { "wg0" }; }' in text
    assert "\tset management_v4 { type ipv4_addr; flags interval; elements = { 203.0.113.0/28 }; }" in text
    assert "\tset management_v6 { type ipv6_addr; flags interval; elements = { 2001:db8:ff::/48 }; }" in text
    # No management prefix: an empty set, SSH from nowhere (but a trusted interface).
    assert "\tset management_v4 { type ipv4_addr; flags interval; }" in firewall.ruleset(cfg(management_prefixes=[]))


def test_wan_input_lets_in_what_a_router_needs_and_counts_the_rest():
    wan = rules_of(firewall.ruleset(cfg(icmp_echo_rate=5)), "input_wan")
    assert wan[:2] == ["udp sport 67 udp dport 68 accept", "ip6 saddr fe80::/10 udp sport 547 udp dport 546 accept"]
    assert "icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem } accept" in wan
    assert "icmp type { destination-unreachable, time-exceeded, parameter-problem } accept" in wan
    assert "icmp type echo-request limit rate 5/second burst 10 packets accept" in wan
    assert "icmpv6 type echo-request limit rate 5/second burst 10 packets accept" in wan
    assert wan[-1] == "counter name input_wan_dropped drop"
    assert not any("echo-request" in r for r in rules_of(firewall.ruleset(cfg(icmp_echo_rate=0)), "input_wan"))


def test_lan_input_serves_the_named_services_only():
    lan = rules_of(firewall.ruleset(cfg()), "input_lan")
    assert lan == ["meta mark 0x00002263 accept", "udp dport 67 accept", "udp dport 547 accept",
                   "meta l4proto { icmp, icmpv6 } accept",
                   "counter name input_lan_rejected reject with icmpx admin-prohibited"]
    lan = rules_of(firewall.ruleset(cfg(lan_services=["dns"], diverted_mark=0x10)), "input_lan")
    assert lan[:3] == ["meta mark 0x00000010 accept", "udp dport 53 accept", "tcp dport 53 accept"]


def test_forward_policy_and_per_wan_chains():
    text = firewall.ruleset(cfg())
    assert rules_of(text, "forward") == [
        "type filter hook forward priority filter; policy drop;",
        "ct state established,related accept",
        "ct state invalid counter name forward_invalid drop",
        "iifname @lan_ifaces oifname @wan_ifaces accept",
        "iifname @lan_ifaces oifname @lan_ifaces accept",
        "iifname @trusted_ifaces accept",
        'iifname vmap { "wan1" : jump forward_from_dsl, "wan2" : jump forward_from_lte }',
        "counter name forward_dropped drop",
    ]
    mark1 = "ct mark set ct mark and 0xff00ffff or 0x00010000 accept"
    mark2 = "ct mark set ct mark and 0xff00ffff or 0x00020000 accept"
    assert rules_of(text, "forward_from_dsl") == [
        f"oifname @lan_ifaces ct status dnat {mark1}",
        f'oifname @lan_ifaces ip6 daddr 2001:db8:0:100::10 tcp dport 2223 {mark1} comment "game6"']
    assert rules_of(text, "forward_from_lte")[0] == f"oifname @lan_ifaces ct status dnat {mark2}"
    assert rules_of(text, "output") == ["type filter hook output priority filter; policy accept;"]


def test_no_forward_no_way_in_from_a_wan():
    text = firewall.ruleset(cfg(port_forwards=[]))
    assert rules_of(text, "forward_from_dsl") == [] and rules_of(text, "forward_from_lte") == []
    assert rules_of(text, "prerouting_nat") == ["type nat hook prerouting priority dstnat; policy accept;"]


def test_ipv4_forwards_are_dnat_on_their_wans():
    nat = rules_of(firewall.ruleset(cfg()), "prerouting_nat")[1:]
    assert nat == [
        'iifname { "wan2" } tcp dport 2223 dnat ip to 198.18.1.10 comment "game"',
        'iifname { "wan1", "wan2" } udp dport 8000-8002 dnat ip addr . port to udp dport map '
        '{ 8000 : 198.18.1.11 . 9000, 8001 : 198.18.1.11 . 9001, 8002 : 198.18.1.11 . 9002 } comment "rng"',
        'iifname { "wan1", "wan2" } tcp dport 443 dnat ip to 198.18.1.12:8443 comment "web"',
    ]


def test_lan_side_of_a_forward_gets_its_wans_mark_bits_only():
    c = cfg(connmark_mask=0x0F000000)
    assert rules_of(firewall.ruleset(c), "prerouting_mark")[1:] == [
        "iifname @lan_ifaces ct mark and 0x0f000000 == 0x01000000 meta mark set meta mark and 0xf0ffffff or 0x01000000",
        "iifname @lan_ifaces ct mark and 0x0f000000 == 0x02000000 meta mark set meta mark and 0xf0ffffff or 0x02000000",
    ]
    assert sorted(firewall.mark_rules(c)) == [
        firewall.MarkRule(socket.AF_INET, 9900, 0x01000000, 0x0F000000, 101),
        firewall.MarkRule(socket.AF_INET, 9901, 0x02000000, 0x0F000000, 77),
        firewall.MarkRule(socket.AF_INET6, 9900, 0x01000000, 0x0F000000, 101),
        firewall.MarkRule(socket.AF_INET6, 9901, 0x02000000, 0x0F000000, 77),
    ]
    assert str(firewall.MarkRule(socket.AF_INET6, 9901, 0x20000, 0xFF0000, 77)) == \
        "ip -6 rule 9901: from all fwmark 0x20000/0xff0000 lookup 77"


def test_rule_band_is_exactly_ours():
    c = cfg(rule_priority=9900, route_protocol=203)
    assert firewall.in_band(c, 9900, 203) and firewall.in_band(c, 9907, 203)
    assert not firewall.in_band(c, 9908, 203) and not firewall.in_band(c, 9899, 203)
    assert not firewall.in_band(c, 9900, 202) and not firewall.in_band(c, 9900, None)


def nft_usable() -> bool:
    return os.geteuid() == 0 and subprocess.run(["which", "nft"], capture_output=True).returncode == 0


@pytest.mark.root
@pytest.mark.skipif(not nft_usable(), reason="needs root and nft (a throwaway network namespace)")
@pytest.mark.parametrize("variant", [
    {},
    {"port_forwards": [], "management_prefixes": [], "lan_services": [], "icmp_echo_rate": 0},
    {"trusted_interfaces": ["wg0", "eth9.100"], "lan_services": ["dhcp", "dhcpv6", "dns"], "nft_table": "fw2"},
])
def test_nft_accepts_the_ruleset(tmp_path, variant):
    path = tmp_path / "fw.nft"
    path.write_text(firewall.ruleset(cfg(**variant)))
    ns = f"tfw-unit-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        proc = subprocess.run(["ip", "netns", "exec", ns, "nft", "--check", "-f", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        # A router may have no /etc/protocols or /etc/services (Debian's minbase has no netbase):
        # the ruleset must name nothing nft would look up there.
        hidden = "mount --bind /dev/null /etc/protocols; mount --bind /dev/null /etc/services; exec nft --check -f \"$0\""
        proc = subprocess.run(["ip", "netns", "exec", ns, "unshare", "-m", "sh", "-c", hidden, str(path)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


# ---------------------------------------------------------------------------
# The management-path guard
# ---------------------------------------------------------------------------

PREFIXES = ["198.51.100.0/24", "2001:db8:ff::/48"]


@pytest.mark.parametrize(("conn", "dev"), [
    (None, None),  # not over SSH (the lab's docker connection)
    ("", None),
    ("198.51.100.7 50000 192.0.2.10 22", "wan1"),
    ("2001:db8:ff::9 50000 2001:db8::1 22", "wan1"),
    ("::ffff:198.51.100.7 50000 192.0.2.10 22", "wan1"),
    ("192.0.2.7 50000 192.0.2.10 22", "wg0"),  # a trusted interface lets everything in
    ("192.0.2.7 50000 192.0.2.10 2222", "wg0"),
    ("127.0.0.1 50000 127.0.0.1 22", "lo"),
])
def test_guard_lets_a_safe_session_pass(conn, dev):
    firewall.check_management_path(HOST, conn, PREFIXES, 22, ["wg0"], dev)


def test_guard_refuses_a_session_from_outside_the_prefixes():
    with pytest.raises(InventoryError) as e:
        firewall.check_management_path(HOST, "192.0.2.7 50000 192.0.2.10 22", ["198.51.100.0/24"], 22, [], "wan1",
                                       "cpe_firewall_management_prefixes")
    assert str(e.value) == ("cpe: cpe_firewall_management_prefixes: would cut this Ansible run's SSH session "
                            "from 192.0.2.7 (got ['198.51.100.0/24'])")


def test_guard_refuses_a_session_to_another_port():
    with pytest.raises(InventoryError) as e:
        firewall.check_management_path(HOST, "198.51.100.7 50000 192.0.2.10 2222", PREFIXES, 22, [], "wan1")
    assert str(e.value) == "cpe: ssh_port: would cut this Ansible run's SSH session to port 2222 (got 22)"


def test_guard_refuses_what_it_cannot_read():
    with pytest.raises(InventoryError, match="SSH_CONNECTION: cannot read"):
        firewall.check_management_path(HOST, "garbage", PREFIXES, 22, [], None)


# ---------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------

def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(TOP / "src"))
    return subprocess.run([sys.executable, "-m", "mptcp_cpe.cli", "firewall", *args], capture_output=True, text=True,
                          env=env)


def test_cli_check_and_print(tmp_path):
    path = tmp_path / "firewall.json"
    path.write_text(json.dumps(raw()))
    proc = run_cli("--config", str(path), "--check")
    assert proc.returncode == 0 and proc.stdout.strip() == \
        f"{path}: 2 WANs, 1 LANs, 4 port forwards, 2 management prefixes: OK"
    proc = run_cli("--config", str(path), "--print")
    assert proc.returncode == 0 and proc.stdout.startswith(firewall.ruleset(cfg()))
    assert "# ip -4 rule 9901: from all fwmark 0x20000/0xff0000 lookup 77 proto 203" in proc.stdout


def test_cli_refuses_a_bad_file_in_one_line(tmp_path):
    path = tmp_path / "firewall.json"
    path.write_text(json.dumps(raw(icmp_echo_rate="fast")))
    for flag in ("--check", "--print"):
        proc = run_cli("--config", str(path), flag)
        assert proc.returncode == 1 and proc.stdout == ""
        assert proc.stderr.splitlines() == [
            "mptcp-cpe firewall: cpe: icmp_echo_rate: must be an integer from 0 to 10000 (got 'fast')"]
