"""``mptcp-cpe dhcp-hook``: what a WAN's DHCP client learned about MCPs, kept in mcp.json.

The client-side scripts (hooks/dhcp-client/) call this with the client's own event name
and the option's raw value as that client prints it; DHCPv6 clients add the prefixes
delegated to the WAN (``--prefix``), which wand numbers into the LANs' /64s. A lease that starts or renews
(BOUND, RENEW, REBIND, ...) replaces that WAN's MCP lists for that address family; a lease
that ends (EXPIRE, RELEASE, STOP, deconfig, ...) withdraws them. A malformed option is
logged and ignored (the WAN keeps what it had), and nothing here ever makes the DHCP client
fail: every error ends in a log line and exit status 0.

mcp.json::

    {"version": 1,
     "wans": {"wan1": {"v4": {"mcps": [["192.0.2.1"]], "client": "dhclient",
                             "event": "BOUND", "learned": "2026-11-22T09:40:00+00:00"},
                      "v6": {"mcps": [...], "prefixes": ["2001:db8:1000::/56"], ...}}}}

A v6 entry is kept while the lease carries MCPs or delegated prefixes (either may be
missing: an ISP that delegates no prefix, or sends no MCP).
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import logging
import re
from pathlib import Path

from . import options
from .checks import is_ifname
from .settings import setup_logging
from .state import EMPTY_MCP_STATE, MCP_STATE, StateFileError, delegated_prefixes, learned_mcps, locked, read_json, with_learned, write_json_atomic

log = logging.getLogger(__name__)

BIND, WITHDRAW, IGNORE = "bind", "withdraw", "ignore"

# Each client's event names, and what they mean for the WAN's MCPs.
EVENTS: dict[str, dict[str, str]] = {
    # ISC dhclient's $reason (dhclient-script(8)); TIMEOUT: no server answered but a cached
    # lease still works, so its options are in force.
    "dhclient": {
        "BOUND": BIND, "RENEW": BIND, "REBIND": BIND, "REBOOT": BIND, "TIMEOUT": BIND,
        "BOUND6": BIND, "RENEW6": BIND, "REBIND6": BIND,
        "EXPIRE": WITHDRAW, "RELEASE": WITHDRAW, "STOP": WITHDRAW,
        "EXPIRE6": WITHDRAW, "RELEASE6": WITHDRAW, "STOP6": WITHDRAW,
        "PREINIT": IGNORE, "PREINIT6": IGNORE, "FAIL": IGNORE, "MEDIUM": IGNORE,
        "ARPCHECK": IGNORE, "ARPSEND": IGNORE, "DEPREF6": IGNORE,
    },
    # busybox udhcpc's $1.
    "udhcpc": {"bound": BIND, "renew": BIND, "deconfig": WITHDRAW, "leasefail": IGNORE, "nak": IGNORE},
    # dhcpcd's $reason (dhcpcd-run-hooks(8)), run DHCPv6-only (-6) on a WAN. STOPPED and
    # DEPARTED (the interface went away) end what the lease gave; NOCARRIER does not: the
    # lease is still valid when the line comes back, and wand handles a WAN that is down.
    "dhcpcd": {
        "BOUND6": BIND, "RENEW6": BIND, "REBIND6": BIND, "REBOOT6": BIND, "INFORM6": BIND,
        "EXPIRE6": WITHDRAW, "RELEASE6": WITHDRAW, "STOP6": WITHDRAW, "STOPPED": WITHDRAW, "DEPARTED": WITHDRAW,
        "PREINIT": IGNORE, "CARRIER": IGNORE, "NOCARRIER": IGNORE, "ROUTERADVERT": IGNORE,
        "DELEGATED6": IGNORE, "TIMEOUT": IGNORE, "FAIL": IGNORE, "TEST": IGNORE,
    },
    # odhcp6c's $1.
    "odhcp6c": {
        "bound": BIND, "updated": BIND, "rebound": BIND, "informed": BIND,
        "unbound": WITHDRAW, "stopped": WITHDRAW, "started": IGNORE, "ra-updated": IGNORE,
    },
}
FAMILY = {"dhclient": None, "udhcpc": "v4", "odhcp6c": "v6", "dhcpcd": "v6"}  # dhclient: by the event's 6 suffix

HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
COLON_HEX = re.compile(r"[0-9a-fA-F]{1,2}(?::[0-9a-fA-F]{1,2})*")
DECIMALS = re.compile(r"\d{1,3}(?:[ ,]+\d{1,3})*")


class HookError(ValueError):
    pass


def option_bytes(value: str) -> bytes:
    """The option's octets from the forms DHCP clients print: plain hex (udhcpc, odhcp6c),
    colon-separated hex with 1-2 digits an octet, or decimal octets separated by commas or
    spaces (dhclient, depending on how the option is declared)."""
    v = value.strip()
    if DECIMALS.fullmatch(v) and not HEX.fullmatch(v):
        octets = [int(x) for x in re.split(r"[ ,]+", v)]
        if any(o > 255 for o in octets):
            raise HookError(f"octet out of range in {value!r}")
        return bytes(octets)
    if HEX.fullmatch(v):
        return bytes.fromhex(v)
    if COLON_HEX.fullmatch(v):
        return bytes(int(x, 16) for x in v.split(":"))
    raise HookError(f"not hex or decimal octets: {value!r}")


def decode(family: str, values: list[str], where: str = "") -> list[list[str]]:
    """MCP lists after the client rule. v4: the values are the parts of one (split) option,
    and a malformed option is an error; v6: each value is one option instance, i.e. one
    MCP, and a malformed instance is dropped alone (logged), the others kept."""
    if family == "v4":
        return options.decode_v4(b"".join(option_bytes(v) for v in values))
    mcps = []
    for i, v in enumerate(values):
        try:
            mcps.append(options.decode_v6(option_bytes(v)))
        except (HookError, options.OptionError) as exc:
            log.warning("%s: MCP option instance %d dropped, the others kept: %s", where, i + 1, exc)
    if values and not mcps:
        raise HookError(f"all {len(values)} instance(s) malformed")
    return [m for m in mcps if m]


def delegated(values: list[str], where: str = "") -> list[str]:
    """The delegated prefixes as the client printed them (``2001:db8:1000::/56``), checked:
    a prefix that is not IPv6, has host bits or is longer than /64 is dropped alone."""
    out: list[str] = []
    for v in values:
        try:
            net = ipaddress.IPv6Network(v.strip(), strict=True)
        except ValueError as exc:
            log.warning("%s: delegated prefix %r dropped: %s", where, v, exc)
            continue
        if net.prefixlen > 64:
            log.warning("%s: delegated prefix %s dropped: longer than /64, no LAN can be numbered from it", where, net)
            continue
        if str(net) not in out:
            out.append(str(net))
    return out


def apply_event(state: dict, *, client: str, interface: str, event: str, family: str,
                mcps: list[list[str]] | None, now: str, prefixes: list[str] | None = None) -> dict:
    """The new mcp.json content: pure, so every lifecycle rule is testable without files.
    ``mcps`` None means the lease carried no MCP option; ``prefixes`` are the prefixes
    delegated with a DHCPv6 lease (none for DHCPv4)."""
    action = EVENTS[client][event]
    if action == IGNORE:
        return state
    if action == BIND and (mcps or prefixes):
        entry = {"mcps": mcps or [], "client": client, "event": event, "learned": now}
        if family == "v6":
            entry["prefixes"] = list(prefixes or [])
        return with_learned(state, interface, family, entry)
    # A lease without the option or a prefix, or one that ended: this WAN offers nothing
    # for this family any more.
    return with_learned(state, interface, family, None)


def family_of(client: str, event: str) -> str:
    return FAMILY[client] or ("v6" if event.endswith("6") else "v4")


def run(client: str, interface: str, event: str, values: list[str], state_file: Path,
        prefixes: list[str] | None = None) -> int:
    if client not in EVENTS:
        raise HookError(f"unknown client {client!r}")
    if not is_ifname(interface):
        raise HookError(f"{interface!r} is not an interface name")
    if EVENTS[client].get(event, IGNORE) == IGNORE:
        log.debug("%s %s: event %s does not concern MCPs", client, interface, event)
        return 0
    family = family_of(client, event)
    where = f"{client} {interface} {event}"
    mcps = None
    values = [v for v in values if v.strip()]
    if prefixes and family != "v6":
        raise HookError(f"--prefix is for DHCPv6 leases, not a {family} event")
    got = delegated(prefixes or [], where) if EVENTS[client][event] == BIND else []
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    with locked(state_file):
        state = read_json(state_file, EMPTY_MCP_STATE)
        if EVENTS[client][event] == BIND and values:
            try:
                mcps = decode(family, values, where)
            except (HookError, options.OptionError) as exc:
                log.warning("%s: MCP option ignored, the WAN keeps what it had: %s", where, exc)
                if not got:
                    return 0
                # The lease's prefixes still count; the MCPs stay what they were.
                mcps = next((lists for device, fam, lists in learned_mcps(state) if (device, fam) == (interface, family)), None)
        new = apply_event(state, client=client, interface=interface, event=event,
                          family=family, mcps=mcps, now=now, prefixes=got)
        if new != state:
            write_json_atomic(state_file, new)
    have = next((lists for device, fam, lists in learned_mcps(new) if (device, fam) == (interface, family)), [])
    pds = delegated_prefixes(new).get(interface, []) if family == "v6" else []
    log.info("%s: %d MCP(s) for %s%s", where, len(have), family,
             f", delegated {', '.join(pds)}" if pds else "")
    return 0


def prune(state_file: Path, keep: list[str]) -> list[str]:
    """Withdraw what mcp.json holds for every WAN device not in ``keep`` (a WAN removed from
    the inventory: its clients are stopped, and their scripts no longer serve it); the
    devices withdrawn, in name order."""
    with locked(state_file):
        state = read_json(state_file, EMPTY_MCP_STATE)
        gone = sorted(d for d in (state.get("wans") or {}) if d not in keep)
        new = state
        for device in gone:
            for family in ("v4", "v6"):
                new = with_learned(new, device, family, None)
        if gone:
            write_json_atomic(state_file, new)
    for device in gone:
        log.info("%s is no DHCP WAN any more: its MCPs and delegated prefixes withdrawn", device)
    return gone


def add_parser(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("dhcp-prune", help="withdraw the MCPs and prefixes of WANs that are no DHCP WAN any more")
    q.add_argument("--keep", action="append", default=[], help="a WAN device that stays (repeat for each)")
    q.add_argument("--state-file", type=Path, default=MCP_STATE)
    q.set_defaults(func=prune_main)
    p = sub.add_parser("dhcp-hook", help="record the MCPs a WAN's DHCP client learned (called by the client's script)")
    p.add_argument("--client", required=True, choices=sorted(EVENTS))
    p.add_argument("--interface", required=True)
    p.add_argument("--event", required=True, help="the client's own event name ($reason, $1)")
    p.add_argument("--state-file", type=Path, default=MCP_STATE)
    p.add_argument("--prefix", action="append", default=[], dest="prefixes",
                   help="a prefix delegated with this DHCPv6 lease (prefix/length); repeat for each")
    p.add_argument("values", nargs="*", help="the option's value(s) as the client printed them")
    p.set_defaults(func=main)


def prune_main(args: argparse.Namespace) -> int:
    """Prints the devices withdrawn, one a line (the role tells changed from it)."""
    setup_logging("dhcp-prune", None, pid=False, levels=False, syslog=True)
    bad = [d for d in args.keep if not is_ifname(d)]
    if bad:
        log.error("--keep %r is not an interface name", bad[0])
        return 2
    try:
        for device in prune(args.state_file, args.keep):
            print(device)
    except (StateFileError, OSError) as exc:
        log.error("%s", exc)
        return 1
    return 0


def main(args: argparse.Namespace) -> int:
    setup_logging("dhcp-hook", None, pid=False, levels=False, syslog=True)
    try:
        return run(args.client, args.interface, args.event, args.values, args.state_file, args.prefixes)
    except (HookError, StateFileError, OSError) as exc:
        log.error("%s %s %s: %s", args.client, args.interface, args.event, exc)
    except Exception:  # the DHCP client must never fail because of us
        log.exception("%s %s %s: unexpected error", args.client, args.interface, args.event)
    return 0
