"""``mptcp-cpe mcp``: load and check the config, the kernel's subflow limit, run the workers."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from ..inventory import InventoryError
from ..relay import Supervisor, WorkerSignals, raise_fd_limit, worker_count
from ..settings import add_daemon_parser, load_or_say, setup_logging
from .clients import ClientTable, Cookies
from .config import START_ONLY, McpConfig, load
from .worker import McpWorker, listener

log = logging.getLogger(__name__)


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
