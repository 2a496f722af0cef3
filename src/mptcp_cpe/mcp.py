"""``mptcp-cpe mcp``: the network side of RFC 8803, the MPTCP Conversion Point.

An MPTCP listener (TCP Fast Open on, so the client's Convert message rides in its SYN).
For each connection: the client's address must lie in ``clients`` (otherwise Error Not
Authorized: an MCP is never an open proxy); the Convert message is read and checked
(malformed → its Error code, echoing the message); the Connect TLV's destination must not
be in ``deny_destinations`` nor one of the client prefixes (hairpinning → Not
Authorized); then a TCP connection to the destination within ``connect_timeout_s``. On
success the MCP answers with a Convert message of its own (the fixed header, no TLV),
sends on whatever the client had already sent, and relays both ways with splice. On
failure it answers with the Error TLV for what happened and closes (FIN, never RST at
once, so the Error reaches the client).

Limits: ``max_connections`` and ``max_connections_per_client`` answer Resource Exceeded
with ``retry_after_s``. They hold across all workers: a ClientTable shared by them counts
each client address's connections per worker, plus each worker's total (refusals still
lingering count in the total, not in their client's count). A worker reads the others'
counts without waiting for them, so a limit may be passed by as many connections as other
workers accept in the same instant. The table is sized at start for ``max_connections``
(a reload does not resize it: past the addresses it was sized for, a new client address
may get Resource Exceeded until a restart, and the reload says so); a full table refuses
the new address with Resource Exceeded and a log line naming it. Should the table's lock
not be had within 0.2 s, a client new to the worker is held to the worker's share of
``max_connections_per_client`` instead. ``max_subflows`` is the kernel's per-connection
subflow limit, set at start. When more than ``cookie_syn_rate`` connections a second
arrive (per worker's share), a connection without a valid Cookie TLV gets Missing Cookie
with a cookie bound to the client's address, valid two minutes.

::

    {"host": "mcp-1", "listen": "::", "port": 5124, "clients": ["198.51.100.0/24"],
     "deny_destinations": [], "max_connections": 20000, "max_connections_per_client": 2000,
     "max_subflows": 8, "connect_timeout_s": 10, "handshake_timeout_s": 10,
     "cookie_syn_rate": 0, "retry_after_s": 30, "workers": 0, "pipe_size": 262144,
     "mptcp_rcvbuf": 4194304, "drain_timeout_s": 30}

Signals: SIGHUP re-reads the config (bad: refused with one line, the running one kept;
the START_ONLY settings change only with a restart), SIGTERM stops accepting and drains.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import hashlib
import hmac
import ipaddress
import logging
import math
import mmap
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import rfc8803
from .inventory import InventoryError
from .relay import (IN, OUT, Loop, Pair, Supervisor, WorkerSignals, abort, raise_fd_limit, set_rcvbuf, worker_count,
                    worker_ready)
from .settings import (
    ConfigError,
    add_daemon_parser,
    check_keys,
    config_host,
    integer,
    load_or_say,
    number,
    prefixes,
    read_config,
    setup_logging,
)

log = logging.getLogger(__name__)

IPPROTO_MPTCP = getattr(socket, "IPPROTO_MPTCP", 262)
TCP_FASTOPEN = getattr(socket, "TCP_FASTOPEN", 23)
WOULD_BLOCK = frozenset({errno.EAGAIN, errno.EINPROGRESS, errno.EALREADY})
TOP_KEYS = frozenset({"host", "listen", "port", "clients", "deny_destinations", "max_connections",
                      "max_connections_per_client", "max_subflows", "connect_timeout_s", "handshake_timeout_s",
                      "cookie_syn_rate", "retry_after_s", "workers", "pipe_size", "mptcp_rcvbuf", "drain_timeout_s"})
# TCP options a client may ask for in its Connect TLV: the kernel handles these on the
# MCP-to-server connection by itself (MSS, window scale, SACK, timestamps, Fast Open).
SUPPORTED_TCP_OPTIONS = frozenset({2, 3, 4, 8, 34})
ANNOUNCED_TCP_OPTIONS = (4, 8, 34)  # Supported TCP Extensions (§6.2.4 forbids 0-3 and 5, 29)
START_ONLY = ("listen", "port", "workers", "drain_timeout_s", "mptcp_rcvbuf")  # a reload changing one is refused
COOKIE_PERIOD_S = 60  # a cookie is valid in its minute and the next
LINGER_S = 5.0  # after an Error: wait this long for the client's FIN, discarding what it sends
ICMP_NET_UNREACHABLE, ICMP_HOST_UNREACHABLE, ICMP_ADMIN_PROHIBITED = 0, 1, 13


@dataclass(frozen=True)
class McpConfig:
    host: str
    clients: tuple
    listen: str = "::"
    port: int = 5124
    deny_destinations: tuple = ()
    max_connections: int = 20000
    max_connections_per_client: int = 2000
    max_subflows: int | None = 8
    connect_timeout_s: float = 10.0
    handshake_timeout_s: float = 10.0
    cookie_syn_rate: int = 0
    retry_after_s: int = 30
    workers: int = 0
    pipe_size: int = 262144
    mptcp_rcvbuf: int = 4194304  # fixed receive buffer of client sockets (0: autotuning), see relay.set_rcvbuf
    drain_timeout_s: float = 30.0


def from_dict(raw: Any, host: str = "localhost") -> McpConfig:
    host = config_host(raw, host)
    check_keys(host, "(config)", raw, TOP_KEYS)
    d = McpConfig(host=host, clients=())
    if "clients" not in raw:
        raise ConfigError(host, "clients", "missing: an MCP accepts only the client prefixes it is given", show_value=False)
    clients = prefixes(host, "clients", raw["clients"])
    if not clients:
        raise ConfigError(host, "clients", "empty: the MCP would refuse everyone", raw["clients"])
    for i, p in enumerate(clients):
        if p.prefixlen == 0:
            raise ConfigError(host, f"clients[{i}]", "a default prefix would make the MCP an open proxy", str(p))
    listen = raw.get("listen", d.listen)
    try:
        if not isinstance(listen, str):
            raise ValueError
        ipaddress.ip_address(listen)
    except ValueError:
        raise ConfigError(host, "listen", "not an IP address", listen) from None
    max_subflows = raw.get("max_subflows", d.max_subflows)
    cfg = McpConfig(
        host=host,
        clients=clients,
        listen=listen,
        port=integer(host, "port", raw.get("port", d.port), 1, 65535),
        deny_destinations=prefixes(host, "deny_destinations", raw.get("deny_destinations", [])),
        max_connections=integer(host, "max_connections", raw.get("max_connections", d.max_connections), 1, 10**7),
        max_connections_per_client=integer(host, "max_connections_per_client",
                                           raw.get("max_connections_per_client", d.max_connections_per_client), 1, 10**7),
        max_subflows=None if max_subflows is None else integer(host, "max_subflows", max_subflows, 0, 8),
        connect_timeout_s=number(host, "connect_timeout_s", raw.get("connect_timeout_s", d.connect_timeout_s), 0.1, 300),
        handshake_timeout_s=number(host, "handshake_timeout_s", raw.get("handshake_timeout_s", d.handshake_timeout_s), 0.1, 300),
        cookie_syn_rate=integer(host, "cookie_syn_rate", raw.get("cookie_syn_rate", d.cookie_syn_rate), 0, 10**7),
        retry_after_s=integer(host, "retry_after_s", raw.get("retry_after_s", d.retry_after_s), 1, 255),
        workers=integer(host, "workers", raw.get("workers", d.workers), 0, 256),
        pipe_size=integer(host, "pipe_size", raw.get("pipe_size", d.pipe_size), 4096, 1 << 20),
        mptcp_rcvbuf=integer(host, "mptcp_rcvbuf", raw.get("mptcp_rcvbuf", d.mptcp_rcvbuf), 0, 1 << 30),
        drain_timeout_s=number(host, "drain_timeout_s", raw.get("drain_timeout_s", d.drain_timeout_s), 0, 3600),
    )
    if cfg.max_connections_per_client > cfg.max_connections:
        raise ConfigError(host, "max_connections_per_client", f"above max_connections ({cfg.max_connections})",
                          cfg.max_connections_per_client)
    return cfg


def load(path: Path, host: str = "localhost") -> McpConfig:
    return from_dict(read_config(path, host), host)


def _plain(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    a = ipaddress.ip_address(address.split("%")[0])
    return a.ipv4_mapped or a if a.version == 6 else a


def in_any(address, nets) -> bool:
    return any(address.version == n.version and address in n for n in nets)


def connect_error(err: int) -> bytes:
    """The Error message for a failed connection to the destination (errno of connect)."""
    code = rfc8803.ErrorCode
    if err == errno.ECONNREFUSED:
        return rfc8803.error_message(code.CONNECTION_RESET)
    icmp = {errno.ENETUNREACH: ICMP_NET_UNREACHABLE, errno.EHOSTUNREACH: ICMP_HOST_UNREACHABLE,
            errno.EHOSTDOWN: ICMP_HOST_UNREACHABLE, errno.EACCES: ICMP_ADMIN_PROHIBITED,
            errno.EPERM: ICMP_ADMIN_PROHIBITED,
            # No answer at all: the destination's doing, not the MCP's (Network Failure
            # would make clients leave a working MCP).
            errno.ETIMEDOUT: ICMP_HOST_UNREACHABLE}
    if err in icmp:
        return rfc8803.error_message(code.DESTINATION_UNREACHABLE, bytes([icmp[err]]))
    if err in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EADDRNOTAVAIL):
        return rfc8803.error_message(code.RESOURCE_EXCEEDED, b"\0")
    return rfc8803.error_message(code.NETWORK_FAILURE, b"\0")


class Cookies:
    """Stateless cookies: HMAC of the client's address and the minute, under a secret made
    at start (shared by the workers, forked from the same parent)."""

    def __init__(self, secret: bytes):
        self.secret = secret

    def make(self, client: str, period: int | None = None) -> bytes:
        period = int(time.time() // COOKIE_PERIOD_S) if period is None else period
        return hmac.new(self.secret, f"{client}|{period}".encode(), hashlib.sha256).digest()[:12]

    def valid(self, client: str, cookie: bytes) -> bool:
        now = int(time.time() // COOKIE_PERIOD_S)
        return any(hmac.compare_digest(self.make(client, p), bytes(cookie[:12])) for p in (now, now - 1)) and len(cookie) >= 12


class RateMeter:
    """Connections in the last second (a sliding one-second window)."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def tick(self) -> int:
        now = time.monotonic()
        self.stamps.append(now)
        cut = 0
        while cut < len(self.stamps) and self.stamps[cut] < now - 1.0:
            cut += 1
        del self.stamps[:cut]
        return len(self.stamps)


