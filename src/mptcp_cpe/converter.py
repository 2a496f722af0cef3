"""``mptcp-cpe converter``: the CPE side of RFC 8803. Each TCP connection from the LAN becomes
one MPTCP connection to an MCP, the Convert message in its SYN (TCP Fast Open), then a
splice relay; when no MCP answers, the connection goes straight to its destination
(routed and NATed by wand), so the CPE never blackholes.

Interception: an nftables table the daemon owns (``inet mptcp_cpe_converter``) sends new
TCP connections arriving on the LAN interfaces to the TPROXY listeners, except the bypass
(destination prefixes and ports, LAN sources) and what is not for the WANs (local,
broadcast, multicast, routed back into the LAN, the MCP port). A policy rule sends the
marked packets to a table with ``local default dev lo``. If the daemon is not running, the
TPROXY rule finds no listener and the packets are forwarded as usual.

Only diverted connections are converted. The listen port is open to nothing else, twice
over: the table's ``input`` chain drops (and counts) TCP to ``listen_port`` without the
fwmark TPROXY set, or to one of the CPE's own addresses (a LAN packet to the CPE's address
and that port matches the transparent listener in the socket rule, and is marked too);
and each worker refuses (RST, before any MCP is asked) an accepted connection whose
destination is one of the CPE's own addresses (or loopback, multicast, unspecified): it
came from a WAN, from the LAN to the CPE or from the CPE itself, and converting it, or
going direct with it, would loop back into the listener. Refusals are counted
(``stats["not_diverted"]``) and logged one line per 10 s at most. Each worker keeps the
CPE's addresses current from rtnetlink (`localaddrs.LocalAddresses`, in its epoll loop).

MCPs: the lists in ``mcp.json`` (learned by DHCP on the WANs), then the static ones of the
config; each MCP's addresses in order, without those `mcptrust.mcp_verdicts` refuses: with
``mcp_prefixes`` set, a learned address outside them (a rogue DHCP server's MCP,
draft-boucadair-mptcp-dhc §5); always, one of the CPE's own addresses, one inside
``lan_prefixes``, link-local, loopback or multicast (one line per change of mcp.json or of
the CPE's addresses, not per connection). A static MCP outside ``mcp_prefixes`` or inside
``lan_prefixes`` is a config error. An MCP address that does not answer within
``connect_timeout_s``, closes before answering or answers with an Error about itself is
skipped for ``retry_after_s`` (or the delay its Error names). ``connect_timeout_s`` is
also what a LAN connection waits for MCPs in all: silent MCP addresses after the first
are left to later connections, so an MCP outage costs one connection that long, not that
long per address. The file is looked at again
at most once a second, when a connection starts: a change applies to new connections,
live ones go on. Data the LAN client sends before the MCP's answer is kept (up to
``replay_limit`` octets; reading pauses there), so a connection can move to the next MCP,
answer a Cookie challenge or go direct without losing a byte. ``mptcp_rcvbuf`` fixes the
MPTCP socket's receive buffer (0: the kernel's autotuning), see `relay.set_rcvbuf`.

::

    {"host": "cpe-1", "lan_interfaces": ["lan0"], "mcp_port": 5124, "listen_port": 5125,
     "mcps": [["198.51.100.1"]], "mcp_file": "/run/mptcp-cpe/mcp.json",
     "mcp_prefixes": ["198.51.100.0/24"], "lan_prefixes": ["198.18.1.0/24", "2001:db8:1::/64"],
     "bypass": {"destinations": ["192.0.2.0/24"], "ports": [22], "sources": []},
     "connect_timeout_s": 3, "reply_timeout_s": 15, "retry_after_s": 30,
     "replay_limit": 65536, "workers": 0, "pipe_size": 262144, "mptcp_rcvbuf": 4194304,
     "drain_timeout_s": 30,
     "fwmark": 8803, "route_table": 199, "rule_priority": 9000, "route_protocol": 202,
     "nft_table": "mptcp_cpe_converter"}

Signals: SIGHUP re-reads the config (a bad one is refused with one line and the running
one kept; so is one changing a START_ONLY setting, which needs a restart), SIGTERM stops intercepting,
drains live connections for at most ``drain_timeout_s`` and removes what it made.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import logging
import mmap
import os
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import rfc8803
from .dhcp_hook import MCP_STATE
from .inventory import InventoryError
from .localaddrs import LocalAddresses
from .mcptrust import address_problem, mcp_verdicts
from .relay import (IN, OUT, Loop, Pair, Supervisor, WorkerSignals, abort, raise_fd_limit, set_rcvbuf, worker_count,
                    worker_ready)
from .settings import (
    ConfigError,
    add_daemon_parser,
    load_or_say,
    setup_logging,
    absolute_path,
    check_keys,
    config_host,
    integer,
    interfaces,
    nft_name,
    number,
    ports,
    prefixes,
    read_config,
    route_protocol,
    unicast_address,
)
from .statefile import StateFileError, read_json

log = logging.getLogger(__name__)

IPPROTO_MPTCP = getattr(socket, "IPPROTO_MPTCP", 262)
TCP_FASTOPEN_CONNECT = getattr(socket, "TCP_FASTOPEN_CONNECT", 30)
WOULD_BLOCK = frozenset({errno.EAGAIN, errno.EINPROGRESS, errno.EALREADY})
TOP_KEYS = frozenset({"host", "lan_interfaces", "mcp_port", "listen_port", "mcps", "mcp_file", "mcp_prefixes",
                      "lan_prefixes", "bypass", "connect_timeout_s", "reply_timeout_s", "retry_after_s", "replay_limit", "workers",
                      "pipe_size", "mptcp_rcvbuf", "drain_timeout_s", "fwmark", "route_table", "rule_priority",
                      "route_protocol", "nft_table"})
BYPASS_KEYS = frozenset({"destinations", "ports", "sources"})
# Error codes that say something about the MCP itself: skip it and try the next one.
# Connection Reset and Destination Unreachable are the destination's answer: passed on.
DESTINATION_ERRORS = frozenset({rfc8803.ErrorCode.CONNECTION_RESET, rfc8803.ErrorCode.DESTINATION_UNREACHABLE})
NOT_AUTHORIZED_HOLD_S = 300.0
# Not Authorized may be about a destination (deny list, hairpinning) or about us (our
# prefix is not a client): this many different destinations refused in a minute means us.
REFUSALS_TO_HOLD = 3
# Taken at start only: the listeners, the supervisor, and the kernel state the daemon owns
# (a reload to another mark or table would strand the old ones). A reload changing one is refused.
START_ONLY = ("listen_port", "workers", "drain_timeout_s", "fwmark", "route_table", "rule_priority",
              "route_protocol", "nft_table")  # an MCP that refuses us will not change its mind soon


@dataclass(frozen=True)
class Bypass:
    destinations: tuple = ()
    ports: tuple[int, ...] = ()
    sources: tuple = ()


@dataclass(frozen=True)
class ConverterConfig:
    host: str
    lan_interfaces: tuple[str, ...]
    mcp_port: int = 5124
    listen_port: int = 5125
    mcps: tuple[tuple[str, ...], ...] = ()
    mcp_file: Path = MCP_STATE
    mcp_prefixes: tuple = ()  # where MCPs may be (empty: anywhere); DHCP-learned ones outside are not used
    lan_prefixes: tuple = ()  # the CPE's LAN prefixes: never an MCP there
    bypass: Bypass = Bypass()
    connect_timeout_s: float = 3.0
    reply_timeout_s: float = 15.0
    retry_after_s: float = 30.0
    replay_limit: int = 65536
    workers: int = 0
    pipe_size: int = 262144
    mptcp_rcvbuf: int = 4194304
    drain_timeout_s: float = 30.0
    fwmark: int = 8803
    route_table: int = 199
    rule_priority: int = 9000
    route_protocol: int = 202
    nft_table: str = "mptcp_cpe_converter"


def _mcp_lists(host: str, field: str, raw: Any) -> tuple[tuple[str, ...], ...]:
    if not isinstance(raw, list):
        raise ConfigError(host, field, "must be a list of MCPs, each a list of its addresses", raw)
    out = []
    for i, mcp in enumerate(raw):
        if not isinstance(mcp, list) or not mcp:
            raise ConfigError(host, f"{field}[{i}]", "must be a non-empty list of addresses", mcp)
        out.append(tuple(unicast_address(host, f"{field}[{i}][{j}]", a) for j, a in enumerate(mcp)))
    return tuple(out)


def from_dict(raw: Any, host: str = "localhost") -> ConverterConfig:
    host = config_host(raw, host)
    check_keys(host, "(config)", raw, TOP_KEYS)
    d = ConverterConfig(host=host, lan_interfaces=())
    if "lan_interfaces" not in raw:
        raise ConfigError(host, "lan_interfaces", "missing", show_value=False)
    bypass_raw = check_keys(host, "bypass", raw.get("bypass", {}), BYPASS_KEYS)
    cfg = ConverterConfig(
        host=host,
        lan_interfaces=interfaces(host, "lan_interfaces", raw["lan_interfaces"], minimum=1),
        mcp_port=integer(host, "mcp_port", raw.get("mcp_port", d.mcp_port), 1, 65535),
        listen_port=integer(host, "listen_port", raw.get("listen_port", d.listen_port), 1, 65535),
        mcps=_mcp_lists(host, "mcps", raw.get("mcps", [])),
        mcp_file=absolute_path(host, "mcp_file", raw.get("mcp_file", str(d.mcp_file))),
        mcp_prefixes=prefixes(host, "mcp_prefixes", raw.get("mcp_prefixes", [])),
        lan_prefixes=prefixes(host, "lan_prefixes", raw.get("lan_prefixes", [])),
        bypass=Bypass(
            destinations=prefixes(host, "bypass.destinations", bypass_raw.get("destinations", [])),
            ports=ports(host, "bypass.ports", bypass_raw.get("ports", [])),
            sources=prefixes(host, "bypass.sources", bypass_raw.get("sources", [])),
        ),
        connect_timeout_s=number(host, "connect_timeout_s", raw.get("connect_timeout_s", d.connect_timeout_s), 0.1, 60),
        reply_timeout_s=number(host, "reply_timeout_s", raw.get("reply_timeout_s", d.reply_timeout_s), 0.1, 300),
        retry_after_s=number(host, "retry_after_s", raw.get("retry_after_s", d.retry_after_s), 1, 3600),
        replay_limit=integer(host, "replay_limit", raw.get("replay_limit", d.replay_limit), 1024, 16 << 20),
        workers=integer(host, "workers", raw.get("workers", d.workers), 0, 256),
        pipe_size=integer(host, "pipe_size", raw.get("pipe_size", d.pipe_size), 4096, 1 << 20),
        mptcp_rcvbuf=integer(host, "mptcp_rcvbuf", raw.get("mptcp_rcvbuf", d.mptcp_rcvbuf), 0, 1 << 30),
        drain_timeout_s=number(host, "drain_timeout_s", raw.get("drain_timeout_s", d.drain_timeout_s), 0, 3600),
        fwmark=integer(host, "fwmark", raw.get("fwmark", d.fwmark), 1, 2**32 - 1),
        route_table=integer(host, "route_table", raw.get("route_table", d.route_table), 1, 2**32 - 1),
        rule_priority=integer(host, "rule_priority", raw.get("rule_priority", d.rule_priority), 1, 32765),
        route_protocol=route_protocol(host, "route_protocol", raw.get("route_protocol", d.route_protocol)),
        nft_table=nft_name(host, "nft_table", raw.get("nft_table", d.nft_table)),
    )
    if cfg.route_table in (253, 254, 255):
        raise ConfigError(host, "route_table", "is one of the kernel's own tables (253 default, 254 main, 255 local)", cfg.route_table)
    if cfg.listen_port == cfg.mcp_port:
        raise ConfigError(host, "listen_port", "is the mcp_port: connections to MCPs are never intercepted", cfg.listen_port)
    if cfg.reply_timeout_s < cfg.connect_timeout_s:
        raise ConfigError(host, "reply_timeout_s", f"shorter than connect_timeout_s ({cfg.connect_timeout_s:g})", cfg.reply_timeout_s)
    for i, mcp in enumerate(cfg.mcps):
        for j, address in enumerate(mcp):
            # The CPE's own addresses change at run time: those are left out then, not refused here.
            problem = address_problem(address, cfg.mcp_prefixes, cfg.lan_prefixes)
            if problem is not None:
                raise ConfigError(host, f"mcps[{i}][{j}]", f"cannot be an MCP: {problem}", address)
    return cfg


def load(path: Path, host: str = "localhost") -> ConverterConfig:
    return from_dict(read_config(path, host), host)


# ---------------------------------------------------------------- nftables and policy routing

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
    sets = []
    rules = [
        f"iifname != {{ {lan} }} return",
        "meta l4proto != tcp return",
        # Packets of connections the converter already holds: to their socket.
        f"socket transparent 1 meta mark set {cfg.fwmark} accept",
        # Connections forwarded before the converter started keep being forwarded.
        "ct state != new return",
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
        from pyroute2 import IPRoute

        from .wand.kernel import Nft

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


# ---------------------------------------------------------------- which MCPs

class SharedHolds:
    """Which MCP addresses are held back, until when: shared by the workers (an anonymous
    shared mapping made before they fork), so one worker's timeout spares the others the
    wait. Slots of 16 octets of address and a CLOCK_MONOTONIC deadline; a lost race between
    two writers costs at most one more try of a dead MCP."""

    SLOT = struct.Struct("=16sd")
    SLOTS = 256

    def __init__(self) -> None:
        self.mem = mmap.mmap(-1, self.SLOT.size * self.SLOTS)

    @staticmethod
    def _key(what: str) -> bytes:
        """An address as its 16 octets; anything else (an MCP and a destination) hashed."""
        try:
            return socket.inet_pton(_family(what), what).ljust(16, b"\xff")
        except OSError:
            return hashlib.sha256(what.encode()).digest()[:16]

    def _slots(self):
        for i in range(self.SLOTS):
            yield i, *self.SLOT.unpack_from(self.mem, i * self.SLOT.size)

    def get(self, address: str) -> float | None:
        key = self._key(address)
        now = time.monotonic()
        for _, k, until in self._slots():
            if k == key and until > now:
                return until
        return None

    def set(self, address: str, until: float) -> None:
        key, now = self._key(address), time.monotonic()
        free = None
        for i, k, t in self._slots():
            if k == key:
                free = i
                break
            if free is None and t <= now:
                free = i
        if free is None:  # every slot held: replace the one that frees first
            free = min(self._slots(), key=lambda slot: slot[2])[0]
        self.SLOT.pack_into(self.mem, free * self.SLOT.size, key, until)


@dataclass
class McpBook:
    """The MCP addresses to try, in order, and which ones are held back for a while."""

    cfg: ConverterConfig
    held: SharedHolds = field(default_factory=SharedHolds)
    cookies: dict[str, bytes] = field(default_factory=dict)
    refusals: dict[str, list] = field(default_factory=dict)
    local: Any = frozenset()  # the CPE's own addresses: a LocalAddresses in a worker
    _dhcp: tuple[tuple[str, ...], ...] = ()
    _stat: tuple | None = None
    _checked: float = -1.0
    _loads: int = 0  # times mcp.json was read
    _judged: tuple | None = None  # (_loads, the local addresses' generation) the verdicts are for
    _usable: tuple[str, ...] = ()
    _said: tuple | None = None  # the refusals last logged

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        self._checked = now
        try:
            st = os.stat(self.cfg.mcp_file)
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            key = None
        if key == self._stat:
            return
        self._stat = key
        try:
            state = read_json(self.cfg.mcp_file, {}) or {}
        except StateFileError as exc:
            log.warning("%s; keeping the MCPs known before", exc)
            return
        self._dhcp = dhcp_mcps(state)
        self._loads += 1
        log.info("MCPs from %s: %s", self.cfg.mcp_file, "; ".join(",".join(m) for m in self._dhcp) or "none")

    def addresses(self) -> list[str]:
        """The MCP addresses to try, in order: mcp.json's, then the static ones, without
        those `mcp_verdicts` refuses. Judged again when the file or the local addresses change;
        the refusals are logged once per change, not per connection."""
        self._refresh()
        key = (self._loads, getattr(self.local, "generation", 0))
        if key != self._judged:
            new_file = self._judged is None or key[0] != self._judged[0]
            self._judged = key
            dhcp, refused = mcp_verdicts(self._dhcp, self.cfg.mcp_prefixes, self.cfg.lan_prefixes, self.local)
            static, refused_static = mcp_verdicts(self.cfg.mcps, (), (), self.local)  # the rest was checked at load
            seen: list[str] = []
            for mcp in (*dhcp, *static):
                seen.extend(a for a in mcp if a not in seen)
            self._usable = tuple(seen)
            refused += refused_static
            if refused and (new_file or refused != self._said):
                log.warning("MCP addresses not used: %s", "; ".join(str(r) for r in refused))
            elif not refused and self._said:
                log.info("every MCP address known is used again")
            self._said = refused
        return list(self._usable)

    def usable(self, address: str) -> bool:
        return self.held.get(address) is None

    def hold(self, address: str, seconds: float, why: str) -> None:
        self.held.set(address, time.monotonic() + seconds)
        log.warning("MCP %s: %s; not used for %g s", address, why, seconds)

    def refused(self, address: str, destination: str) -> bool:
        """Not Authorized for ``destination``: that destination is not asked of this MCP for a
        while. Refusals for REFUSALS_TO_HOLD different destinations within a minute say the
        MCP refuses this CPE: True, hold the MCP itself."""
        now = time.monotonic()
        self.held.set(f"{address}|{destination}", now + NOT_AUTHORIZED_HOLD_S)
        recent = [(t, d) for t, d in self.refusals.get(address, []) if now - t < 60 and d != destination]
        recent.append((now, destination))
        self.refusals[address] = recent
        return len(recent) >= REFUSALS_TO_HOLD

    def usable_for(self, address: str, destination: str) -> bool:
        return self.usable(address) and self.held.get(f"{address}|{destination}") is None


def dhcp_mcps(state: Any) -> tuple[tuple[str, ...], ...]:
    """The MCP lists of mcp.json, WANs in name order, IPv4-learned first, without repeats."""
    out: list[tuple[str, ...]] = []
    wans = state.get("wans", {}) if isinstance(state, dict) else {}
    for name in sorted(wans):
        for fam in ("v4", "v6"):
            entry = wans[name].get(fam) if isinstance(wans[name], dict) else None
            for mcp in (entry or {}).get("mcps", []) if isinstance(entry, dict) else []:
                t = tuple(str(a) for a in mcp)
                if t and t not in out:
                    out.append(t)
    return tuple(out)


# ---------------------------------------------------------------- one LAN connection

def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


class Conversion:
    """A LAN connection on its way to an MCP (or, failing every MCP, to its destination).

    States: ``mcp`` (connecting to an MCP, sending the Convert message and the client's
    first data, waiting for the MCP's Convert message), ``direct`` (connecting straight to
    the destination), then a Pair relays and this object is done."""

    def __init__(self, worker: ConverterWorker, lan: socket.socket):
        self.w, self.loop, self.lan = worker, worker.loop, lan
        lan.setblocking(False)
        self.dst = lan.getsockname()[:2]  # TPROXY keeps the original destination
        self.src = lan.getpeername()[:2]
        self.early = bytearray()  # LAN data not yet confirmed by an MCP: replayed on a retry
        self.lan_eof = False
        self.up: socket.socket | None = None
        self.address: str | None = None
        self.out = bytearray()
        self.sent = 0
        self.reply = bytearray()
        self.connected = False
        self.timer = None
        self.cookie_retries = 0  # a stale cookie costs one retry, a challenge another
        self.sent_cookie = False
        self.finished = False
        self.tried: list[str] = []
        self.candidates = iter(worker.book.addresses())
        self.budget_end = time.monotonic() + worker.cfg.connect_timeout_s  # for MCPs that do not answer
        self._next()

    def __repr__(self) -> str:
        return f"[{self.src[0]}]:{self.src[1]} -> [{self.dst[0]}]:{self.dst[1]}"

    # -- choosing where to go
    def _next(self) -> None:
        if time.monotonic() >= self.budget_end:
            self._connect_direct()
            return
        for address in self.candidates:
            if self.w.book.usable_for(address, self.dst[0]):
                self._connect_mcp(address)
                return
        self._connect_direct()

    def _connect_mcp(self, address: str, retry_with_cookie: bool = False) -> None:
        self.address = address
        self.tried.append(address)
        self.connected = False
        self.reply.clear()
        try:
            up = socket.socket(_family(address), socket.SOCK_STREAM, self.w.proto)
        except OSError as exc:
            log.error("cannot open an MPTCP socket (%s): is net.mptcp.enabled 1?", exc)
            self._connect_direct()
            return
        up.setblocking(False)
        with contextlib.suppress(OSError):
            up.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)
        set_rcvbuf(up, self.w.cfg.mptcp_rcvbuf)
        self.up = up
        cookie = self.w.book.cookies.get(address)
        self.sent_cookie = cookie is not None
        self.out = bytearray(rfc8803.connect_message(self.dst[0], self.dst[1], cookie=cookie)) + self.early
        self.sent = 0
        err = up.connect_ex((address, self.w.cfg.mcp_port))
        if err and err not in WOULD_BLOCK:
            self._mcp_failed(f"connect: {os.strerror(err)}")
            return
        if err == 0:
            self._flush()  # TCP_FASTOPEN_CONNECT: this send carries the SYN (and the data if there is a cookie)
        left = self.budget_end - time.monotonic()
        if left >= 0.9 * self.w.cfg.connect_timeout_s:
            self._timer(left, lambda: self._mcp_failed("no answer", timeout=True))
        else:
            # What is left of this connection's wait is too short to judge the MCP: go direct,
            # and let a later connection give this address its full connect_timeout_s.
            self._timer(max(0.05, left), self._budget_spent)
        self._watch()

    def _connect_direct(self) -> None:
        self.address = None
        self.connected = False
        if self.w.local.is_own(self.dst[0]):
            # The address became the CPE's after the accept: going there would loop back.
            log.info("%r: direct: the destination is now one of the CPE's own addresses", self)
            self.w.stats["not_diverted"] += 1
            self._abort()
            return
        try:
            up = socket.socket(_family(self.dst[0]), socket.SOCK_STREAM)
        except OSError as exc:
            log.error("%r: cannot open a socket: %s", self, exc)
            self._abort()
            return
        up.setblocking(False)
        self.up = up
        self.out = bytearray(self.early)
        self.sent = 0
        err = up.connect_ex(self.dst)
        if err and err not in WOULD_BLOCK:
            log.info("%r: direct: %s", self, os.strerror(err))
            self._abort()
            return
        self.w.stats["direct"] += 1
        if self.tried:
            log.debug("%r: no MCP answered (%s): direct", self, ", ".join(self.tried))
        self._timer(60.0, lambda: self._direct_failed("no answer in 60 s"))
        self._watch()

    # -- events
    def _timer(self, seconds: float, fn) -> None:
        if self.timer:
            self.timer.cancel()
        self.timer = self.loop.later(seconds, fn)

    def _watch(self) -> None:
        if self.finished:
            return
        up_mask = IN
        if not self.connected or self.sent < len(self.out):
            up_mask |= OUT
        self.loop.set(self.up.fileno(), up_mask, self._up_event)
        lan_mask = IN if not self.lan_eof and len(self.early) < self.w.cfg.replay_limit else 0
        self.loop.set(self.lan.fileno(), lan_mask, self._lan_event)

    def _flush(self) -> None:
        while self.sent < len(self.out):
            try:
                n = self.up.send(memoryview(self.out)[self.sent:])
            except OSError as exc:
                if exc.errno in WOULD_BLOCK:
                    return
                raise
            self.sent += n

    def _lan_event(self, fd: int, ev: int) -> None:
        if self.finished:
            return
        try:
            data = self.lan.recv(self.w.cfg.replay_limit - len(self.early))
        except BlockingIOError:
            return
        except OSError:
            self._close_up()
            self._abort()
            return
        if not data:
            self.lan_eof = True
        else:
            self.early += data
            self.out += data
            if self.connected:
                self._up_send()
        self._watch()

    def _up_send(self) -> bool:
        try:
            self._flush()
            return True
        except OSError as exc:
            self._failed(os.strerror(exc.errno))
            return False

    def _up_event(self, fd: int, ev: int) -> None:
        if self.finished:
            return
        if not self.connected:
            err = self.up.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._failed(os.strerror(err))
                return
            try:
                self.up.getpeername()
            except OSError:
                return  # not yet
            self.connected = True
            if self.address is None:
                self._start_direct_relay()
                return
            self._timer(self.w.cfg.reply_timeout_s, lambda: self._mcp_failed("no Convert answer", timeout=True))
        if not self._up_send():
            return
        if self.address is not None:
            try:
                data = self.up.recv(4096)
            except BlockingIOError:
                data = None
            except OSError as exc:
                self._mcp_failed(f"reset before answering ({os.strerror(exc.errno)})")
                return
            if data == b"":
                self._mcp_failed("closed before answering")
                return
            if data:
                self.reply += data
                if self._answer():
                    return
        self._watch()

    def _answer(self) -> bool:
        """True once the MCP's Convert message is complete and acted on."""
        try:
            tlvs, end = rfc8803.parse(self.reply)
        except rfc8803.Incomplete:
            return False
        except rfc8803.ConvertError as exc:
            self._mcp_failed(f"answered with a bad Convert message: {exc}")
            return True
        error = next((t for t in tlvs if isinstance(t, rfc8803.Error)), None)
        if error is None:
            self._start_relay(bytes(self.reply[end:]))
            return True
        code = error.code
        name = rfc8803.ErrorCode(code).name if code in rfc8803.ErrorCode._value2member_map_ else str(code)
        if code == rfc8803.ErrorCode.MISSING_COOKIE and self.cookie_retries < 2:
            self.cookie_retries += 1
            self.w.book.cookies[self.address] = error.cookie().cookie
            address = self.address
            self._close_up()
            log.info("%r: MCP %s asks for a cookie: asking again with it", self, address)
            self._connect_mcp(address)
            return True
        if code == rfc8803.ErrorCode.NOT_AUTHORIZED and self.sent_cookie and self.cookie_retries < 2:
            # Our cookie is stale (a cookie is bound to a time): ask again without it.
            self.cookie_retries += 1
            self.w.book.cookies.pop(self.address, None)
            address = self.address
            self._close_up()
            self._connect_mcp(address)
            return True
        if code in DESTINATION_ERRORS:
            log.info("%r: MCP %s: %s from the destination: resetting the LAN connection", self, self.address, name)
            self.w.stats["refused"] += 1
            self._close_up()
            self._abort()
            return True
        if code == rfc8803.ErrorCode.NOT_AUTHORIZED:
            if not self.w.book.refused(self.address, self.dst[0]):
                log.info("%r: MCP %s refuses this destination: not asked again for %g s", self, self.address,
                         NOT_AUTHORIZED_HOLD_S)
                self._close_up()
                self._next()
                return True
            hold = NOT_AUTHORIZED_HOLD_S
        elif code in (rfc8803.ErrorCode.RESOURCE_EXCEEDED, rfc8803.ErrorCode.NETWORK_FAILURE):
            hold = float(error.retry_after())
        else:
            hold = self.w.cfg.retry_after_s
        self._mcp_failed(f"Error {name}", hold=hold)
        return True

    # -- outcomes
    def _failed(self, why: str) -> None:
        if self.address is None:
            self._direct_failed(why)
        else:
            self._mcp_failed(why)

    def _mcp_failed(self, why: str, *, timeout: bool = False, hold: float | None = None) -> None:
        if self.finished:
            return
        self.w.book.hold(self.address, hold if hold is not None else self.w.cfg.retry_after_s, why)
        self._close_up()
        self._next()

    def _budget_spent(self) -> None:
        if self.finished or self.connected:
            return
        self._close_up()
        self._connect_direct()

    def _direct_failed(self, why: str) -> None:
        log.info("%r: direct: %s", self, why)
        self._close_up()
        self._abort()

    def _close_up(self) -> None:
        if self.timer:
            self.timer.cancel()
            self.timer = None
        if self.up is not None:
            self.loop.forget(self.up.fileno(), closing=True)
            abort(self.up)
            self.up = None

    def _abort(self) -> None:
        self.finished = True
        if self.timer:
            self.timer.cancel()
        self.loop.forget(self.lan.fileno(), closing=True)
        abort(self.lan)
        self.w.done(self)

    def _start_relay(self, rest: bytes) -> None:
        self.w.stats["converted"] += 1
        log.debug("%r: via MCP %s", self, self.address)
        self._hand_over(bytes(self.out[self.sent:]), rest)

    def _start_direct_relay(self) -> None:
        self._hand_over(bytes(self.out[self.sent:]), b"")

    def _hand_over(self, to_up: bytes, to_lan: bytes) -> None:
        if self.timer:
            self.timer.cancel()
        self.finished = True
        up, self.up = self.up, None
        self.w.done(self)
        try:
            # Both fds stay registered: the relay takes their epoll entries over.
            self.w.relay(self.lan, up, to_up, to_lan)
        except OSError as exc:
            log.warning("%r: cannot relay: %s", self, exc)
            for sock in (self.lan, up):
                self.loop.forget(sock.fileno(), closing=True)
                abort(sock)


