"""Checks shared by the daemons' config loaders (converter, mcp): one JSON file, refused
whole with one line naming the host, the field and the value (InventoryError's shape)."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import re
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .inventory import InventoryError, _int, is_ifname, only_keys

NFT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
# Route protocol numbers of the kernel and well-known routing daemons (/etc/iproute2/rt_protos).
FOREIGN_PROTOCOLS = frozenset({0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 42, 99,
                               168, 186, 187, 188, 189, 192})

integer = _int


class ConfigError(InventoryError):
    """A daemon config that cannot be used."""


def number(host: str, field: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ConfigError(host, field, f"must be a number from {lo:g} to {hi:g}", value)
    return float(value)


def check_keys(host: str, field: str, raw: Any, allowed: frozenset[str]) -> dict:
    if not isinstance(raw, dict):
        raise ConfigError(host, field, f"must be a mapping (keys: {', '.join(sorted(allowed))})", raw)
    only_keys(host, field, raw, allowed, error=ConfigError)
    return raw


def absolute_path(host: str, field: str, value: Any) -> Path:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(host, field, "must be an absolute path", value)
    return Path(value)


def nft_name(host: str, field: str, value: Any) -> str:
    if not isinstance(value, str) or NFT_NAME.fullmatch(value) is None:
        raise ConfigError(host, field, "must be 1-32 letters, digits and _, not starting with a digit", value)
    return value


def route_protocol(host: str, field: str, value: Any) -> int:
    proto = _int(host, field, value, 1, 255)
    if proto in FOREIGN_PROTOCOLS:
        raise ConfigError(host, field, "belongs to the kernel or a routing daemon (see /etc/iproute2/rt_protos)", proto)
    return proto


def prefixes(host: str, field: str, value: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """A list of prefixes (host bits must be zero; an address alone is a /32 or /128)."""
    if not isinstance(value, list):
        raise ConfigError(host, field, "must be a list of prefixes", value)
    out = []
    for i, item in enumerate(value):
        try:
            if not isinstance(item, str):
                raise ValueError
            out.append(ipaddress.ip_network(item, strict=True))
        except ValueError:
            raise ConfigError(host, f"{field}[{i}]", "not a prefix (host bits must be zero)", item) from None
    return tuple(out)


def unicast_address(host: str, field: str, value: Any) -> str:
    try:
        if not isinstance(value, str):
            raise ValueError
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(host, field, "not an IP address", value) from None
    if addr.is_multicast or addr.is_loopback or addr.is_unspecified or (addr.version == 4 and addr == ipaddress.IPv4Address("255.255.255.255")):
        raise ConfigError(host, field, "must be a unicast address (not multicast, loopback or unspecified)", value)
    return str(addr)


def interfaces(host: str, field: str, value: Any, *, minimum: int = 0) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) < minimum:
        raise ConfigError(host, field, f"must be a list of at least {minimum} interface name(s)", value)
    for i, name in enumerate(value):
        if not is_ifname(name):
            raise ConfigError(host, f"{field}[{i}]", "not an interface name (1-15 octets, no '/', ':' or blanks)", name)
    if len(set(value)) != len(value):
        raise ConfigError(host, field, "lists an interface twice", value)
    return tuple(value)


def ports(host: str, field: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise ConfigError(host, field, "must be a list of TCP ports", value)
    return tuple(_int(host, f"{field}[{i}]", p, 1, 65535) for i, p in enumerate(value))


def read_config(path: Path, host: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(host, str(path), f"cannot read: {exc.strerror}", show_value=False) from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(host, str(path), f"not JSON: {exc}", show_value=False) from None


def setup_logging(command: str, verbose: bool | None = False, *, pid: bool = True, levels: bool = True,
                  verbose_libraries: bool = False, syslog: bool = False) -> None:
    """The one logging setup of every command: one line per record on stderr (journald adds
    the time), ``mptcp-cpe COMMAND[PID]: LEVEL message``; ``pid`` (the relay daemons run
    workers) and ``levels`` say whether those parts are there. Nothing is added when the
    root logger has handlers already.

    ``verbose``: mptcp_cpe's own debug lines (pyroute2 and asyncio would log every netlink
    message), or everyone's with ``verbose_libraries``; None: the command has no -v and the
    levels are left as they are. ``syslog``: to /dev/log too, as ``mptcp-cpe[PID]: COMMAND:
    message`` (the DHCP hook, whose stderr the DHCP client may not keep)."""
    root = logging.getLogger()
    if not root.handlers:
        root.setLevel(logging.DEBUG if verbose and verbose_libraries else logging.INFO)
        err = logging.StreamHandler(sys.stderr)
        err.setFormatter(logging.Formatter(f"mptcp-cpe {command}{'[%(process)d]' if pid else ''}: "
                                           f"{'%(levelname)s ' if levels else ''}%(message)s"))
        root.addHandler(err)
        if syslog and os.path.exists("/dev/log"):
            from logging.handlers import SysLogHandler

            try:
                sys_h = SysLogHandler(address="/dev/log")
                sys_h.setFormatter(logging.Formatter(f"mptcp-cpe[%(process)d]: {command}: %(message)s"))
                root.addHandler(sys_h)
            except OSError:
                pass
    if verbose is not None and not verbose_libraries:
        logging.getLogger("mptcp_cpe").setLevel(logging.DEBUG if verbose else logging.INFO)


def load_or_say(daemon: str, loader: Callable[[Path, str], Any], path: Path) -> Any | None:
    """The checked config, or None after one line on stderr naming host, field and value."""
    try:
        return loader(path, socket.gethostname())
    except InventoryError as exc:
        print(f"mptcp-cpe {daemon}: {exc}", file=sys.stderr)
        return None


def add_daemon_parser(sub: argparse._SubParsersAction, daemon: str, summary: str, role: str,
                      main: Callable[[argparse.Namespace], int]) -> None:
    p = sub.add_parser(daemon, help=summary)
    p.add_argument("--config", type=Path, required=True, help=f"JSON config (rendered by the role {role})")
    p.add_argument("--check", action="store_true", help="check the config and exit")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=main)


def config_host(raw: Any, host: str) -> str:
    if not isinstance(raw, dict):
        raise ConfigError(host, "(config)", "must be a JSON object", type(raw).__name__)
    if isinstance(raw.get("host"), str) and raw["host"]:
        return raw["host"]
    return host