class ClientTableFull(Exception):
    """No slot for a new client address within ClientTable.MAX_PROBES of its hash."""


class ClientTableBusy(Exception):
    """The table's lock was not had within ClientTable.LOCK_WAIT_S."""


class ClientTable:
    """Connections per client address and per worker, shared by the workers (a memfd mapped
    before they fork): the MCP's limits hold across all of them.

    Each worker writes only its own column of counts and its own total, so counts need no
    lock; a worker reading the others' races with their writes (a limit passed by what they
    accept in that instant). Addresses are 16-octet keys in slots found by open addressing
    from a keyed hash (an address cannot choose its slot), at most MAX_PROBES apart. Keys
    are read and written only under an fcntl lock, which the kernel releases if its holder
    dies (a semaphore would stay taken). A key is placed in the first slot of its probe
    sequence whose counts are all zero (never used, or reclaimed); a worker keeps a key's
    slot without the lock only while its own count there is above zero, which no one else
    can then reclaim. A worker starting, first or after a crash, zeroes its own column:
    a dead worker's counts last until it is started again.

    Layout: the workers' totals, then their columns (column w: ``slots`` counts), then the
    keys. Memory: ``slots`` x (16 + 4 x workers) octets."""

    MIN_SLOTS, MAX_SLOTS = 1 << 10, 1 << 20
    MAX_PROBES = 64
    LOCK_WAIT_S = 0.2
    NEVER_USED = bytes(16)  # "::", never a peer

    def __init__(self, workers: int, slots: int):
        if slots & (slots - 1):
            raise ValueError(f"slots must be a power of two (got {slots})")
        self.workers, self.slots = workers, slots
        ints = workers * (1 + slots)
        self.fd = os.memfd_create("mptcp-cpe-mcp-clients")
        os.ftruncate(self.fd, 4 * ints + 16 * slots)
        self.mem = mmap.mmap(self.fd, 4 * ints + 16 * slots)
        view = memoryview(self.mem)
        self.totals = view[:4 * workers].cast("i")
        self.counts = view[4 * workers:4 * ints].cast("i")
        self.keys = view[4 * ints:]
        self.secret = os.urandom(16)

    @classmethod
    def slots_for(cls, max_connections: int) -> int:
        """Slots for ``max_connections``: every live connection has at most one client
        address, and a table at most half full keeps probe sequences short."""
        return min(cls.MAX_SLOTS, max(cls.MIN_SLOTS, 1 << (2 * max_connections - 1).bit_length()))

    @property
    def sized_for(self) -> int:
        """The client addresses the table is sized for (it takes more while probes allow)."""
        return self.slots // 2

    @staticmethod
    def key(address: str) -> bytes:
        """16 octets: an IPv6 address as it is, an IPv4 one as its IPv4-mapped form (peers
        come through _plain, so no IPv6 peer is ever mapped: the keys never collide)."""
        if ":" in address:
            return socket.inet_pton(socket.AF_INET6, address)
        return b"\0" * 10 + b"\xff\xff" + socket.inet_pton(socket.AF_INET, address)

    def count(self, slot: int) -> int:
        """Connections of the slot's client, all workers."""
        return sum(self.counts[slot::self.slots])

    def own(self, slot: int, worker: int) -> int:
        return self.counts[worker * self.slots + slot]

    def add(self, slot: int, worker: int, delta: int) -> int:
        """Add ``delta`` to ``worker``'s count in ``slot`` (only that worker may); the new count."""
        i = worker * self.slots + slot
        self.counts[i] += delta
        return self.counts[i]

    def total(self) -> int:
        """Connections of all workers."""
        return sum(self.totals)

    def set_total(self, worker: int, n: int) -> None:
        self.totals[worker] = n

    def clear(self, worker: int) -> None:
        """Zero ``worker``'s column and total: what a worker (re)starting does first."""
        start = 4 * (self.workers + worker * self.slots)
        self.mem[start:start + 4 * self.slots] = bytes(4 * self.slots)
        self.totals[worker] = 0

    def claim(self, key: bytes, worker: int, limit: int) -> int | None:
        """The slot of ``key``, one more connection counted in ``worker``'s column there;
        None (and nothing counted) when the key's connections are at ``limit`` already.
        Raises ClientTableFull or ClientTableBusy."""
        if not self._lock():
            raise ClientTableBusy
        try:
            slot, found = self._find(key)
            if self.count(slot) >= limit:  # a slot not yet the key's counts nothing
                return None
            if not found:
                self.keys[16 * slot:16 * slot + 16] = key
            self.add(slot, worker, 1)  # before the lock goes: the slot cannot be reclaimed now
            return slot
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def _find(self, key: bytes) -> tuple[int, bool]:
        """(slot, True) where ``key`` is, else (the slot it would take, False). Under the lock:
        keys only move under it, and a never-used slot ends every probe sequence."""
        digest = hashlib.blake2b(key, digest_size=8, key=self.secret).digest()
        home, mask = int.from_bytes(digest, "little"), self.slots - 1
        free = None
        for i in range(min(self.MAX_PROBES, self.slots)):
            slot = (home + i) & mask
            k = self.keys[16 * slot:16 * slot + 16]
            if k == key:
                return slot, True
            if k == self.NEVER_USED:
                return (slot if free is None else free), False
            if free is None and self.count(slot) == 0:
                free = slot
        if free is None:
            raise ClientTableFull
        return free, False

    def close(self) -> None:
        for view in (self.totals, self.counts, self.keys):
            view.release()
        self.mem.close()
        os.close(self.fd)

    def _lock(self) -> bool:
        deadline = time.monotonic() + self.LOCK_WAIT_S
        while True:
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() >= deadline:
                    return False
            time.sleep(0.001)