# ---------------------------------------------------------------- what reaches the listener

REFUSAL_LOG_S = 10.0


def not_diverted(dst: tuple, listen_port: int, local: Any) -> str | None:
    """Why a connection the listener accepted is not one TPROXY diverted from the LAN, or
    None. Diverted connections keep their destination, another host's; anything to one of
    the CPE's own addresses (or loopback, multicast, unspecified) came straight to the port:
    from a WAN, from the LAN to the CPE, from the CPE itself. ``local``: a LocalAddresses."""
    address, port = dst[0], dst[1]
    if not local.is_own(address):
        return None
    if port == listen_port:
        return "to the listen port on the CPE's own address"
    return "to the CPE's own address"


class RefusalLog:
    """The lines saying connections were refused: one line at most per ``every`` seconds,
    with how many since the line before and one of them as an example. ``note`` returns
    the line to log now, if any; ``flush`` the one owed when the period ends."""

    def __init__(self, every: float = REFUSAL_LOG_S):
        self.every = every
        self.next_line = float("-inf")  # when a line may be written again
        self.count = 0  # refused since the last line
        self.example = ""

    def _line(self, now: float) -> str:
        line = (f"refused {self.count} connection(s) to the converter's port not diverted from the LAN "
                f"since the last such line, e.g. {self.example}")
        self.count, self.example, self.next_line = 0, "", now + self.every
        return line

    def note(self, now: float, example: str) -> str | None:
        self.count += 1
        self.example = self.example or example
        return self._line(now) if now >= self.next_line else None

    def flush(self, now: float) -> str | None:
        return self._line(now) if self.count and now >= self.next_line else None


