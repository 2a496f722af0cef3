"""OpenWrt's fw4 beside the converter's interception and wand's NAT, with real traffic in
the converter's namespaces (test_converter.py's topology): a ruleset shaped like the one fw4
renders (table inet fw4, its chains, hooks and priorities, input and forward policy drop,
zone lan on lan0 with input accept, zone wan on wan1 and wan2 with input reject and no masq,
mptcp-cpe's SSH rule), then `fw4 reload` (the same file again: it starts by flushing its own
table) and `fw4 restart` (its table deleted, then loaded). Neither may take the converter's or
wand's tables with it. fw4 itself (ucode) is not packaged for Debian: its rendered shape is
what is loaded here; the UCI that asks for it is tested in tests/unit/test_openwrt.py.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest
from netlab import needs_root, sh, wait_for
from test_converter import CPE_SEEN, FLOW, MCP_SEEN, NS, daemons, lab, who  # noqa: F401 - fixtures

from mptcp_cpe.wand import config as wand_config
from mptcp_cpe.wand import plan as wand_plan

pytestmark = [pytest.mark.root, needs_root]

# The body of fw4's ruleset for this CPE, chain by chain as fw4 names and hooks them.
FW4_TABLE = """\
table inet fw4 {
	chain input {
		type filter hook input priority filter; policy drop;
		iif "lo" accept comment "!fw4: Accept traffic from loopback"
		ct state vmap { established : accept, related : accept } comment "!fw4: Handle inbound flows"
		tcp flags & (fin | syn | rst | ack) == syn jump syn_flood comment "!fw4: Rate limit TCP syn packets"
		iifname "lan0" jump input_lan comment "!fw4: Handle lan IPv4/IPv6 input traffic"
		iifname { "wan1", "wan2" } jump input_wan comment "!fw4: Handle wan IPv4/IPv6 input traffic"
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state vmap { established : accept, related : accept } comment "!fw4: Handle forwarded flows"
		iifname "lan0" jump forward_lan comment "!fw4: Handle lan IPv4/IPv6 forward traffic"
		iifname { "wan1", "wan2" } jump forward_wan comment "!fw4: Handle wan IPv4/IPv6 forward traffic"
	}
	chain output {
		type filter hook output priority filter; policy accept;
		oif "lo" accept comment "!fw4: Accept traffic towards loopback"
		ct state vmap { established : accept, related : accept } comment "!fw4: Handle outbound flows"
		oifname "lan0" jump output_lan comment "!fw4: Handle lan IPv4/IPv6 output traffic"
		oifname { "wan1", "wan2" } jump output_wan comment "!fw4: Handle wan IPv4/IPv6 output traffic"
	}
	chain prerouting {
		type filter hook prerouting priority filter; policy accept;
	}
	chain handle_reject {
		meta l4proto tcp reject with tcp reset comment "!fw4: Reject TCP traffic"
		reject comment "!fw4: Reject any other traffic"
	}
	chain syn_flood {
		limit rate 25/second burst 50 packets return comment "!fw4: Accept SYN packets below rate-limit"
		drop comment "!fw4: Drop excess packets"
	}
	chain input_lan {
		jump accept_from_lan
	}
	chain output_lan {
		jump accept_to_lan
	}
	chain forward_lan {
		jump accept_to_wan comment "!fw4: Accept lan to wan forwarding"
		jump accept_to_lan
	}
	chain accept_from_lan {
		iifname "lan0" counter accept comment "!fw4: accept lan IPv4/IPv6 traffic"
	}
	chain accept_to_lan {
		oifname "lan0" counter accept comment "!fw4: accept lan IPv4/IPv6 traffic"
	}
	chain input_wan {
		meta nfproto ipv4 udp dport 68 counter accept comment "!fw4: Allow-DHCP-Renew"
		icmp type echo-request counter accept comment "!fw4: Allow-Ping"
		ip saddr 198.18.200.0/24 tcp dport 22 counter accept comment "!fw4: mptcp-cpe: SSH from the management prefixes"
		jump reject_from_wan
	}
	chain output_wan {
		jump accept_to_wan
	}
	chain forward_wan {
		jump reject_to_wan
	}
	chain accept_to_wan {
		meta nfproto ipv4 oifname { "wan1", "wan2" } ct state invalid counter drop comment "!fw4: Prevent NAT leakage"
		oifname { "wan1", "wan2" } counter accept comment "!fw4: accept wan IPv4/IPv6 traffic"
	}
	chain reject_from_wan {
		iifname { "wan1", "wan2" } counter jump handle_reject comment "!fw4: reject wan IPv4/IPv6 traffic"
	}
	chain reject_to_wan {
		oifname { "wan1", "wan2" } counter jump handle_reject comment "!fw4: reject wan IPv4/IPv6 traffic"
	}
	chain dstnat {
		type nat hook prerouting priority dstnat; policy accept;
	}
	chain srcnat {
		type nat hook postrouting priority srcnat; policy accept;
	}
	chain raw_prerouting {
		type filter hook prerouting priority raw; policy accept;
	}
	chain raw_output {
		type filter hook output priority raw; policy accept;
	}
	chain mangle_prerouting {
		type filter hook prerouting priority mangle; policy accept;
	}
	chain mangle_postrouting {
		type filter hook postrouting priority mangle; policy accept;
	}
	chain mangle_input {
		type filter hook input priority mangle; policy accept;
	}
	chain mangle_output {
		type route hook output priority mangle; policy accept;
	}
	chain mangle_forward {
		type filter hook forward priority mangle; policy accept;
		iifname { "wan1", "wan2" } tcp flags syn tcp option maxseg size set rt mtu comment "!fw4: Zone wan IPv4/IPv6 ingress MTU fixing"
		oifname { "wan1", "wan2" } tcp flags syn tcp option maxseg size set rt mtu comment "!fw4: Zone wan IPv4/IPv6 egress MTU fixing"
	}
}
"""
# What `fw4 reload` loads (`fw4 start` too): its own table flushed, then written again.
FW4_RELOAD = "table inet fw4\nflush table inet fw4\n\n" + FW4_TABLE
# Every way fw4 changes nftables, in the order an operator might run them.
FW4_EVENTS = {
    "fw4 reload": [["nft", "-f", "-"]],
    "fw4 restart": [["nft", "delete", "table", "inet", "fw4"], ["nft", "-f", "-"]],
}


def nft(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", NS["cpe"], "nft", *args], input=stdin, text=True, capture_output=True,
                          timeout=30, check=True)


def fw4_event(name: str) -> None:
    for argv in FW4_EVENTS[name]:
        subprocess.run(["ip", "netns", "exec", NS["cpe"], *argv], input=FW4_RELOAD if argv[-1] == "-" else None,
                       text=True, capture_output=True, timeout=30, check=True)


def tables() -> set[str]:
    return {line.split()[-1] for line in nft("list", "tables").stdout.splitlines()}


@contextlib.contextmanager
def fw4():
    nft("-f", "-", stdin=FW4_RELOAD)
    try:
        yield
    finally:
        nft("delete", "table", "inet", "fw4")


def direct_to_the_listen_port() -> str:
    """A LAN host's own connection to the CPE's converter port: never the converter's to take."""
    return sh(sys.executable, FLOW, "who", "192.0.2.1", "5125", "--timeout", "3", ns=NS["lan"], check=False).stdout.strip()