class Session:
    """One client connection: read the Convert message, check it, connect, answer, relay."""

    def __init__(self, worker: McpWorker, client: socket.socket, peer: str, slot: int):
        self.w, self.loop, self.client, self.peer = worker, worker.loop, client, peer
        self.slot = slot  # where the client's count is: McpWorker._admit
        self.buf = bytearray()
        self.server: socket.socket | None = None
        self.target: tuple[str, int] | None = None
        self.done = False
        client.setblocking(False)
        self.timer = self.loop.later(worker.cfg.handshake_timeout_s, self._handshake_timeout)
        self.loop.set(client.fileno(), IN, self._client_event)

    def __repr__(self) -> str:
        to = f" -> [{self.target[0]}]:{self.target[1]}" if self.target else ""
        return f"client {self.peer}{to}"

    def _client_event(self, fd: int, ev: int) -> None:
        try:
            data = self.client.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self._end()
            return
        if not data:
            if self.server is None:
                self._end()  # the client left before asking anything
                return
            self.loop.set(fd, 0, self._client_event)  # EOF is spliced on once relaying
            return
        self.buf += data
        if self.server is not None:
            if len(self.buf) > (1 << 20):
                self.loop.set(fd, 0, self._client_event)  # enough early data until the server answers
            return
        try:
            tlvs, end = rfc8803.parse(self.buf)
        except rfc8803.Incomplete:
            return
        except rfc8803.ConvertError as exc:
            log.info("%r: %s", self, exc)
            reply = exc.reply(self.buf)
            self.w.stats["malformed"] += 1
            if reply is None:
                self._end(reset=True)
            else:
                self._refuse(reply)
            return
        self._request(tlvs, end)

    def _request(self, tlvs: list, end: int) -> None:
        code = rfc8803.ErrorCode
        message = bytes(self.buf[:end])
        unsupported = [t for t in tlvs if not isinstance(t, (rfc8803.Connect, rfc8803.Info, rfc8803.Cookie))]
        if unsupported:
            self._refuse(rfc8803.error_message(code.UNSUPPORTED_MESSAGE, rfc8803.echo_value(message)))
            return
        connect = next((t for t in tlvs if isinstance(t, rfc8803.Connect)), None)
        if connect is None:
            if any(isinstance(t, rfc8803.Info) for t in tlvs):
                self._refuse(rfc8803.supported_extensions_message(ANNOUNCED_TCP_OPTIONS), count=False)
            else:
                self._refuse(rfc8803.error_message(code.MALFORMED_MESSAGE, rfc8803.echo_value(message)))
            return
        host, port = connect.host, connect.port
        self.target = (host, port)
        bad_options = sorted({kind for kind in (kind for kind, _ in connect.options()) if kind not in SUPPORTED_TCP_OPTIONS})
        if bad_options:
            self._refuse(rfc8803.error_message(code.UNSUPPORTED_TCP_OPTION, bytes(bad_options)))
            return
        dest = ipaddress.ip_address(host)
        if in_any(dest, self.w.cfg.deny_destinations) or in_any(dest, self.w.cfg.clients) or port == 0:
            log.info("%r: destination refused (deny_destinations, a client prefix or port 0)", self)
            self._refuse(rfc8803.error_message(code.NOT_AUTHORIZED))
            return
        if self.w.cookie_needed:
            cookie = next((t.cookie for t in tlvs if isinstance(t, rfc8803.Cookie)), None)
            if cookie is None:
                self._refuse(rfc8803.error_message(code.MISSING_COOKIE, rfc8803.cookie_value(self.w.cookies.make(self.peer))))
                return
            if not self.w.cookies.valid(self.peer, cookie):
                self._refuse(rfc8803.error_message(code.NOT_AUTHORIZED))
                return
        del self.buf[:end]
        self._connect(host, port)

    def _connect(self, host: str, port: int) -> None:
        try:
            server = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        except OSError as exc:
            self._refuse(connect_error(exc.errno))
            return
        server.setblocking(False)
        self.server = server
        err = server.connect_ex((host, port))
        if err and err not in WOULD_BLOCK:
            self._connect_failed(err)
            return
        self.timer.cancel()
        self.timer = self.loop.later(self.w.cfg.connect_timeout_s, lambda: self._connect_failed(errno.ETIMEDOUT))
        self.loop.set(server.fileno(), OUT, self._server_event)

    def _server_event(self, fd: int, ev: int) -> None:
        err = self.server.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._connect_failed(err)
            return
        self.timer.cancel()
        self.done = True
        self.w.stats["converted"] += 1
        server, self.server = self.server, None
        try:
            # Both fds stay registered: the relay takes their epoll entries over.
            self.w.relay(self, server, head_to_server=bytes(self.buf), head_to_client=rfc8803.build([]))
        except OSError as exc:
            log.warning("%r: cannot relay: %s", self, exc)
            self.loop.forget(server.fileno(), closing=True)
            abort(server)
            self._end(reset=True)

    def _connect_failed(self, err: int) -> None:
        if self.done:
            return
        log.info("%r: %s", self, os.strerror(err))
        self.w.stats["failed"] += 1
        if self.server is not None:
            self.loop.forget(self.server.fileno(), closing=True)
            abort(self.server)
            self.server = None
        self._refuse(connect_error(err))

    def _handshake_timeout(self) -> None:
        log.info("%r: no complete Convert message in %g s", self, self.w.cfg.handshake_timeout_s)
        self._end(reset=True)

    def _refuse(self, reply: bytes, count: bool = True) -> None:
        """Send ``reply`` (an Error TLV, or the answer to Info), close our side, discard what
        the client still sends until its FIN or LINGER_S: then the Error is not lost to a RST."""
        if count:
            self.w.stats["refused"] += 1
        self.timer.cancel()
        self.done = True
        try:
            self.client.send(reply)
            self.client.shutdown(socket.SHUT_WR)
        except OSError:
            self._end(reset=True)
            return
        self.timer = self.loop.later(LINGER_S, lambda: self._end(reset=True))
        self.loop.set(self.client.fileno(), IN, self._discard)

    def _discard(self, fd: int, ev: int) -> None:
        try:
            data = self.client.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._end()

    def _end(self, reset: bool = False) -> None:
        self.timer.cancel()
        self.done = True
        self.loop.forget(self.client.fileno(), closing=True)
        if reset:
            abort(self.client)
        else:
            self.client.close()
        self.w.forget(self)


