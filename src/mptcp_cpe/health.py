"""``mptcp-cpe health``: is this CPE doing its job? One JSON line and an exit status, for
the confirm step of an apply, for a rollout's gate between batches, and for operators.

The checks, each judged only where its part is configured (its config file exists):

- ``wand``: the service runs (systemd, or procd on OpenWrt), it wrote wan.json, and the
  build it runs is the installed one (a wand left on old code after an upgrade is not
  healthy);
- ``wans``: each WAN of wand's config is up, or down, as expected (``--expect NAME=up|down|any``;
  every WAN is expected up unless told otherwise);
- ``mcps``: the converter has an MCP to use (learned by DHCP or configured, after the
  converter's own trust rules: `converter.mcps.McpBook`);
- ``converter``: the service runs and its listener is bound;
- ``convert``: a Convert exchange the command makes itself, with the first MCPs that answer:
  an MPTCP connection to the MCP's port, an Info TLV sent, the Supported TCP Extensions TLV
  read back (RFC 8803 §5). Not through the converter's listener: that takes only the LAN's
  diverted connections. A fallback to plain TCP on the way is a warning (the WAN's MPTCP
  verdict in ``status`` says which line strips), not a failure: LAN traffic still flows.

Exit status: 0 healthy, 1 not healthy, 2 the check cannot run (a config that does not load,
an ``--expect`` naming no WAN): then stderr has one line naming host, field and value, and
the JSON line says the same.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checks import InventoryError
from .state import StateFileError, WanState, read_wan_state

WAND_CONFIG = Path("/etc/mptcp-cpe/wand.json")
CONVERTER_CONFIG = Path("/etc/mptcp-cpe/converter.json")
PROC_NET = Path("/proc/net")
EXPECTATIONS = ("up", "down", "any")
MAX_EXCHANGES = 3  # MCP addresses tried at most: the command answers within 3 timeouts
TCP_LISTEN = "0A"  # /proc/net/tcp's st column


@dataclass
class Check:
    """One part's verdict: ok True or False, None when the part is not configured here."""

    ok: bool | None
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, **self.data}


class CannotRun(Exception):
    """The check cannot run: an InventoryError's line (host, field, value)."""


def parse_expectations(host: str, items: list[str], wans: list[str]) -> dict[str, str]:
    """``NAME=up|down|any`` items to a map; every WAN of ``wans`` not named: up."""
    out = {name: "up" for name in wans}
    for item in items:
        name, sep, want = item.partition("=")
        if not sep or want not in EXPECTATIONS:
            raise CannotRun(str(InventoryError(host, "--expect", "must be NAME=up, NAME=down or NAME=any", item)))
        if name not in out:
            known = ", ".join(wans) or "none"
            raise CannotRun(str(InventoryError(host, "--expect", f"{name} is not a WAN of wand's config (its WANs: {known})", item)))
        out[name] = want
    return out


def judge_wans(state: WanState | None, expect: dict[str, str]) -> Check:
    """Each WAN of wand's config against what is expected of it; a WAN missing from wan.json
    (wand has not judged it yet) fails unless anything is expected of it."""
    if state is None:
        return Check(False, "no wan.json: wand has not judged any WAN")
    problems, seen = [], {}
    for name, want in expect.items():
        w = state.wan(name)
        now = None if w is None else ("up" if w.healthy else (w.state or "down"))
        seen[name] = now or "missing"
        if want == "any":
            continue
        if w is None:
            problems.append(f"{name} is not in wan.json (expected {want})")
        elif (want == "up") != w.healthy:
            problems.append(f"{name} is {now}, expected {want}")
    words = ", ".join(f"{n} {s}" for n, s in seen.items())
    data = {"wans": seen, "expected": expect}
    if problems:
        return Check(False, "; ".join(problems), data)
    return Check(True, words or "no WAN configured", data)


def judge_wand(running: tuple[bool | None, str], state: WanState | None, installed: str) -> Check:
    up, how = running
    if not up:
        return Check(False, f"wand is not running ({how})")
    if state is None:
        return Check(False, "wand runs but has written no wan.json yet")
    if state.build and state.build != installed:
        return Check(False, f"wand runs build {state.build}, the installed build is {installed}: restart it",
                     {"build": state.build, "installed": installed})
    return Check(True, f"running ({how}), build {state.build or '?'}", {"build": state.build})


def judge_converter(running: tuple[bool | None, str], port: int, bound: bool) -> Check:
    up, how = running
    if not up:
        return Check(False, f"the converter is not running ({how})")
    if not bound:
        return Check(False, f"the converter runs ({how}) but nothing listens on its listen_port {port}")
    return Check(True, f"running ({how}), listening on port {port}", {"listen_port": port})


