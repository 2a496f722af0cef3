"""The inventory model: what an operator writes for a CPE, checked before anything is applied.

One checker for every consumer (the roles' filter plugins, the lab tool, the daemons'
config loaders), so that a mistake reads the same wherever it is caught:
``<host>: <field>: <problem> (got <value>)``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .checks import RESERVED_TABLES, Errors, InventoryError, boolean, integer, ip_address, is_ifname, number, only_keys, parse_table

# The in-kernel MPTCP path manager accepts at most 8 endpoints and 8 subflows
# (MPTCP_PM_ADDR_MAX); more WANs than that could never all carry a subflow.
MAX_WANS = 8

WAN_KINDS = frozenset({"dsl", "fibre", "cable", "ethernet", "lte", "5g", "satellite"})
WAN_KEYS = frozenset({"name", "device", "kind", "ipv4", "ipv6", "pd_length", "weight", "backup", "table", "nat", "probes",
                      "uci_interface", "uci_interface6", "rate", "rtt_ms"})
# The delegated prefix a DHCPv6 WAN asks for (IA_PD): /48 to /64, /56 unless the inventory says.
PD_LENGTH_RANGE = (48, 64)
DEFAULT_PD_LENGTH = 56
WAN_NAME = re.compile(r"[a-z][a-z0-9_-]{0,14}")
# A netifd interface (an OpenWrt WAN's section in /etc/config/network): a UCI section name,
# which netifd keeps to 15 characters (its device names derive from it: pppoe-<name>).
UCI_INTERFACE = re.compile(r"[A-Za-z0-9_]{1,15}")
WEIGHT_RANGE = (1, 256)  # nexthop weights in a multipath route
PROBE_KINDS = ("icmp", "tcp")
PROBE_KEYS = frozenset({"kind", "target", "port"})
# A line's rates, each way, in Mbit/s (10^6 bit/s): from ISDN's 64 kbit/s to 100 Gbit/s.
RATE_KEYS = ("down_mbit", "up_mbit")
RATE_RANGE = (0.064, 100000)
# Its round trip to the MCP in ms: a LAN-like 1 ms to a geostationary satellite's ~600 ms
# with room for a loaded one's queues.
RTT_RANGE = (1, 2000)


@dataclass(frozen=True)
class StaticAddress:
    """A static interface address with its gateway (which must lie inside its prefix)."""

    interface: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address

    def as_dict(self) -> dict[str, str]:
        return {"address": str(self.interface), "gateway": str(self.gateway)}


@dataclass(frozen=True)
class Probe:
    """A health probe sent out of its WAN, from the WAN's own address: an ICMP echo, or a TCP
    connect (a reset proves the path as well as an accept). ``target`` is an address or
    ``gateway`` (the WAN's gateway of that family)."""

    kind: str
    target: str
    port: int | None = None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "target": self.target}
        if self.port is not None:
            d["port"] = self.port
        return d


DEFAULT_PROBES = (Probe("icmp", "gateway"),)


@dataclass(frozen=True)
class Rate:
    """A line's rates in Mbit/s: towards the CPE (down) and from it (up)."""

    down_mbit: float
    up_mbit: float

    def as_dict(self) -> dict[str, float]:
        return {"down_mbit": self.down_mbit, "up_mbit": self.up_mbit}


