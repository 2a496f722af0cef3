"""What the kernel should hold, as a pure function of the config, what the kernel shows
about the WAN links, and the WANs' health; and the changes that take what wand owns now to
that. No sockets here: every routing decision is testable without a kernel.

Ownership (so a restart converges and a stop removes exactly wand's work): routes and rules
carry ``route_protocol``, rules sit in ``[rule_priority, rule_priority + 100)``, static WAN
addresses carry it as IFA_PROTO, MPTCP endpoints use ids from ``endpoint_id_base``, and the
NAT table is ``inet <nft_table>``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from socket import AF_INET, AF_INET6

from ..inventory import StaticAddress, Wan
from .config import WandConfig

FAMILIES = (AF_INET, AF_INET6)
FAMILY_KEY = {AF_INET: "ipv4", AF_INET6: "ipv6"}
MPTCP_LIMIT = 8  # the in-kernel path manager's maximum for subflows and add_addr_accepted

# Rule priorities inside wand's band: per-WAN source and output-device rules, then the main
# table without its default routes, then each WAN's LAN sources (after main, so LAN to LAN
# traffic stays inside: IPv6, the /64s from its delegated prefix; IPv4, the DHCP range of
# single-homed MPTCP hosts for that WAN, and the pool's TCP for the first), then the
# balanced default route.
FROM_OFFSET, OIF_OFFSET, SUPPRESS_OFFSET, LAN_FROM_OFFSET, DEFAULT_OFFSET = 10, 30, 50, 51, 60


def _fam(family: int) -> str:
    return "-4" if family == AF_INET else "-6"


@dataclass(frozen=True)
class Link:
    """One WAN device as the kernel shows it."""

    index: int
    up: bool  # administratively up with carrier
    addresses: dict[int, tuple[str, ...]]  # family -> usable global addresses "a/len", stable order
    gateways: dict[int, str]  # family -> gateway of a default route someone else installed (DHCP, RA)


@dataclass(frozen=True, order=True)
class Route:
    family: int
    table: int
    dst: str  # "default" or a prefix "a/len"
    device: str | None = None
    gateway: str | None = None
    prefsrc: str | None = None
    nexthops: tuple[tuple[str, str, int], ...] = ()  # (gateway, device, weight) for multipath

    @property
    def key(self) -> tuple[int, int, str]:
        return (self.family, self.table, self.dst)

    def __str__(self) -> str:
        if self.nexthops:
            via = " ".join(f"nexthop via {g} dev {d} weight {w}" for g, d, w in self.nexthops)
        else:
            via = (f"via {self.gateway} " if self.gateway else "") + f"dev {self.device}"
            via += f" src {self.prefsrc}" if self.prefsrc else ""
        return f"{_fam(self.family)} table {self.table} {self.dst} {via}"


@dataclass(frozen=True, order=True)
class Rule:
    family: int
    priority: int
    table: int
    src: str | None = None  # "a/len"
    oif: str | None = None
    suppress_prefixlength: int | None = None
    ip_proto: int | None = None  # 6: TCP only

    def __str__(self) -> str:
        sel = f"from {self.src}" if self.src else "from all"
        sel += f" oif {self.oif}" if self.oif else ""
        sel += f" ipproto {self.ip_proto}" if self.ip_proto is not None else ""
        sup = f" suppress_prefixlength {self.suppress_prefixlength}" if self.suppress_prefixlength is not None else ""
        return f"{_fam(self.family)} {self.priority}: {sel} lookup {self.table}{sup}"


@dataclass(frozen=True, order=True)
class Endpoint:
    id: int
    address: str
    device: str
    backup: bool

    def __str__(self) -> str:
        return f"id {self.id} {self.address} dev {self.device} subflow" + (" backup" if self.backup else "")


@dataclass(frozen=True, order=True)
class Address:
    """A static WAN address wand adds (tagged with its protocol)."""

    device: str
    interface: str  # "a/len"

    def __str__(self) -> str:
        return f"{self.interface} dev {self.device}"


@dataclass
class Desired:
    routes: dict[tuple[int, int, str], Route] = field(default_factory=dict)
    rules: set[Rule] = field(default_factory=set)
    endpoints: dict[int, Endpoint] = field(default_factory=dict)
    addresses: set[Address] = field(default_factory=set)
    nft: str = ""
    limits: tuple[int, int] = (0, 0)  # (subflows, add_addr_accepted) floors
    default_route: dict[int, tuple[str, ...]] = field(default_factory=dict)  # family -> WAN names
    # WAN name -> it carries its LAN range's hosts now (IPv4 usable and healthy); the LAN's
    # DHCP server hands out leases from the range only then.
    range_up: dict[str, bool] = field(default_factory=dict)


@dataclass
class Owned:
    """What wand finds in the kernel carrying its marks."""

    routes: dict[tuple[int, int, str], Route] = field(default_factory=dict)
    rules: set[Rule] = field(default_factory=set)
    endpoints: dict[int, Endpoint] = field(default_factory=dict)
    addresses: set[Address] = field(default_factory=set)
    nft: str | None = None  # None: not known (wand always replaces it once at start)


@dataclass(frozen=True)
class Change:
    op: str  # add | replace | delete | set_flags | apply
    kind: str  # address | route | rule | endpoint | nft
    item: object

    def __str__(self) -> str:
        item = "table inet ..." if self.kind == "nft" else self.item
        return f"{self.op} {self.kind} {item}"


def _static(wan: Wan, family: int) -> StaticAddress | None:
    value = wan.ipv4 if family == AF_INET else wan.ipv6
    return value if isinstance(value, StaticAddress) else None


def _configured(wan: Wan, family: int) -> bool:
    return (wan.ipv4 if family == AF_INET else wan.ipv6) != "none"


def gateway(wan: Wan, link: Link | None, family: int) -> str | None:
    static = _static(wan, family)
    if static is not None:
        return str(static.gateway)
    if link is None or not _configured(wan, family):
        return None
    return link.gateways.get(family)


def addresses(wan: Wan, link: Link | None, family: int) -> tuple[str, ...]:
    if link is None or not _configured(wan, family):
        return ()
    return link.addresses.get(family, ())


def usable(wan: Wan, link: Link | None, family: int) -> bool:
    """The WAN can carry this family now: its device is up with an address and a gateway."""
    return link is not None and link.up and bool(addresses(wan, link, family)) and gateway(wan, link, family) is not None


def default_route_wans(cfg: WandConfig, links: dict[str, Link], health: dict[str, bool], family: int) -> list[Wan]:
    """The WANs the default route of this family uses. Never empty while a WAN is usable:
    when probes say none is healthy, the CPE keeps routing rather than blackholing."""
    candidates = [w for w in cfg.wans if usable(w, links.get(w.device), family)]
    healthy = [w for w in candidates if health.get(w.name, False)]
    if cfg.policy == "failover":
        for pool in (healthy, candidates):
            primaries = [w for w in pool if not w.backup]
            if primaries:
                return primaries[:1]
            if pool:
                return pool[:1]
        return []
    for pool in ([w for w in healthy if not w.backup], healthy,
                 [w for w in candidates if not w.backup], candidates):
        if pool:
            return pool
    return []


def nft_ruleset(cfg: WandConfig, refused: tuple[tuple[str, str], ...] = ()) -> str:
    """The NAT table, in one text that replaces the old one atomically (one transaction).
    ``refused``: (LAN device, "FIRST-LAST") ranges whose WAN is down: what their hosts send
    is refused at once (a TCP reset, an ICMP error), so their MPTCP stack moves to its other
    subflows instead of waiting on a blackhole."""
    devices = [w.device for w in cfg.wans if w.nat]
    lines = [
        f"table inet {cfg.nft_table}",
        f"delete table inet {cfg.nft_table}",
        f"table inet {cfg.nft_table} {{",
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;",
    ]
    lines += [f'\t\tmeta nfproto ipv4 oifname "{d}" masquerade' for d in devices]
    lines += ["\t}"]
    if refused:
        # Before the firewall's forward chain (priority filter): refused, whatever it allows.
        lines += ["\tchain forward {", "\t\ttype filter hook forward priority filter - 10; policy accept;"]
        for device, rng in refused:
            lines += [f'\t\tiifname "{device}" ip saddr {rng} meta l4proto tcp counter reject with tcp reset',
                      f'\t\tiifname "{device}" ip saddr {rng} counter reject with icmp type admin-prohibited']
        lines += ["\t}"]
    lines += ["}", ""]
    return "\n".join(lines)


def lan_ranges(cfg: WandConfig, links: dict[str, Link], health: dict[str, bool], d: Desired) -> tuple[tuple[str, str], ...]:
    """The rules that send each LAN's DHCP ranges out of their own WAN (draft-wr-mptcp-single-homed:
    range k by the (k+1)-th WAN, the pool's TCP, native MPTCP's first subflow, by the first
    while it is up); the ranges whose WAN is down, to refuse."""
    index = {w.name: i for i, w in enumerate(cfg.wans)}
    band = cfg.rule_priority
    refused = []
    for wan in cfg.wans:
        d.range_up[wan.name] = usable(wan, links.get(wan.device), AF_INET) and health.get(wan.name, False)
    for lan in cfg.lans:
        if lan.dhcp is None or not lan.dhcp.ranges:
            continue
        first = cfg.wans[0]
        if d.range_up[first.name]:
            for net in lan.dhcp.pool.prefixes:
                d.rules.add(Rule(AF_INET, band + LAN_FROM_OFFSET, first.table, src=str(net), ip_proto=6))
        for name, rng in lan.dhcp.ranges:
            wan = cfg.wan(name)
            for net in rng.prefixes:
                d.rules.add(Rule(AF_INET, band + LAN_FROM_OFFSET + index[name], wan.table, src=str(net)))
            if not d.range_up[name]:
                refused.append((lan.device, f"{rng.first}-{rng.last}"))
    return tuple(refused)


def desired(cfg: WandConfig, links: dict[str, Link], health: dict[str, bool], lan_prefixes=(),
            mptcp_blocked: frozenset[str] = frozenset()) -> Desired:
    """``lan_prefixes``: the LANs' /64s now (`lanprefix.LanPrefix`); those not retired get
    the CPE's address on their LAN and a rule into their WAN's table. ``mptcp_blocked``: the
    WANs whose path strips MPTCP options (`probe.MptcpVerdict`): no MPTCP endpoint, so no
    subflow is tried there; their routes, rules, NAT and place in the default route stay."""
    d = Desired()
    band = cfg.rule_priority
    index = {w.name: i for i, w in enumerate(cfg.wans)}
    for p in lan_prefixes:
        if p.state == "retired" or p.wan not in index:
            continue
        d.addresses.add(Address(p.device, p.address))
        d.rules.add(Rule(AF_INET6, band + LAN_FROM_OFFSET + index[p.wan], cfg.wan(p.wan).table, src=p.prefix))
    for i, wan in enumerate(cfg.wans):
        link = links.get(wan.device)
        for family in FAMILIES:
            static = _static(wan, family)
            if static is not None:
                d.addresses.add(Address(wan.device, str(static.interface)))
            if not usable(wan, link, family):
                continue
            gw = gateway(wan, link, family)
            addrs = addresses(wan, link, family)
            for a in addrs:
                iface = ipaddress.ip_interface(a)
                net = str(iface.network)
                if net not in (f"{iface.ip}/32", f"{iface.ip}/128"):
                    r = Route(family, wan.table, net, device=wan.device, prefsrc=str(iface.ip))
                    d.routes.setdefault(r.key, r)
                host_len = 32 if family == AF_INET else 128
                d.rules.add(Rule(family, band + FROM_OFFSET + i, wan.table, src=f"{iface.ip}/{host_len}"))
            r = Route(family, wan.table, "default", device=wan.device, gateway=gw)
            d.routes[r.key] = r
            d.rules.add(Rule(family, band + OIF_OFFSET + i, wan.table, oif=wan.device))
            ep_address = str(ipaddress.ip_interface(addrs[0]).ip)
            # The kernel refuses a second endpoint with the same address (two WANs on one
            # misconfigured link): the first WAN keeps it.
            if (health.get(wan.name, False) and wan.name not in mptcp_blocked
                    and all(e.address != ep_address for e in d.endpoints.values())):
                ep_id = cfg.endpoint_id_base + 2 * i + (family == AF_INET6)
                d.endpoints[ep_id] = Endpoint(ep_id, ep_address, wan.device, wan.backup)
    for family in FAMILIES:
        d.rules.add(Rule(family, band + SUPPRESS_OFFSET, 254, suppress_prefixlength=0))
        d.rules.add(Rule(family, band + DEFAULT_OFFSET, cfg.default_table))
        chosen = default_route_wans(cfg, links, health, family)
        d.default_route[family] = tuple(w.name for w in chosen)
        if len(chosen) == 1:
            w = chosen[0]
            r = Route(family, cfg.default_table, "default", device=w.device, gateway=gateway(w, links.get(w.device), family))
            d.routes[r.key] = r
        elif chosen:
            hops = tuple(sorted(((gateway(w, links.get(w.device), family), w.device, w.weight) for w in chosen),
                                key=lambda h: h[1]))
            r = Route(family, cfg.default_table, "default", nexthops=hops)
            d.routes[r.key] = r
    d.nft = nft_ruleset(cfg, lan_ranges(cfg, links, health, d))
    # One subflow per WAN: a connection pairs addresses of its own family only, so the WAN
    # count is all one connection can use (and what cpe_base sets at boot: they agree).
    n = min(MPTCP_LIMIT, max(1, len(cfg.wans)))
    d.limits = (n, n)
    return d


def changes(want: Desired, have: Owned) -> list[Change]:
    """The changes, in an order that never leaves traffic without a route: addresses and
    WAN tables first, new rules before old ones go, endpoints once their routes exist."""
    out: list[Change] = []
    for a in sorted(want.addresses - have.addresses):
        out.append(Change("add", "address", a))
    wan_first = sorted(want.routes.values(), key=lambda r: (r.dst == "default", r))
    for r in wan_first:
        if have.routes.get(r.key) != r:
            out.append(Change("replace", "route", r))
    for r in sorted(want.rules - have.rules):
        out.append(Change("add", "rule", r))
    for r in sorted(have.rules - want.rules):
        out.append(Change("delete", "rule", r))
    for key in sorted(set(have.routes) - set(want.routes)):
        out.append(Change("delete", "route", have.routes[key]))
    for ep_id in sorted(set(have.endpoints) | set(want.endpoints)):
        old, new = have.endpoints.get(ep_id), want.endpoints.get(ep_id)
        if old == new:
            continue
        if old is not None and new is not None and (old.address, old.device) == (new.address, new.device):
            out.append(Change("set_flags", "endpoint", new))
            continue
        if old is not None:
            out.append(Change("delete", "endpoint", old))
        if new is not None:
            out.append(Change("add", "endpoint", new))
    if want.nft != have.nft:
        out.append(Change("apply", "nft", want.nft))
    for a in sorted(have.addresses - want.addresses):
        out.append(Change("delete", "address", a))
    return out


def teardown(have: Owned, nft_table: str) -> list[Change]:
    """Everything wand owns, removed (on stop): endpoints first, so MPTCP stops using the
    paths before their routes go."""
    out = [Change("delete", "endpoint", e) for _, e in sorted(have.endpoints.items())]
    out += [Change("delete", "rule", r) for r in sorted(have.rules)]
    out += [Change("delete", "route", r) for _, r in sorted(have.routes.items())]
    out.append(Change("apply", "nft", f"table inet {nft_table}\ndelete table inet {nft_table}\n"))
    out += [Change("delete", "address", a) for a in sorted(have.addresses)]
    return out
