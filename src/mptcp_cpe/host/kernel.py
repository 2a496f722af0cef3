"""The kernel side of the host: the LAN interface and its macvlans, the leases' addresses,
routes, rules and MPTCP endpoints, over netlink (pyroute2). Route, rule and endpoint
changes are wand's own (`wand.kernel.Kernel`); the host has no NAT, so no nftables."""

from __future__ import annotations

import errno
import ipaddress
import logging
from pathlib import Path
from socket import AF_INET, AF_INET6

from ..netlink import MPTCP, IPRoute, NetlinkError
from ..nft import KernelError
from ..wand.kernel import RT_SCOPE_UNIVERSE, UNUSABLE_ADDR_FLAGS, Kernel
from ..wand.plan import Address, Endpoint, Owned, Route, Rule
from .config import MAX_PATHS, RULE_BAND, HostConfig
from .plan import ALIAS, MAIN_TABLE, V6_ID_OFFSET

log = logging.getLogger(__name__)

IFA_F_NOPREFIXROUTE = 0x200
SYSCTL = Path("/proc/sys/net")
# A macvlan answers ARP for its own addresses only and announces them from itself (the
# kernel would answer for every local address on every interface of the subnet, and the
# CPE would send a path's packets to the wrong MAC); no IPv6 on it: the IPv6 paths are the
# LAN interface's prefixes. Loose reverse-path filtering: replies to a path's address come
# back on its macvlan, while main routes the LAN by the parent.
MACVLAN_SYSCTLS = {"ipv4/conf/{dev}/arp_ignore": "1", "ipv4/conf/{dev}/arp_announce": "2",
                   "ipv4/conf/{dev}/rp_filter": "2", "ipv6/conf/{dev}/disable_ipv6": "1"}
# The LAN interface's ARP likewise: it must not answer for the macvlans' addresses.
PARENT_SYSCTLS = {"ipv4/conf/{dev}/arp_ignore": "1", "ipv4/conf/{dev}/arp_announce": "2"}


