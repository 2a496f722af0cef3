"""The kernel side of wand: read the WAN links and what wand owns, apply changes. Netlink
through pyroute2 (rtnetlink and the MPTCP generic family); the NAT table through
libnftables, in-process (`nft.Nft`: one transaction per ruleset, no ``nft`` subprocess)."""

from __future__ import annotations

import errno
import ipaddress
import logging
import struct
from socket import AF_INET, AF_INET6

from ..netlink import MPTCP, MPTCP_PM_CMD_SET_FLAGS, NLM_F_ACK, NLM_F_REQUEST, IPRoute, NetlinkError, mptcp_msg
from ..nft import KernelError, Nft
from .config import RULE_BAND, WandConfig
from .plan import FAMILIES, Address, Change, Endpoint, Link, Owned, Route, Rule

log = logging.getLogger(__name__)

# include/uapi/linux/mptcp.h
MPTCP_PM_ADDR_FLAG_SUBFLOW = 1 << 1
MPTCP_PM_ADDR_FLAG_BACKUP = 1 << 2
# include/uapi/linux/if_addr.h
IFA_F_TEMPORARY = 0x01
IFA_F_DADFAILED = 0x08
IFA_F_DEPRECATED = 0x20
IFA_F_TENTATIVE = 0x40
UNUSABLE_ADDR_FLAGS = IFA_F_TEMPORARY | IFA_F_DADFAILED | IFA_F_DEPRECATED | IFA_F_TENTATIVE
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTN_UNICAST = 1
MAIN_TABLE = 254


def _family_len(family: int) -> int:
    return 32 if family == AF_INET else 128