def service_running(unit: str) -> tuple[bool | None, str]:
    """Whether ``unit`` runs, asked of the init system: systemd, else procd (ubus). None:
    neither is here to ask."""
    if Path("/run/systemd/system").is_dir():
        try:
            out = subprocess.run(["systemctl", "show", "--property=ActiveState,SubState", f"{unit}.service"],
                                 capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"systemctl: {exc}"
        props = dict(line.partition("=")[::2] for line in out.stdout.splitlines())
        state = f"systemd: {props.get('ActiveState', '?')}/{props.get('SubState', '?')}"
        return props.get("ActiveState") == "active" and props.get("SubState") == "running", state
    try:
        out = subprocess.run(["ubus", "call", "service", "list", json.dumps({"name": unit})],
                             capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        return None, "neither systemd nor procd (ubus) here to ask"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"ubus: {exc}"
    try:
        instances = (json.loads(out.stdout or "{}").get(unit) or {}).get("instances") or {}
    except (ValueError, AttributeError):
        return None, f"ubus answered what is not JSON: {out.stdout[:80]!r}"
    running = any(isinstance(i, dict) and i.get("running") for i in instances.values())
    return running, f"procd: {'running' if running else 'not running' if instances else 'no instance'}"


def listening(port: int, proc_net: Path = PROC_NET) -> bool:
    """Whether a TCP socket of this network namespace listens on ``port`` (any address)."""
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc_net / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 3 and cols[3] == TCP_LISTEN and int(cols[1].rpartition(":")[2], 16) == port:
                return True
    return False


@dataclass(frozen=True)
class Exchange:
    """One Convert exchange with an MCP: what came back, or why nothing usable did."""

    mcp: str
    ok: bool
    detail: str
    mptcp: bool | None = None
    rtt_ms: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {"mcp": self.mcp, "ok": self.ok, "detail": self.detail, "mptcp": self.mptcp, "rtt_ms": self.rtt_ms}


def convert_exchange(address: str, port: int, timeout: float) -> Exchange:
    """An MPTCP connection to ``address``:``port``, an Info TLV, and its answer."""
    from . import rfc8803
    from .kernelcaps import IPPROTO_MPTCP
    from .wand.probe import TCP_IS_MPTCP

    start = time.monotonic()
    where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    try:
        s = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    except OSError as exc:
        return Exchange(address, False, f"cannot open an MPTCP socket: {exc.strerror} (net.mptcp.enabled?)")
    with s:
        s.settimeout(timeout)
        try:
            s.connect((address, port))
            mptcp = bool(s.getsockopt(socket.SOL_TCP, TCP_IS_MPTCP))
            s.sendall(rfc8803.info_message())
            s.shutdown(socket.SHUT_WR)
            data = b""
            while len(data) < 4096:
                try:
                    tlvs, _ = rfc8803.parse(data)
                    break
                except rfc8803.Incomplete:
                    pass
                chunk = s.recv(4096)
                if not chunk:
                    return Exchange(address, False, f"{where} closed after {len(data)} octets, no complete Convert message", mptcp)
                data += chunk
            else:
                return Exchange(address, False, f"{where} sent {len(data)} octets without a complete Convert message", mptcp)
        except socket.timeout:
            return Exchange(address, False, f"{where}: no answer within {timeout:g} s")
        except OSError as exc:
            return Exchange(address, False, f"{where}: {exc.strerror or exc}")
        except rfc8803.ConvertError as exc:
            return Exchange(address, False, f"{where} answered a malformed Convert message: {exc}")
    rtt = round((time.monotonic() - start) * 1000, 1)
    error = next((t for t in tlvs if isinstance(t, rfc8803.Error)), None)
    if error is not None:
        try:
            code = rfc8803.ErrorCode(error.code).name.replace("_", " ").lower()
        except ValueError:
            code = "unknown"
        return Exchange(address, False, f"{where} answered Error {error.code} ({code})", mptcp, rtt)
    supported = next((t for t in tlvs if isinstance(t, rfc8803.SupportedTcpExtensions)), None)
    if supported is None:
        return Exchange(address, False, f"{where} answered Info without Supported TCP Extensions", mptcp, rtt)
    return Exchange(address, True, f"{where} answered Info: TCP options {list(supported.kinds)}", mptcp, rtt)


def judge_convert(exchanges: list[Exchange], known: list[str]) -> tuple[Check, list[str]]:
    """The exchanges tried in order (the first that worked ends them); and warnings."""
    if not known:
        return Check(False, "no MCP to ask"), []
    tried = [e.as_json() for e in exchanges]
    good = next((e for e in exchanges if e.ok), None)
    if good is None:
        return Check(False, "; ".join(e.detail for e in exchanges), {"tried": tried}), []
    warnings = [f"the Convert exchange with {good.mcp} fell back to plain TCP: MPTCP options are stripped on the "
                "default path"] if good.mptcp is False else []
    return Check(True, good.detail, {"mcp": good.mcp, "mptcp": good.mptcp, "rtt_ms": good.rtt_ms, "tried": tried}), warnings


def _installed_build() -> str:
    from .build import build_id

    return build_id()


def _config_host(path: Path, fallback: str) -> str:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return fallback
    return raw["host"] if isinstance(raw, dict) and isinstance(raw.get("host"), str) and raw["host"] else fallback


def check(args: argparse.Namespace) -> dict[str, Any]:
    """Every check; raises CannotRun when one cannot be judged at all."""
    host = _config_host(args.wand_config, _config_host(args.converter_config, socket.gethostname()))
    checks: dict[str, Check] = {}
    warnings: list[str] = []
    if not args.wand_config.exists() and not args.converter_config.exists():
        raise CannotRun(str(InventoryError(host, "--wand-config", "neither wand's nor the converter's config exists: "
                                           "nothing of mptcp-cpe is configured here", str(args.wand_config))))
    if args.wand_config.exists():
        from .wand import config as wand_config

        try:
            wcfg = wand_config.load(args.wand_config, host)
        except InventoryError as exc:
            raise CannotRun(str(exc)) from None
        expect = parse_expectations(host, args.expect, [w.name for w in wcfg.wans])
        try:
            state = read_wan_state(wcfg.state_file)
        except StateFileError as exc:
            raise CannotRun(f"{host}: {wcfg.state_file}: {exc}") from None
        checks["wand"] = judge_wand(service_running("mptcp-cpe-wand"), state, _installed_build())
        checks["wans"] = judge_wans(state, expect)
    else:
        if args.expect:
            raise CannotRun(str(InventoryError(host, "--expect", f"no wand config ({args.wand_config}) to name WANs",
                                               args.expect[0])))
        checks["wand"] = checks["wans"] = Check(None, f"not configured here (no {args.wand_config})")
    if args.converter_config.exists():
        from .converter import config as converter_config
        from .converter.mcps import McpBook
        from .localaddrs import LocalAddresses, NetlinkError

        try:
            ccfg = converter_config.load(args.converter_config, host)
        except InventoryError as exc:
            raise CannotRun(str(exc)) from None
        try:
            local = LocalAddresses()
        except (OSError, NetlinkError):
            local = None
        try:
            book = McpBook(ccfg, local=local if local is not None else frozenset())
            known = book.addresses()
        finally:
            if local is not None:
                local.close()
        checks["mcps"] = (Check(True, ", ".join(known), {"mcps": known}) if known else
                          Check(False, f"no MCP to use: none learned in {ccfg.mcp_file}, none configured, "
                                       "or the converter refuses them all (mptcp-cpe status says why)"))
        checks["converter"] = judge_converter(service_running("mptcp-cpe-converter"), ccfg.listen_port,
                                              listening(ccfg.listen_port))
        exchanges = []
        for address in known[:MAX_EXCHANGES]:
            exchanges.append(convert_exchange(address, ccfg.mcp_port, args.timeout))
            if exchanges[-1].ok:
                break
        checks["convert"], warnings = judge_convert(exchanges, known)
    else:
        for name in ("mcps", "converter", "convert"):
            checks[name] = Check(None, f"not configured here (no {args.converter_config})")
    healthy = all(c.ok is not False for c in checks.values())
    problems = [f"{name}: {c.detail}" for name, c in checks.items() if c.ok is False]
    return {"host": host, "healthy": healthy, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "checks": {name: c.as_json() for name, c in checks.items()}, "problems": problems, "warnings": warnings}


def main(args: argparse.Namespace) -> int:
    try:
        if not 0.1 <= args.timeout <= 60:
            raise CannotRun(str(InventoryError(socket.gethostname(), "--timeout", "must be a number from 0.1 to 60",
                                               args.timeout)))
        report = check(args)
    except CannotRun as exc:
        print(f"mptcp-cpe health: {exc}", file=sys.stderr)
        print(json.dumps({"host": socket.gethostname(), "healthy": False, "error": str(exc)}, sort_keys=True))
        return 2
    print(json.dumps(report, sort_keys=True))
    if not report["healthy"] and not args.quiet:
        for line in report["problems"]:
            print(f"mptcp-cpe health: {report['host']}: {line}", file=sys.stderr)
    return 0 if report["healthy"] else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("health", help="is this CPE doing its job: wand, the WANs, the MCPs, the converter, "
                                      "a Convert exchange; one JSON line, exit 0 healthy, 1 not, 2 cannot check")
    p.add_argument("--expect", action="append", default=[], metavar="NAME=up|down|any",
                   help="what a WAN should be (default: every WAN up); repeat for each WAN")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds for each Convert exchange (0.1-60, default 5)")
    p.add_argument("--wand-config", type=Path, default=WAND_CONFIG)
    p.add_argument("--converter-config", type=Path, default=CONVERTER_CONFIG)
    p.add_argument("-q", "--quiet", action="store_true", help="only the JSON line, no problem lines on stderr")
    p.set_defaults(func=main)