# ---------------------------------------------------------------- a worker process

class ConverterWorker:
    def __init__(self, cfg: ConverterConfig, config_path: Path | None, listeners: list[socket.socket],
                 holds: SharedHolds | None = None, local: Any = None):
        self.cfg, self.config_path, self.listeners = cfg, config_path, listeners
        self.loop = Loop()
        self.local = local if local is not None else LocalAddresses()
        self.book = McpBook(cfg, holds or SharedHolds(), local=self.local)
        self.pending: set[Conversion] = set()
        self.pairs: set[Pair] = set()
        self.stats = {"converted": 0, "direct": 0, "refused": 0, "not_diverted": 0}
        self.refusals = RefusalLog()
        self.refusal_timer = None
        self.proto = IPPROTO_MPTCP

    def done(self, conv: Conversion) -> None:
        self.pending.discard(conv)

    def relay(self, lan: socket.socket, up: socket.socket, to_up: bytes, to_lan: bytes) -> None:
        pair = Pair(self.loop, lan, up, pipe_size=self.cfg.pipe_size, on_close=lambda p, why: self.pairs.discard(p),
                    head_ab=to_up, head_ba=to_lan)
        if not pair.closed:
            self.pairs.add(pair)

    def _accept(self, fd: int, ev: int) -> None:
        sock = next(s for s in self.listeners if s.fileno() == fd)
        self.local.refresh()  # an address the kernel added before these connections came is known
        for _ in range(64):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("accept: %s", exc)
                return
            try:
                dst, src = conn.getsockname()[:2], conn.getpeername()[:2]
                why = not_diverted(dst, self.cfg.listen_port, self.local)
                if why is not None:
                    self._refuse(conn, src, dst, why)
                    continue
                self.pending.add(Conversion(self, conn))
            except OSError as exc:
                log.info("LAN connection gone before it could be converted: %s", exc)
                abort(conn)

    def _refuse(self, conn: socket.socket, src: tuple, dst: tuple, why: str) -> None:
        """Closed at once with RST, before any MCP is asked; counted, and told at most once per period."""
        abort(conn)
        self.stats["not_diverted"] += 1
        line = self.refusals.note(time.monotonic(), f"[{src[0]}]:{src[1]} -> [{dst[0]}]:{dst[1]} ({why})")
        if line:
            log.warning("%s", line)
        elif self.refusal_timer is None:
            self.refusal_timer = self.loop.later(max(0.0, self.refusals.next_line - time.monotonic()), self._refusals_due)

    def _refusals_due(self) -> None:
        self.refusal_timer = None
        line = self.refusals.flush(time.monotonic())
        if line:
            log.warning("%s", line)

    def _reload(self) -> None:
        try:
            cfg = load(self.config_path, self.cfg.host)
        except InventoryError as exc:
            log.error("reload refused: %s", exc)
            return
        if any(getattr(cfg, key) != getattr(self.cfg, key) for key in START_ONLY):
            return  # the supervisor refused it and said why
        self.cfg = cfg
        held, cookies = self.book.held, self.book.cookies
        self.book = McpBook(self.cfg, held, cookies, local=self.local)

    def run(self, signals: WorkerSignals) -> int:
        for s in self.listeners:
            s.setblocking(False)
            self.loop.set(s.fileno(), IN, self._accept)
        self.loop.set(self.local.fileno(), IN, self.local.on_readable)
        signals.watch(self.loop)
        worker_ready()
        deadline = None

        def done() -> bool:
            nonlocal deadline
            if signals.reload and self.config_path is not None:
                signals.reload = False
                self._reload()
            if signals.drain and deadline is None:
                deadline = time.monotonic() + self.cfg.drain_timeout_s
                for s in self.listeners:
                    self.loop.forget(s.fileno())
                    s.close()
            if deadline is not None:
                return (not self.pairs and not self.pending) or time.monotonic() >= deadline
            return False

        self.loop.run(done)
        return 0