class Kernel:
    def __init__(self) -> None:
        self.ipr = IPRoute()
        self.mptcp = MPTCP()
        self.nft = Nft()
        self._names: dict[int, str] = {}

    def close(self) -> None:
        for closer in (self.ipr.close, self.mptcp.close, self.nft.close):
            try:
                closer()
            except Exception:  # closing is best effort at exit
                log.debug("close failed", exc_info=True)

    # --- reading ---

    def _index_names(self) -> dict[int, str]:
        self._names = {msg["index"]: msg.get("IFLA_IFNAME") for msg in self.ipr.link("dump")}
        return self._names

    def links(self, cfg: WandConfig) -> dict[str, Link]:
        """The WAN devices that exist, with their usable addresses and foreign gateways."""
        names = self._index_names()
        by_name = {n: i for i, n in names.items()}
        flags = {msg["index"]: msg["flags"] for msg in self.ipr.link("dump")}
        out: dict[str, Link] = {}
        devices = {w.device for w in cfg.wans}
        addrs: dict[str, dict[int, list[str]]] = {d: {AF_INET: [], AF_INET6: []} for d in devices}
        for msg in self.ipr.addr("dump"):
            dev = names.get(msg["index"])
            if dev not in devices or msg["scope"] != RT_SCOPE_UNIVERSE:
                continue
            fl = msg.get("IFA_FLAGS", msg["flags"])
            if fl & UNUSABLE_ADDR_FLAGS:
                continue
            a = msg.get("IFA_ADDRESS") if msg["family"] == AF_INET6 else msg.get("IFA_LOCAL", msg.get("IFA_ADDRESS"))
            addrs[dev][msg["family"]].append(f"{a}/{msg['prefixlen']}")
        gateways: dict[str, dict[int, tuple[int, str]]] = {d: {} for d in devices}
        for family in FAMILIES:
            for msg in self.ipr.route("dump", family=family):
                if msg["dst_len"] != 0 or msg.get("proto") == cfg.route_protocol or msg["type"] != RTN_UNICAST:
                    continue
                table = msg.get("RTA_TABLE", msg["table"])
                if table in self._owned_tables(cfg):
                    continue
                prio = msg.get("RTA_PRIORITY", 0)
                hops = [(msg.get("RTA_OIF"), msg.get("RTA_GATEWAY"))]
                if msg.get("RTA_MULTIPATH"):
                    hops = [(h["oif"], h.get("RTA_GATEWAY")) for h in msg.get("RTA_MULTIPATH")]
                for oif, gw in hops:
                    dev = names.get(oif)
                    if dev in devices and gw:
                        # The main table's route wins over other tables', then the lowest metric.
                        rank = (table != MAIN_TABLE, prio)
                        if family not in gateways[dev] or rank < gateways[dev][family][0]:
                            gateways[dev][family] = (rank, gw)
        for dev in devices:
            if dev not in by_name:
                continue
            idx = by_name[dev]
            up = (flags[idx] & (IFF_UP | IFF_LOWER_UP)) == (IFF_UP | IFF_LOWER_UP)
            out[dev] = Link(
                index=idx,
                up=up,
                addresses={f: tuple(sorted(addrs[dev][f], key=lambda a: ipaddress.ip_interface(a))) for f in FAMILIES},
                gateways={f: g for f, (_, g) in gateways[dev].items()},
            )
        return out

    @staticmethod
    def _owned_tables(cfg: WandConfig) -> set[int]:
        return {w.table for w in cfg.wans} | {cfg.default_table}

    def owned(self, cfg: WandConfig, tables: set[int] | None = None) -> Owned:
        """What carries wand's marks. ``tables``: also look in these (a previous config's)."""
        names = self._names or self._index_names()
        have = Owned()
        look = self._owned_tables(cfg) | (tables or set())
        for family in FAMILIES:
            for msg in self.ipr.route("dump", family=family):
                table = msg.get("RTA_TABLE", msg["table"])
                if msg.get("proto") != cfg.route_protocol or table not in look:
                    continue
                r = self._route(msg, family, table, names)
                have.routes[r.key] = r
            for msg in self.ipr.rule("dump", family=family):
                prio = msg.get("FRA_PRIORITY", 0)
                if msg.get("FRA_PROTOCOL") != cfg.route_protocol or not cfg.rule_priority <= prio < cfg.rule_priority + RULE_BAND:
                    continue
                have.rules.add(self._rule(msg, family))
        for msg in self.ipr.addr("dump"):
            if msg.get("IFA_PROTO") == cfg.route_protocol:
                a = msg.get("IFA_LOCAL", msg.get("IFA_ADDRESS")) if msg["family"] == AF_INET else msg.get("IFA_ADDRESS")
                have.addresses.add(Address(names.get(msg["index"], str(msg["index"])), f"{a}/{msg['prefixlen']}"))
        for e in self.endpoints():
            if cfg.endpoint_id_base <= e.id < cfg.endpoint_id_base + 16:
                have.endpoints[e.id] = e
        return have

    @staticmethod
    def _route(msg, family: int, table: int, names: dict[int, str]) -> Route:
        dst = "default" if msg["dst_len"] == 0 else f"{msg.get('RTA_DST')}/{msg['dst_len']}"
        if msg.get("RTA_MULTIPATH"):
            hops = tuple(sorted(((h.get("RTA_GATEWAY"), names.get(h["oif"], str(h["oif"])), h["hops"] + 1)
                                 for h in msg.get("RTA_MULTIPATH")), key=lambda h: h[1]))
            return Route(family, table, dst, nexthops=hops)
        oif = msg.get("RTA_OIF")
        return Route(family, table, dst, device=names.get(oif, str(oif)) if oif else None,
                     gateway=msg.get("RTA_GATEWAY"), prefsrc=msg.get("RTA_PREFSRC"))

    @staticmethod
    def _rule(msg, family: int) -> Rule:
        src = msg.get("FRA_SRC")
        suppress = msg.get("FRA_SUPPRESS_PREFIXLEN")
        return Rule(
            family,
            msg.get("FRA_PRIORITY", 0),
            msg.get("FRA_TABLE", msg["table"]),
            src=f"{src}/{msg['src_len']}" if src else None,
            oif=msg.get("FRA_OIFNAME"),
            suppress_prefixlength=None if suppress in (None, 0xFFFFFFFF) else suppress,
            ip_proto=msg.get("FRA_IP_PROTO"),
        )

    def endpoints(self) -> list[Endpoint]:
        names = self._names or self._index_names()
        out = []
        for msg in self.mptcp.endpoint("show"):
            a = msg.get("MPTCP_PM_ATTR_ADDR")
            if a is None:
                continue
            addr = a.get("MPTCP_PM_ADDR_ATTR_ADDR4") or a.get("MPTCP_PM_ADDR_ATTR_ADDR6")
            raw_idx = a.get("MPTCP_PM_ADDR_ATTR_IF_IDX")
            dev = ""
            if raw_idx:
                idx = int.from_bytes(bytes.fromhex(raw_idx.replace(":", "")), "little", signed=True)
                dev = names.get(idx, str(idx))
            flags = a.get("MPTCP_PM_ADDR_ATTR_FLAGS", 0)
            out.append(Endpoint(a.get("MPTCP_PM_ADDR_ATTR_ID"), addr, dev, bool(flags & MPTCP_PM_ADDR_FLAG_BACKUP)))
        return out

    def limits(self) -> tuple[int, int]:
        (msg,) = self.mptcp.limits("show")
        return msg.get("MPTCP_PM_ATTR_SUBFLOWS", 0), msg.get("MPTCP_PM_ATTR_RCV_ADD_ADDRS", 0)

    # --- writing ---

    def raise_limits(self, floors: tuple[int, int]) -> bool:
        """Raise the MPTCP limits to at least ``floors``; an operator's higher values stay."""
        sub, acc = self.limits()
        want = (max(sub, floors[0]), max(acc, floors[1]))
        if want == (sub, acc):
            return False
        self.mptcp.limits("set", subflows=want[0], add_addr_accepted=want[1])
        log.info("MPTCP limits: subflows %d, add_addr_accepted %d", *want)
        return True

    def apply(self, change: Change, cfg: WandConfig) -> None:
        getattr(self, f"_{change.op}_{change.kind}")(change.item, cfg)

    def _index(self, device: str) -> int:
        found = self.ipr.link_lookup(ifname=device)
        if not found:
            raise KernelError(f"{device}: no such device")
        return found[0]

    def _add_address(self, a: Address, cfg: WandConfig) -> None:
        idx = self._index(a.device)
        iface = ipaddress.ip_interface(a.interface)
        self.ipr.link("set", index=idx, state="up")
        try:
            self.ipr.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen,
                          proto=cfg.route_protocol)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise
            # Someone else's copy of the same address: take it over with our mark.
            self.ipr.addr("replace", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen,
                          proto=cfg.route_protocol)

    def _delete_address(self, a: Address, cfg: WandConfig) -> None:
        iface = ipaddress.ip_interface(a.interface)
        try:
            self.ipr.addr("del", index=self._index(a.device), address=str(iface.ip), prefixlen=iface.network.prefixlen)
        except (NetlinkError, KernelError) as exc:
            if getattr(exc, "code", None) not in (errno.EADDRNOTAVAIL, errno.ENODEV, None):
                raise

    def _route_args(self, r: Route, cfg: WandConfig) -> dict:
        args = dict(family=r.family, table=r.table, proto=cfg.route_protocol)
        if r.dst == "default":
            args["dst"] = "::/0" if r.family == AF_INET6 else "0.0.0.0/0"
        else:
            args["dst"] = r.dst
        if r.nexthops:
            args["multipath"] = [{"gateway": gw, "oif": self._index(dev), "hops": weight - 1}
                                 for gw, dev, weight in r.nexthops]
        else:
            args["oif"] = self._index(r.device)
            if r.gateway:
                args["gateway"] = r.gateway
            else:
                args["scope"] = RT_SCOPE_LINK
            if r.prefsrc:
                args["prefsrc"] = r.prefsrc
        return args

    def _replace_route(self, r: Route, cfg: WandConfig) -> None:
        self.ipr.route("replace", **self._route_args(r, cfg))

    def _delete_route(self, r: Route, cfg: WandConfig) -> None:
        args = dict(family=r.family, table=r.table, proto=cfg.route_protocol,
                    dst=("::/0" if r.family == AF_INET6 else "0.0.0.0/0") if r.dst == "default" else r.dst)
        try:
            self.ipr.route("del", **args)
        except NetlinkError as exc:
            if exc.code != errno.ESRCH:
                raise

    @staticmethod
    def _rule_args(r: Rule, cfg: WandConfig) -> dict:
        args = dict(family=r.family, priority=r.priority, table=r.table, protocol=cfg.route_protocol)
        if r.src:
            addr, length = r.src.split("/")
            args.update(src=addr, src_len=int(length))
        if r.oif:
            args["oifname"] = r.oif
        if r.suppress_prefixlength is not None:
            # The NLA by its own name: pyroute2 does not map "suppress_prefixlength" to it.
            args["FRA_SUPPRESS_PREFIXLEN"] = r.suppress_prefixlength
        if r.ip_proto is not None:
            args["FRA_IP_PROTO"] = r.ip_proto
        return args

    def _add_rule(self, r: Rule, cfg: WandConfig) -> None:
        try:
            self.ipr.rule("add", **self._rule_args(r, cfg))
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise

    def _delete_rule(self, r: Rule, cfg: WandConfig) -> None:
        try:
            self.ipr.rule("del", **self._rule_args(r, cfg))
        except NetlinkError as exc:
            if exc.code != errno.ENOENT:
                raise

    def _add_endpoint(self, e: Endpoint, cfg: WandConfig) -> None:
        flags = MPTCP_PM_ADDR_FLAG_SUBFLOW | (MPTCP_PM_ADDR_FLAG_BACKUP if e.backup else 0)
        key = "addr6" if ipaddress.ip_address(e.address).version == 6 else "addr4"
        # pyroute2 quirk: the interface index goes in packed, not as an int.
        self.mptcp.endpoint("add", **{key: e.address}, id=e.id, flags=flags,
                            if_idx=struct.pack("=i", self._index(e.device)))

    def _delete_endpoint(self, e: Endpoint, cfg: WandConfig) -> None:
        try:
            self.mptcp.endpoint("del", id=e.id)
        except NetlinkError as exc:
            if exc.code != errno.EINVAL:  # the kernel's answer for an unknown id
                raise

    def _set_flags_endpoint(self, e: Endpoint, cfg: WandConfig) -> None:
        # pyroute2 has no helper for SET_FLAGS: build the message (the endpoint by id, no family).
        msg = mptcp_msg()
        msg["cmd"] = MPTCP_PM_CMD_SET_FLAGS
        msg["version"] = 1
        flags = MPTCP_PM_ADDR_FLAG_SUBFLOW | (MPTCP_PM_ADDR_FLAG_BACKUP if e.backup else 0)
        msg["attrs"] = [("MPTCP_PM_ATTR_ADDR", {"attrs": [("MPTCP_PM_ADDR_ATTR_ID", e.id),
                                                          ("MPTCP_PM_ADDR_ATTR_FLAGS", flags)]}, 0x8000)]
        core = self.mptcp.asyncore
        self.mptcp._run_sync_cleanup(core.nlm_request, msg, msg_type=core.prid, msg_flags=NLM_F_REQUEST | NLM_F_ACK)

    def _apply_nft(self, text: str, cfg: WandConfig) -> None:
        self.nft.run(text)

    def nft_table(self, cfg: WandConfig) -> str | None:
        try:
            return self.nft.run(f"list table inet {cfg.nft_table}")
        except KernelError:
            return None
