"""The ``mptcp-cpe`` console script.

Subcommands register themselves here as they land (DESIGN.md lists the contract:
option, converter, mcp, wand, dhcp-hook, status); until then the script answers
``--version``, which the cpe_base role uses to check what it installed.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mptcp-cpe",
        description="Network-assisted Multipath TCP for CPEs.",
    )
    parser.add_argument("--version", action="version", version=f"mptcp-cpe {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
