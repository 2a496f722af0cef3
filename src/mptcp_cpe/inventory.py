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
WAN_KEYS = frozenset({"name", "device", "kind", "ipv4", "ipv6", "weight", "backup"})
WAN_NAME = re.compile(r"[a-z][a-z0-9_-]{0,14}")
# Linux: 1..15 octets (IFNAMSIZ - 1), no '/', no whitespace, not '.' or '..'; ':' is
# refused too (it marks an alias label, not a device).
IFNAME = re.compile(r"[^/\s:]+")
IFNAME_MAX_OCTETS = 15
WEIGHT_RANGE = (1, 256)  # nexthop weights in a multipath route


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


@dataclass(frozen=True)
class StaticAddress:
    """A static interface address with its gateway (which must lie inside its prefix)."""

    interface: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address

    def as_dict(self) -> dict[str, str]:
        return {"address": str(self.interface), "gateway": str(self.gateway)}


@dataclass(frozen=True)
class Wan:
    name: str
    device: str
    kind: str
    ipv4: str | StaticAddress  # "dhcp", "none" or a static address
    ipv6: str | StaticAddress  # "dhcp", "slaac", "none" or a static address
    weight: int
    backup: bool

    def as_dict(self) -> dict[str, Any]:
        def addr(a):
            return a.as_dict() if isinstance(a, StaticAddress) else a

        return {
            "name": self.name,
            "device": self.device,
            "kind": self.kind,
            "ipv4": addr(self.ipv4),
            "ipv6": addr(self.ipv6),
            "weight": self.weight,
            "backup": self.backup,
        }


def _static(host: str, field: str, value: dict, version: int) -> StaticAddress:
    unknown = set(value) - {"address", "gateway"}
    if unknown:
        raise InventoryError(host, field, f"unknown keys {_keys(unknown)}; a static address has address and gateway", value)
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


def parse_wan(host: str, index: int, raw: Any) -> Wan:
    where = f"cpe_wans[{index}]"
    if not isinstance(raw, dict):
        raise InventoryError(host, where, "must be a mapping with name, device, kind, ipv4 ...", raw)
    if isinstance(raw.get("name"), str):
        where = f"cpe_wans[{index}] ({raw['name']})"
    unknown = set(raw) - WAN_KEYS
    if unknown:
        raise InventoryError(host, where, f"unknown keys {_keys(unknown)}; allowed: {sorted(WAN_KEYS)}", show_value=False)
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
    backup = raw.get("backup", False)
    if not isinstance(backup, bool):
        raise InventoryError(host, f"{where}.backup", "must be true or false", backup)
    return Wan(
        name=name,
        device=raw["device"],
        kind=raw["kind"],
        ipv4=_addressing(host, f"{where}.ipv4", raw.get("ipv4", "dhcp"), 4),
        ipv6=_addressing(host, f"{where}.ipv6", raw.get("ipv6", "none"), 6),
        weight=_int(host, f"{where}.weight", raw.get("weight", 1), *WEIGHT_RANGE),
        backup=backup,
    )


def parse_wans(host: str, raw: Any) -> list[Wan]:
    """Check a CPE's WAN list (the inventory's ``cpe_wans``) and return it normalised."""
    if not isinstance(raw, list) or not raw:
        raise InventoryError(host, "cpe_wans", "must be a non-empty list of WANs", raw)
    if len(raw) > MAX_WANS:
        raise InventoryError(host, "cpe_wans", f"at most {MAX_WANS} WANs (the kernel's MPTCP endpoint limit)", len(raw))
    wans = [parse_wan(host, i, w) for i, w in enumerate(raw)]
    for attr in ("name", "device"):
        seen: dict[str, int] = {}
        for i, wan in enumerate(wans):
            value = getattr(wan, attr)
            if value in seen:
                raise InventoryError(host, f"cpe_wans[{i}].{attr}", f"already used by cpe_wans[{seen[value]}]", value)
            seen[value] = i
    if all(w.backup for w in wans):
        raise InventoryError(host, "cpe_wans", "every WAN is a backup: at least one must carry traffic normally", [w.name for w in wans])
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
