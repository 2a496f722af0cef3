"""``mptcp-cpe firewall``: the CPE's stateful firewall, IPv4 and IPv6, in an nftables table of
its own (``inet mptcp_cpe_firewall``), replaced whole in one transaction, plus the policy
rules that send a port forward's replies out by the WAN it came in on.

What it lets through (numbers for the defaults):

- input: loopback; neighbour discovery (hop limit 255) on any interface; established and
  related; SSH (port 22) from the management prefixes only, on any interface; everything
  from a trusted interface. From a WAN: DHCP and DHCPv6 client replies, the ICMP and
  ICMPv6 errors PMTU discovery needs, MLD from link-local, echo requests at a limited
  rate; the rest dropped and counted. From a LAN: the services named (DHCP, DHCPv6, DNS),
  ICMP and ICMPv6, and the converter's diverted connections (packets carrying its mark);
  the rest rejected (admin-prohibited) and counted. Any other interface: dropped, counted.
- forward (policy drop): established and related; LAN to WAN, LAN to LAN, from a trusted
  interface; WAN to LAN only the port forwards (IPv4 translated by DNAT, IPv6 opened).
  The first packet of a forward sets a per-WAN value in the connection's mark (its bits in
  ``connmark_mask`` only); the LAN side's packets of that connection carry it as their
  packet mark, and a rule ``fwmark <value>/<mask> lookup <the WAN's table>`` sends them
  back out by that WAN, whatever the balanced default route says.
- output: everything.

The file, rendered by the role cpe_firewall (``to_nice_json``)::

    {"host": "cpe-1", "nft_table": "mptcp_cpe_firewall", "table_base": 100,
     "wans": [...], "lans": [...], "management_prefixes": ["192.0.2.0/24"],
     "port_forwards": [{"name": "web", "proto": "tcp", "port": 443, "to": "198.18.1.10"}],
     "ssh_port": 22, "lan_services": ["dhcp", "dhcpv6"], "trusted_interfaces": [],
     "icmp_echo_rate": 10, "diverted_mark": 8803,
     "reserved_ports": [{"proto": "tcp", "port": 5125, "what": "converter's listen port"}],
     "connmark_mask": 16711680, "rule_priority": 9900, "route_protocol": 203}

``wans``, ``lans`` and ``port_forwards`` are the inventory's models (``inventory.py``); a WAN
without ``table`` has ``table_base + 1 + its index``, as wand numbers it. Nothing here runs
as a daemon: the systemd unit applies the file at boot and on reload, and keeps the table
when it stops (a stopped unit must not open the router); ``--remove`` takes it away.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import ipaddress
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checks import (
    TABLE_RANGE,
    ConfigError,
    Errors,
    InventoryError,
    check_keys,
    integer,
    interfaces,
    nft_name,
    route_protocol,
)
from .inventory import (
    MAX_WANS,
    Lan,
    PortForward,
    Wan,
    number_tables,
    parse_lans,
    parse_port_forwards,
    parse_prefixes,
    parse_wans,
)
from .settings import config_host, load_or_say, read_config

TOP_KEYS = frozenset({"host", "nft_table", "table_base", "wans", "lans", "management_prefixes", "port_forwards",
                      "ssh_port", "lan_services", "trusted_interfaces", "icmp_echo_rate", "diverted_mark",
                      "reserved_ports", "connmark_mask", "rule_priority", "route_protocol"})
# What the CPE may serve on its LANs: the name and the (protocol, port) pairs it opens.
LAN_SERVICES = {"dhcp": (("udp", 67),), "dhcpv6": (("udp", 547),), "dns": (("udp", 53), ("tcp", 53))}
RESERVED_PORT_KEYS = frozenset({"proto", "port", "what"})
MAIN_RULE_PRIORITY = 32766
# IPv6 neighbour discovery (RFC 4861: hop limit 255, so never from off-link) and MLD
# (RFC 4890: link-local sources only).
ND_TYPES = "nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect"
MLD_TYPES = "mld-listener-query, mld-listener-report, mld-listener-done, mld2-listener-report"
# What path MTU discovery and traceroute need (RFC 4890 4.3.1 and RFC 1191).
ICMP_ERRORS = "destination-unreachable, time-exceeded, parameter-problem"
ICMPV6_ERRORS = "destination-unreachable, packet-too-big, time-exceeded, parameter-problem"


@dataclass(frozen=True)
class ReservedPort:
    proto: str
    port: int
    what: str


@dataclass(frozen=True)
class FirewallConfig:
    host: str
    wans: tuple[Wan, ...]  # every WAN has its table
    lans: tuple[Lan, ...]
    management_prefixes: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    port_forwards: tuple[PortForward, ...] = ()
    nft_table: str = "mptcp_cpe_firewall"
    table_base: int = 100
    ssh_port: int = 22
    lan_services: tuple[str, ...] = ("dhcp", "dhcpv6")
    trusted_interfaces: tuple[str, ...] = ()
    icmp_echo_rate: int = 10  # echo requests a second from the WANs (0: none answered)
    diverted_mark: int = 8803
    reserved_ports: tuple[ReservedPort, ...] = ()
    connmark_mask: int = 0x00FF0000
    rule_priority: int = 9900
    route_protocol: int = 203

    def as_dict(self) -> dict[str, Any]:
        """The config as its file says it (what ``from_dict`` reads back unchanged)."""
        return {
            "host": self.host,
            "nft_table": self.nft_table,
            "table_base": self.table_base,
            "wans": [w.as_dict() for w in self.wans],
            "lans": [lan.as_dict() for lan in self.lans],
            "management_prefixes": [str(p) for p in self.management_prefixes],
            "port_forwards": [f.as_dict() for f in self.port_forwards],
            "ssh_port": self.ssh_port,
            "lan_services": list(self.lan_services),
            "trusted_interfaces": list(self.trusted_interfaces),
            "icmp_echo_rate": self.icmp_echo_rate,
            "diverted_mark": self.diverted_mark,
            "reserved_ports": [dataclasses.asdict(r) for r in self.reserved_ports],
            "connmark_mask": self.connmark_mask,
            "rule_priority": self.rule_priority,
            "route_protocol": self.route_protocol,
        }

    @property
    def mark_shift(self) -> int:
        return (self.connmark_mask & -self.connmark_mask).bit_length() - 1

    def wan_mark(self, index: int) -> int:
        """The connection mark (inside ``connmark_mask``) of forwards that came in by WAN ``index``."""
        return (index + 1) << self.mark_shift


def _reserved_ports(host: str, field: str, raw: Any) -> tuple[ReservedPort, ...]:
    if not isinstance(raw, list):
        raise ConfigError(host, field, "must be a list of {proto, port, what}", raw)
    out = []
    for i, item in enumerate(raw):
        where = f"{field}[{i}]"
        check_keys(host, where, item, RESERVED_PORT_KEYS)
        proto = item.get("proto", "tcp")
        if proto not in ("tcp", "udp"):
            raise ConfigError(host, f"{where}.proto", "must be tcp or udp", proto)
        what = item.get("what")
        if not isinstance(what, str) or not what.strip():
            raise ConfigError(host, f"{where}.what", "must say what uses the port", what)
        out.append(ReservedPort(proto, integer(host, f"{where}.port", item.get("port"), 1, 65535), what))
    return tuple(out)


def _lan_services(host: str, services: Any) -> list[str]:
    if not isinstance(services, list) or any(s not in LAN_SERVICES for s in services) or len(set(services)) != len(services):
        raise ConfigError(host, "lan_services", f"must be a list of {', '.join(LAN_SERVICES)}, each at most once", services)
    return services


def _mask(host: str, field: str, value: Any) -> int:
    mask = integer(host, field, value, 1, 2**32 - 1)
    low = mask & -mask
    if (mask + low) & mask:
        raise ConfigError(host, field, "must be one run of contiguous bits, like 0x00ff0000", hex(mask))
    return mask


def from_dict(raw: Any, host: str = "localhost", names: dict[str, str] | None = None) -> FirewallConfig:
    """The checked config. ``names``: what to call a config key in messages (the role names
    the shared inventory data, e.g. ``port_forwards`` is ``cpe_port_forwards``)."""
    host = config_host(raw, host)
    check_keys(host, "(config)", raw, TOP_KEYS)

    def name(key: str) -> str:
        return (names or {}).get(key, key)

    d = FirewallConfig(host=host, wans=(), lans=())
    for key in ("wans", "lans"):
        if key not in raw:
            raise ConfigError(host, name(key), "missing", show_value=False)
    # Every field's own mistakes at once (the LANs and forwards as far as the WANs and LANs
    # they refer to are well formed), then those between fields.
    errors = Errors()
    nft_table = errors.check(nft_name, host, "nft_table", raw.get("nft_table", d.nft_table))
    table_base = errors.check(integer, host, "table_base", raw.get("table_base", d.table_base), 1, TABLE_RANGE[1] - MAX_WANS - 1)
    wans = errors.check(parse_wans, host, raw["wans"], field=name("wans"))
    lans = errors.check(parse_lans, host, raw["lans"], wans, field=name("lans"))
    trusted = errors.check(interfaces, host, "trusted_interfaces", raw.get("trusted_interfaces", []))
    management = errors.check(parse_prefixes, host, name("management_prefixes"), raw.get("management_prefixes", []))
    ssh_port = errors.check(integer, host, "ssh_port", raw.get("ssh_port", d.ssh_port), 1, 65535)
    services = errors.check(_lan_services, host, raw.get("lan_services", list(d.lan_services)))
    reserved = errors.check(_reserved_ports, host, "reserved_ports", raw.get("reserved_ports", []))
    if None not in (wans, lans, ssh_port, reserved):
        table = {(r.proto, r.port): r.what for r in reserved}
        table[("tcp", ssh_port)] = "CPE's SSH port"
        forwards = errors.check(parse_port_forwards, host, raw.get("port_forwards", []), lans, wans, reserved=table,
                                field=name("port_forwards"))
    diverted = errors.check(integer, host, "diverted_mark", raw.get("diverted_mark", d.diverted_mark), 1, 2**32 - 1)
    mask = errors.check(_mask, host, "connmark_mask", raw.get("connmark_mask", d.connmark_mask))
    icmp_echo_rate = errors.check(integer, host, "icmp_echo_rate", raw.get("icmp_echo_rate", d.icmp_echo_rate), 0, 10000)
    rule_priority = errors.check(integer, host, "rule_priority", raw.get("rule_priority", d.rule_priority), 1,
                                 MAIN_RULE_PRIORITY - MAX_WANS)
    proto = errors.check(route_protocol, host, "route_protocol", raw.get("route_protocol", d.route_protocol))
    errors.raise_any()

    numbered = number_tables(host, wans, table_base, name("wans"), error=ConfigError)
    seen: dict[int, str] = {}
    for i, wan in enumerate(numbered):
        if wan.table in seen:
            raise ConfigError(host, f"{name('wans')}[{i}] ({wan.name}).table", f"already used by {seen[wan.table]} "
                              "(a WAN without table gets table_base + 1 + its index)", wan.table)
        seen[wan.table] = f"{name('wans')}[{i}] ({wan.name})"
    for i, dev in enumerate(trusted):
        owner = next((f"WAN {w.name}" for w in wans if w.device == dev), None) or \
            next((f"LAN {lan.name}" for lan in lans if lan.device == dev), None)
        if owner or dev == "lo":
            raise ConfigError(host, f"trusted_interfaces[{i}]", f"is {'loopback' if dev == 'lo' else 'the device of ' + owner}: "
                              "only other interfaces (a management VLAN, a tunnel) can be trusted", dev)
    if diverted & mask:
        raise ConfigError(host, "connmark_mask", f"shares bits with diverted_mark ({diverted:#x}): the converter's "
                          "packets would look like a forward's", hex(mask))
    if mask >> ((mask & -mask).bit_length() - 1) < len(wans):
        raise ConfigError(host, "connmark_mask", f"too narrow for {len(wans)} WANs (each needs its own value)", hex(mask))
    cfg = FirewallConfig(
        host=host,
        wans=tuple(numbered),
        lans=tuple(lans),
        management_prefixes=management,
        port_forwards=tuple(forwards),
        nft_table=nft_table,
        table_base=table_base,
        ssh_port=ssh_port,
        lan_services=tuple(services),
        trusted_interfaces=trusted,
        icmp_echo_rate=icmp_echo_rate,
        diverted_mark=diverted,
        reserved_ports=reserved,
        connmark_mask=mask,
        rule_priority=rule_priority,
        route_protocol=proto,
    )
    return cfg


def load(path: Path, host: str = "localhost") -> FirewallConfig:
    return from_dict(read_config(path, host), host)


# ---------------------------------------------------------------- the ruleset (pure)

def _ifnames(names) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _set(name: str, kind: str, items, interval: bool = False) -> str:
    flags = " flags interval;" if interval else ""
    elements = f" elements = {{ {', '.join(items)} }};" if items else ""
    return f"\tset {name} {{ type {kind};{flags}{elements} }}"


def _ports(r: tuple[int, int]) -> str:
    return str(r[0]) if r[0] == r[1] else f"{r[0]}-{r[1]}"


def _forward_wans(cfg: FirewallConfig, fw: PortForward) -> list[tuple[int, Wan]]:
    return [(i, w) for i, w in enumerate(cfg.wans) if not fw.wans or w.name in fw.wans]


def _dnat(fw: PortForward) -> str:
    if fw.to_ports == fw.ports:
        return f"dnat ip to {fw.to}"
    if fw.ports[0] == fw.ports[1]:
        return f"dnat ip to {fw.to}:{fw.to_ports[0]}"
    # A shifted range: each port to its own (nftables has no offset form).
    pairs = ", ".join(f"{p} : {fw.to} . {fw.to_ports[0] + p - fw.ports[0]}" for p in range(fw.ports[0], fw.ports[1] + 1))
    return f"dnat ip addr . port to {fw.proto} dport map {{ {pairs} }}"


def ruleset(cfg: FirewallConfig) -> str:
    """The whole table, in one text that replaces the old one atomically (one transaction:
    create if missing, delete, create)."""
    t = f"inet {cfg.nft_table}"
    mask, keep = cfg.connmark_mask, ~cfg.connmark_mask & 0xFFFFFFFF
    v4 = [str(p) for p in cfg.management_prefixes if p.version == 4]
    v6 = [str(p) for p in cfg.management_prefixes if p.version == 6]
    rate = f"limit rate {cfg.icmp_echo_rate}/second burst {2 * cfg.icmp_echo_rate} packets accept"
    out = [f"table {t}", f"delete table {t}", f"table {t} {{"]
    out += [
        _set("wan_ifaces", "ifname", [f'"{w.device}"' for w in cfg.wans]),
        _set("lan_ifaces", "ifname", [f'"{lan.device}"' for lan in cfg.lans]),
        _set("trusted_ifaces", "ifname", [f'"{d}"' for d in cfg.trusted_interfaces]),
        _set("management_v4", "ipv4_addr", v4, interval=True),
        _set("management_v6", "ipv6_addr", v6, interval=True),
        "",
        "\t# What was refused, per direction: nft list counters table " + t,
    ]
    counters = ("input_invalid", "input_wan_dropped", "input_lan_rejected", "input_other_dropped",
                "forward_invalid", "forward_dropped")
    out += [f"\tcounter {c} {{ }}" for c in counters]

    # The LAN side of a forward leaves by the WAN it came in on: its connection's value
    # becomes the packet's mark (those bits only: the converter's mark lives in the others).
    out += ["", "\tchain prerouting_mark {", "\t\ttype filter hook prerouting priority mangle; policy accept;"]
    for i, _ in enumerate(cfg.wans):
        v = cfg.wan_mark(i)
        out.append(f"\t\tiifname @lan_ifaces ct mark and {mask:#010x} == {v:#010x} "
                   f"meta mark set meta mark and {keep:#010x} or {v:#010x}")
    out.append("\t}")

    out += ["", "\tchain prerouting_nat {", "\t\ttype nat hook prerouting priority dstnat; policy accept;"]
    for fw in cfg.port_forwards:
        if fw.to.version == 4:
            devs = _ifnames(w.device for _, w in _forward_wans(cfg, fw))
            out.append(f"\t\tiifname {{ {devs} }} {fw.proto} dport {_ports(fw.ports)} {_dnat(fw)} comment \"{fw.name}\"")
    out.append("\t}")

    out += [
        "",
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy drop;",
        "\t\tiif lo accept",
        f"\t\ticmpv6 type {{ {ND_TYPES} }} ip6 hoplimit 255 accept",
        "\t\tct state established,related accept",
        "\t\tct state invalid counter name input_invalid drop",
        "\t\tiifname @trusted_ifaces accept",
        f"\t\ttcp dport {cfg.ssh_port} ip saddr @management_v4 accept",
        f"\t\ttcp dport {cfg.ssh_port} ip6 saddr @management_v6 accept",
        "\t\tiifname @wan_ifaces jump input_wan",
        "\t\tiifname @lan_ifaces jump input_lan",
        "\t\tcounter name input_other_dropped drop",
        "\t}",
        "",
        "\tchain input_wan {",
        "\t\tudp sport 67 udp dport 68 accept",
        "\t\tip6 saddr fe80::/10 udp sport 547 udp dport 546 accept",
        f"\t\ticmp type {{ {ICMP_ERRORS} }} accept",
        f"\t\ticmpv6 type {{ {ICMPV6_ERRORS} }} accept",
        f"\t\tip6 saddr fe80::/10 icmpv6 type {{ {MLD_TYPES} }} accept",
    ]
    if cfg.icmp_echo_rate:
        out += [f"\t\ticmp type echo-request {rate}", f"\t\ticmpv6 type echo-request {rate}"]
    out += [
        "\t\tcounter name input_wan_dropped drop",
        "\t}",
        "",
        "\tchain input_lan {",
        # The converter's TPROXY delivers the LAN's diverted connections to its listeners.
        f"\t\tmeta mark {cfg.diverted_mark:#010x} accept",
    ]
    for service in cfg.lan_services:
        for proto, port in LAN_SERVICES[service]:
            out.append(f"\t\t{proto} dport {port} accept")
    out += [
        # nft's own keywords, not /etc/protocols names (a router may have no netbase).
        "\t\tmeta l4proto { icmp, icmpv6 } accept",
        "\t\tcounter name input_lan_rejected reject with icmpx admin-prohibited",
        "\t}",
        "",
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy drop;",
        "\t\tct state established,related accept",
        "\t\tct state invalid counter name forward_invalid drop",
        "\t\tiifname @lan_ifaces oifname @wan_ifaces accept",
        "\t\tiifname @lan_ifaces oifname @lan_ifaces accept",
        "\t\tiifname @trusted_ifaces accept",
    ]
    if cfg.wans:
        jumps = ", ".join(f'"{w.device}" : jump forward_from_{w.name}' for w in cfg.wans)
        out.append(f"\t\tiifname vmap {{ {jumps} }}")
    out += ["\t\tcounter name forward_dropped drop", "\t}"]
    for i, wan in enumerate(cfg.wans):
        v = cfg.wan_mark(i)
        mark = f"ct mark set ct mark and {keep:#010x} or {v:#010x} accept"
        out += ["", f"\tchain forward_from_{wan.name} {{"]
        if any(fw.to.version == 4 for fw in cfg.port_forwards if (i, wan) in _forward_wans(cfg, fw)):
            out.append(f"\t\toifname @lan_ifaces ct status dnat {mark}")
        for fw in cfg.port_forwards:
            if fw.to.version == 6 and (i, wan) in _forward_wans(cfg, fw):
                out.append(f"\t\toifname @lan_ifaces ip6 daddr {fw.to} {fw.proto} dport {_ports(fw.ports)} {mark} "
                           f"comment \"{fw.name}\"")
        out.append("\t}")
    out += [
        "",
        "\tchain output {",
        "\t\ttype filter hook output priority filter; policy accept;",
        "\t}",
        "}",
        "",
    ]
    return "\n".join(out)


def removal(cfg: FirewallConfig) -> str:
    t = f"inet {cfg.nft_table}"
    return f"table {t}\ndelete table {t}\n"


@dataclass(frozen=True, order=True)
class MarkRule:
    """``fwmark <mark>/<mask> lookup <table>`` at ``priority``, tagged with the firewall's protocol."""

    family: int
    priority: int
    fwmark: int
    fwmask: int
    table: int

    def __str__(self) -> str:
        fam = "-4" if self.family == socket.AF_INET else "-6"
        return f"ip {fam} rule {self.priority}: from all fwmark {self.fwmark:#x}/{self.fwmask:#x} lookup {self.table}"


