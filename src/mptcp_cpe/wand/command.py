"""The ``wand`` subcommand. Light on imports: pyroute2 loads only when the daemon runs, so
``mptcp-cpe dhcp-hook`` (called on every DHCP event) stays quick."""

from __future__ import annotations

import argparse
import sys

from ..settings import add_daemon_parser, load_or_say, setup_logging
from . import config as wand_config


def main(args: argparse.Namespace) -> int:
    cfg = load_or_say("wand", wand_config.load, args.config)
    if cfg is None:
        return 1
    if args.check:
        print(f"{args.config}: {len(cfg.wans)} WANs, policy {cfg.policy}: OK")
        return 0
    setup_logging("wand", args.verbose, pid=False, verbose_libraries=True)
    from .daemon import Wand
    from .kernel import Kernel, KernelError

    try:
        kernel = Kernel()
    except (KernelError, OSError) as exc:
        print(f"mptcp-cpe wand: {exc}", file=sys.stderr)
        return 1
    try:
        return Wand(cfg, args.config, kernel).run()
    finally:
        kernel.close()


def add_parser(sub: argparse._SubParsersAction) -> None:
    add_daemon_parser(sub, "wand", "the multi-WAN daemon: tables, rules, NAT, MPTCP endpoints, health", "cpe_multiwan", main)