def test_fw4_reload_and_restart_keep_the_interception(daemons):
    with fw4():
        daemons.mcp()
        daemons.converter()
        assert who() == MCP_SEEN
        assert not direct_to_the_listen_port().startswith("198.18.")
        for event in FW4_EVENTS:
            fw4_event(event)
            assert {"fw4", "mptcp_cpe_converter"} <= tables(), event
            assert who() == MCP_SEEN, event
            # The converter's own input chain still keeps its listen port to diverted connections.
            assert not direct_to_the_listen_port().startswith("198.18."), event
        counters = nft("list", "chain", "inet", "mptcp_cpe_converter", "input").stdout
        assert "counter packets 0 " not in counters.split("fib daddr type local")[1].splitlines()[0], counters


def test_fw4_reload_and_restart_keep_wands_nat(daemons):
    # No converter: the LAN's connection is forwarded through fw4 (lan to wan accepted) and
    # masqueraded by wand's table alone (this fw4's wan zone has no masq); without the NAT the
    # server would see the LAN host (the isp routes the LAN back).
    cfg = wand_config.from_dict({"host": "cpe", "wans": [
        {"name": "dsl", "device": "wan1", "kind": "dsl", "ipv4": {"address": "198.51.100.2/24", "gateway": "198.51.100.1"}},
        {"name": "lte", "device": "wan2", "kind": "lte", "ipv4": {"address": "203.0.113.2/24", "gateway": "203.0.113.1"}},
    ]}, "cpe")
    with fw4():
        nft("-f", "-", stdin=wand_plan.nft_ruleset(cfg))
        try:
            wait_for("the LAN's connection masqueraded", lambda: who() == CPE_SEEN, timeout=10)
            for event in FW4_EVENTS:
                fw4_event(event)
                assert {"fw4", cfg.nft_table} <= tables(), event
                assert who() == CPE_SEEN, event
        finally:
            nft("delete", "table", "inet", cfg.nft_table)
