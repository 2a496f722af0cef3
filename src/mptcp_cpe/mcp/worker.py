"""An MCP worker process: its listener, admission under the shared limits, its reload."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import socket
from pathlib import Path

from .. import rfc8803
from ..daemon import reload_config, run_worker
from ..relay import IN, Loop, Pair, WorkerSignals, abort, set_rcvbuf
from .clients import ClientTable, ClientTableBusy, ClientTableFull, Cookies, RateMeter
from .config import START_ONLY, McpConfig, _plain, in_any, load
from .session import Session

log = logging.getLogger(__name__)

IPPROTO_MPTCP = getattr(socket, "IPPROTO_MPTCP", 262)
TCP_FASTOPEN = getattr(socket, "TCP_FASTOPEN", 23)

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
        cfg = reload_config(load, self.config_path, self.cfg, START_ONLY)
        if cfg is not None:
            self.cfg = cfg

    def run(self, signals: WorkerSignals) -> int:
        self.listener.setblocking(False)
        self.loop.set(self.listener.fileno(), IN, self._accept)
        return run_worker(self.loop, signals, [self.listener], self._reload if self.config_path is not None else None,
                          lambda: self.cfg.drain_timeout_s, lambda: self.connections() == 0)


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