def mark_rules(cfg: FirewallConfig) -> set[MarkRule]:
    """One rule per WAN and family, WAN i at ``rule_priority + i``."""
    return {MarkRule(family, cfg.rule_priority + i, cfg.wan_mark(i), cfg.connmark_mask, wan.table)
            for i, wan in enumerate(cfg.wans) for family in (socket.AF_INET, socket.AF_INET6)}


def in_band(cfg: FirewallConfig, priority: int, protocol: int | None) -> bool:
    return protocol == cfg.route_protocol and cfg.rule_priority <= priority < cfg.rule_priority + MAX_WANS


# ---------------------------------------------------------------- the management path (pure)

def check_management_path(host: str, ssh_connection: Any, prefixes: list | tuple, ssh_port: int,
                          trusted: list | tuple, route_dev: str | None = None,
                          field: str = "management_prefixes", port_field: str = "ssh_port") -> None:
    """Refuse a firewall that would cut the SSH session this config arrives by.
    ``ssh_connection``: the session's ``SSH_CONNECTION`` ("client port server port"; empty
    or None: not over SSH, nothing to check); ``route_dev``: the interface the router
    reaches the client by (``ip route get``). A trusted interface (or loopback) is let in
    whole; otherwise the client must lie in ``prefixes`` and the server port be ``ssh_port``."""
    if not ssh_connection:
        return
    words = str(ssh_connection).split()
    try:
        client = ipaddress.ip_address(words[0].split("%")[0])
        server_port = int(words[3])
    except (IndexError, ValueError):
        raise InventoryError(host, "SSH_CONNECTION", "cannot read the client address and server port", ssh_connection) from None
    if client.version == 6 and client.ipv4_mapped:
        client = client.ipv4_mapped
    if route_dev == "lo" or client.is_loopback or (route_dev and route_dev in trusted):
        return
    nets = [ipaddress.ip_network(p) if not isinstance(p, (ipaddress.IPv4Network, ipaddress.IPv6Network)) else p
            for p in prefixes]
    if not any(client.version == n.version and client in n for n in nets):
        raise InventoryError(host, field, f"would cut this Ansible run's SSH session from {client}",
                             [str(n) for n in nets])
    if server_port != ssh_port:
        raise InventoryError(host, port_field, f"would cut this Ansible run's SSH session to port {server_port}", ssh_port)


