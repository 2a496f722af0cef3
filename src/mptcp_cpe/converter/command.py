"""``mptcp-cpe converter``: load and check the config, set up interception, run the workers."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys

from ..inventory import InventoryError
from ..relay import Supervisor, WorkerSignals, raise_fd_limit, worker_count
from ..settings import add_daemon_parser, load_or_say, setup_logging
from .config import START_ONLY, load
from .intercept import Interception
from .mcps import SharedHolds
from .worker import ConverterWorker, listeners

log = logging.getLogger(__name__)


def main(args: argparse.Namespace) -> int:
    cfg = load_or_say("converter", load, args.config)
    if cfg is None:
        return 1
    if args.check:
        print(f"{args.config}: LAN {', '.join(cfg.lan_interfaces)}, {len(cfg.mcps)} static MCP(s): OK")
        return 0
    setup_logging("converter", args.verbose)
    raise_fd_limit()
    n = worker_count(cfg.workers)
    try:
        socks = [listeners(cfg) for _ in range(n)]
    except OSError as exc:
        print(f"mptcp-cpe converter: {cfg.host}: listen_port: cannot listen: {exc.strerror} (got {cfg.listen_port})", file=sys.stderr)
        return 1
    try:
        kernel = Interception()
        kernel.apply(cfg)
    except Exception as exc:  # noqa: BLE001 - one clear line, nothing left half-made
        print(f"mptcp-cpe converter: {cfg.host}: cannot set up interception: {exc}", file=sys.stderr)
        with contextlib.suppress(Exception):
            kernel.remove(cfg)
        return 1
    state = {"cfg": cfg}
    holds = SharedHolds()  # before the workers fork: they share it

    def work(index: int) -> int:
        mine = socks[index]
        for i, group in enumerate(socks):
            if i != index:
                for s in group:
                    s.close()
        signals = WorkerSignals()
        return ConverterWorker(state["cfg"], args.config, mine, holds).run(signals)

    def reload() -> bool:
        try:
            new = load(args.config, cfg.host)
        except InventoryError as exc:
            log.error("reload refused: %s", exc)
            return False
        for key in START_ONLY:
            if getattr(new, key) != getattr(state["cfg"], key):
                log.error("reload refused: %s: %s: changes only with a restart (got %r)", new.host, key, getattr(new, key))
                return False
        try:
            kernel.apply(new)
        except Exception as exc:  # noqa: BLE001
            log.error("reload refused: cannot apply the interception rules: %s", exc)
            kernel.apply(state["cfg"])
            return False
        state["cfg"] = new
        log.info("config reloaded")
        return True

    def on_exit() -> None:
        kernel.remove(state["cfg"])  # again: a worker may have failed to start
        kernel.close()

    # Interception stops first when draining: new LAN connections are forwarded directly
    # while the live ones finish (their packets still find their sockets).
    def on_drain() -> None:
        kernel.apply(state["cfg"], intercept=False)
        for group in socks:  # the workers close theirs; the parent's copies would keep them listening
            for s in group:
                s.close()

    sup = Supervisor("converter", n, work, reload, cfg.drain_timeout_s, on_drain=on_drain, on_exit=on_exit)
    for group in socks:
        for s in group:
            s.set_inheritable(False)
    return sup.run()


def add_parser(sub: argparse._SubParsersAction) -> None:
    add_daemon_parser(sub, "converter", "the CPE-side converter: LAN TCP to MPTCP via an MCP (RFC 8803)", "cpe_converter", main)