# Session.slot when the client's count is in no ClientTable slot: a connection refused at
# accept (it counts in the worker's total only), or one admitted while the table's lock was
# busy (counted in McpWorker.unshared).
UNCOUNTED, UNSHARED = -1, -2


class McpWorker:
    def __init__(self, cfg: McpConfig, config_path: Path | None, listener: socket.socket, cookies: Cookies,
                 table: ClientTable, index: int):
        self.cfg, self.config_path, self.listener, self.cookies = cfg, config_path, listener, cookies
        self.table, self.index, self.workers = table, index, table.workers
        table.clear(index)  # counts a crashed predecessor left
        self.loop = Loop()
        self.sessions: set[Session] = set()
        self.pairs: set[Pair] = set()
        self.slots: dict[str, int] = {}  # client -> its table slot, while this worker's count there is above 0
        self.unshared: dict[str, int] = {}  # client -> connections admitted with UNSHARED
        self.lock_warned = False
        self.rate = RateMeter()
        self.cookie_needed = False
        self.stats = {"converted": 0, "refused": 0, "failed": 0, "malformed": 0}

    def _share(self, limit: int) -> int:
        return max(1, math.ceil(limit / self.workers))

    def connections(self) -> int:
        return len(self.sessions) + len(self.pairs)

    def _publish(self) -> None:
        """This worker's total in the table: after every change of sessions or pairs."""
        self.table.set_total(self.index, self.connections())

    def forget(self, session: Session) -> None:
        if session in self.sessions:
            self.sessions.discard(session)
            self._release(session.peer, session.slot)
            self._publish()

    def _admit(self, peer: str) -> int | None:
        """Count a new connection of ``peer``: where it is counted (a table slot, UNSHARED),
        or None when a limit refuses it (said in a line)."""
        cfg = self.cfg
        if self.table.total() >= cfg.max_connections:
            log.warning("client %s: max_connections (%d) reached: Resource Exceeded", peer, cfg.max_connections)
            return None
        limit = cfg.max_connections_per_client - self.unshared.get(peer, 0)
        slot = self.slots.get(peer)
        if slot is not None:
            if self.table.count(slot) >= limit:
                slot = None
            else:
                self.table.add(slot, self.index, 1)
        else:
            try:
                slot = self.table.claim(ClientTable.key(peer), self.index, limit)
            except ClientTableFull:
                log.warning("client %s: the client table is full (%d slots, sized at start for max_connections): "
                            "Resource Exceeded", peer, self.table.slots)
                return None
            except ClientTableBusy:
                return self._admit_unshared(peer)
            self.lock_warned = False
            if slot is not None:
                self.slots[peer] = slot
        if slot is None:
            log.warning("client %s: max_connections_per_client (%d) reached: Resource Exceeded",
                        peer, cfg.max_connections_per_client)
        return slot

    def _admit_unshared(self, peer: str) -> int | None:
        if not self.lock_warned:
            self.lock_warned = True
            log.warning("worker %d: the client table's lock was not had within %g s: a client new to this worker is "
                        "held to its share of max_connections_per_client until the lock is had again",
                        self.index, self.table.LOCK_WAIT_S)
        if self.unshared.get(peer, 0) >= self._share(self.cfg.max_connections_per_client):
            log.warning("client %s: this worker's share of max_connections_per_client reached: Resource Exceeded", peer)
            return None
        self.unshared[peer] = self.unshared.get(peer, 0) + 1
        return UNSHARED

    def _release(self, peer: str, slot: int) -> None:
        """Undo what _admit counted for one connection."""
        if slot >= 0:
            if self.table.add(slot, self.index, -1) <= 0:
                del self.slots[peer]  # from now on others may reclaim the slot
        elif slot == UNSHARED:
            n = self.unshared.pop(peer) - 1
            if n > 0:
                self.unshared[peer] = n

    def relay(self, session: Session, server: socket.socket, head_to_server: bytes, head_to_client: bytes) -> None:
        self.sessions.discard(session)
        peer, slot = session.peer, session.slot

        def closed(pair: Pair, why: str) -> None:
            self.pairs.discard(pair)
            self._release(peer, slot)
            self._publish()

        pair = Pair(self.loop, session.client, server, pipe_size=self.cfg.pipe_size, on_close=closed,
                    head_ab=head_to_server, head_ba=head_to_client)
        if not pair.closed:
            self.pairs.add(pair)
        self._publish()

    def _accept(self, fd: int, ev: int) -> None:
        for _ in range(64):
            try:
                conn, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("accept: %s", exc)
                return
            peer = str(_plain(addr[0]))
            if not in_any(ipaddress.ip_address(peer), self.cfg.clients):
                log.info("client %s: not in clients: Not Authorized", peer)
                self.stats["refused"] += 1
                self._refuse_now(conn, peer, rfc8803.error_message(rfc8803.ErrorCode.NOT_AUTHORIZED))
                continue
            slot = self._admit(peer)
            if slot is None:
                self.stats["refused"] += 1
                self._refuse_now(conn, peer, rfc8803.error_message(rfc8803.ErrorCode.RESOURCE_EXCEEDED,
                                                                   bytes([self.cfg.retry_after_s])))
                continue
            if self.cfg.cookie_syn_rate:
                self.cookie_needed = self.rate.tick() > self._share(self.cfg.cookie_syn_rate)
            try:
                self.sessions.add(Session(self, conn, peer, slot))
            except OSError:
                self._release(peer, slot)
                abort(conn)
            self._publish()

    def _refuse_now(self, conn: socket.socket, peer: str, reply: bytes) -> None:
        # Refused before reading anything: still answer, then linger like any refusal (in
        # the worker's total, not in the client's count: the client was not let in).
        try:
            session = Session(self, conn, peer, UNCOUNTED)
        except OSError:
            abort(conn)
            return
        self.sessions.add(session)
        self._publish()
        session._refuse(reply, count=False)

    def _reload(self) -> None:
        try:
            cfg = load(self.config_path, self.cfg.host)
        except InventoryError as exc:
            log.error("reload refused: %s", exc)
            return
        if any(getattr(cfg, key) != getattr(self.cfg, key) for key in START_ONLY):
            return  # the supervisor refused it and said why
        self.cfg = cfg

    def run(self, signals: WorkerSignals) -> int:
        self.listener.setblocking(False)
        self.loop.set(self.listener.fileno(), IN, self._accept)
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
                self.loop.forget(self.listener.fileno())
                self.listener.close()
            if deadline is not None:
                return self.connections() == 0 or time.monotonic() >= deadline
            return False

        self.loop.run(done)
        return 0