# ---------------------------------------------------------------- the kernel (side effects)

class Kernel:
    """The table through libnftables (one transaction), the mark rules through pyroute2."""

    def __init__(self) -> None:
        from .netlink import IPRoute

        from .nft import Nft

        self.ipr = IPRoute()
        self.nft = Nft()

    def close(self) -> None:
        self.ipr.close()
        self.nft.close()

    def owned_rules(self, cfg: FirewallConfig) -> set[MarkRule]:
        have = set()
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in self.ipr.get_rules(family=family):
                if not in_band(cfg, msg.get("FRA_PRIORITY", 0), msg.get("FRA_PROTOCOL")):
                    continue
                have.add(MarkRule(family, msg.get("FRA_PRIORITY", 0), msg.get("FRA_FWMARK", 0),
                                  msg.get("FRA_FWMASK", 0xFFFFFFFF), msg.get("FRA_TABLE", msg["table"])))
        return have

    def _rule(self, op: str, r: MarkRule, cfg: FirewallConfig) -> None:
        self.ipr.rule(op, family=r.family, priority=r.priority, fwmark=r.fwmark, fwmask=r.fwmask, table=r.table,
                      protocol=cfg.route_protocol)

    def apply(self, cfg: FirewallConfig) -> list[str]:
        """The table, then the rules: new ones added before stale ones of our band go."""
        self.nft.run(ruleset(cfg))
        want, have = mark_rules(cfg), self.owned_rules(cfg)
        done = []
        for r in sorted(want - have):
            try:
                self._rule("add", r, cfg)
            except Exception as exc:  # pyroute2's NetlinkError; EEXIST: an identical rule
                if getattr(exc, "code", None) != errno.EEXIST:
                    raise
            done.append(f"add {r}")
        for r in sorted(have - want):
            self._rule("del", r, cfg)
            done.append(f"delete {r}")
        return done

    def remove(self, cfg: FirewallConfig) -> list[str]:
        done = []
        if self.table_exists(cfg):
            self.nft.run(removal(cfg))
            done.append(f"delete table inet {cfg.nft_table}")
        for r in sorted(self.owned_rules(cfg)):
            self._rule("del", r, cfg)
            done.append(f"delete {r}")
        return done

    def table_exists(self, cfg: FirewallConfig) -> bool:
        from .nft import KernelError

        try:
            self.nft.run(f"list table inet {cfg.nft_table}")
        except KernelError:
            return False
        return True


