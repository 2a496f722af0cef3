"""``mptcp-cpe host``: a single-homed LAN host that uses the extra paths its gateway offers
(draft-wr-mptcp-single-homed).

The daemon runs busybox udhcpc on the LAN interface in the foreground, asking for
mp-avail; that client's script (`lease`) sets the primary lease as udhcpc's default.script
would and records mp-avail = n. The loop then keeps n macvlans on the LAN interface
(``<if>.mp<k>``, each with a MAC derived from the interface's, so a restart asks for the
same leases), each with its own udhcpc sending mp-range = k; their script adds the path's
address, table, rule and subflow endpoint, and removes them when the lease ends. For IPv6
the loop keeps one subflow endpoint per global prefix address of the LAN interface (SLAAC:
one /64 per WAN), polled every ``ipv6_poll_s``. ``status.json`` in the state directory
tells what runs (``mptcp-cpe host status``).

Signals: SIGHUP reloads the config (a bad one is refused with one line, the running state
stays; a changed one stops every client and path, then starts again); SIGTERM and SIGINT
stop the clients with a release (udhcpc ``-R``), remove everything the host made (tagged
routes and rules, endpoint ids, addresses, macvlans) and exit 0. Run by systemd as
``Type=notify``: READY=1 once leftovers of an earlier run are gone and the primary's
udhcpc runs.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..inventory import InventoryError
from ..sdnotify import sd_notify
from ..state import read_json, write_json_atomic
from . import config as host_config
from .command import CONFIG_ENV, PATH_ENV, SCRIPT
from .config import HostConfig
from .kernel import PARENT_SYSCTLS, HostKernel
from .lease import path_file, primary_file
from .options import send_mp_range
from .plan import V6_ID_OFFSET, limits, macvlan_name, path_macs, paths_to_change, v6_endpoints, v6_prefix_addresses

log = logging.getLogger(__name__)

TICK_S = 1.0  # the loop looks at the clients and mp-avail this often
CLIENT_STOP_S = 5.0  # a stopping udhcpc has this long to release and run its script
RESTART_S = (1.0, 30.0)  # a client that exited is started again after 1 s, doubling to 30 s
# udhcpc: 3 discovers 2 s apart, then 10 s before trying again (busybox's 3, 3 and 20 are
# long for a LAN where the gateway answers at once or not at all).
UDHCPC_RETRIES = ["-t", "3", "-T", "2", "-A", "10"]


@dataclass
class Client:
    """One udhcpc the daemon runs: path 0 is the primary."""

    k: int
    device: str
    proc: subprocess.Popen | None = None
    restarts: int = 0
    start_after: float = 0.0
    started: float = 0.0
    mac: str | None = None


class HostDaemon:
    def __init__(self, cfg: HostConfig, config_path, kernel: HostKernel | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.kernel = kernel or HostKernel()
        self.clients: dict[int, Client] = {}
        self.mp_avail = 0
        self.v6_next = 0.0
        self.v6_ids: dict[int, str] = {}
        self.wake = threading.Event()
        self.pending: list[str] = []

    # --- files ---

    @property
    def running_file(self):
        return self.cfg.state_dir / "running.json"

    @property
    def status_file(self):
        return self.cfg.state_dir / "status.json"

    @staticmethod
    def script() -> str:
        """udhcpc's ``-s``: the package's own program beside this Python (the config and the
        path it serves come in the client's environment, `command.udhcpc_script`)."""
        beside = Path(sys.executable).parent / SCRIPT
        return str(beside) if beside.exists() else (shutil.which(SCRIPT) or str(beside))

    # --- clients ---

    def client_argv(self, c: Client) -> list[str]:
        argv = [*self.cfg.dhcp_client, "-f", "-R", "-i", c.device, "-s", self.script(), *UDHCPC_RETRIES]
        if c.k == 0:
            argv += ["-O", str(self.cfg.mp_avail_code)]
            last = read_json(primary_file(self.cfg), {}).get("last_address")
        else:
            argv += ["-O", str(self.cfg.mp_range_code), "-x", send_mp_range(self.cfg.mp_range_code, c.k)]
            last = read_json(path_file(self.cfg, c.k), {}).get("last_address")
        # The address this client had: the server gives it again when it is free.
        if last:
            argv += ["-r", last]
        return argv

    def start_client(self, c: Client) -> None:
        argv = self.client_argv(c)
        try:
            env = dict(os.environ, **{CONFIG_ENV: str(self.running_file), PATH_ENV: str(c.k)})
            c.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=env)
            c.started = time.monotonic()
            log.info("%s: udhcpc started (pid %d)%s", c.device, c.proc.pid,
                     f", asking for range {c.k}" if c.k else f", asking for mp-avail (option {self.cfg.mp_avail_code})")
        except OSError as exc:
            c.proc = None
            self.back_off(c, f"cannot start {argv[0]}: {exc}")

    def back_off(self, c: Client, why: str) -> None:
        delay = min(RESTART_S[1], RESTART_S[0] * 2 ** min(c.restarts, 5))
        c.restarts += 1
        c.start_after = time.monotonic() + delay
        log.error("%s: %s; again in %g s", c.device, why, delay)

    def stop_client(self, c: Client) -> None:
        """SIGTERM: udhcpc -R releases the lease and runs its script with deconfig."""
        if c.proc is None or c.proc.poll() is not None:
            return
        c.proc.terminate()
        try:
            c.proc.wait(CLIENT_STOP_S)
        except subprocess.TimeoutExpired:
            log.warning("%s: udhcpc did not stop in %g s: killed", c.device, CLIENT_STOP_S)
            c.proc.kill()
            c.proc.wait(CLIENT_STOP_S)

    def tend(self, c: Client) -> None:
        """Start a client that is not running (after its back-off)."""
        if c.proc is not None and c.proc.poll() is None:
            return
        if c.proc is not None:
            code = c.proc.returncode
            c.proc = None
            # A client that ran a while before it failed starts again soon.
            if time.monotonic() - c.started > RESTART_S[1]:
                c.restarts = 0
            self.back_off(c, f"udhcpc exited ({code})")
            return
        if time.monotonic() >= c.start_after:
            self.start_client(c)

    # --- paths ---

    def start_path(self, k: int, mac: str) -> None:
        device = macvlan_name(self.cfg.interface, k)
        try:
            self.kernel.add_macvlan(self.cfg.interface, device, mac)
        except Exception as exc:  # the next tick tries again
            log.error("path %d: cannot make %s: %s", k, device, exc)
            return
        log.info("path %d: %s with MAC %s", k, device, mac)
        c = Client(k, device, mac=mac)
        self.clients[k] = c
        self.start_client(c)

    def stop_path(self, k: int) -> None:
        c = self.clients.pop(k)
        self.stop_client(c)
        self.remove_path_leftovers(k, c.device)
        log.info("path %d: %s and its client removed", k, c.device)

    def remove_path_leftovers(self, k: int, device: str) -> None:
        """What the script left of path k (it was killed, or never ran), and the macvlan."""
        have = self.kernel.owned(self.cfg, {self.cfg.table(k)})
        self.kernel.remove(
            self.cfg,
            endpoints=[e for e in have.endpoints.values() if e.device == device or e.id == self.cfg.endpoint_id_base + k - 1],
            rules=[r for r in have.rules if r.table == self.cfg.table(k)],
            routes=list(have.routes.values()),
            addresses=[a for a in have.addresses if a.device == device])
        self.kernel.delete_link(device)

    def reconcile_paths(self) -> None:
        raw = read_json(primary_file(self.cfg), {}).get("mp_avail", 0)
        n = raw if isinstance(raw, int) else 0
        if n != self.mp_avail:
            log.info("mp-avail %d (was %d)", n, self.mp_avail)
            self.mp_avail = n
        running = {k for k in self.clients if k > 0}
        start, stop = paths_to_change(running, n)
        for k in stop:
            self.stop_path(k)
        if start:
            macs = path_macs(self.kernel.mac(self.cfg.interface))
            for k in start:
                self.start_path(k, macs[k])

    def reconcile_v6(self) -> None:
        now = time.monotonic()
        if now < self.v6_next:
            return
        self.v6_next = now + self.cfg.ipv6_poll_s
        wanted = v6_prefix_addresses(self.kernel.v6_addresses(self.cfg.interface))
        have = self.kernel.owned(self.cfg, set()).endpoints
        first = self.cfg.endpoint_id_base + V6_ID_OFFSET
        have = {i: e for i, e in have.items() if i >= first}
        remove, add = v6_endpoints(self.cfg, self.cfg.interface, have, wanted)
        for e in remove:
            self.kernel.remove(self.cfg, endpoints=[e])
            log.info("IPv6: endpoint %s removed (address gone)", e)
        for e in add:
            self.kernel.add_endpoint(e, self.cfg)
            log.info("IPv6: endpoint %s added", e)
        self.v6_ids = {i: e.address for i, e in have.items() if e not in remove} | {e.id: e.address for e in add}

    def raise_limits(self) -> None:
        paths = sum(1 for k in self.clients if k > 0)
        self.kernel.raise_limits(limits(paths, len(self.v6_ids)))

    def write_status(self) -> None:
        primary = read_json(primary_file(self.cfg), {})
        paths = {}
        for k, c in sorted(self.clients.items()):
            if k == 0:
                continue
            rec = read_json(path_file(self.cfg, k), {})
            paths[str(k)] = {"macvlan": c.device, "mac": c.mac, "address": rec.get("address"),
                             "router": rec.get("router"), "endpoint_id": rec.get("endpoint_id"),
                             "table": self.cfg.table(k), "client_pid": c.proc.pid if c.proc else None}
        status = {"host": self.cfg.host, "interface": self.cfg.interface, "mp_avail": self.mp_avail,
                  "primary": {"address": primary.get("address"), "router": primary.get("router"),
                              "client_pid": self.clients[0].proc.pid if 0 in self.clients and self.clients[0].proc else None},
                  "paths": paths, "ipv6_endpoints": {str(i): a for i, a in sorted(self.v6_ids.items())}}
        if read_json(self.status_file, None) != status:
            write_json_atomic(self.status_file, status)

    # --- lifecycle ---

    def clean(self, why: str) -> None:
        """Remove every object carrying the host's marks, and its macvlans."""
        have = self.kernel.owned(self.cfg)
        self.kernel.remove(self.cfg, endpoints=have.endpoints.values(), rules=have.rules,
                           routes=have.routes.values(), addresses=have.addresses)
        for name in self.kernel.macvlans(self.cfg.interface):
            self.kernel.delete_link(name)
        n = len(have.endpoints) + len(have.rules) + len(have.routes) + len(have.addresses)
        if n:
            log.info("%s: removed %d endpoint(s), rule(s), route(s) and address(es)", why, n)

    def forget_leases(self) -> None:
        """The state files of a previous run keep only the address each client had (asked
        for again): what they say of leases and mp-avail is not true any more."""
        files = [primary_file(self.cfg)] + sorted(self.cfg.state_dir.glob("path-*.json"))
        for path in files:
            last = read_json(path, {}).get("last_address")
            if last:
                write_json_atomic(path, {"last_address": last})
            else:
                path.unlink(missing_ok=True)

    def begin(self) -> None:
        self.cfg.state_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.running_file, self.cfg.as_dict())
        # A previous run killed hard leaves its objects: start from nothing of ours.
        self.clean("left by a previous run")
        self.forget_leases()
        self.kernel.set_sysctls(self.cfg.interface, PARENT_SYSCTLS)
        self.kernel.up(self.cfg.interface)
        self.mp_avail = 0
        self.v6_next = 0.0
        primary = Client(0, self.cfg.interface)
        self.clients = {0: primary}
        self.start_client(primary)

    def end(self) -> None:
        for k in sorted((k for k in self.clients if k > 0), reverse=True):
            self.stop_path(k)
        if 0 in self.clients:
            self.stop_client(self.clients.pop(0))
        self.clean("stopping")
        self.v6_ids = {}
        try:
            self.status_file.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot remove %s: %s", self.status_file, exc)

    def reload(self) -> None:
        try:
            new = host_config.load(self.config_path, self.cfg.host)
        except InventoryError as exc:
            log.error("config refused, keeping the running state: %s", exc)
            return
        if new == self.cfg:
            log.info("config reloaded from %s: unchanged", self.config_path)
            return
        log.info("config reloaded from %s: changed, starting over", self.config_path)
        self.end()
        self.cfg = new
        self.begin()

    def tick(self) -> None:
        for c in list(self.clients.values()):
            self.tend(c)
        self.reconcile_paths()
        self.reconcile_v6()
        self.raise_limits()
        self.write_status()

    def run(self) -> int:
        def on_signal(signum, _frame):
            self.pending.append("reload" if signum == signal.SIGHUP else "stop")
            self.wake.set()

        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        if shutil.which(self.cfg.dhcp_client[0]) is None:
            log.error("%s: dhcp_client: %s not found", self.cfg.host, self.cfg.dhcp_client[0])
            return 1
        log.info("started on %s: primary lease with mp-avail (option %d), paths with mp-range (option %d)",
                 self.cfg.interface, self.cfg.mp_avail_code, self.cfg.mp_range_code)
        self.begin()
        sd_notify("READY=1")
        try:
            while True:
                while self.pending:
                    what = self.pending.pop(0)
                    if what == "stop":
                        return 0
                    self.reload()
                try:
                    self.tick()
                except Exception:  # one failed pass must not end the daemon
                    log.exception("pass failed; trying again in %g s", TICK_S)
                self.wake.wait(TICK_S)
                self.wake.clear()
        finally:
            sd_notify("STOPPING=1")
            self.end()
            log.info("stopped; released the leases and removed the paths, rules, routes and endpoints")