def listener(cfg: McpConfig) -> socket.socket:
    v6 = ":" in cfg.listen
    s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if v6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # "::" takes IPv4 clients too
    with contextlib.suppress(OSError):
        s.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, 4096)
    set_rcvbuf(s, cfg.mptcp_rcvbuf)  # inherited by accepted sockets
    s.bind((cfg.listen, cfg.port))
    s.listen(4096)
    return s


def set_subflow_limit(cfg: McpConfig) -> None:
    if cfg.max_subflows is None:
        return
    from pyroute2 import MPTCP
    m = MPTCP()
    try:
        (msg,) = m.limits("show")
        if msg.get("MPTCP_PM_ATTR_SUBFLOWS", 0) != cfg.max_subflows:
            accepted = msg.get("MPTCP_PM_ATTR_RCV_ADD_ADDRS", 0)
            m.limits("set", subflows=cfg.max_subflows, add_addr_accepted=accepted)
            log.info("MPTCP subflows per connection: %d", cfg.max_subflows)
    finally:
        m.close()


def main(args: argparse.Namespace) -> int:
    cfg = load_or_say("mcp", load, args.config)
    if cfg is None:
        return 1
    if args.check:
        print(f"{args.config}: {len(cfg.clients)} client prefix(es), port {cfg.port}: OK")
        return 0
    setup_logging("mcp", args.verbose)
    raise_fd_limit()
    n = worker_count(cfg.workers)
    try:
        socks = [listener(cfg) for _ in range(n)]
    except OSError as exc:
        print(f"mptcp-cpe mcp: {cfg.host}: listen/port: cannot listen on [{cfg.listen}]:{cfg.port}: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        set_subflow_limit(cfg)
    except Exception as exc:  # noqa: BLE001 - one clear line
        print(f"mptcp-cpe mcp: {cfg.host}: max_subflows: cannot set the kernel's MPTCP limits: {exc}", file=sys.stderr)
        return 1
    if not _sysctl_has("/proc/sys/net/ipv4/tcp_fastopen", 2):
        log.warning("net.ipv4.tcp_fastopen lacks the server bit (2): Convert messages will wait for the handshake")
    cookies = Cookies(os.urandom(32))
    table = ClientTable(n, ClientTable.slots_for(cfg.max_connections))
    _check_table_size(table, cfg)
    state = {"cfg": cfg}

    def work(index: int) -> int:
        for i, s in enumerate(socks):
            if i != index:
                s.close()
        return McpWorker(state["cfg"], args.config, socks[index], cookies, table, index).run(WorkerSignals())

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
            set_subflow_limit(new)
        except Exception as exc:  # noqa: BLE001
            log.error("reload refused: max_subflows: %s", exc)
            return False
        state["cfg"] = new
        log.info("config reloaded")
        _check_table_size(table, new)
        return True

    def on_drain() -> None:
        # The workers close their listeners; the parent's copies would keep them listening,
        # and new clients would wait in a queue nobody accepts from.
        for s in socks:
            s.close()

    return Supervisor("mcp", n, work, reload, cfg.drain_timeout_s, on_drain=on_drain).run()


def _check_table_size(table: ClientTable, cfg: McpConfig) -> None:
    """Say when ``max_connections`` outgrows the client table (its size is set at start: the
    workers share the mapping, so a reload cannot grow it)."""
    if cfg.max_connections <= table.sized_for:
        return
    bigger = ClientTable.slots_for(cfg.max_connections) // 2
    log.warning("max_connections %d: the client table is sized for %d client addresses at once; past that many, "
                "a new address may get Resource Exceeded%s", cfg.max_connections, table.sized_for,
                f" until a restart sizes it for {bigger}" if bigger > table.sized_for else "")


def _sysctl_has(path: str, bit: int) -> bool:
    try:
        return bool(int(Path(path).read_text().split()[0], 0) & bit)
    except (OSError, ValueError, IndexError):
        return False


def add_parser(sub: argparse._SubParsersAction) -> None:
    add_daemon_parser(sub, "mcp", "the network-side converter (MCP, RFC 8803): MPTCP in, TCP out", "mcp_converter", main)
