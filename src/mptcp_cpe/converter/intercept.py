"""Interception: the nftables table and policy routing the converter owns (TPROXY to the listeners)."""

from __future__ import annotations

import contextlib
import socket

from .config import ConverterConfig


def _elements(items) -> str:
    return ", ".join(str(i) for i in items)


def nft_ruleset(cfg: ConverterConfig, intercept: bool = True) -> str:
    """The daemon's whole table, replaced in one transaction (create, delete, create).
    ``intercept`` False (draining) keeps only what live connections need: their packets
    still reach their sockets, new connections are forwarded as they came."""
    v4 = [p for p in cfg.bypass.destinations if p.version == 4]
    v6 = [p for p in cfg.bypass.destinations if p.version == 6]
    s4 = [p for p in cfg.bypass.sources if p.version == 4]
    s6 = [p for p in cfg.bypass.sources if p.version == 6]
    lan = ", ".join(f'"{i}"' for i in cfg.lan_interfaces)
    sets = ["  counter native_mptcp { }"]
    rules = [
        f"iifname != {{ {lan} }} return",
        "meta l4proto != tcp return",
        # Packets of connections the converter already holds: to their socket.
        f"socket transparent 1 meta mark set {cfg.fwmark} accept",
        # Connections forwarded before the converter started keep being forwarded.
        "ct state != new return",
        # A host that speaks MPTCP itself (its SYN carries MP_CAPABLE, or MP_JOIN for another
        # subflow) uses every WAN natively: never converted, whatever its source; counted.
        'tcp option mptcp exists counter name "native_mptcp" return',
        "fib daddr type { local, broadcast, multicast, anycast } return",
        f"fib daddr oifname {{ {lan} }} return",
        f"tcp dport {cfg.mcp_port} return",
    ]
    for name, kind, items, match in (("bypass_dst4", "ipv4_addr", v4, "ip daddr"), ("bypass_dst6", "ipv6_addr", v6, "ip6 daddr"),
                                     ("bypass_src4", "ipv4_addr", s4, "ip saddr"), ("bypass_src6", "ipv6_addr", s6, "ip6 saddr")):
        elements = f" elements = {{ {_elements(items)} }};" if items else ""
        sets.append(f"  set {name} {{ type {kind}; flags interval;{elements} }}")
        rules.append(f"{match} @{name} return")
    port_elements = f" elements = {{ {_elements(cfg.bypass.ports)} }};" if cfg.bypass.ports else ""
    sets.append(f"  set bypass_ports {{ type inet_service;{port_elements} }}")
    rules.append("tcp dport @bypass_ports return")
    rules.append(f"meta nfproto ipv4 meta l4proto tcp tproxy ip to :{cfg.listen_port} meta mark set {cfg.fwmark} accept")
    rules.append(f"meta nfproto ipv6 meta l4proto tcp tproxy ip6 to :{cfg.listen_port} meta mark set {cfg.fwmark} accept")
    if not intercept:
        sets, rules = [], rules[:3]
    body = "\n".join(sets) + "\n  chain prerouting {\n    type filter hook prerouting priority mangle; policy accept;\n" + \
        "".join(f"    {r}\n" for r in rules) + "  }\n"
    # The listen port takes only what TPROXY diverted: marked above, and to another host's
    # address. The mark alone is not enough: a LAN packet to the CPE's own address and the
    # listen port finds the (wildcard, transparent) listener in the socket rule and is marked
    # too. Only packets to the listen port meet the fib lookup. Kept while draining too.
    body += ("  chain input {\n    type filter hook input priority filter; policy accept;\n"
             f"    tcp dport {cfg.listen_port} meta mark != {cfg.fwmark} counter drop\n"
             f"    tcp dport {cfg.listen_port} fib daddr type local counter drop\n  }}\n")
    t = f"table inet {cfg.nft_table}"
    return f"{t}\ndelete {t}\n{t} {{\n{body}}}\n"


class Interception:
    """The kernel state the daemon owns: its nftables table, the fwmark rules and the local
    default routes of its table (tagged with route_protocol). Netlink through pyroute2."""

    def __init__(self) -> None:
        from ..netlink import IPRoute

        from ..nft import Nft

        self.ipr = IPRoute()
        self.nft = Nft()

    def apply(self, cfg: ConverterConfig, intercept: bool = True) -> None:
        self.nft.run(nft_ruleset(cfg, intercept))
        lo = self.ipr.link_lookup(ifname="lo")[0]
        for family, dst in ((socket.AF_INET, "0.0.0.0/0"), (socket.AF_INET6, "::/0")):
            self.ipr.route("replace", family=family, dst=dst, type="local", scope=254, oif=lo, table=cfg.route_table,
                           proto=cfg.route_protocol)
            if not self._rules(cfg, family):
                self.ipr.rule("add", family=family, fwmark=cfg.fwmark, fwmask=0xFFFFFFFF, table=cfg.route_table,
                              priority=cfg.rule_priority, protocol=cfg.route_protocol)

    def _rules(self, cfg: ConverterConfig, family: int) -> list:
        return [r for r in self.ipr.get_rules(family=family)
                if r.get("FRA_PRIORITY") == cfg.rule_priority and r.get("FRA_PROTOCOL") == cfg.route_protocol]

    def remove(self, cfg: ConverterConfig) -> None:
        with contextlib.suppress(Exception):
            self.nft.run(f"table inet {cfg.nft_table}\ndelete table inet {cfg.nft_table}\n")
        for family in (socket.AF_INET, socket.AF_INET6):
            for r in self._rules(cfg, family):
                with contextlib.suppress(Exception):
                    self.ipr.rule("del", family=family, priority=cfg.rule_priority, fwmark=r.get("FRA_FWMARK"),
                                  table=cfg.route_table)
            lo = self.ipr.link_lookup(ifname="lo")[0]
            for rt in self.ipr.get_routes(family=family, table=cfg.route_table):
                if rt["proto"] == cfg.route_protocol and rt["dst_len"] == 0:
                    with contextlib.suppress(Exception):
                        self.ipr.route("del", family=family, dst_len=0, type="local", scope=254, oif=lo,
                                       table=cfg.route_table, proto=cfg.route_protocol)

    def close(self) -> None:
        self.ipr.close()
        self.nft.close()

