"""Which MCP addresses the converter may use: one pure verdict for the converter and for
``mptcp-cpe status``.

MCPs learned by DHCP are trusted only as far as the operator says (draft-boucadair-mptcp-dhc
§5: a rogue DHCP server can point customers at its own MCP): with ``mcp_prefixes`` set, an
address outside them is not used. Whatever the prefixes, an address that is one of the
CPE's own, inside one of its LAN prefixes, link-local, loopback, multicast or unspecified
is never an MCP: the converter would loop on itself or hand the LAN's traffic to a LAN
host. IPv4-mapped IPv6 addresses (as DHCPv6 may carry them) are judged as the IPv4
address they name.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass

from .state import learned_mcps

Prefix = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Refused:
    """An MCP address that is not used, and why (words that follow the address)."""

    address: str
    reason: str

    def __str__(self) -> str:
        return f"{self.address} ({self.reason})"


def _plain(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_problem(address: str, mcp_prefixes: Sequence[Prefix] = (), lan_prefixes: Sequence[Prefix] = (),
                    own: Container = frozenset()) -> str | None:
    """Why ``address`` must not be used as an MCP, or None. ``own``: the CPE's addresses
    (ipaddress objects; a `localaddrs.LocalAddresses` is one)."""
    try:
        ip = _plain(ipaddress.ip_address(address))
    except ValueError:
        return "not an IP address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        return "a multicast or broadcast address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_link_local:
        return "a link-local address"
    if ip in own:
        return "one of the CPE's own addresses"
    lan = next((net for net in lan_prefixes if ip.version == net.version and ip in net), None)
    if lan is not None:
        return f"inside the LAN prefix {lan}"
    if mcp_prefixes and not any(ip.version == net.version and ip in net for net in mcp_prefixes):
        return f"outside mcp_prefixes ({', '.join(str(n) for n in mcp_prefixes)})"
    return None


def mcp_verdicts(mcps: Iterable[Iterable[str]], mcp_prefixes: Sequence[Prefix] = (), lan_prefixes: Sequence[Prefix] = (),
                 own: Container = frozenset()) -> tuple[tuple[tuple[str, ...], ...], tuple[Refused, ...]]:
    """The MCP lists as they may be used (refused addresses taken out, an MCP left with none
    dropped, order kept), and each address refused with its reason (each once)."""
    usable: list[tuple[str, ...]] = []
    refused: list[Refused] = []
    for mcp in mcps:
        keep = []
        for address in mcp:
            problem = address_problem(address, mcp_prefixes, lan_prefixes, own)
            if problem is None:
                keep.append(address)
            elif all(r.address != address for r in refused):
                refused.append(Refused(address, problem))
        if keep:
            usable.append(tuple(keep))
    return tuple(usable), tuple(refused)


def state_verdicts(state: object, mcp_prefixes: Sequence[Prefix] = (), lan_prefixes: Sequence[Prefix] = (),
                   own: Container = frozenset()) -> dict[str, dict[str, list[dict[str, str]]]]:
    """The addresses of mcp.json refused, per WAN device and family, for ``status``:
    ``{"wan1": {"v4": [{"address": ..., "reason": ...}]}}``; WANs with none are left out."""
    out: dict[str, dict[str, list[dict[str, str]]]] = {}
    for device, fam, lists in learned_mcps(state):
        _, refused = mcp_verdicts(lists, mcp_prefixes, lan_prefixes, own)
        if refused:
            out.setdefault(device, {})[fam] = [{"address": r.address, "reason": r.reason} for r in refused]
    return out