# ---------------------------------------------------------------- the command

def summary(cfg: FirewallConfig) -> str:
    return (f"{len(cfg.wans)} WANs, {len(cfg.lans)} LANs, {len(cfg.port_forwards)} port forwards, "
            f"{len(cfg.management_prefixes)} management prefixes")


def main(args: argparse.Namespace) -> int:
    cfg = load_or_say("firewall", load, args.config)
    if cfg is None:
        return 1
    if args.check:
        print(f"{args.config}: {summary(cfg)}: OK")
        return 0
    if args.print:
        sys.stdout.write(ruleset(cfg))
        for r in sorted(mark_rules(cfg)):
            print(f"# {r} proto {cfg.route_protocol}")
        return 0
    try:
        kernel = Kernel()
    except Exception as exc:  # noqa: BLE001 - no libnftables, no netlink: one line
        print(f"mptcp-cpe firewall: {cfg.host}: {exc}", file=sys.stderr)
        return 1
    try:
        done = kernel.remove(cfg) if args.remove else kernel.apply(cfg)
    except Exception as exc:  # noqa: BLE001 - the kernel's refusal, in one line
        print(f"mptcp-cpe firewall: {cfg.host}: {exc}", file=sys.stderr)
        return 1
    finally:
        kernel.close()
    for line in done:
        print(line)
    print(f"{'removed' if args.remove else 'applied'} table inet {cfg.nft_table}: {summary(cfg)}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("firewall", help="the CPE's stateful firewall: apply, check, print or remove it")
    p.add_argument("--config", type=Path, required=True, help="JSON config (rendered by the role cpe_firewall)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--check", action="store_true", help="check the config and exit")
    what.add_argument("--print", action="store_true", help="print the ruleset and the policy rules, change nothing")
    what.add_argument("--remove", action="store_true", help="remove the table and the policy rules (opens the router)")
    p.set_defaults(func=main)
