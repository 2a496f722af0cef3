"""The one skeleton of the relay daemons (``converter``, ``mcp``): load and check the config
(``--check`` stops there), logging, the fd limit, each worker's own listening sockets, the
daemon's kernel state, then the Supervisor with its reload (a setting of ``start_only``
changed is refused: it needs a restart) and its drain; and in each worker, the same reload
and drain (`reload_config`, `run_worker`).

A daemon is a RelayDaemon whose methods say what differs: how it listens, what it sets up
at start and applies on a reload, and the worker each process runs."""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .inventory import InventoryError
from .relay import Loop, Supervisor, WorkerSignals, raise_fd_limit, worker_count, worker_ready
from .settings import load_or_say, setup_logging

log = logging.getLogger(__name__)


class RelayDaemon:
    name = ""  # the subcommand: "converter", "mcp"
    start_only: tuple[str, ...] = ()  # taken at start only: a reload changing one is refused

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.cfg: Any = None  # the config in force: the one the workers fork with
        self.socks: list[list[socket.socket]] = []  # each worker's listening sockets

    # -- what a daemon says
    def load(self, path: Path, host: str) -> Any:
        raise NotImplementedError

    def checked(self, cfg: Any) -> str:
        """The line ``--check`` prints for a good config."""
        raise NotImplementedError

    def listen(self, cfg: Any) -> list[socket.socket]:
        """One worker's listening sockets (SO_REUSEPORT: each worker has its own)."""
        raise NotImplementedError

    def cannot_listen(self, cfg: Any, exc: OSError) -> str:
        raise NotImplementedError

    def start(self, cfg: Any, workers: int) -> str | None:
        """Set up what the daemon needs before its workers fork; a line saying what failed, or None."""
        return None

    def work(self, index: int, socks: list[socket.socket]) -> int:
        """Run worker ``index`` on its sockets (in the forked child)."""
        raise NotImplementedError

    def apply(self, new: Any) -> bool:
        """A reload's side effects, before the workers take ``new``; False (and a log line) refuses it."""
        return True

    def reloaded(self, new: Any) -> None:
        """After a reload is taken."""

    def draining(self) -> None:
        """At SIGTERM, before the parent closes its copies of the listeners."""

    def on_exit(self) -> None:
        """When the supervisor ends."""

    # -- the skeleton
    def main(self) -> int:
        args = self.args
        cfg = load_or_say(self.name, self.load, args.config)
        if cfg is None:
            return 1
        if args.check:
            print(self.checked(cfg))
            return 0
        setup_logging(self.name, args.verbose)
        raise_fd_limit()
        n = worker_count(cfg.workers)
        try:
            self.socks = [self.listen(cfg) for _ in range(n)]
        except OSError as exc:
            print(f"mptcp-cpe {self.name}: {cfg.host}: {self.cannot_listen(cfg, exc)}", file=sys.stderr)
            return 1
        problem = self.start(cfg, n)
        if problem is not None:
            print(f"mptcp-cpe {self.name}: {cfg.host}: {problem}", file=sys.stderr)
            return 1
        self.cfg = cfg
        sup = Supervisor(self.name, n, self._work, self._reload, cfg.drain_timeout_s, on_drain=self._drain,
                         on_exit=self.on_exit)
        for group in self.socks:
            for s in group:
                s.set_inheritable(False)
        return sup.run()

    def _work(self, index: int) -> int:
        for i, group in enumerate(self.socks):
            if i != index:
                for s in group:
                    s.close()
        return self.work(index, self.socks[index])

    def _reload(self) -> bool:
        try:
            new = self.load(self.args.config, self.cfg.host)
        except InventoryError as exc:
            log.error("reload refused: %s", exc)
            return False
        for key in self.start_only:
            if getattr(new, key) != getattr(self.cfg, key):
                log.error("reload refused: %s: %s: changes only with a restart (got %r)", new.host, key, getattr(new, key))
                return False
        if not self.apply(new):
            return False
        self.cfg = new
        log.info("config reloaded")
        self.reloaded(new)
        return True

    def _drain(self) -> None:
        self.draining()
        # The workers close their listeners; the parent's copies would keep them listening,
        # and new connections would wait in a queue nobody accepts from.
        for group in self.socks:
            for s in group:
                s.close()


# ---------------------------------------------------------------- in a worker

def reload_config(load: Callable[[Path, str], Any], path: Path, cfg: Any, start_only: tuple[str, ...]) -> Any | None:
    """A worker's reload (after the supervisor took it): the new config, or None to keep ``cfg``."""
    try:
        new = load(path, cfg.host)
    except InventoryError as exc:
        log.error("reload refused: %s", exc)
        return None
    if any(getattr(new, key) != getattr(cfg, key) for key in start_only):
        return None  # the supervisor refused it and said why
    return new


def run_worker(loop: Loop, signals: WorkerSignals, listeners: list[socket.socket], reload: Callable[[], None] | None,
               drain_s: Callable[[], float], idle: Callable[[], bool]) -> int:
    """A worker's loop once its sockets are in ``loop``: ready, then SIGHUP runs ``reload``
    and SIGTERM closes the listeners and runs until ``idle()`` or ``drain_s()`` has passed."""
    signals.watch(loop)
    worker_ready()
    deadline = None

    def done() -> bool:
        nonlocal deadline
        if signals.reload and reload is not None:
            signals.reload = False
            reload()
        if signals.drain and deadline is None:
            deadline = time.monotonic() + drain_s()
            for s in listeners:
                loop.forget(s.fileno())
                s.close()
        if deadline is not None:
            return idle() or time.monotonic() >= deadline
        return False

    loop.run(done)
    return 0
