"""``mptcp-cpe converter``: the relay daemon's skeleton (`daemon.RelayDaemon`) with the
converter's parts: TPROXY listeners, interception set up at start and on a reload, stopped
first when draining, removed at exit."""

from __future__ import annotations

import argparse
import contextlib
import logging
import socket
from pathlib import Path

from .. import kernelcaps
from ..daemon import RelayDaemon
from ..relay import WorkerSignals
from ..settings import add_daemon_parser
from .config import START_ONLY, ConverterConfig, load
from .intercept import Interception
from .mcps import SharedHolds
from .worker import ConverterWorker, listeners

log = logging.getLogger(__name__)


class ConverterDaemon(RelayDaemon):
    name = "converter"
    start_only = START_ONLY

    def load(self, path: Path, host: str) -> ConverterConfig:
        return load(path, host)

    def checked(self, cfg: ConverterConfig) -> str:
        return f"{self.args.config}: LAN {', '.join(cfg.lan_interfaces)}, {len(cfg.mcps)} static MCP(s): OK"

    def listen(self, cfg: ConverterConfig) -> list[socket.socket]:
        return listeners(cfg)

    def cannot_listen(self, cfg: ConverterConfig, exc: OSError) -> str:
        return f"listen_port: cannot listen: {exc.strerror} (got {cfg.listen_port})"

    def start(self, cfg: ConverterConfig, workers: int) -> str | None:
        try:
            self.kernel = Interception()
            self.kernel.apply(cfg)
        except Exception as exc:  # noqa: BLE001 - one clear line, nothing left half-made
            with contextlib.suppress(Exception):
                self.kernel.remove(cfg)
            return f"cannot set up interception: {exc}"
        self.holds = SharedHolds()  # before the workers fork: they share it
        # What the kernel's MPTCP can do, asked once (not per worker, not per connection),
        # and said once when it costs a round trip.
        self.caps = kernelcaps.probe()
        if cfg.fast_open == "off":
            log.info("fast_open off: the Convert message goes in the first data segment after the handshake")
        elif not self.caps.convert_in_syn:
            log.warning("kernel %s: no TCP Fast Open on MPTCP sockets (%s): the Convert message goes in the first "
                        "data segment after the handshake, one more round trip per converted connection",
                        self.caps.release, self.caps.no_fast_open_reason())
        else:
            log.info("kernel %s: TCP Fast Open on MPTCP sockets: the Convert message rides in the SYN",
                     self.caps.release)
        return None

    def work(self, index: int, socks: list[socket.socket]) -> int:
        return ConverterWorker(self.cfg, self.args.config, socks, self.holds,
                               kernel_fast_open=self.caps.mptcp_fast_open).run(WorkerSignals())

    def apply(self, new: ConverterConfig) -> bool:
        try:
            self.kernel.apply(new)
        except Exception as exc:  # noqa: BLE001
            log.error("reload refused: cannot apply the interception rules: %s", exc)
            self.kernel.apply(self.cfg)
            return False
        return True

    # Interception stops first when draining: new LAN connections are forwarded directly
    # while the live ones finish (their packets still find their sockets).
    def draining(self) -> None:
        self.kernel.apply(self.cfg, intercept=False)

    def on_exit(self) -> None:
        self.kernel.remove(self.cfg)  # again: a worker may have failed to start
        self.kernel.close()


def main(args: argparse.Namespace) -> int:
    return ConverterDaemon(args).main()


def add_parser(sub: argparse._SubParsersAction) -> None:
    add_daemon_parser(sub, "converter", "the CPE-side converter: LAN TCP to MPTCP via an MCP (RFC 8803)", "cpe_converter", main)