def listeners(cfg: ConverterConfig) -> list[socket.socket]:
    """The TPROXY listeners (IPv4 and IPv6) of one worker, SO_REUSEPORT so each worker has its own."""
    out = []
    for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.setsockopt(socket.IPPROTO_IPV6, 75, 1)  # IPV6_TRANSPARENT
        else:
            s.setsockopt(socket.SOL_IP, 19, 1)  # IP_TRANSPARENT
        s.bind((addr, cfg.listen_port))
        s.listen(4096)
        out.append(s)
    return out


# ---------------------------------------------------------------- the command

def main(args: argparse.Namespace) -> int:
    cfg = load_or_say("converter", load, args.config)
    if cfg is None:
        return 1
    if args.check:
        print(f"{args.config}: LAN {', '.join(cfg.lan_interfaces)}, {len(cfg.mcps)} static MCP(s): OK")
        return 0
    setup_logging("converter", args.verbose)
    raise_fd_limit()
    n = worker_count(cfg.workers)
    try:
        socks = [listeners(cfg) for _ in range(n)]
    except OSError as exc:
        print(f"mptcp-cpe converter: {cfg.host}: listen_port: cannot listen: {exc.strerror} (got {cfg.listen_port})", file=sys.stderr)
        return 1
    try:
        kernel = Interception()
        kernel.apply(cfg)
    except Exception as exc:  # noqa: BLE001 - one clear line, nothing left half-made
        print(f"mptcp-cpe converter: {cfg.host}: cannot set up interception: {exc}", file=sys.stderr)
        with contextlib.suppress(Exception):
            kernel.remove(cfg)
        return 1
    state = {"cfg": cfg}
    holds = SharedHolds()  # before the workers fork: they share it

    def work(index: int) -> int:
        mine = socks[index]
        for i, group in enumerate(socks):
            if i != index:
                for s in group:
                    s.close()
        signals = WorkerSignals()
        return ConverterWorker(state["cfg"], args.config, mine, holds).run(signals)

    def reload() -> bool:
        try:
            new = load(args.config, cfg.host)
        except InventoryError as exc:
            log.error("reload refused: %s", exc)
            return False
        for key in START_ONLY:
            if getattr(new, key) != getattr(state["cfg"], key):
                log.error("reload refused: %s: %s: changes only with a restart (got %r)", new.host, key, getattr(new, key))
                return False
        try:
            kernel.apply(new)
        except Exception as exc:  # noqa: BLE001
            log.error("reload refused: cannot apply the interception rules: %s", exc)
            kernel.apply(state["cfg"])
            return False
        state["cfg"] = new
        log.info("config reloaded")
        return True

    def on_exit() -> None:
        kernel.remove(state["cfg"])  # again: a worker may have failed to start
        kernel.close()

    # Interception stops first when draining: new LAN connections are forwarded directly
    # while the live ones finish (their packets still find their sockets).
    def on_drain() -> None:
        kernel.apply(state["cfg"], intercept=False)
        for group in socks:  # the workers close theirs; the parent's copies would keep them listening
            for s in group:
                s.close()

    sup = Supervisor("converter", n, work, reload, cfg.drain_timeout_s, on_drain=on_drain, on_exit=on_exit)
    for group in socks:
        for s in group:
            s.set_inheritable(False)
    return sup.run()


def add_parser(sub: argparse._SubParsersAction) -> None:
    add_daemon_parser(sub, "converter", "the CPE-side converter: LAN TCP to MPTCP via an MCP (RFC 8803)", "cpe_converter", main)
