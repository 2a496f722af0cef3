"""What the host should hold for its paths, as pure functions: the macvlans' names and MACs,
the kernel objects of one extra path's lease, which paths to start and stop for a given
mp-avail, the IPv6 endpoints for the LAN interface's addresses, and the MPTCP limits. No
sockets here.

Ownership (so a restart converges and a stop removes exactly the host's work): addresses,
routes and rules carry ``route_protocol`` (IFA_PROTO for addresses), rules sit in
``[rule_priority, rule_priority + 100)``, endpoints use ids ``endpoint_id_base`` ..
``+ 15`` (IPv4 path k: ``+ k - 1``; IPv6: ``+ 8`` on), the macvlans carry ``ALIAS``.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from socket import AF_INET

from ..wand.plan import Address, Endpoint, Route, Rule
from .config import IFNAME_MAX_OCTETS_SUFFIX, MAX_PATHS, HostConfig

ALIAS = "mptcp-cpe host path"  # the macvlans' ifalias: what marks them as ours
MAIN_TABLE = 254
V6_ID_OFFSET = MAX_PATHS  # IPv6 endpoint ids start after the IPv4 paths'


def macvlan_name(parent: str, k: int) -> str:
    """``<parent>.mp<k>``, the parent's name cut so the whole fits IFNAMSIZ."""
    return parent.encode()[:IFNAME_MAX_OCTETS_SUFFIX].decode(errors="ignore") + f".mp{k}"


def _mac_bytes(mac: str) -> bytes:
    parts = mac.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"not a MAC address: {mac!r}")
    return bytes.fromhex("".join(parts))


def _local_unicast(digest: bytes) -> bytes:
    # Locally administered (bit 1 of the first octet set), unicast (bit 0 clear).
    return bytes([(digest[0] & 0xFC) | 0x02]) + digest[1:6]


def path_macs(parent_mac: str, count: int = MAX_PATHS) -> dict[int, str]:
    """The MAC of each path's macvlan, 1..count: a hash of the parent's MAC and k, so the
    same host asks for the same leases after a restart, and hosts on one LAN do not
    collide the way a MAC plus k would. A hash that repeats the parent's or an earlier
    path's MAC is rehashed (deterministically)."""
    parent = _mac_bytes(parent_mac.lower())
    taken = {parent}
    out: dict[int, str] = {}
    for k in range(1, count + 1):
        attempt = 0
        while True:
            digest = hashlib.sha256(b"mptcp-cpe host path" + parent + bytes([k, attempt])).digest()
            mac = _local_unicast(digest)
            if mac not in taken:
                break
            attempt += 1
        taken.add(mac)
        out[k] = ":".join(f"{b:02x}" for b in mac)
    return out


def path_mac(parent_mac: str, k: int) -> str:
    return path_macs(parent_mac, k)[k]


@dataclass(frozen=True)
class Lease:
    """A DHCPv4 lease as udhcpc reports it."""

    address: str  # "a/len"
    router: str | None

    @property
    def ip(self) -> str:
        return str(ipaddress.ip_interface(self.address).ip)


def lease_from_env(env: dict[str, str]) -> Lease:
    """udhcpc's ``ip``, ``mask`` (a prefix length) or ``subnet`` (dotted) and ``router``."""
    ip = env.get("ip", "")
    mask = env.get("mask") or env.get("subnet") or "32"
    iface = ipaddress.IPv4Interface(f"{ip}/{mask}")  # ValueError for a malformed lease
    routers = env.get("router", "").split()
    router = str(ipaddress.IPv4Address(routers[0])) if routers else None
    return Lease(address=f"{iface.ip}/{iface.network.prefixlen}", router=router)


@dataclass(frozen=True)
class PathObjects:
    """What one extra path's lease puts in the kernel."""

    address: Address
    routes: tuple[Route, ...]
    rule: Rule
    endpoint: Endpoint


def endpoint_id(cfg: HostConfig, k: int) -> int:
    return cfg.endpoint_id_base + k - 1


def path_objects(cfg: HostConfig, k: int, device: str, lease: Lease) -> PathObjects:
    """Path k's lease on its macvlan: the address without a prefix route in main (the
    primary's route to the LAN stays the only one), table table_base + k with the subnet
    and the default route out of the macvlan, a rule sending the address's packets there,
    and a subflow endpoint."""
    iface = ipaddress.IPv4Interface(lease.address)
    table = cfg.table(k)
    routes = []
    if iface.network.prefixlen < 32:
        routes.append(Route(AF_INET, table, str(iface.network), device=device, prefsrc=str(iface.ip)))
    if lease.router:
        routes.append(Route(AF_INET, table, "default", device=device, gateway=lease.router))
    rule = Rule(AF_INET, cfg.rule_priority + k, table, src=f"{iface.ip}/32")
    return PathObjects(Address(device, lease.address), tuple(routes), rule,
                       Endpoint(endpoint_id(cfg, k), str(iface.ip), device, False))


def primary_objects(cfg: HostConfig, lease: Lease) -> tuple[Address, Route | None]:
    """The primary lease, as udhcpc's default.script sets it: the address (with its prefix
    route) and the default route in main."""
    route = Route(AF_INET, MAIN_TABLE, "default", device=cfg.interface, gateway=lease.router) if lease.router else None
    return Address(cfg.interface, lease.address), route


def paths_to_change(running: set[int], mp_avail: int) -> tuple[list[int], list[int]]:
    """(paths to start, paths to stop) for mp-avail = n: paths 1..n run, the others not."""
    wanted = set(range(1, min(mp_avail, MAX_PATHS) + 1))
    return sorted(wanted - running), sorted(running - wanted, reverse=True)


def v6_prefix_addresses(addresses: list[str]) -> list[str]:
    """One address per /64 (the lowest), in prefix order: each SLAAC prefix is one path out
    of the CPE. ``addresses`` are usable global ones, "a/len"."""
    chosen: dict[ipaddress.IPv6Network, ipaddress.IPv6Address] = {}
    for a in addresses:
        ip = ipaddress.IPv6Interface(a).ip
        net = ipaddress.IPv6Network(f"{ip}/64", strict=False)
        if net not in chosen or ip < chosen[net]:
            chosen[net] = ip
    return [str(chosen[n]) for n in sorted(chosen)]


def v6_endpoints(cfg: HostConfig, device: str, have: dict[int, Endpoint], addresses: list[str]) -> tuple[list[Endpoint], list[Endpoint]]:
    """(endpoints to remove, endpoints to add) so that each of ``addresses`` (one per /64)
    has a subflow endpoint; an address keeps its id while it stays, a new one takes the
    lowest free id. Beyond the ids there are, addresses wait for a free one."""
    first = cfg.endpoint_id_base + V6_ID_OFFSET
    ids = range(first, first + MAX_PATHS)
    want = set(addresses)
    remove = [e for i, e in sorted(have.items()) if e.address not in want or e.device != device]
    kept = {e.address for e in have.values() if e not in remove}
    free = [i for i in ids if i not in have or have[i] in remove]
    add = []
    for a in addresses:
        if a in kept or not free:
            continue
        add.append(Endpoint(free.pop(0), a, device, False))
    return remove, add


def limits(paths: int, v6_endpoints: int) -> tuple[int, int]:
    """(subflows, add_addr_accepted) floors: a connection uses one family, so the larger of
    the IPv4 paths and the IPv6 prefixes, within the kernel's maximum."""
    n = min(MAX_PATHS, max(paths, v6_endpoints))
    return n, n
