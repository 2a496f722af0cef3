"""The MCP's config: typed, checked at load (``--check``, SIGHUP and the filter plugin)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checks import ConfigError, Errors, address, check_keys, integer, number, prefixes
from ..settings import config_host, read_config

TOP_KEYS = frozenset({"host", "listen", "port", "clients", "deny_destinations", "max_connections",
                      "max_connections_per_client", "max_subflows", "connect_timeout_s", "handshake_timeout_s",
                      "cookie_syn_rate", "retry_after_s", "workers", "pipe_size", "mptcp_rcvbuf", "drain_timeout_s"})
START_ONLY = ("listen", "port", "workers", "drain_timeout_s", "mptcp_rcvbuf")  # a reload changing one is refused


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
    # Every field's own mistakes at once, then those between fields.
    errors = Errors()
    max_subflows = raw.get("max_subflows", d.max_subflows)
    cfg = McpConfig(
        host=host,
        clients=errors.check(_clients, host, raw["clients"]),
        listen=errors.check(address, host, "listen", raw.get("listen", d.listen)),
        port=errors.check(integer, host, "port", raw.get("port", d.port), 1, 65535),
        deny_destinations=errors.check(prefixes, host, "deny_destinations", raw.get("deny_destinations", [])),
        max_connections=errors.check(integer, host, "max_connections", raw.get("max_connections", d.max_connections), 1, 10**7),
        max_connections_per_client=errors.check(integer, host, "max_connections_per_client",
                                                raw.get("max_connections_per_client", d.max_connections_per_client), 1, 10**7),
        max_subflows=None if max_subflows is None else errors.check(integer, host, "max_subflows", max_subflows, 0, 8),
        connect_timeout_s=errors.check(number, host, "connect_timeout_s", raw.get("connect_timeout_s", d.connect_timeout_s), 0.1, 300),
        handshake_timeout_s=errors.check(number, host, "handshake_timeout_s", raw.get("handshake_timeout_s", d.handshake_timeout_s), 0.1, 300),
        cookie_syn_rate=errors.check(integer, host, "cookie_syn_rate", raw.get("cookie_syn_rate", d.cookie_syn_rate), 0, 10**7),
        retry_after_s=errors.check(integer, host, "retry_after_s", raw.get("retry_after_s", d.retry_after_s), 1, 255),
        workers=errors.check(integer, host, "workers", raw.get("workers", d.workers), 0, 256),
        pipe_size=errors.check(integer, host, "pipe_size", raw.get("pipe_size", d.pipe_size), 4096, 1 << 20),
        mptcp_rcvbuf=errors.check(integer, host, "mptcp_rcvbuf", raw.get("mptcp_rcvbuf", d.mptcp_rcvbuf), 0, 1 << 30),
        drain_timeout_s=errors.check(number, host, "drain_timeout_s", raw.get("drain_timeout_s", d.drain_timeout_s), 0, 3600),
    )
    errors.raise_any()
    if cfg.max_connections_per_client > cfg.max_connections:
        raise ConfigError(host, "max_connections_per_client", f"above max_connections ({cfg.max_connections})",
                          cfg.max_connections_per_client)
    return cfg


def _clients(host: str, raw: Any) -> tuple:
    clients = prefixes(host, "clients", raw)
    if not clients:
        raise ConfigError(host, "clients", "empty: the MCP would refuse everyone", raw)
    for i, p in enumerate(clients):
        if p.prefixlen == 0:
            raise ConfigError(host, f"clients[{i}]", "a default prefix would make the MCP an open proxy", str(p))
    return clients


def load(path: Path, host: str = "localhost") -> McpConfig:
    return from_dict(read_config(path, host), host)


def _plain(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    a = ipaddress.ip_address(address.split("%")[0])
    return a.ipv4_mapped or a if a.version == 6 else a


def in_any(address, nets) -> bool:
    return any(address.version == n.version and address in n for n in nets)

