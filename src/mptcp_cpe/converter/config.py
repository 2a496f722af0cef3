"""The converter's config: typed, checked at load (``--check``, SIGHUP and the filter plugin)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..mcptrust import address_problem
from ..checks import (
    ConfigError,
    Errors,
    absolute_path,
    check_keys,
    integer,
    interfaces,
    mcp_lists,
    nft_name,
    number,
    ports,
    prefixes,
    route_protocol,
    unicast_address,
)
from ..settings import config_host, read_config
from ..state import MCP_STATE

TOP_KEYS = frozenset({"host", "lan_interfaces", "mcp_port", "listen_port", "mcps", "mcp_file", "mcp_prefixes",
                      "lan_prefixes", "bypass", "connect_timeout_s", "reply_timeout_s", "retry_after_s", "replay_limit", "workers",
                      "pipe_size", "mptcp_rcvbuf", "drain_timeout_s", "fwmark", "route_table", "rule_priority",
                      "route_protocol", "nft_table", "fast_open"})
BYPASS_KEYS = frozenset({"destinations", "ports", "sources"})
# Taken at start only: the listeners, the supervisor, and the kernel state the daemon owns
# (a reload to another mark or table would strand the old ones). A reload changing one is refused.
START_ONLY = ("listen_port", "workers", "drain_timeout_s", "fwmark", "route_table", "rule_priority",
              "route_protocol", "nft_table")


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
    # auto: the Convert message rides in the SYN when the kernel can (TCP Fast Open on MPTCP
    # sockets, Linux 6.2+); off: always after the handshake (an access network that drops
    # SYNs with data). Either way without what the kernel lacks.
    fast_open: str = "auto"


FAST_OPEN = ("auto", "off")


def _fast_open(host: str, value: Any) -> str:
    # YAML reads an unquoted off as false (and on as true): take them for what was meant.
    if isinstance(value, bool):
        return "auto" if value else "off"
    if value not in FAST_OPEN:
        raise ConfigError(host, "fast_open", f"must be one of {', '.join(FAST_OPEN)}", value)
    return value


def from_dict(raw: Any, host: str = "localhost") -> ConverterConfig:
    host = config_host(raw, host)
    check_keys(host, "(config)", raw, TOP_KEYS)
    d = ConverterConfig(host=host, lan_interfaces=())
    if "lan_interfaces" not in raw:
        raise ConfigError(host, "lan_interfaces", "missing", show_value=False)
    # Every field's own mistakes at once, then those between fields.
    errors = Errors()
    bypass_raw = errors.check(check_keys, host, "bypass", raw.get("bypass", {}), BYPASS_KEYS, default={})
    cfg = ConverterConfig(
        host=host,
        lan_interfaces=errors.check(interfaces, host, "lan_interfaces", raw["lan_interfaces"], minimum=1),
        mcp_port=errors.check(integer, host, "mcp_port", raw.get("mcp_port", d.mcp_port), 1, 65535),
        listen_port=errors.check(integer, host, "listen_port", raw.get("listen_port", d.listen_port), 1, 65535),
        mcps=errors.check(mcp_lists, host, "mcps", raw.get("mcps", [])),
        mcp_file=errors.check(absolute_path, host, "mcp_file", raw.get("mcp_file", str(d.mcp_file))),
        mcp_prefixes=errors.check(prefixes, host, "mcp_prefixes", raw.get("mcp_prefixes", [])),
        lan_prefixes=errors.check(prefixes, host, "lan_prefixes", raw.get("lan_prefixes", [])),
        bypass=Bypass(
            destinations=errors.check(prefixes, host, "bypass.destinations", bypass_raw.get("destinations", [])),
            ports=errors.check(ports, host, "bypass.ports", bypass_raw.get("ports", [])),
            sources=errors.check(prefixes, host, "bypass.sources", bypass_raw.get("sources", [])),
        ),
        connect_timeout_s=errors.check(number, host, "connect_timeout_s", raw.get("connect_timeout_s", d.connect_timeout_s), 0.1, 60),
        reply_timeout_s=errors.check(number, host, "reply_timeout_s", raw.get("reply_timeout_s", d.reply_timeout_s), 0.1, 300),
        retry_after_s=errors.check(number, host, "retry_after_s", raw.get("retry_after_s", d.retry_after_s), 1, 3600),
        replay_limit=errors.check(integer, host, "replay_limit", raw.get("replay_limit", d.replay_limit), 1024, 16 << 20),
        workers=errors.check(integer, host, "workers", raw.get("workers", d.workers), 0, 256),
        pipe_size=errors.check(integer, host, "pipe_size", raw.get("pipe_size", d.pipe_size), 4096, 1 << 20),
        mptcp_rcvbuf=errors.check(integer, host, "mptcp_rcvbuf", raw.get("mptcp_rcvbuf", d.mptcp_rcvbuf), 0, 1 << 30),
        drain_timeout_s=errors.check(number, host, "drain_timeout_s", raw.get("drain_timeout_s", d.drain_timeout_s), 0, 3600),
        fwmark=errors.check(integer, host, "fwmark", raw.get("fwmark", d.fwmark), 1, 2**32 - 1),
        route_table=errors.check(integer, host, "route_table", raw.get("route_table", d.route_table), 1, 2**32 - 1),
        rule_priority=errors.check(integer, host, "rule_priority", raw.get("rule_priority", d.rule_priority), 1, 32765),
        route_protocol=errors.check(route_protocol, host, "route_protocol", raw.get("route_protocol", d.route_protocol)),
        nft_table=errors.check(nft_name, host, "nft_table", raw.get("nft_table", d.nft_table)),
        fast_open=errors.check(_fast_open, host, raw.get("fast_open", d.fast_open)),
    )
    errors.raise_any()
    if cfg.route_table in (253, 254, 255):
        errors.add(ConfigError(host, "route_table", "is one of the kernel's own tables (253 default, 254 main, 255 local)", cfg.route_table))
    if cfg.listen_port == cfg.mcp_port:
        errors.add(ConfigError(host, "listen_port", "is the mcp_port: connections to MCPs are never intercepted", cfg.listen_port))
    if cfg.reply_timeout_s < cfg.connect_timeout_s:
        errors.add(ConfigError(host, "reply_timeout_s", f"shorter than connect_timeout_s ({cfg.connect_timeout_s:g})", cfg.reply_timeout_s))
    for i, mcp in enumerate(cfg.mcps):
        for j, address in enumerate(mcp):
            # The CPE's own addresses change at run time: those are left out then, not refused here.
            problem = address_problem(address, cfg.mcp_prefixes, cfg.lan_prefixes)
            if problem is not None:
                errors.add(ConfigError(host, f"mcps[{i}][{j}]", f"cannot be an MCP: {problem}", address))
    errors.raise_any()
    return cfg


def load(path: Path, host: str = "localhost") -> ConverterConfig:
    return from_dict(read_config(path, host), host)