@dataclass(frozen=True)
class Wan:
    name: str
    device: str
    kind: str
    ipv4: str | StaticAddress  # "dhcp", "none" or a static address
    ipv6: str | StaticAddress  # "dhcp", "slaac", "none" or a static address
    weight: int
    backup: bool
    table: int | None = None  # the WAN's routing table; None: the consumer numbers it
    nat: bool = True  # masquerade IPv4 leaving by this WAN
    probes: tuple[Probe, ...] = DEFAULT_PROBES
    pd_length: int | None = None  # the delegated prefix length asked for (ipv6 dhcp only)
    # OpenWrt: the netifd interfaces of the WAN's IPv4 and DHCPv6 (None: not given).
    uci_interface: str | None = None
    uci_interface6: str | None = None
    # What the line carries and its round trip to the MCP under load (None: not declared);
    # they size the converter's MPTCP buffers (mptcp_cpe.buffers).
    rate: Rate | None = None
    rtt_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        def addr(a):
            return a.as_dict() if isinstance(a, StaticAddress) else a

        d = {
            "name": self.name,
            "device": self.device,
            "kind": self.kind,
            "ipv4": addr(self.ipv4),
            "ipv6": addr(self.ipv6),
            "weight": self.weight,
            "backup": self.backup,
            "nat": self.nat,
            "probes": [p.as_dict() for p in self.probes],
        }
        if self.table is not None:
            d["table"] = self.table
        if self.pd_length is not None:
            d["pd_length"] = self.pd_length
        for key in ("uci_interface", "uci_interface6", "rtt_ms"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        if self.rate is not None:
            d["rate"] = self.rate.as_dict()
        return d


def _static(host: str, field: str, value: dict, version: int) -> StaticAddress:
    only_keys(host, field, value, frozenset({"address", "gateway"}), hint="a static address has address and gateway",
              show_value=True)
    for key in ("address", "gateway"):
        if key not in value:
            raise InventoryError(host, f"{field}.{key}", "missing", show_value=False)
    raw = value["address"]
    if not isinstance(raw, str) or "/" not in raw:
        raise InventoryError(host, f"{field}.address", f"not an IPv{version} address with its prefix length, like "
                             + ("192.0.2.10/24" if version == 4 else "2001:db8::10/64"), raw)
    try:
        iface = ipaddress.ip_interface(raw)
    except ValueError:
        raise InventoryError(host, f"{field}.address", f"not an IPv{version} address with prefix length", raw) from None
    if iface.version != version:
        raise InventoryError(host, f"{field}.address", f"not an IPv{version} address", raw)
    net = iface.network
    if version == 4 and net.prefixlen < 31 and iface.ip in (net.network_address, net.broadcast_address):
        raise InventoryError(host, f"{field}.address", f"is the network or broadcast address of {net}", raw)
    if iface.ip.is_multicast or iface.ip.is_loopback or iface.ip.is_unspecified:
        raise InventoryError(host, f"{field}.address", "is not a unicast address", raw)
    gateway = ip_address(host, f"{field}.gateway", value["gateway"], version)
    # IPv6 gateways are often link-local (fe80::1 from the RA): those are reachable on any prefix.
    if not (version == 6 and gateway.is_link_local) and gateway not in net:
        raise InventoryError(host, f"{field}.gateway", f"outside the WAN's prefix {net}", value["gateway"])
    if gateway == iface.ip:
        raise InventoryError(host, f"{field}.gateway", "is the WAN's own address", value["gateway"])
    if version == 4 and net.prefixlen < 31 and gateway in (net.network_address, net.broadcast_address):
        raise InventoryError(host, f"{field}.gateway", f"is the network or broadcast address of {net}", value["gateway"])
    return StaticAddress(iface, gateway)


def _addressing(host: str, field: str, value: Any, version: int) -> str | StaticAddress:
    modes = ("dhcp", "none") if version == 4 else ("dhcp", "slaac", "none")
    if isinstance(value, str):
        if value not in modes:
            raise InventoryError(host, field, f"must be one of {', '.join(modes)} or a mapping with address and gateway", value)
        return value
    if isinstance(value, dict):
        return _static(host, field, value, version)
    raise InventoryError(host, field, f"must be one of {', '.join(modes)} or a mapping with address and gateway", value)


def _probe(host: str, field: str, raw: Any, ipv4: Any, ipv6: Any) -> Probe:
    if not isinstance(raw, dict):
        raise InventoryError(host, field, "must be a mapping with kind and target (and port for tcp)", raw)
    only_keys(host, field, raw, PROBE_KEYS)
    kind = raw.get("kind", "icmp")
    if kind not in PROBE_KINDS:
        raise InventoryError(host, f"{field}.kind", f"must be one of {', '.join(PROBE_KINDS)}", kind)
    if "target" not in raw:
        raise InventoryError(host, f"{field}.target", "missing", show_value=False)
    target = raw["target"]
    if target != "gateway":
        try:
            if not isinstance(target, str):
                raise ValueError
            address = ipaddress.ip_address(target)
        except ValueError:
            raise InventoryError(host, f"{field}.target", "must be an IPv4 or IPv6 address, or gateway", target) from None
        if address.is_multicast or address.is_unspecified or address.is_loopback:
            raise InventoryError(host, f"{field}.target", "is not a unicast address", target)
        if (ipv4 if address.version == 4 else ipv6) == "none":
            raise InventoryError(host, f"{field}.target", f"an IPv{address.version} target on a WAN without IPv{address.version}", target)
        target = str(address)
    port = None
    if kind == "tcp":
        if "port" not in raw:
            raise InventoryError(host, f"{field}.port", "missing (a tcp probe connects to a port)", show_value=False)
        port = integer(host, f"{field}.port", raw["port"], 1, 65535)
    elif "port" in raw:
        raise InventoryError(host, f"{field}.port", "only tcp probes have a port", raw["port"])
    return Probe(kind, target, port)


def _rate(host: str, field: str, raw: Any) -> Rate:
    if not isinstance(raw, dict):
        raise InventoryError(host, field, "must be a mapping with down_mbit and up_mbit (the line's rates in Mbit/s)", raw)
    only_keys(host, field, raw, frozenset(RATE_KEYS), show_value=True)
    errors = Errors()
    rates = {}
    for key in RATE_KEYS:
        if key not in raw:
            errors.add(InventoryError(host, f"{field}.{key}", "missing", show_value=False))
        else:
            rates[key] = errors.check(number, host, f"{field}.{key}", raw[key], *RATE_RANGE, error=InventoryError)
    errors.raise_any()
    return Rate(**rates)


def _line(host: str, where: str, raw: dict) -> tuple[Rate | None, float | None]:
    """A WAN's ``rate`` and ``rtt_ms``, each optional; every mistake in them at once."""
    errors = Errors()
    rate = errors.check(_rate, host, f"{where}.rate", raw["rate"]) if "rate" in raw else None
    rtt_ms = (errors.check(number, host, f"{where}.rtt_ms", raw["rtt_ms"], *RTT_RANGE, error=InventoryError)
              if "rtt_ms" in raw else None)
    errors.raise_any()
    return rate, rtt_ms


def _probes(host: str, field: str, raw: Any, ipv4: Any, ipv6: Any) -> tuple[Probe, ...]:
    if not isinstance(raw, list) or not raw:
        raise InventoryError(host, field, "must be a non-empty list of probes", raw)
    return tuple(_probe(host, f"{field}[{i}]", p, ipv4, ipv6) for i, p in enumerate(raw))


def _named_item(host: str, field: str, index: int, raw: Any, keys: frozenset, required: tuple[str, ...],
                shape: str) -> str:
    """The common head of a list item (a WAN, a LAN, a port forward): a mapping of known keys
    with the required ones, a valid ``name`` and, if required, a valid ``device``. Returns
    where it is, named as messages name it: ``cpe_wans[1] (fibre)``."""
    where = f"{field}[{index}]"
    if not isinstance(raw, dict):
        raise InventoryError(host, where, f"must be a mapping with {shape}", raw)
    if isinstance(raw.get("name"), str):
        where = f"{field}[{index}] ({raw['name']})"
    only_keys(host, where, raw, keys)
    for key in required:
        if key not in raw:
            raise InventoryError(host, f"{where}.{key}", "missing", show_value=False)
    if not isinstance(raw["name"], str) or WAN_NAME.fullmatch(raw["name"]) is None:
        raise InventoryError(host, f"{where}.name", "must be 1-15 characters of a-z, 0-9, _ and -, starting with a letter", raw["name"])
    if "device" in required and not is_ifname(raw["device"]):
        raise InventoryError(host, f"{where}.device", "not a Linux interface name (1-15 characters, no '/', ':' or spaces)", raw["device"])
    return where


def _each_item(host: str, field: str, raw: Any, parse: Callable[[str, int, Any, str], Any], kind: str,
               maximum: int, why: str = "") -> list:
    """A non-empty list of at most ``maximum`` items (WANs, LANs), each checked by ``parse``:
    every item's own mistakes at once, as the checks across items need them well formed."""
    if not isinstance(raw, list) or not raw:
        raise InventoryError(host, field, f"must be a non-empty list of {kind}", raw)
    if len(raw) > maximum:
        raise InventoryError(host, field, f"at most {maximum} {kind}{why}", len(raw))
    errors = Errors()
    items = [errors.check(parse, host, i, item, field) for i, item in enumerate(raw)]
    errors.raise_any()
    return items


def _unique(host: str, field: str, items: list, attrs: tuple[str, ...]) -> None:
    """No two items share a value of any of ``attrs`` (None is no value)."""
    for attr in attrs:
        seen: dict[Any, int] = {}
        for i, item in enumerate(items):
            value = getattr(item, attr)
            if value is None:
                continue
            if value in seen:
                j = seen[value]
                raise InventoryError(host, f"{field}[{i}] ({item.name}).{attr}", f"already used by {field}[{j}] ({items[j].name})", value)
            seen[value] = i


def parse_wan(host: str, index: int, raw: Any, field: str = "cpe_wans") -> Wan:
    where = _named_item(host, field, index, raw, WAN_KEYS, ("name", "device", "kind"), "name, device, kind, ipv4 ...")
    name = raw["name"]
    if not isinstance(raw["kind"], str) or raw["kind"] not in WAN_KINDS:
        raise InventoryError(host, f"{where}.kind", f"must be one of {', '.join(sorted(WAN_KINDS))}", raw["kind"])
    ipv4 = _addressing(host, f"{where}.ipv4", raw.get("ipv4", "dhcp"), 4)
    ipv6 = _addressing(host, f"{where}.ipv6", raw.get("ipv6", "none"), 6)
    pd_length = None
    if "pd_length" in raw:
        if ipv6 != "dhcp":
            raise InventoryError(host, f"{where}.pd_length", "only a WAN with ipv6: dhcp asks for a delegated prefix",
                                 raw["pd_length"])
        pd_length = integer(host, f"{where}.pd_length", raw["pd_length"], *PD_LENGTH_RANGE)
    elif ipv6 == "dhcp":
        pd_length = DEFAULT_PD_LENGTH
    rate, rtt_ms = _line(host, where, raw)
    return Wan(
        name=name,
        device=raw["device"],
        kind=raw["kind"],
        ipv4=ipv4,
        ipv6=ipv6,
        weight=integer(host, f"{where}.weight", raw.get("weight", 1), *WEIGHT_RANGE),
        backup=boolean(host, f"{where}.backup", raw.get("backup", False)),
        table=parse_table(host, f"{where}.table", raw["table"]) if "table" in raw else None,
        nat=boolean(host, f"{where}.nat", raw.get("nat", True)),
        probes=(_probes(host, f"{where}.probes", raw["probes"], ipv4, ipv6) if "probes" in raw
                else DEFAULT_PROBES),
        pd_length=pd_length,
        rate=rate,
        rtt_ms=rtt_ms,
        **{key: _uci_interface(host, f"{where}.{key}", raw[key]) for key in ("uci_interface", "uci_interface6") if key in raw},
    )


def _uci_interface(host: str, field: str, value: Any) -> str:
    if not isinstance(value, str) or UCI_INTERFACE.fullmatch(value) is None:
        raise InventoryError(host, field, "not a netifd interface name (1-15 characters of A-Z, a-z, 0-9 and _)", value)
    return value


def openwrt_interfaces(host: str, index: int, wan: Wan, field: str = "cpe_wans") -> tuple[str, str]:
    """The netifd interfaces of an OpenWrt WAN: its ``uci_interface`` (default: its name) and
    ``uci_interface6`` (default: that and 6, as OpenWrt's own wan and wan6)."""
    where = f"{field}[{index}] ({wan.name})"
    iface = wan.uci_interface
    if iface is None:
        if UCI_INTERFACE.fullmatch(wan.name) is None:
            raise InventoryError(host, f"{where}.uci_interface", "missing: the WAN's name is no netifd interface name "
                                 "(a-z, 0-9 and _): name its interface in /etc/config/network", show_value=False)
        iface = wan.name
    iface6 = wan.uci_interface6
    if iface6 is None:
        iface6 = iface + "6"
        if UCI_INTERFACE.fullmatch(iface6) is None:
            raise InventoryError(host, f"{where}.uci_interface6", f"missing: {iface}6 is over 15 characters: name the "
                                 "WAN's DHCPv6 interface", show_value=False)
    return iface, iface6


def number_tables(host: str, wans: list[Wan], table_base: int, field: str = "wans", *,
                  error: type[InventoryError] = InventoryError) -> list[Wan]:
    """The WANs with a routing table each: its own ``table``, or ``table_base`` + 1 + its index
    (as wand numbers them); a number that falls on a kernel table is an error on table_base."""
    numbered = []
    for i, wan in enumerate(wans):
        if wan.table is None:
            table = table_base + 1 + i
            if table in RESERVED_TABLES:
                raise error(host, "table_base", f"numbers {field}[{i}] ({wan.name}) into the kernel's table {table}", table_base)
            wan = dataclasses.replace(wan, table=table)
        numbered.append(wan)
    return numbered


def parse_wans(host: str, raw: Any, field: str = "cpe_wans") -> list[Wan]:
    """Check a CPE's WAN list (the inventory's ``cpe_wans``) and return it normalised.
    ``field`` is the list's name in messages (a daemon's config calls it ``wans``)."""
    wans = _each_item(host, field, raw, parse_wan, "WANs", MAX_WANS, " (the kernel's MPTCP endpoint limit)")
    _unique(host, field, wans, ("name", "device", "table", "uci_interface", "uci_interface6"))
    if all(w.backup for w in wans):
        raise InventoryError(host, field, "every WAN is a backup: at least one must carry traffic normally", [w.name for w in wans])
    return wans


PLATFORMS = ("Debian", "OpenWrt")


def platform(host: str, distribution: Any) -> str:
    """The platform a role's data and tasks are chosen by, from Ansible's ``distribution`` fact."""
    if distribution not in PLATFORMS:
        raise InventoryError(host, "ansible_facts.distribution", f"unsupported platform; mptcp-cpe runs on {' or '.join(PLATFORMS)}", distribution)
    return distribution


# DHCPv4 codes 0 (pad) and 255 (end) are not options; DHCPv6 codes are 16 bits, 0 unused.
OPTION_CODE_RANGE = {4: (1, 254), 6: (1, 65535)}


def option_code(host: str, field: str, value: Any, family: int) -> int:
    """A DHCP option code from an inventory (never a constant in logic)."""
    return integer(host, field, value, *OPTION_CODE_RANGE[family])


# ---------------------------------------------------------------- the LANs

LAN_KEYS = frozenset({"name", "device", "ipv4", "ipv6", "pd_subnet", "dhcp"})
LAN_DHCP_KEYS = frozenset({"pool", "ranges"})
MAX_LANS = 16


@dataclass(frozen=True)
class AddressRange:
    """A range of IPv4 addresses, written as DHCP servers write pools: ``FIRST - LAST``."""

    first: ipaddress.IPv4Address
    last: ipaddress.IPv4Address

    def __str__(self) -> str:
        return f"{self.first} - {self.last}"

    @property
    def prefixes(self) -> tuple[ipaddress.IPv4Network, ...]:
        """The range as the fewest prefixes (policy rules match prefixes, not ranges)."""
        return tuple(ipaddress.summarize_address_range(self.first, self.last))

    def overlaps(self, other: "AddressRange") -> bool:
        return self.first <= other.last and other.first <= self.last

    def __contains__(self, addr: ipaddress.IPv4Address) -> bool:
        return self.first <= addr <= self.last


@dataclass(frozen=True)
class LanDhcp:
    """What the CPE's DHCP server hands out on a LAN (role cpe_lan_dhcp): ordinary leases
    from ``pool`` and, for single-homed MPTCP hosts (draft-wr-mptcp-single-homed), one range
    per WAN after the first, in cpe_wans order: the host's k-th extra address comes from
    ``ranges[k-1]`` and leaves by that WAN."""

    pool: AddressRange
    ranges: tuple[tuple[str, AddressRange], ...] = ()  # (WAN name, its range)

    def as_dict(self) -> dict[str, Any]:
        return {"pool": str(self.pool), "ranges": {w: str(r) for w, r in self.ranges}}


@dataclass(frozen=True)
class Lan:
    """A LAN of the CPE: its device, the CPE's IPv4 address with the LAN's prefix (or none),
    and the CPE's IPv6 addresses with their prefixes (none, one or several)."""

    name: str
    device: str
    ipv4: ipaddress.IPv4Interface | None
    ipv6: tuple[ipaddress.IPv6Interface, ...] = ()
    # Which /64 of each WAN's delegated prefix this LAN gets (None: none of them).
    pd_subnet: int | None = None
    dhcp: LanDhcp | None = None  # the CPE's DHCPv4 server on this LAN (None: none)

    @property
    def prefixes(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(i.network for i in ((self.ipv4,) if self.ipv4 else ()) + self.ipv6)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "device": self.device, "ipv4": str(self.ipv4) if self.ipv4 else "none",
                "ipv6": [str(i) for i in self.ipv6], "pd_subnet": "none" if self.pd_subnet is None else self.pd_subnet,
                **({"dhcp": self.dhcp.as_dict()} if self.dhcp else {})}


def _lan_address(host: str, field: str, raw: Any, version: int) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    example = "198.18.1.1/24" if version == 4 else "2001:db8:0:100::1/64"
    if not isinstance(raw, str) or "/" not in raw:
        raise InventoryError(host, field, f"not the CPE's IPv{version} address with the LAN's prefix length, like {example}", raw)
    try:
        iface = ipaddress.ip_interface(raw)
    except ValueError:
        raise InventoryError(host, field, f"not an IPv{version} address with prefix length, like {example}", raw) from None
    if iface.version != version:
        raise InventoryError(host, field, f"not an IPv{version} address", raw)
    net = iface.network
    if version == 4 and net.prefixlen > 30:
        raise InventoryError(host, field, "a LAN needs room for hosts: at most /30", raw)
    if version == 6 and net.prefixlen > 64 and not iface.ip.is_link_local:
        raise InventoryError(host, field, "an IPv6 LAN is at most /64 (SLAAC needs 64 bits of interface id)", raw)
    if version == 4 and iface.ip in (net.network_address, net.broadcast_address):
        raise InventoryError(host, field, f"is the network or broadcast address of {net}", raw)
    if iface.ip.is_multicast or iface.ip.is_loopback or iface.ip.is_unspecified or iface.ip.is_link_local:
        raise InventoryError(host, field, "is not a global or site unicast address", raw)
    return iface


def parse_lan(host: str, index: int, raw: Any, field: str = "cpe_lans") -> Lan:
    where = _named_item(host, field, index, raw, LAN_KEYS, ("name", "device"), "name, device, ipv4 and ipv6")
    name = raw["name"]
    v4 = raw.get("ipv4", "none")
    ipv4 = None if v4 == "none" else _lan_address(host, f"{where}.ipv4", v4, 4)
    v6 = raw.get("ipv6", [])
    if v6 == "none":
        v6 = []
    if not isinstance(v6, list):
        raise InventoryError(host, f"{where}.ipv6", "must be a list of the CPE's IPv6 addresses with prefix length, or none", v6)
    ipv6 = tuple(_lan_address(host, f"{where}.ipv6[{i}]", a, 6) for i, a in enumerate(v6))
    if ipv4 is None and not ipv6:
        raise InventoryError(host, where, "has no address: give ipv4, ipv6 or both", raw)
    # The /64 number inside every delegated prefix: the LAN's index unless the inventory says.
    pd = raw.get("pd_subnet", index)
    pd_subnet = None if pd == "none" else integer(host, f"{where}.pd_subnet", pd, 0, 2 ** (64 - PD_LENGTH_RANGE[0]) - 1)
    dhcp = _lan_dhcp(host, f"{where}.dhcp", raw["dhcp"], ipv4) if raw.get("dhcp") is not None else None
    return Lan(name, raw["device"], ipv4, ipv6, pd_subnet, dhcp)


def _address_range(host: str, field: str, raw: Any, lan: ipaddress.IPv4Interface) -> AddressRange:
    """``FIRST - LAST`` inside the LAN's prefix, neither end its network or broadcast
    address, and not holding the CPE's own address."""
    net = lan.network
    parts = raw.split("-") if isinstance(raw, str) else []
    if len(parts) != 2:
        raise InventoryError(host, field, f"must be 'FIRST - LAST' inside {net}", raw)
    try:
        first, last = (ipaddress.IPv4Address(p.strip()) for p in parts)
    except ValueError:
        raise InventoryError(host, field, f"must be 'FIRST - LAST', two IPv4 addresses inside {net}", raw) from None
    if first > last:
        raise InventoryError(host, field, "its first address is after its last", raw)
    if first <= net.network_address or last >= net.broadcast_address:
        raise InventoryError(host, field, f"must lie inside {net}, without its network and broadcast addresses", raw)
    r = AddressRange(first, last)
    if lan.ip in r:
        raise InventoryError(host, field, f"holds the CPE's own address {lan.ip}", raw)
    return r


def _lan_dhcp(host: str, field: str, raw: Any, ipv4: ipaddress.IPv4Interface | None) -> LanDhcp:
    if not isinstance(raw, dict):
        raise InventoryError(host, field, "must be a mapping with pool and, for single-homed MPTCP hosts, ranges", raw)
    only_keys(host, field, raw, LAN_DHCP_KEYS)
    if ipv4 is None:
        raise InventoryError(host, field, "a LAN without ipv4 has nothing to lease", raw)
    if "pool" not in raw:
        raise InventoryError(host, f"{field}.pool", "missing", show_value=False)
    pool = _address_range(host, f"{field}.pool", raw["pool"], ipv4)
    ranges_raw = raw.get("ranges", {})
    if not isinstance(ranges_raw, dict):
        raise InventoryError(host, f"{field}.ranges", "must map each WAN after the first to its range 'FIRST - LAST'", ranges_raw)
    ranges: list[tuple[str, AddressRange]] = []
    for wan, value in ranges_raw.items():
        where = f"{field}.ranges.{wan}"
        r = _address_range(host, where, value, ipv4)
        if r.overlaps(pool):
            raise InventoryError(host, where, f"overlaps the pool {pool}", value)
        for other_wan, other in ranges:
            if r.overlaps(other):
                raise InventoryError(host, where, f"overlaps the range {other} of WAN {other_wan}", value)
        ranges.append((str(wan), r))
    return LanDhcp(pool, tuple(ranges))


def _lan_dhcp_wans(host: str, where: str, dhcp: LanDhcp, wans: list[Wan]) -> LanDhcp:
    """The ranges in cpe_wans order, one for every WAN after the first (k keeps meaning the
    same WAN: the k-th range leaves by the (k+1)-th WAN), or none at all."""
    if not dhcp.ranges:
        return dhcp
    given = dict(dhcp.ranges)
    names = [w.name for w in wans]
    for wan in given:
        if wan not in names:
            raise InventoryError(host, f"{where}.dhcp.ranges.{wan}", f"is not a WAN of cpe_wans ({', '.join(names)})", wan)
        if names and wan == names[0]:
            raise InventoryError(host, f"{where}.dhcp.ranges.{wan}",
                                 "is the first WAN, the path of the pool's leases: ranges are for the WANs after it", wan)
    missing = [n for n in names[1:] if n not in given]
    if missing:
        raise InventoryError(host, f"{where}.dhcp.ranges",
                             f"has no range for WAN {', '.join(missing)}: give every WAN after the first one, or no ranges",
                             sorted(given))
    return dataclasses.replace(dhcp, ranges=tuple((n, given[n]) for n in names[1:]))


def parse_lans(host: str, raw: Any, wans: list[Wan] | None = None, field: str = "cpe_lans") -> list[Lan]:
    """Check a CPE's LAN list (``cpe_lans``): names and devices unique, no device a WAN's,
    no two prefixes overlapping, none overlapping a WAN's static prefix."""
    lans = _each_item(host, field, raw, parse_lan, "LANs", MAX_LANS)
    _unique(host, field, lans, ("name", "device"))
    wan_nets = {}
    for wan in wans or ():
        for a in (wan.ipv4, wan.ipv6):
            if isinstance(a, StaticAddress):
                wan_nets[a.interface.network] = wan.name
    owners: list[tuple[Any, str]] = []
    for i, lan in enumerate(lans):
        where = f"{field}[{i}] ({lan.name})"
        wan = next((w for w in wans or () if w.device == lan.device), None)
        if wan is not None:
            raise InventoryError(host, f"{where}.device", f"is the device of WAN {wan.name}", lan.device)
        for net in lan.prefixes:
            for other, owner in owners:
                if net.version == other.version and net.overlaps(other):
                    raise InventoryError(host, where, f"prefix {net} overlaps {other} of LAN {owner}", str(net))
            for other, owner in wan_nets.items():
                if net.version == other.version and net.overlaps(other):
                    raise InventoryError(host, where, f"prefix {net} overlaps {other} of WAN {owner}", str(net))
            owners.append((net, lan.name))
    _unique(host, field, lans, ("pd_subnet",))
    if wans is not None:
        lans = [dataclasses.replace(lan, dhcp=_lan_dhcp_wans(host, f"{field}[{i}] ({lan.name})", lan.dhcp, wans))
                if lan.dhcp is not None else lan for i, lan in enumerate(lans)]
    # Each LAN's /64 must exist inside the shortest-asked (longest length) delegated prefix.
    pd_wans = [w for w in wans or () if w.pd_length is not None]
    for i, lan in enumerate(lans):
        for wan in pd_wans:
            if lan.pd_subnet is not None and lan.pd_subnet >= 2 ** (64 - wan.pd_length):
                raise InventoryError(host, f"{field}[{i}] ({lan.name}).pd_subnet",
                                     f"WAN {wan.name}'s /{wan.pd_length} has only {2 ** (64 - wan.pd_length)} /64s "
                                     f"(0-{2 ** (64 - wan.pd_length) - 1})", lan.pd_subnet)
    return lans


# ---------------------------------------------------------------- prefixes and port forwards

def parse_prefixes(host: str, field: str, raw: Any, *, allow_empty: bool = True) -> tuple[Any, ...]:
    """A list of IPv4/IPv6 prefixes written with their length (host bits zero)."""
    if not isinstance(raw, list) or (not raw and not allow_empty):
        raise InventoryError(host, field, "must be a " + ("" if allow_empty else "non-empty ") + "list of prefixes like 192.0.2.0/24", raw)
    errors = Errors()
    out = tuple(errors.check(_prefix, host, f"{field}[{i}]", item) for i, item in enumerate(raw))
    errors.raise_any()
    return out


def _prefix(host: str, field: str, item: Any):
    if not isinstance(item, str) or "/" not in item:
        raise InventoryError(host, field, "not a prefix with its length, like 192.0.2.0/24 or 2001:db8::/32", item)
    try:
        return ipaddress.ip_network(item, strict=True)
    except ValueError:
        raise InventoryError(host, field, "not a prefix (an address and a length, host bits zero)", item) from None


PROTOCOLS = ("tcp", "udp")
FORWARD_KEYS = frozenset({"name", "proto", "port", "to", "to_port", "wans"})
PORT_RANGE = re.compile(r"(\d{1,5})(?:-(\d{1,5}))?")


@dataclass(frozen=True)
class PortForward:
    """Connections from the internet to ``port`` (one port or a range) of the WANs named
    (all when empty), sent to a LAN host: IPv4 is translated to ``to``:``to_port``; IPv6 is
    only let through to ``to`` (no translation: LAN addresses are global)."""

    name: str
    proto: str
    ports: tuple[int, int]
    to: ipaddress.IPv4Address | ipaddress.IPv6Address
    to_ports: tuple[int, int]
    wans: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        def text(r):
            return r[0] if r[0] == r[1] else f"{r[0]}-{r[1]}"

        return {"name": self.name, "proto": self.proto, "port": text(self.ports), "to": str(self.to),
                "to_port": text(self.to_ports), "wans": list(self.wans)}


def _port_range(host: str, field: str, raw: Any) -> tuple[int, int]:
    if isinstance(raw, int) and not isinstance(raw, bool):
        lo = hi = raw
    elif isinstance(raw, str) and PORT_RANGE.fullmatch(raw.strip()):
        m = PORT_RANGE.fullmatch(raw.strip())
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
    else:
        raise InventoryError(host, field, "must be a port (1-65535) or a range like 8000-8010", raw)
    if not (1 <= lo <= hi <= 65535):
        raise InventoryError(host, field, "must be a port (1-65535) or a range like 8000-8010, low to high", raw)
    return lo, hi


def parse_port_forwards(host: str, raw: Any, lans: list[Lan], wans: list[Wan], *,
                        reserved: dict[tuple[str, int], str] | None = None,
                        field: str = "cpe_port_forwards") -> list[PortForward]:
    """Check the port forwards: each to an address inside a LAN prefix (not the CPE's own),
    ports in range, WANs that exist, no two forwards of one port of one protocol on a WAN,
    and no clash with a port the CPE itself needs (``reserved``: (proto, port) -> what it is,
    e.g. the converter's listen port and the MCP port)."""
    if not isinstance(raw, list):
        raise InventoryError(host, field, "must be a list of port forwards", raw)
    errors = Errors()
    parsed = [errors.check(_port_forward, host, field, i, item, lans, wans, reserved) for i, item in enumerate(raw)]
    errors.raise_any()
    wan_names = [w.name for w in wans]
    for i, fw in enumerate(parsed):
        where = f"{field}[{i}] ({fw.name})"
        for j, other in enumerate(parsed[:i]):
            if other.name == fw.name:
                raise InventoryError(host, f"{where}.name", f"already used by {field}[{j}]", fw.name)
            shared = set(fw.wans or wan_names) & set(other.wans or wan_names)
            if (other.proto == fw.proto and other.to.version == fw.to.version and shared
                    and other.ports[0] <= fw.ports[1] and fw.ports[0] <= other.ports[1]):
                raise InventoryError(host, f"{where}.port", f"overlaps {field}[{j}] ({other.name}) on WAN {sorted(shared)[0]}", raw[i]["port"])
    return parsed


def _port_forward(host: str, field: str, i: int, item: Any, lans: list[Lan], wans: list[Wan],
                  reserved: dict[tuple[str, int], str] | None) -> PortForward:
    """One forward's own checks (those against the other forwards are parse_port_forwards')."""
    wan_names = [w.name for w in wans]
    where = _named_item(host, field, i, item, FORWARD_KEYS, ("name", "port", "to"), "name, proto, port and to")
    name = item["name"]
    proto = item.get("proto", "tcp")
    if proto not in PROTOCOLS:
        raise InventoryError(host, f"{where}.proto", f"must be one of {', '.join(PROTOCOLS)}", proto)
    ports = _port_range(host, f"{where}.port", item["port"])
    try:
        if not isinstance(item["to"], str):
            raise ValueError
        to = ipaddress.ip_address(item["to"])
    except ValueError:
        raise InventoryError(host, f"{where}.to", "not an IPv4 or IPv6 address of a LAN host", item["to"]) from None
    lan = next((lan for lan in lans for net in lan.prefixes if to in net), None)
    if lan is None:
        nets = ", ".join(str(n) for lan_ in lans for n in lan_.prefixes if n.version == to.version) or "none"
        raise InventoryError(host, f"{where}.to", f"not inside a LAN prefix (the LANs' IPv{to.version} prefixes: {nets})", item["to"])
    own = [a.ip for lan_ in lans for a in ((lan_.ipv4,) if lan_.ipv4 else ()) + lan_.ipv6]
    net = next(n for n in lan.prefixes if to in n)
    if to in own:
        raise InventoryError(host, f"{where}.to", "is the CPE's own address: a forward goes to a LAN host", item["to"])
    if to.version == 4 and to in (net.network_address, net.broadcast_address):
        raise InventoryError(host, f"{where}.to", f"is the network or broadcast address of {net}", item["to"])
    if "to_port" in item:
        to_ports = _port_range(host, f"{where}.to_port", item["to_port"])
        if to_ports[1] - to_ports[0] != ports[1] - ports[0]:
            raise InventoryError(host, f"{where}.to_port", f"must span as many ports as port ({ports[1] - ports[0] + 1})", item["to_port"])
        if to.version == 6 and to_ports != ports:
            raise InventoryError(host, f"{where}.to_port", "IPv6 forwards are not translated: to_port must be port or absent", item["to_port"])
    else:
        to_ports = ports
    fw_wans = item.get("wans", [])
    if not isinstance(fw_wans, list) or any(w not in wan_names for w in fw_wans) or len(set(fw_wans)) != len(fw_wans):
        raise InventoryError(host, f"{where}.wans", f"must be a list of this CPE's WAN names, each once ({', '.join(wan_names)}), or empty for all", fw_wans)
    for (r_proto, r_port), what in (reserved or {}).items():
        if r_proto == proto and ports[0] <= r_port <= ports[1]:
            raise InventoryError(host, f"{where}.port", f"includes {proto} port {r_port}, the {what}", item["port"])
    return PortForward(name, proto, ports, to, to_ports, tuple(fw_wans))