class HostKernel(Kernel):
    def __init__(self) -> None:
        # wand's Kernel without its nftables handle: the host has no NAT.
        self.ipr = IPRoute()
        self.mptcp = MPTCP()
        self._names: dict[int, str] = {}

    def close(self) -> None:
        for closer in (self.ipr.close, self.mptcp.close):
            try:
                closer()
            except Exception:  # closing is best effort at exit
                log.debug("close failed", exc_info=True)

    # --- links ---

    def mac(self, device: str) -> str:
        (msg,) = self.ipr.link("get", index=self._index(device))
        return msg.get("IFLA_ADDRESS")

    def macvlans(self, parent: str) -> dict[str, str]:
        """Our macvlans on ``parent``: name -> MAC."""
        try:
            parent_idx = self._index(parent)
        except KernelError:
            return {}
        out = {}
        for msg in self.ipr.link("dump"):
            if (msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "macvlan" and msg.get("IFLA_LINK") == parent_idx
                    and msg.get("IFLA_IFALIAS") == ALIAS):
                out[msg.get("IFLA_IFNAME")] = msg.get("IFLA_ADDRESS")
        return out

    @staticmethod
    def set_sysctls(device: str, values: dict[str, str]) -> None:
        for key, value in values.items():
            path = SYSCTL / key.format(dev=device)
            try:
                path.write_text(value)
            except OSError as exc:
                log.warning("cannot set %s to %s: %s", path, value, exc)

    def add_macvlan(self, parent: str, name: str, mac: str) -> None:
        """A bridge-mode macvlan with its MAC, up; one left with another MAC is made again."""
        have = self.macvlans(parent)
        if name in have and have[name] != mac:
            self.delete_link(name)
        if name not in have or have[name] != mac:
            # Sysctls before it comes up: no IPv6 link-local address, no SLAAC on it.
            self.ipr.link("add", ifname=name, kind="macvlan", link=self._index(parent), macvlan_mode="bridge",
                          address=mac)
        self.set_sysctls(name, MACVLAN_SYSCTLS)
        self.ipr.link("set", index=self._index(name), state="up", ifalias=ALIAS)

    def delete_link(self, name: str) -> None:
        try:
            self.ipr.link("del", index=self._index(name))
        except (NetlinkError, KernelError) as exc:
            if getattr(exc, "code", None) not in (errno.ENODEV, None):
                raise

    def up(self, device: str) -> None:
        self.ipr.link("set", index=self._index(device), state="up")

    # --- addresses ---

    def _add_address(self, a: Address, cfg: HostConfig) -> None:
        """Replaced, tagged; on a macvlan without its prefix route (that route goes in the
        path's table), on the LAN interface with it (as udhcpc's default.script)."""
        iface = ipaddress.ip_interface(a.interface)
        flags = 0 if a.device == cfg.interface else IFA_F_NOPREFIXROUTE
        self.ipr.addr("replace", index=self._index(a.device), address=str(iface.ip), prefixlen=iface.network.prefixlen,
                      IFA_FLAGS=flags, proto=cfg.route_protocol)

    def v6_addresses(self, device: str) -> list[str]:
        """The device's global IPv6 addresses that can carry a subflow: not tentative,
        deprecated, failed or temporary (privacy addresses come and go)."""
        try:
            idx = self._index(device)
        except KernelError:
            return []
        out = []
        for msg in self.ipr.addr("dump", family=AF_INET6, index=idx):
            if msg["scope"] != RT_SCOPE_UNIVERSE or msg.get("IFA_FLAGS", msg["flags"]) & UNUSABLE_ADDR_FLAGS:
                continue
            out.append(f"{msg.get('IFA_ADDRESS')}/{msg['prefixlen']}")
        return out

    # --- what the host owns ---

    def owned(self, cfg: HostConfig, tables: set[int] | None = None) -> Owned:
        """Everything carrying the host's marks: tagged addresses, the tagged routes of main
        and of ``tables`` (default: every path's), the rules of the band, the endpoint ids."""
        names = self._index_names()
        look = tables if tables is not None else {cfg.table(k) for k in range(1, MAX_PATHS + 1)} | {MAIN_TABLE}
        have = Owned()
        for family in (AF_INET, AF_INET6):
            for msg in self.ipr.route("dump", family=family):
                table = msg.get("RTA_TABLE", msg["table"])
                if msg.get("proto") == cfg.route_protocol and table in look:
                    r = self._route(msg, family, table, names)
                    have.routes[r.key] = r
            for msg in self.ipr.rule("dump", family=family):
                prio = msg.get("FRA_PRIORITY", 0)
                if msg.get("FRA_PROTOCOL") == cfg.route_protocol and cfg.rule_priority <= prio < cfg.rule_priority + RULE_BAND:
                    have.rules.add(self._rule(msg, family))
        for msg in self.ipr.addr("dump"):
            if msg.get("IFA_PROTO") == cfg.route_protocol:
                a = msg.get("IFA_LOCAL", msg.get("IFA_ADDRESS")) if msg["family"] == AF_INET else msg.get("IFA_ADDRESS")
                have.addresses.add(Address(names.get(msg["index"], str(msg["index"])), f"{a}/{msg['prefixlen']}"))
        for e in self.endpoints():
            if cfg.endpoint_id_base <= e.id < cfg.endpoint_id_base + 2 * V6_ID_OFFSET:
                have.endpoints[e.id] = e
        return have

    def remove(self, cfg: HostConfig, *, endpoints=(), rules=(), routes=(), addresses=()) -> None:
        """Endpoints first (MPTCP stops using the path), then rules, routes, addresses; each
        one that is gone already is fine."""
        for e in endpoints:
            self._delete_endpoint(e, cfg)
        for r in rules:
            self._delete_rule(r, cfg)
        for r in routes:
            self._delete_route(r, cfg)
        for a in addresses:
            self._delete_address(a, cfg)

    def add_endpoint(self, e: Endpoint, cfg: HostConfig) -> None:
        """The endpoint with its id, replacing one with that id or that address."""
        for old in self.endpoints():
            if old.id == e.id and (old.address, old.device) == (e.address, e.device):
                return
            if old.id == e.id or old.address == e.address:
                self._delete_endpoint(old, cfg)
        self._add_endpoint(e, cfg)

    def replace_route(self, r: Route, cfg: HostConfig) -> None:
        self._replace_route(r, cfg)

    def add_rule(self, r: Rule, cfg: HostConfig) -> None:
        self._add_rule(r, cfg)

    def add_address(self, a: Address, cfg: HostConfig) -> None:
        self._add_address(a, cfg)
