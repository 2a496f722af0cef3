"""``mptcp-cpe status``: the WANs (wand's wan.json) and the MCPs learned (mcp.json) for people,
with the learned MCPs the converter refuses (judged by its config). Light on imports: the
converter and rtnetlink load only when there is an mcp.json to judge."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .state import MCP_STATE, WAN_STATE, StateFileError, read_json

CONVERTER_CONFIG = Path("/etc/mptcp-cpe/converter.json")


def mcp_refusals(mcp_state: dict | None, converter_config: Path) -> tuple[dict, str | None]:
    """The MCP addresses of mcp.json the converter does not use, per WAN device and family
    (`mcptrust.state_verdicts`), judged with the converter's mcp_prefixes and lan_prefixes
    and the CPE's own addresses; and a line to say if that could not be worked out. No
    converter config: no verdicts (the converter is not installed)."""
    if not mcp_state or not converter_config.exists():
        return {}, None
    from . import converter
    from .checks import InventoryError
    from .mcptrust import state_verdicts

    try:
        cfg = converter.load(converter_config, "localhost")
    except InventoryError as exc:
        return {}, f"{exc}; the MCPs the converter refuses are not shown"
    from .localaddrs import LocalAddresses, NetlinkError

    try:
        local = LocalAddresses()
    except (OSError, NetlinkError):
        own: frozenset = frozenset()  # no rtnetlink here: judged without the CPE's own addresses
    else:
        own = frozenset(local.addresses)
        local.close()
    return state_verdicts(mcp_state, cfg.mcp_prefixes, cfg.lan_prefixes, own), None


def status_text(wan_state: dict, mcp_state: dict | None = None, refused: dict | None = None) -> str:
    lines = [f"{wan_state.get('host', '?')}: policy {wan_state.get('policy', '?')}, updated {wan_state.get('updated', '?')}"
             + (f", wand build {wan_state['build']}" if wan_state.get("build") else "")]
    header = f"{'WAN':<12} {'DEVICE':<10} {'STATE':<10} {'SINCE':<26} {'RTT ms':>7} {'TABLE':>6}  ADDRESSES / GATEWAYS"
    lines.append(header)
    for name, w in sorted(wan_state.get("wans", {}).items()):
        rtt = "-" if w.get("last_probe_rtt_ms") is None else f"{w['last_probe_rtt_ms']:.1f}"
        flags = []
        if w.get("backup"):
            flags.append("backup")
        if w.get("in_default_route"):
            flags.append("default")
        gws = ", ".join(g for g in (w.get("gateway") or {}).values() if g) or "-"
        addrs = ", ".join(w.get("addresses", [])) or "-"
        lines.append(f"{name:<12} {w.get('device', '?'):<10} {w.get('state', '?'):<10} {w.get('since') or '-':<26} "
                     f"{rtt:>7} {w.get('table', '-'):>6}  {addrs} via {gws}" + (f" [{', '.join(flags)}]" if flags else ""))
        if mcp_state:
            mcps = mcp_state.get("wans", {}).get(w.get("device"), {})
            for fam in ("v4", "v6"):
                if fam in mcps:
                    lines.append(f"{'':<12} MCPs {fam}: " + "; ".join(",".join(m) for m in mcps[fam]["mcps"]))
                for r in ((refused or {}).get(w.get("device"), {})).get(fam, []):
                    lines.append(f"{'':<12} MCPs {fam}: {r['address']} not used by the converter: {r['reason']}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    try:
        wan_state = read_json(args.state_file, None)
        mcp_state = read_json(args.mcp_file, None)
    except StateFileError as exc:
        print(f"mptcp-cpe status: {exc}", file=sys.stderr)
        return 1
    if wan_state is None:
        print(f"mptcp-cpe status: {args.state_file} does not exist: is wand running?", file=sys.stderr)
        return 1
    refused, problem = mcp_refusals(mcp_state, args.converter_config)
    if problem:
        print(f"mptcp-cpe status: {problem}", file=sys.stderr)
    if args.json:
        print(json.dumps({"wan": wan_state, "mcp": mcp_state, "mcp_refused": refused}, indent=2, sort_keys=True))
    else:
        print(status_text(wan_state, mcp_state, refused))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="the WANs (wan.json) and the MCPs learned (mcp.json), for people")
    p.add_argument("--json", action="store_true", help="print both files as one JSON object")
    p.add_argument("--state-file", type=Path, default=WAN_STATE)
    p.add_argument("--mcp-file", type=Path, default=MCP_STATE)
    p.add_argument("--converter-config", type=Path, default=CONVERTER_CONFIG,
                   help="the converter's config: its mcp_prefixes and lan_prefixes say which learned MCPs it refuses")
    p.set_defaults(func=main)
