"""What the daemons' commands share: reading the one JSON config file (refused whole with one
line naming the host, the field and the value; the checks themselves are in `checks`),
saying so, the ``--config``/``--check`` parser and the one logging setup."""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .checks import ConfigError
from .inventory import InventoryError

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
