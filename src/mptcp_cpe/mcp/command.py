"""``mptcp-cpe mcp``: the relay daemon's skeleton (`daemon.RelayDaemon`) with the MCP's parts: one
MPTCP listener per worker, the kernel's subflow limit, the cookie secret and the ClientTable
the workers share."""

from __future__ import annotations

import argparse
import logging
import os
import socket
from pathlib import Path

from ..daemon import RelayDaemon
from ..relay import WorkerSignals
from ..settings import add_daemon_parser
from .clients import ClientTable, Cookies
from .config import START_ONLY, McpConfig, load
from .worker import McpWorker, listener

log = logging.getLogger(__name__)


def set_subflow_limit(cfg: McpConfig) -> None:
    if cfg.max_subflows is None:
        return
    from ..netlink import MPTCP
    m = MPTCP()
    try:
        (msg,) = m.limits("show")
        if msg.get("MPTCP_PM_ATTR_SUBFLOWS", 0) != cfg.max_subflows:
            accepted = msg.get("MPTCP_PM_ATTR_RCV_ADD_ADDRS", 0)
            m.limits("set", subflows=cfg.max_subflows, add_addr_accepted=accepted)
            log.info("MPTCP subflows per connection: %d", cfg.max_subflows)
    finally:
        m.close()


class McpDaemon(RelayDaemon):
    name = "mcp"
    start_only = START_ONLY

    def load(self, path: Path, host: str) -> McpConfig:
        return load(path, host)

    def checked(self, cfg: McpConfig) -> str:
        return f"{self.args.config}: {len(cfg.clients)} client prefix(es), port {cfg.port}: OK"

    def listen(self, cfg: McpConfig) -> list[socket.socket]:
        return [listener(cfg)]

    def cannot_listen(self, cfg: McpConfig, exc: OSError) -> str:
        return f"listen/port: cannot listen on [{cfg.listen}]:{cfg.port}: {exc.strerror}"

    def start(self, cfg: McpConfig, workers: int) -> str | None:
        try:
            set_subflow_limit(cfg)
        except Exception as exc:  # noqa: BLE001 - one clear line
            return f"max_subflows: cannot set the kernel's MPTCP limits: {exc}"
        if not _sysctl_has("/proc/sys/net/ipv4/tcp_fastopen", 2):
            log.warning("net.ipv4.tcp_fastopen lacks the server bit (2): Convert messages will wait for the handshake")
        self.cookies = Cookies(os.urandom(32))
        self.table = ClientTable(workers, ClientTable.slots_for(cfg.max_connections))
        _check_table_size(self.table, cfg)
        return None

    def work(self, index: int, socks: list[socket.socket]) -> int:
        return McpWorker(self.cfg, self.args.config, socks[0], self.cookies, self.table, index).run(WorkerSignals())

    def apply(self, new: McpConfig) -> bool:
        try:
            set_subflow_limit(new)
        except Exception as exc:  # noqa: BLE001
            log.error("reload refused: max_subflows: %s", exc)
            return False
        return True

    def reloaded(self, new: McpConfig) -> None:
        _check_table_size(self.table, new)


def main(args: argparse.Namespace) -> int:
    return McpDaemon(args).main()


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
