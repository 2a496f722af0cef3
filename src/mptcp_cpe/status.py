"""``mptcp-cpe status``: the WANs (wand's wan.json) and the MCPs learned (mcp.json) for people,
with each WAN's MPTCP verdict (passes, blocked: ``mptcp-blocked``, unknown) and the learned
MCPs the converter refuses (judged by its config). Light on imports: the
converter and rtnetlink load only when there is an mcp.json to judge."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .state import (FAMILIES, MCP_STATE, WAN_STATE, StateFileError, WanRecord, WanState, learned_mcps, read_json,
                    read_wan_state)

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


def mptcp_text(w: WanRecord) -> str:
    """A WAN's MPTCP verdict in words: whether MPTCP survives its path to the MCPs."""
    words = {"passes": "passes", "blocked": "blocked (mptcp-blocked: MPTCP options stripped on the way to the MCP; "
                                           "no MPTCP endpoint, direct traffic as before)"}
    text = f"MPTCP {words.get(w.mptcp, w.mptcp)}"
    if w.mptcp_since and w.mptcp in words:
        text += f" since {w.mptcp_since}"
    text += f"; MCP tried {w.mptcp_mcp}" if w.mptcp_mcp else ""
    text += f"; next test {w.mptcp_next_test}" if w.mptcp_next_test else "; no test planned (no MCP known, or mptcp_probe off)"
    return text


def status_text(wan_state: dict, mcp_state: dict | None = None, refused: dict | None = None) -> str:
    """wan.json and mcp.json (their JSON) for people, with the MCPs the converter refuses."""
    wan = WanState.from_json(wan_state)
    lines = [f"{wan.host or '?'}: policy {wan.policy or '?'}, updated {wan.updated or '?'}"
             + (f", wand build {wan.build}" if wan.build else "")]
    header = f"{'WAN':<12} {'DEVICE':<10} {'STATE':<10} {'SINCE':<26} {'RTT ms':>7} {'TABLE':>6}  ADDRESSES / GATEWAYS"
    lines.append(header)
    learned = {(device, fam): lists for device, fam, lists in learned_mcps(mcp_state)}
    for w in sorted(wan.wans, key=lambda w: w.name):
        rtt = "-" if w.last_probe_rtt_ms is None else f"{w.last_probe_rtt_ms:.1f}"
        flags = [flag for flag, on in (("backup", w.backup), ("default", w.in_default_route),
                                       ("mptcp-blocked", w.mptcp_blocked)) if on]
        gws = ", ".join(g for g in w.gateway.values() if g) or "-"
        addrs = ", ".join(w.addresses) or "-"
        table = "-" if w.table is None else w.table
        lines.append(f"{w.name:<12} {w.device or '?':<10} {w.state or '?':<10} {w.since or '-':<26} "
                     f"{rtt:>7} {table:>6}  {addrs} via {gws}" + (f" [{', '.join(flags)}]" if flags else ""))
        if w.mptcp is not None:
            lines.append(f"{'':<12} {mptcp_text(w)}")
        if w.delegated is not None:
            lines.append(f"{'':<12} delegated: " + (", ".join(w.delegated) if w.delegated
                                                      else "none (the ISP delegated no prefix)"))
        if mcp_state:
            for fam in FAMILIES:
                if (w.device, fam) in learned:
                    lines.append(f"{'':<12} MCPs {fam}: " + "; ".join(",".join(m) for m in learned[(w.device, fam)]))
                for r in ((refused or {}).get(w.device, {})).get(fam, []):
                    lines.append(f"{'':<12} MCPs {fam}: {r['address']} not used by the converter: {r['reason']}")
    if wan.lan_prefixes:
        lines.append(f"{'LAN':<12} {'DEVICE':<10} {'STATE':<10} {'SINCE':<26} PREFIX (FROM WAN)")
        for p in wan.lan_prefixes:
            lines.append(f"{p.lan or '?':<12} {p.device:<10} {p.state or '?':<10} {p.since or '-':<26} "
                         f"{p.prefix} (from {p.wan or '?'}, {p.delegated or '?'})")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    if args.build:
        # Which build the running wand is (cpe_multiwan compares it with --build-id): nothing
        # when wand has written no wan.json yet.
        try:
            running = read_wan_state(args.state_file)
        except StateFileError as exc:
            print(f"mptcp-cpe status: {exc}", file=sys.stderr)
            return 1
        print((running.build if running else None) or "")
        return 0
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
    p.add_argument("--build", action="store_true",
                   help="print only the build of the running wand (from wan.json; nothing before wand wrote one)")
    p.add_argument("--state-file", type=Path, default=WAN_STATE)
    p.add_argument("--mcp-file", type=Path, default=MCP_STATE)
    p.add_argument("--converter-config", type=Path, default=CONVERTER_CONFIG,
                   help="the converter's config: its mcp_prefixes and lan_prefixes say which learned MCPs it refuses")
    p.set_defaults(func=main)
