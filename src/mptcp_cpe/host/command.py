"""The ``host`` subcommand: ``mptcp-cpe host [--config FILE] [--check]`` runs the daemon,
``mptcp-cpe host event EVENT`` is its udhcpc's script, ``mptcp-cpe host status [--json]``
tells what runs. Light on imports: pyroute2 loads only when something touches the kernel."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from ..settings import load_or_say, setup_logging
from ..state import StateFileError, read_json
from . import config as host_config

log = logging.getLogger(__name__)


def main(args: argparse.Namespace) -> int:
    cfg = load_or_say("host", host_config.load, args.config)
    if cfg is None:
        return 1
    if args.check:
        print(f"{args.config}: interface {cfg.interface}, mp-avail option {cfg.mp_avail_code}, "
              f"mp-range option {cfg.mp_range_code}: OK")
        return 0
    setup_logging("host", args.verbose, pid=False)
    from ..nft import KernelError
    from .daemon import HostDaemon
    from .kernel import HostKernel

    try:
        kernel = HostKernel()
    except (KernelError, OSError) as exc:
        print(f"mptcp-cpe host: {exc}", file=sys.stderr)
        return 1
    try:
        return HostDaemon(cfg, args.config, kernel).run()
    finally:
        kernel.close()


def event_main(args: argparse.Namespace) -> int:
    """udhcpc's script: always exit 0 (udhcpc must not stop because of it), errors logged."""
    setup_logging(f"host path {args.path}", None, pid=False, levels=False, syslog=True)
    try:
        cfg = host_config.load(args.config)
        from .lease import run

        run(cfg, args.path, args.event, dict(os.environ))
    except Exception as exc:  # one line, never a traceback into udhcpc's log
        log.error("%s: %s", args.event, exc)
    return 0


# What the daemon tells its udhcpc clients' script (udhcpc passes its environment on): the
# running config and which path the client serves. A fixed program, not a script written at
# run time: /run is mounted noexec on most systems.
CONFIG_ENV, PATH_ENV = "MPTCP_CPE_HOST_CONFIG", "MPTCP_CPE_HOST_PATH"
SCRIPT = "mptcp-cpe-udhcpc-script"  # [project.scripts] in pyproject.toml


def udhcpc_script() -> int:
    """``mptcp-cpe-udhcpc-script EVENT``: udhcpc's ``-s`` for the daemon's clients."""
    event = sys.argv[1] if len(sys.argv) > 1 else ""
    try:
        args = argparse.Namespace(config=os.environ[CONFIG_ENV], path=int(os.environ[PATH_ENV]), event=event)
    except (KeyError, ValueError) as exc:
        print(f"mptcp-cpe-udhcpc-script: run by mptcp-cpe host's udhcpc only ({CONFIG_ENV} and {PATH_ENV} "
              f"missing or bad: {exc})", file=sys.stderr)
        return 0  # udhcpc must not stop because of it
    return event_main(args)


def status_main(args: argparse.Namespace) -> int:
    cfg = load_or_say("host", host_config.load, args.config)
    if cfg is None:
        return 1
    path = cfg.state_dir / "status.json"
    try:
        status = read_json(path, None)
    except StateFileError as exc:
        print(f"mptcp-cpe host status: {exc}", file=sys.stderr)
        return 1
    if status is None:
        print(f"mptcp-cpe host status: {path}: no such file (the daemon does not run)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    primary = status.get("primary") or {}
    print(f"{status.get('interface')}: {primary.get('address') or 'no lease'}, router {primary.get('router')}, "
          f"mp-avail {status.get('mp_avail')}")
    for k, p in sorted((status.get("paths") or {}).items(), key=lambda kv: int(kv[0])):
        print(f"  path {k}: {p.get('macvlan')} {p.get('mac')} {p.get('address') or 'no lease'}"
              f" table {p.get('table')} endpoint {p.get('endpoint_id') or '-'}")
    for i, a in sorted((status.get("ipv6_endpoints") or {}).items(), key=lambda kv: int(kv[0])):
        print(f"  ipv6: {a} endpoint {i}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("host", help="a LAN host using its gateway's extra paths (mp-avail/mp-range, macvlans, MPTCP)")
    p.add_argument("--config", type=host_config.Path, default=host_config.CONFIG,
                   help=f"JSON config (rendered by the role mptcp_host; default {host_config.CONFIG})")
    p.add_argument("--check", action="store_true", help="check the config and exit")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=main)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    e = actions.add_parser("event", help="udhcpc's script (run by the daemon's clients)")
    e.add_argument("--config", type=host_config.Path, required=True, help="the config the daemon runs")
    e.add_argument("--path", type=int, choices=range(0, host_config.MAX_PATHS + 1), required=True,
                   help="0: the primary lease; k: path k's macvlan")
    e.add_argument("event", help="udhcpc's $1")
    e.set_defaults(func=event_main)
    s = actions.add_parser("status", help="the paths, their MACs, leases and endpoints")
    s.add_argument("--config", type=host_config.Path, default=host_config.CONFIG)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=status_main)
