"""The inventory model: what an operator writes for a CPE, checked before anything is applied.

One checker for every consumer (the roles' filter plugins, the lab tool, the daemons'
config loaders), so that a mistake reads the same wherever it is caught:
``<host>: <field>: <problem> (got <value>)``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

# The in-kernel MPTCP path manager accepts at most 8 endpoints and 8 subflows
# (MPTCP_PM_ADDR_MAX); more WANs than that could never all carry a subflow.
MAX_WANS = 8

WAN_KINDS = frozenset({"dsl", "fibre", "cable", "ethernet", "lte", "5g", "satellite"})
WAN_KEYS = frozenset({"name", "device", "kind", "ipv4", "ipv6", "weight", "backup", "table", "nat", "probes"})
WAN_NAME = re.compile(r"[a-z][a-z0-9_-]{0,14}")
# Linux: 1..15 octets (IFNAMSIZ - 1), no '/', no whitespace, not '.' or '..'; ':' is
# refused too (it marks an alias label, not a device).
IFNAME = re.compile(r"[^/\s:]+")
IFNAME_MAX_OCTETS = 15
WEIGHT_RANGE = (1, 256)  # nexthop weights in a multipath route
# Routing tables: 32-bit ids; 0 (unspec), 253 (default), 254 (main) and 255 (local) are the kernel's.
TABLE_RANGE = (1, 2**32 - 1)
RESERVED_TABLES = frozenset({253, 254, 255})
PROBE_KINDS = ("icmp", "tcp")
PROBE_KEYS = frozenset({"kind", "target", "port"})


class InventoryError(ValueError):
    """A value in an inventory (or a config rendered from one) that cannot be used."""

    def __init__(self, host: str, field: str, problem: str, value: Any = None, *, show_value=True):
        self.host, self.field, self.problem, self.value = host, field, problem, value
        got = f" (got {value!r})" if show_value else ""
        super().__init__(f"{host}: {field}: {problem}{got}")


def is_ifname(value: Any) -> bool:
    return (isinstance(value, str) and IFNAME.fullmatch(value) is not None
            and len(value.encode()) <= IFNAME_MAX_OCTETS and value not in (".", ".."))


def _keys(keys) -> list[str]:
    # YAML keys may be ints, bools or None as well as strings: sort them all as text.
    return sorted(repr(k) if not isinstance(k, str) else k for k in keys)


def only_keys(host: str, field: str, raw: dict, allowed: frozenset, *, error: type[InventoryError] | None = None,
              hint: str | None = None, show_value: bool = False) -> None:
    """Refuse a mapping with keys outside ``allowed``, naming them and what is allowed
    (``hint`` says it in words); ``show_value`` adds the whole mapping (small ones)."""
    unknown = set(raw) - allowed
    if unknown:
        problem = f"unknown keys {_keys(unknown)}; {hint or f'allowed: {sorted(allowed)}'}"
        raise (error or InventoryError)(host, field, problem, raw, show_value=show_value)


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
    try:
        # A string only: ip_address() also takes integers and packed bytes, which no operator means.
        if not isinstance(value["gateway"], str):
            raise ValueError
        gateway = ipaddress.ip_address(value["gateway"])
    except ValueError:
        raise InventoryError(host, f"{field}.gateway", f"not an IPv{version} address", value["gateway"]) from None
    if gateway.version != version:
        raise InventoryError(host, f"{field}.gateway", f"not an IPv{version} address", value["gateway"])
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


def _int(host: str, field: str, value: Any, lo: int, hi: int) -> int:
    # bool is an int in Python; "weight: yes" is a typo, not a weight of 1.
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InventoryError(host, field, f"must be an integer from {lo} to {hi}", value)
    return value


def _bool(host: str, field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InventoryError(host, field, "must be true or false", value)
    return value


def parse_table(host: str, field: str, value: Any) -> int:
    table = _int(host, field, value, *TABLE_RANGE)
    if table in RESERVED_TABLES:
        raise InventoryError(host, field, "is one of the kernel's own tables (253 default, 254 main, 255 local)", value)
    return table


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
        port = _int(host, f"{field}.port", raw["port"], 1, 65535)
    elif "port" in raw:
        raise InventoryError(host, f"{field}.port", "only tcp probes have a port", raw["port"])
    return Probe(kind, target, port)


def _probes(host: str, field: str, raw: Any, ipv4: Any, ipv6: Any) -> tuple[Probe, ...]:
    if not isinstance(raw, list) or not raw:
        raise InventoryError(host, field, "must be a non-empty list of probes", raw)
    return tuple(_probe(host, f"{field}[{i}]", p, ipv4, ipv6) for i, p in enumerate(raw))


def parse_wan(host: str, index: int, raw: Any, field: str = "cpe_wans") -> Wan:
    where = f"{field}[{index}]"
    if not isinstance(raw, dict):
        raise InventoryError(host, where, "must be a mapping with name, device, kind, ipv4 ...", raw)
    if isinstance(raw.get("name"), str):
        where = f"{field}[{index}] ({raw['name']})"
    only_keys(host, where, raw, WAN_KEYS)
    for key in ("name", "device", "kind"):
        if key not in raw:
            raise InventoryError(host, f"{where}.{key}", "missing", show_value=False)
    name = raw["name"]
    if not isinstance(name, str) or WAN_NAME.fullmatch(name) is None:
        raise InventoryError(host, f"{where}.name", "must be 1-15 characters of a-z, 0-9, _ and -, starting with a letter", name)
    if not is_ifname(raw["device"]):
        raise InventoryError(host, f"{where}.device", "not a Linux interface name (1-15 characters, no '/', ':' or spaces)", raw["device"])
    if not isinstance(raw["kind"], str) or raw["kind"] not in WAN_KINDS:
        raise InventoryError(host, f"{where}.kind", f"must be one of {', '.join(sorted(WAN_KINDS))}", raw["kind"])
    ipv4 = _addressing(host, f"{where}.ipv4", raw.get("ipv4", "dhcp"), 4)
    ipv6 = _addressing(host, f"{where}.ipv6", raw.get("ipv6", "none"), 6)
    return Wan(
        name=name,
        device=raw["device"],
        kind=raw["kind"],
        ipv4=ipv4,
        ipv6=ipv6,
        weight=_int(host, f"{where}.weight", raw.get("weight", 1), *WEIGHT_RANGE),
        backup=_bool(host, f"{where}.backup", raw.get("backup", False)),
        table=parse_table(host, f"{where}.table", raw["table"]) if "table" in raw else None,
        nat=_bool(host, f"{where}.nat", raw.get("nat", True)),
        probes=(_probes(host, f"{where}.probes", raw["probes"], ipv4, ipv6) if "probes" in raw
                else DEFAULT_PROBES),
    )


def parse_wans(host: str, raw: Any, field: str = "cpe_wans") -> list[Wan]:
    """Check a CPE's WAN list (the inventory's ``cpe_wans``) and return it normalised.
    ``field`` is the list's name in messages (a daemon's config calls it ``wans``)."""
    if not isinstance(raw, list) or not raw:
        raise InventoryError(host, field, "must be a non-empty list of WANs", raw)
    if len(raw) > MAX_WANS:
        raise InventoryError(host, field, f"at most {MAX_WANS} WANs (the kernel's MPTCP endpoint limit)", len(raw))
    wans = [parse_wan(host, i, w, field) for i, w in enumerate(raw)]
    for attr in ("name", "device", "table"):
        seen: dict[Any, int] = {}
        for i, wan in enumerate(wans):
            value = getattr(wan, attr)
            if value is None:
                continue
            if value in seen:
                raise InventoryError(host, f"{field}[{i}] ({wan.name}).{attr}", f"already used by {field}[{seen[value]}] ({wans[seen[value]].name})", value)
            seen[value] = i
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
    return _int(host, field, value, *OPTION_CODE_RANGE[family])
