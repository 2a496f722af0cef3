"""The ``mptcp-cpe`` console script.

    mptcp-cpe option encode v4|v6 LIST [LIST...]   each LIST one MCP, addresses comma-separated
    mptcp-cpe option decode v4|v6 HEX [HEX...]     v4: the parts of one split option; v6: instances
    mptcp-cpe dhcp-hook ...                         called by the WAN DHCP clients' scripts
    mptcp-cpe wand --config FILE [--check]          the multi-WAN daemon (tables, rules, NAT, endpoints)
    mptcp-cpe status [--json]                       the WANs and the MCPs learned, for people
    mptcp-cpe converter --config FILE [--check]     CPE side: LAN TCP to MPTCP via an MCP (RFC 8803)
    mptcp-cpe mcp --config FILE [--check]           network side: the MPTCP Conversion Point
    mptcp-cpe firewall --config FILE [--check|--print|--remove]
                                                    the CPE's firewall: apply it (atomically), check,
                                                    print or remove it
    mptcp-cpe host [--config FILE] [--check]         a LAN host: the gateway's extra paths (mp-avail/mp-range)
    mptcp-cpe host status [--json]                  its paths: macvlans, MACs, leases, endpoints
    mptcp-cpe --build-id                            which code is installed (a digest of its files)
"""

from __future__ import annotations

import argparse
import binascii
import importlib
import json
import sys

# Each command's module, imported only when that command runs (or for the full help): a
# daemon's start on a router's slow CPU pays for its own imports, not for every command's.
# The option commands are this module's own.
COMMANDS = {
    "dhcp-hook": "dhcp_hook", "dhcp-prune": "dhcp_hook", "wand": "wand.command", "status": "status",
    "converter": "converter", "mcp": "mcp", "firewall": "firewall", "kernel": "kernelcaps",
    "host": "host.command", "health": "health", "rollback": "rollback",
}


def _option(args: argparse.Namespace) -> int:
    from . import options

    where = f"option {args.action} {args.family}"
    try:
        if args.action == "encode":
            mcps = [[a.strip() for a in item.split(",")] for item in args.items]
            for i, addresses in enumerate(mcps):
                if any(not a for a in addresses):
                    raise options.OptionError(options.MCP_E_EMPTY_LIST, f"MCP {i + 1} ({args.items[i]!r}) has an empty address")
            if args.family == "v4":
                print(options.encode_v4(mcps).hex())
            else:
                for addresses in mcps:
                    print(options.encode_v6(addresses).hex())
            return 0
        parts = []
        for i, text in enumerate(args.items):
            try:
                parts.append(bytes.fromhex(text.replace(":", "")))
            except ValueError:
                raise options.OptionError(0, f"argument {i + 1} is not hex: {text!r}") from None
        if args.family == "v4":
            # RFC 3396: a long option arrives in parts with the same code, joined in order.
            result = options.decode_v4(b"".join(parts))
        else:
            result = [m for m in (options.decode_v6(p) for p in parts) if m]
        print(json.dumps(result))
        return 0
    except (options.OptionError, binascii.Error) as exc:
        print(f"mptcp-cpe: {where}: {exc}", file=sys.stderr)
        return 1


class _Print(argparse.Action):
    """An option that prints what ``say()`` returns and exits (``--version``, ``--build-id``):
    what it needs is imported only when it is asked for."""

    def __init__(self, option_strings, dest, say=None, **kw) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)
        self.say = say

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(self.say())
        parser.exit()


def _build_id() -> str:
    """Which code is installed (wand reports the one it runs in wan.json)."""
    from .build import build_id

    return build_id()


def _version() -> str:
    from . import __version__

    return f"mptcp-cpe {__version__}"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command (``command`` None), or with ``command``'s alone (its
    module the only one imported; none for the option commands or "")."""
    parser = argparse.ArgumentParser(prog="mptcp-cpe", description="Network-assisted Multipath TCP for CPEs.")
    parser.add_argument("--version", action=_Print, say=_version, help="print the installed version and exit")
    parser.add_argument("--build-id", action=_Print, say=_build_id, help="print the digest of the installed code and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    opt = sub.add_parser("option", help="encode or decode the MCP DHCP options (draft-boucadair-mptcp-dhc)")
    opt_sub = opt.add_subparsers(dest="action", required=True)
    enc = opt_sub.add_parser("encode", help="MCP lists to option data as hex (no code or length octets)")
    enc.add_argument("family", choices=["v4", "v6"])
    enc.add_argument("items", nargs="+", metavar="LIST", help="one MCP: its addresses, comma-separated")
    dec = opt_sub.add_parser("decode", help="option data (hex) to MCP lists as JSON, after the client rule")
    dec.add_argument("family", choices=["v4", "v6"])
    dec.add_argument("items", nargs="+", metavar="HEX", help="v4: the parts of one (split) option; v6: one instance each")
    opt.set_defaults(func=_option)

    wanted = list(dict.fromkeys(COMMANDS.values())) if command is None else [COMMANDS[command]] if command in COMMANDS else []
    for name in wanted:
        importlib.import_module(f".{name}", __package__).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # The command is the first argument that is no option (the top level's options take no value).
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is None:
        # --version or --build-id alone need no command's module; the help lists them all.
        command = None if {"-h", "--help"} & set(argv) or not argv else ""
    try:
        parser = build_parser(command if command in COMMANDS or command in ("option", "") else None)
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            build_parser().print_help(sys.stderr)
            return 2
        return args.func(args)
    except ImportError as exc:
        # MPTCP_CPE_CODEC naming no codec, or the compiled one where it does not import
        # (mptcp_cpe.options): one line, not a traceback.
        if not str(exc).startswith("MPTCP_CPE_CODEC="):
            raise
        print(f"mptcp-cpe: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
