"""``mptcp-cpe wand``: the multi-WAN daemon.

One loop owns the kernel state. It wakes on netlink events (a WAN address appears, changes
or goes; a link or a DHCP/RA default route changes), on a probe verdict that flips a WAN's
health, on an MPTCP test's result, on a change of mcp.json (a delegated prefix or an MCP
comes or goes), on SIGHUP and SIGTERM, when a WAN's MPTCP test is due, and every
``RESYNC_S`` to repair what someone else removed. Each wake: read the WAN links
and what wand owns, number the LANs' /64s from the delegated prefixes (``lanprefix``),
compute what should be (``plan``), apply the difference, write wan.json and radvd's
configuration (radvd told to reread it when it changed).

MPTCP through each WAN (``mptcp_probe``): a worker thread per WAN runs the test
(`probe.mptcp_round`) when the loop asks, off the loop; the loop keeps each WAN's
`probe.MptcpVerdict` and asks when a healthy WAN's test is due (at once when it comes up,
or its address or MCPs change). A blocked WAN (``mptcp-blocked``) keeps everything but its
MPTCP endpoint. The verdicts are in wan.json; a new wand (restart, live upgrade) takes
them from there, so no endpoint comes back before a test says so.

Signals: SIGHUP reloads the config (a bad one is refused with one line; the running state
stays); SIGTERM and SIGINT remove everything wand made and exit 0; SIGUSR2 is a live
upgrade: wand checks that the code now installed accepts its config, then re-executes
itself in place (same PID) without removing anything. The new code finds its routes,
rules, NAT table and endpoints where the old one left them and changes nothing, so no
subflow notices (wan.json's ``build`` says which code runs).

Run by systemd as ``Type=notify``: READY=1 once the first reconcile has put the tables,
rules and NAT in place and written wan.json (so ``systemctl start`` returns then), STATUS=
with the WANs' verdicts whenever one changes, STOPPING=1 before the teardown.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from socket import AF_INET6
from typing import Any

from .. import landhcp
from ..build import build_id
from ..inventory import InventoryError
from ..mcptrust import mcp_verdicts
from ..netlink import (
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV4_RULE,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_LINK,
    IPRoute,
)
from ..sdnotify import sd_notify
from ..state import (
    LanPrefixRecord,
    StateFileError,
    WanRecord,
    WanState,
    delegated_prefixes,
    dhcp_mcps,
    learned_mcps,
    read_json,
    read_wan_state,
    write_text_atomic,
    write_wan_state,
)
from . import config as wand_config
from . import lanprefix
from .config import WandConfig
from .kernel import Kernel
from .lanprefix import LanPrefix
from .plan import FAMILIES, FAMILY_KEY, Owned, addresses, changes, desired, gateway, teardown, usable
from .probe import BLOCKED, NO_VERDICT, PASSES, STRIPPED, UNKNOWN, Health, MptcpVerdict, Prober, mptcp_round, mptcp_targets

log = logging.getLogger(__name__)

RESYNC_S = 30.0  # a full reconcile at least this often, events or not
COALESCE_S = 0.05  # events arriving together are handled in one reconcile
RTT_WRITE_S = 10.0  # wan.json is rewritten for RTTs alone at most this often
UPGRADE_CHECK_S = 30.0  # the new code's config check before a live upgrade, at most
UPGRADED_FROM = "MPTCP_CPE_WAND_UPGRADED_FROM"  # set across the re-exec: the build before it
STATE_POLL_S = 1.0  # how often mcp.json is looked at for a new or withdrawn delegated prefix
RA_RELOAD_S = 10.0  # radvd's reload command may take this long
MIN_WAKE_S = 0.05  # the loop's shortest sleep before a due MPTCP test
GROUPS = (RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE
          | RTMGRP_IPV6_ROUTE | RTMGRP_IPV4_RULE)


def _iso(ts: float) -> str | None:
    if not ts:
        return None
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds")


def _parse_iso(text: object) -> float | None:
    try:
        return dt.datetime.fromisoformat(text).timestamp() if isinstance(text, str) else None
    except ValueError:
        return None


def status_line(state: WanState) -> str:
    """One line for ``systemctl status``: how many WANs are up, each WAN's state, and which
    carry the default route, e.g. ``1 of 2 WANs up: dsl up, lte down; default route: dsl``;
    a WAN whose path strips MPTCP says so: ``lte up mptcp-blocked``."""
    up = [w.name for w in state.wans if w.healthy]
    each = ", ".join(_wan_words(w) for w in state.wans)
    default = [w.name for w in state.wans if w.in_default_route]
    return f"{len(up)} of {len(state.wans)} WANs up: {each}; default route: {', '.join(default) or 'none'}"


def _wan_words(w: WanRecord) -> str:
    return f"{w.name} {w.state or '?'}" + (" mptcp-blocked" if w.mptcp_blocked else "")


class NetlinkWatcher(threading.Thread):
    """Puts "netlink" on the queue for every rtnetlink message (the loop coalesces them)."""

    def __init__(self, events: queue.Queue) -> None:
        super().__init__(name="netlink", daemon=True)
        self.events = events

    def run(self) -> None:
        # pyroute2's sync sockets belong to the thread that made them: make it here.
        ipr = IPRoute()
        ipr.bind(groups=GROUPS)
        while True:
            try:
                msgs = ipr.get()
            except Exception:  # the socket closed at exit, or an overrun: resync anyway
                log.debug("netlink watcher", exc_info=True)
                self.events.put(("netlink", None))
                time.sleep(0.5)
                continue
            if msgs:
                self.events.put(("netlink", None))


class FileWatcher(threading.Thread):
    """A ("delegation", path) event whenever the file changes (appears, is replaced, goes):
    the DHCP hooks replace mcp.json atomically, so its inode and mtime tell."""

    def __init__(self, path: Path, events: queue.Queue, every: float = STATE_POLL_S) -> None:
        super().__init__(name="mcp-watch", daemon=True)
        self.path, self.events, self.every = path, events, every
        self.stopped = threading.Event()

    def _stamp(self):
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def run(self) -> None:
        last = self._stamp()
        while not self.stopped.wait(self.every):
            now = self._stamp()
            if now != last:
                last = now
                self.events.put(("delegation", str(self.path)))


class ProbeWorker(threading.Thread):
    """One WAN's probe rounds, every ``interval_s``, reporting each round to the loop."""

    def __init__(self, wan_name: str, prober: Prober, interval: float, events: queue.Queue,
                 targets: dict[str, Any], lock: threading.Lock) -> None:
        super().__init__(name=f"probe-{wan_name}", daemon=True)
        self.wan_name, self.prober, self.interval = wan_name, prober, interval
        self.events, self.targets, self.lock = events, targets, lock
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            start = time.monotonic()
            with self.lock:
                target = self.targets.get(self.wan_name)
            if target is not None:
                device, sources, gateways = target
                ok, rtt = self.prober.round(device, sources, gateways)
                if not self.stopped.is_set():
                    self.events.put(("probe", (self.wan_name, ok, rtt)))
            self.stopped.wait(max(0.0, self.interval - (time.monotonic() - start)))


@dataclass(frozen=True)
class MptcpTarget:
    """What one WAN's MPTCP test tries: its device and the (source, MCP) pairs in order."""

    device: str
    pairs: tuple[tuple[str, str], ...]


class MptcpWorker(threading.Thread):
    """One WAN's MPTCP tests, each when the loop asks (`ask`), reported as an ("mptcp",
    (WAN, target, result, MCP)) event: a test takes up to MPTCP_TRIES x timeout_s, which
    the loop must not wait for."""

    def __init__(self, wan_name: str, port: int, timeout: float, events: queue.Queue) -> None:
        super().__init__(name=f"mptcp-{wan_name}", daemon=True)
        self.wan_name, self.port, self.timeout, self.events = wan_name, port, timeout, events
        self.requests: queue.Queue = queue.Queue()
        self.stopped = threading.Event()

    def ask(self, target: MptcpTarget) -> None:
        self.requests.put(target)

    def stop(self) -> None:
        self.stopped.set()
        self.requests.put(None)

    def run(self) -> None:
        while (target := self.requests.get()) is not None and not self.stopped.is_set():
            result, mcp = mptcp_round(target.device, target.pairs, self.port, self.timeout)
            if not self.stopped.is_set():
                self.events.put(("mptcp", (self.wan_name, target, result, mcp)))


class Wand:
    def __init__(self, cfg: WandConfig, config_path: Path | None, kernel: Kernel | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.kernel = kernel or Kernel()
        self.events: queue.Queue = queue.Queue()
        self.health: dict[str, Health] = {}
        self.targets: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.workers: dict[str, ProbeWorker] = {}
        # MPTCP through each WAN: the verdicts (none while mptcp_probe is off), the workers,
        # what each WAN's test tries now, and the test each worker is running.
        self.mptcp: dict[str, MptcpVerdict] = {}
        self.mptcp_workers: dict[str, MptcpWorker] = {}
        self.mptcp_targets: dict[str, MptcpTarget] = {}
        self.mptcp_asked: dict[str, MptcpTarget] = {}
        self.mcp_doc: Any = {}  # mcp.json as last read
        self.applied_nft: str | None = None
        self.extra_tables: set[int] = set()
        self.last_state: WanState | None = None
        self.last_write = 0.0
        self.last_reconcile = 0.0
        self.failures = 0
        self.status: str | None = None  # the last STATUS= told to systemd; None before READY=1
        self.build = build_id()  # the code this process runs (read before any upgrade can land)
        # The LANs' /64s: those of the last pass, those retired (with when they stop being
        # announced), when each got its state, the last radvd configuration written, and the
        # lines already logged (a problem is logged once, not every pass).
        self.lan_now: dict[tuple[str, str], LanPrefix] = {}
        self.lan_dhcp_pending = False  # the LAN's Kea has not read the WAN states written
        self.retired: dict[tuple[str, str], tuple[LanPrefix, float]] = {}
        self.lan_since: dict[tuple[str, str, str], float] = {}
        self.delegated: dict[str, list[str]] = {}
        self.ra_written: str | None = None
        self.told: set[str] = set()

    # --- lifecycle ---

    def start_probes(self) -> None:
        for w in self.workers.values():
            w.stopped.set()
        self.workers = {}
        for wan in self.cfg.wans:
            h = self.health.get(wan.name)
            if h is None or (h.down_count, h.up_count) != (self.cfg.probe.down_count, self.cfg.probe.up_count):
                self.health[wan.name] = Health(self.cfg.probe.down_count, self.cfg.probe.up_count, since=time.time())
            worker = ProbeWorker(wan.name, Prober(wan.probes, self.cfg.probe.timeout_s), self.cfg.probe.interval_s,
                                 self.events, self.targets, self.lock)
            self.workers[wan.name] = worker
            worker.start()
        for name in set(self.health) - {w.name for w in self.cfg.wans}:
            del self.health[name]
        self.start_mptcp_tests()

    def start_mptcp_tests(self) -> None:
        """A verdict and a worker per WAN while mptcp_probe is on; verdicts are kept across a
        reload (their schedule takes the new settings), dropped when it is off."""
        for w in self.mptcp_workers.values():
            w.stop()
        self.mptcp_workers, self.mptcp_asked = {}, {}
        mp = self.cfg.mptcp_probe
        if not mp.enabled:
            self.mptcp = {}
            return
        kept = {}
        for wan in self.cfg.wans:
            v = self.mptcp.get(wan.name) or MptcpVerdict(mp.interval_s, mp.backoff_min_s, mp.backoff_max_s,
                                                         mp.stripped_count, since=time.time())
            v.interval_s, v.backoff_min_s, v.backoff_max_s, v.stripped_count = (
                mp.interval_s, mp.backoff_min_s, mp.backoff_max_s, mp.stripped_count)
            kept[wan.name] = v
            worker = MptcpWorker(wan.name, mp.port, mp.timeout_s, self.events)
            self.mptcp_workers[wan.name] = worker
            worker.start()
        self.mptcp = kept

    def inherit_health(self) -> None:
        """After a restart or a live upgrade, a WAN whose endpoint a previous wand left in
        place starts healthy: its subflows keep running, and its probes take it down if it is
        not. A WAN the previous wand's wan.json called down (with no endpoint) stays down until
        its probes say otherwise; either keeps the ``since`` that file gave it."""
        have = self.kernel.owned(self.cfg).endpoints
        try:
            previous = read_wan_state(self.cfg.state_file) or WanState()
        except StateFileError:
            previous = WanState()
        for i, wan in enumerate(self.cfg.wans):
            h = self.health[wan.name]
            ids = {self.cfg.endpoint_id_base + 2 * i, self.cfg.endpoint_id_base + 2 * i + 1}
            old = previous.wan(wan.name) or WanRecord(wan.name)
            self.inherit_mptcp(wan.name, wan.device, old)
            if any(have.get(ep_id) and have[ep_id].device == wan.device for ep_id in ids):
                h.healthy, h.state = True, "up"
                log.info("WAN %s: endpoint left by the previous run, starting as up", wan.name)
            elif old.state == "down" and old.device == wan.device:
                h.state = "down"
            else:
                continue
            if old.state == h.state and old.device == wan.device:
                h.since = _parse_iso(old.since) or h.since

    def inherit_mptcp(self, name: str, device: str, old: WanRecord) -> None:
        """The previous wand's MPTCP verdict of this WAN (same device), with its since: a
        blocked WAN stays without its endpoint until a test passes (each WAN is tested once
        at start, and one stripped result does not unblock nor block it)."""
        v = self.mptcp.get(name)
        if v is None or old.device != device or old.mptcp not in (PASSES, BLOCKED):
            return
        v.verdict = old.mptcp
        v.since = _parse_iso(old.mptcp_since) or v.since
        v.mcp = old.mptcp_mcp
        log.info("WAN %s: MPTCP %s, as the previous run found", name, "blocked" if v.blocked else "passes")

    def reload(self) -> None:
        if self.config_path is None:
            return
        try:
            new = wand_config.load(self.config_path, self.cfg.host)
        except InventoryError as exc:
            log.error("config refused, keeping the running state: %s", exc)
            return
        old = self.cfg
        # Objects the old config marked that the new marks would not see: remove them now.
        old_have = self.kernel.owned(old)
        self.cfg = new
        new_have = self.kernel.owned(new, tables={w.table for w in old.wans} | {old.default_table})
        stale = Owned(
            routes={k: r for k, r in old_have.routes.items() if k not in new_have.routes},
            rules=old_have.rules - new_have.rules,
            endpoints={i: e for i, e in old_have.endpoints.items() if i not in new_have.endpoints},
            addresses=old_have.addresses - new_have.addresses,
        )
        for change in teardown(stale, old.nft_table):
            if change.kind == "nft" and old.nft_table == new.nft_table:
                continue
            self._apply(change)
        if old.nft_table != new.nft_table:
            self.applied_nft = None
        self.extra_tables = {w.table for w in old.wans} | {old.default_table}
        self.start_probes()
        log.info("config reloaded from %s: %d WANs, policy %s", self.config_path, len(new.wans), new.policy)

    def upgrade_argv(self) -> list[str]:
        """The command line this process was started with (``python -m ...`` or the console
        script), to run again."""
        return list(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))

    def upgrade(self) -> None:
        """SIGUSR2: re-execute the installed code in this process, leaving the kernel state as
        it is. Refused (with one line, wand running on) when the installed code does not
        start or does not accept the config: a process that cannot come back would leave the
        routing unmanaged."""
        if self.config_path is None:
            log.error("live upgrade refused: wand was started without a config file")
            return
        check = [sys.executable, "-m", "mptcp_cpe.cli", "wand", "--check", "--config", str(self.config_path)]
        try:
            proc = subprocess.run(check, capture_output=True, text=True, timeout=UPGRADE_CHECK_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("live upgrade refused, build %s runs on: the installed code's check failed: %s", self.build, exc)
            return
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            log.error("live upgrade refused, build %s runs on: the installed code's check says: %s", self.build, why)
            return
        # A config that changed with the code: this code made the objects the old config
        # marked, so this code removes the ones the new config would not see, as on SIGHUP.
        self.reload()
        self.reconcile()
        new = build_id()
        log.warning("live upgrade: re-executing build %s (running %s); routes, rules, NAT and endpoints stay",
                    new, self.build)
        for w in self.workers.values():
            w.stopped.set()
        for m in self.mptcp_workers.values():
            m.stop()
        self.kernel.close()
        for handler in logging.getLogger().handlers:
            handler.flush()
        try:
            os.execve(sys.executable, self.upgrade_argv(), {**os.environ, UPGRADED_FROM: self.build})
        except OSError as exc:
            log.error("live upgrade failed, build %s runs on: %s", self.build, exc)
            self.kernel = Kernel()
            self.start_probes()

    def stop(self) -> None:
        sd_notify("STOPPING=1")
        for w in self.workers.values():
            w.stopped.set()
        for m in self.mptcp_workers.values():
            m.stop()
        # The LANs' /64s lose their routes now: announce every one with lifetimes 0.
        gone = [dataclasses.replace(p, state=lanprefix.RETIRED)
                for p in list(self.lan_now.values()) + [p for p, _ in self.retired.values()]]
        if gone:
            self.write_ra(gone, False)
        try:
            for change in teardown(self.kernel.owned(self.cfg, self.extra_tables), self.cfg.nft_table):
                self._apply(change)
        finally:
            try:
                self.cfg.state_file.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("cannot remove %s: %s", self.cfg.state_file, exc)
        log.info("stopped; removed the routes, rules, endpoints and NAT table wand made")

    # --- the loop ---

    def _apply(self, change) -> bool:
        try:
            self.kernel.apply(change, self.cfg)
            log.info("%s", change)
            return True
        except Exception as exc:  # one refused change must not stop the others
            self.failures += 1
            log.error("could not %s: %s", change, exc)
            return False

    def reconcile(self) -> None:
        # Adding a static address changes what the links show (the WAN becomes usable):
        # one more pass routes it now rather than on the address's netlink event.
        self.last_reconcile = time.time()
        if self._reconcile_once():
            self._reconcile_once()

    def _reconcile_once(self) -> bool:
        """One read-plan-apply pass; True when it added an address."""
        now = time.time()
        links = self.kernel.links(self.cfg)
        targets = {}
        for wan in self.cfg.wans:
            h = self.health[wan.name]
            link = links.get(wan.device)
            fams = [f for f in FAMILIES if usable(wan, link, f)]
            if link is None:
                h.unreachable("no-device", now)
            elif not fams:
                h.unreachable("no-address", now)
            else:
                h.reachable_again(now)
                sources = {f: addresses(wan, link, f)[0].split("/")[0] for f in fams}
                gateways = {f: gateway(wan, link, f) for f in fams}
                targets[wan.name] = (wan.device, sources, gateways)
        with self.lock:
            self.targets.clear()
            self.targets.update(targets)
        if self.cfg.lans or self.mptcp:
            self.read_mcp_state()
        self.plan_mptcp_tests(targets, now)
        healthy = {n: h.healthy for n, h in self.health.items()}
        lan = self.plan_lans(links, healthy, now)
        blocked = frozenset(n for n, v in self.mptcp.items() if v.blocked)
        want = desired(self.cfg, links, healthy, lan, blocked)
        have = self.kernel.owned(self.cfg, self.extra_tables)
        have.nft = self.applied_nft
        added_address = False
        for change in changes(want, have):
            if self._apply(change):
                if change.kind == "nft":
                    self.applied_nft = want.nft
                added_address |= change.kind == "address" and change.op == "add"
        try:
            self.kernel.raise_limits(want.limits)
        except Exception as exc:
            log.error("could not raise the MPTCP limits to %s: %s", want.limits, exc)
        self.write_state(links, want)
        self.write_ra(lan, bool(want.default_route.get(AF_INET6)))
        self.write_lan_dhcp(want.range_up)
        return added_address

    def write_lan_dhcp(self, range_up: dict[str, bool]) -> None:
        """Tell the LAN's Kea which ranges may lease (`landhcp`): the state file of each
        range's WAN, and Kea's reload when one changed (or the last reload failed)."""
        ld = self.cfg.lan_dhcp
        if ld is None:
            return
        changed = self.lan_dhcp_pending
        for wan in landhcp.wan_states(list(self.cfg.lans)):
            try:
                if landhcp.write_up(ld.state_dir, wan, range_up.get(wan, False)):
                    log.info("LAN DHCP: range of WAN %s %s", wan, "leases again" if range_up.get(wan) else "leases nothing (WAN down)")
                    changed = True
            except OSError as exc:
                self._tell_once(f"lan-dhcp-{wan}", logging.ERROR, "LAN DHCP: cannot write the state of WAN %s in %s: %s",
                                wan, ld.state_dir, exc)
        if not changed:
            return
        try:
            proc = subprocess.run(list(ld.reload), capture_output=True, text=True, timeout=RA_RELOAD_S, check=False)
            ok, why = proc.returncode == 0, (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        except (OSError, subprocess.TimeoutExpired) as exc:
            ok, why = False, str(exc)
        # Retried at the next pass: Kea must not keep leasing from a range whose WAN is down.
        self.lan_dhcp_pending = not ok
        if not ok:
            self._tell_once("lan-dhcp-reload", logging.ERROR, "LAN DHCP: %s failed: %s", " ".join(ld.reload), why)
        else:
            self.told.discard("lan-dhcp-reload")

    # --- the LANs' /64s and their router advertisements ---

    def _tell_once(self, key: str, level: int, msg: str, *args) -> None:
        if key not in self.told:
            self.told.add(key)
            log.log(level, msg, *args)

    def read_mcp_state(self) -> Any:
        """mcp.json (the DHCP hooks' MCPs and delegated prefixes per WAN device); what was
        read before when the file cannot be read now (a half-broken file must not take the
        LANs' prefixes or the WANs' MCPs away)."""
        try:
            self.mcp_doc = read_json(self.cfg.mcp_state, {})
            self.told.discard("mcp-unreadable")
        except StateFileError as exc:
            self._tell_once("mcp-unreadable", logging.ERROR, "%s; keeping the delegated prefixes and MCPs read before", exc)
        return self.mcp_doc

    def read_delegated(self) -> dict[str, list[str]]:
        """The delegated prefixes per WAN device, from mcp.json as last read."""
        self.delegated = delegated_prefixes(self.mcp_doc)
        return self.delegated

    # --- MPTCP through each WAN ---

    def plan_mptcp_tests(self, targets: dict[str, Any], now: float) -> None:
        """What each WAN's MPTCP test tries now: its own address of each family to the MCPs
        it learned (mcp.json), else to those the others learned and the static ones; never
        a learned MCP outside mcp_prefixes. A WAN whose addresses or MCPs changed is tested
        again at once."""
        if not self.mptcp:
            self.mptcp_targets = {}
            return
        # What DHCP taught, without the addresses the converter would refuse (outside
        # mcp_prefixes: a rogue DHCP server's MCP gets no connection from wand either).
        trusted = self.cfg.mptcp_probe.mcp_prefixes
        learned: dict[str, list[list[str]]] = {}
        for device, _, lists in learned_mcps(self.mcp_doc):
            learned.setdefault(device, []).extend(mcp_verdicts(lists, trusted)[0])
        others = list(mcp_verdicts(dhcp_mcps(self.mcp_doc), trusted)[0]) + list(self.cfg.mptcp_probe.mcps)
        new: dict[str, MptcpTarget] = {}
        for name, (device, sources, _) in targets.items():
            pairs = mptcp_targets(sources, learned.get(device, []), others)
            if pairs:
                new[name] = MptcpTarget(device, pairs)
        for name, target in new.items():
            if self.mptcp_targets.get(name) != target and name in self.mptcp:
                self.mptcp[name].retest(now)
        self.mptcp_targets = new

    def ask_mptcp_tests(self, now: float) -> None:
        """Start the tests that are due: each healthy WAN with an MCP to try whose worker is idle."""
        for name, v in self.mptcp.items():
            target = self.mptcp_targets.get(name)
            h = self.health.get(name)
            worker = self.mptcp_workers.get(name)
            if (target is None or worker is None or h is None or not h.healthy or name in self.mptcp_asked
                    or not v.due(now)):
                continue
            self.mptcp_asked[name] = target
            worker.ask(target)

    def mptcp_wake_s(self, now: float) -> float:
        """Seconds until the next MPTCP test is due (RESYNC_S at most)."""
        due = [v.next_test - now for name, v in self.mptcp.items()
               if name in self.mptcp_targets and name not in self.mptcp_asked
               and self.health.get(name) is not None and self.health[name].healthy]
        return max(MIN_WAKE_S, min([RESYNC_S, *due]))

    def mptcp_result(self, name: str, target: MptcpTarget, result: str, mcp: str | None, now: float) -> bool:
        """A test's result into its WAN's verdict; True when the verdict changed (the
        endpoint comes or goes). A result for addresses or MCPs no longer the WAN's is dropped."""
        asked = self.mptcp_asked.pop(name, None)
        v = self.mptcp.get(name)
        if v is None or asked != target or self.mptcp_targets.get(name) != target:
            return False
        before = v.verdict
        changed = v.record(result, now, mcp)
        source = next((src for src, m in target.pairs if m == mcp), "?")
        wait = f"{v.next_test - now:g} s"
        if changed and v.blocked:
            log.warning("WAN %s (%s): MPTCP options stripped on the way to MCP %s, %d tests in a row: mptcp-blocked, "
                        "its MPTCP endpoint withdrawn (direct traffic still uses it); next test in %s",
                        name, source, mcp, v.stripped, wait)
        elif changed and before == BLOCKED:
            log.warning("WAN %s (%s): MPTCP passes to MCP %s again: its MPTCP endpoint is back", name, source, mcp)
        elif changed:
            log.info("WAN %s (%s): MPTCP passes to MCP %s", name, source, mcp)
        elif result == STRIPPED and not v.blocked:
            log.warning("WAN %s (%s): MPTCP options stripped on the way to MCP %s (%d of %d before mptcp-blocked); "
                        "next test in %s", name, source, mcp, v.stripped, v.stripped_count, wait)
        elif result == NO_VERDICT:
            log.debug("WAN %s: MPTCP test to %s: no answer or a reset, no verdict; next test in %s", name, mcp, wait)
        return changed

    def plan_lans(self, links, healthy: dict[str, bool], now: float) -> list[LanPrefix]:
        """The LANs' /64s of this pass (current and retired), with the lines about WANs
        without a delegated prefix and /64s that cannot be numbered logged once each."""
        if not self.cfg.lans:
            return []
        delegated = self.read_delegated()
        for wan in self.cfg.wans:
            key = f"no-pd:{wan.name}"
            link = links.get(wan.device)
            if wan.ipv6 == "dhcp" and not delegated.get(wan.device) and addresses(wan, link, AF_INET6):
                self._tell_once(key, logging.WARNING, "WAN %s: its ISP delegated no prefix (DHCPv6 lease without "
                                "IA_PD); the LANs get no /64 from it, the other WANs' stay", wan.name)
            elif delegated.get(wan.device):
                self.told.discard(key)
        current, problems = lanprefix.numbered(self.cfg.lans, self.cfg.wans, delegated)
        for line in problems:
            self._tell_once(line, logging.WARNING, "%s", line)
        carrying = {w.name for w in self.cfg.wans if usable(w, links.get(w.device), AF_INET6) and healthy.get(w.name)}
        current = lanprefix.with_states(current, carrying)
        retire_s = self.cfg.ra.retire_s if self.cfg.ra else 0
        self.retired = lanprefix.retire(self.lan_now, self.retired, current, now, retire_s)
        for key, (p, _) in self.retired.items():
            if key in self.lan_now:
                log.warning("LAN %s: %s from WAN %s is gone (%s): announced with lifetimes 0, no longer routed",
                            p.lan, p.prefix, p.wan, p.delegated)
        for p in current:
            old = self.lan_now.get((p.device, p.prefix))
            if old is None or old.state != p.state:
                log.info("LAN %s: %s from WAN %s (%s) %s", p.lan, p.prefix, p.wan, p.delegated, p.state)
        self.lan_now = {(p.device, p.prefix): p for p in current}
        every = current + [p for p, _ in self.retired.values()]
        announced = {(p.device, p.prefix) for p in every}
        self.lan_since = {k: v for k, v in self.lan_since.items() if k[:2] in announced}
        for p in every:
            self.lan_since.setdefault((p.device, p.prefix, p.state), now)
        return every

    def write_ra(self, lan: list[LanPrefix], default_router: bool) -> None:
        """radvd's configuration, and its reload command when the text changed."""
        ra = self.cfg.ra
        if ra is None or not any(x.pd_subnet is not None for x in self.cfg.lans):
            return
        text = lanprefix.radvd_conf(self.cfg.lans, lan, ra, default_router)
        if text == self.ra_written:
            return
        try:
            write_text_atomic(ra.config, text)
        except OSError as exc:
            log.error("cannot write %s: %s", ra.config, exc)
            return
        self.ra_written = text
        if ra.reload is None:
            try:
                pid = int(ra.pid_file.read_text().split()[0])
                os.kill(pid, signal.SIGHUP)
                self.told.discard("ra-reload")
            except (OSError, ValueError, IndexError) as exc:
                # radvd not (yet) running: it reads the file when it starts.
                self._tell_once("ra-reload", logging.WARNING, "router advertisements: cannot signal radvd (%s): %s",
                                ra.pid_file, exc)
            return
        try:
            proc = subprocess.run(list(ra.reload), capture_output=True, text=True, timeout=RA_RELOAD_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("router advertisements: %s failed: %s", " ".join(ra.reload), exc)
            return
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            log.error("router advertisements: %s failed: %s", " ".join(ra.reload), why)

    def write_state(self, links, want) -> None:
        wans = []
        endpoints = self.kernel.owned(self.cfg).endpoints
        for wan in self.cfg.wans:
            h = self.health[wan.name]
            link = links.get(wan.device)
            wans.append(WanRecord(
                name=wan.name,
                device=wan.device,
                kind=wan.kind,
                table=wan.table,
                backup=wan.backup,
                weight=wan.weight,
                addresses=tuple(a for f in FAMILIES for a in addresses(wan, link, f)),
                gateway={FAMILY_KEY[f]: gateway(wan, link, f) for f in FAMILIES},
                healthy=h.healthy,
                state=h.state,
                since=_iso(h.since),
                last_probe_rtt_ms=None if h.rtt_ms is None else round(h.rtt_ms, 3),
                in_default_route=any(wan.name in names for names in want.default_route.values()),
                endpoints=tuple(sorted(e.id for e in endpoints.values() if e.device == wan.device)),
                delegated=tuple(self.delegated.get(wan.device, ())) if wan.ipv6 == "dhcp" else None,
                **self.mptcp_fields(wan.name),
            ))
        lan = sorted(list(self.lan_now.values()) + [p for p, _ in self.retired.values()])
        records = tuple(LanPrefixRecord(device=p.device, prefix=p.prefix, lan=p.lan, wan=p.wan, delegated=p.delegated,
                                        state=p.state, since=_iso(self.lan_since.get((p.device, p.prefix, p.state), 0)))
                        for p in lan)
        state = WanState(host=self.cfg.host, policy=self.cfg.policy, build=self.build, wans=tuple(wans),
                         lan_prefixes=records)
        if state != self.last_state:
            self._write(state)
        status = status_line(state)
        if self.status is not None and status != self.status and sd_notify(f"STATUS={status}"):
            self.status = status

    def mptcp_fields(self, name: str) -> dict[str, Any]:
        """A WAN's MPTCP verdict as wan.json has it. The next test: when it is due (a time
        past: as soon as the WAN is healthy); none while the WAN has no MCP to try or
        mptcp_probe is off (then also no verdict: unknown)."""
        v = self.mptcp.get(name)
        if v is None:
            return {"mptcp": UNKNOWN, "mptcp_since": None, "mptcp_next_test": None, "mptcp_mcp": None}
        planned = name in self.mptcp_targets
        return {"mptcp": v.verdict, "mptcp_since": _iso(v.since), "mptcp_mcp": v.mcp,
                "mptcp_next_test": _iso(v.next_test) if planned else None}

    def refresh_mptcp(self) -> None:
        """A test that changed no verdict: only its WAN's next test (and MCP) is news."""
        if self.last_state is None:
            return
        state = dataclasses.replace(self.last_state, wans=tuple(
            dataclasses.replace(w, **self.mptcp_fields(w.name)) if w.name in self.mptcp else w
            for w in self.last_state.wans))
        if state != self.last_state:
            self._write(state)

    def refresh_rtts(self, now: float) -> None:
        """Probe RTTs into wan.json, at most every RTT_WRITE_S: readers watching the file
        are not woken every probe interval for a number nobody acts on."""
        if now - self.last_write < RTT_WRITE_S:
            return
        def rtt(w: WanRecord) -> float | None:
            h = self.health.get(w.name)
            if h is None:
                return w.last_probe_rtt_ms
            return None if h.rtt_ms is None else round(h.rtt_ms, 3)

        state = dataclasses.replace(self.last_state, wans=tuple(
            dataclasses.replace(w, last_probe_rtt_ms=rtt(w)) for w in self.last_state.wans))
        if state != self.last_state:
            self._write(state)

    def _write(self, state: WanState) -> None:
        try:
            write_wan_state(state.stamped(_iso(time.time())), self.cfg.state_file)
            self.last_state, self.last_write = state, time.time()
        except OSError as exc:
            log.error("cannot write %s: %s", self.cfg.state_file, exc)

    def run(self) -> int:
        stop = threading.Event()

        kinds = {signal.SIGHUP: "reload", signal.SIGUSR2: "upgrade"}

        def on_signal(signum, _frame):
            self.events.put((kinds.get(signum, "stop"), None))

        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGUSR2):
            signal.signal(sig, on_signal)
        NetlinkWatcher(self.events).start()
        FileWatcher(self.cfg.mcp_state, self.events).start()
        self.start_probes()
        upgraded_from = os.environ.pop(UPGRADED_FROM, None)
        if upgraded_from:
            log.info("live upgrade: build %s now runs (was %s)", self.build, upgraded_from)
        log.info("started: %d WANs (%s), policy %s, build %s", len(self.cfg.wans),
                 ", ".join(f"{w.name}={w.device}" for w in self.cfg.wans), self.cfg.policy, self.build)
        self.inherit_health()
        self.reconcile()
        self.ask_mptcp_tests(time.time())
        self.status = status_line(self.last_state or WanState())
        sd_notify(f"READY=1\nSTATUS={self.status}")
        log.info("ready: %s", self.status)
        while not stop.is_set():
            try:
                batch = [self.events.get(timeout=self.mptcp_wake_s(time.time()))]
            except queue.Empty:
                batch = [("tick", None)]
            time.sleep(COALESCE_S)
            while True:
                try:
                    batch.append(self.events.get_nowait())
                except queue.Empty:
                    break
            now = time.time()
            # A probe round that changes no verdict needs no kernel work: only its RTT is news.
            dirty = mptcp_news = False
            for kind, data in batch:
                if kind == "stop":
                    stop.set()
                elif kind == "reload":
                    self.reload()
                    dirty = True
                elif kind == "upgrade" and not any(k == "stop" for k, _ in batch):
                    self.upgrade()  # returns only when the upgrade was refused or failed
                elif kind == "probe":
                    name, ok, rtt = data
                    h = self.health.get(name)
                    if h is not None and h.state not in ("no-address", "no-device"):
                        if h.record(ok, rtt, now):
                            log.warning("WAN %s is %s", name, "up" if h.healthy else "down")
                            dirty = True
                            if h.healthy and name in self.mptcp:
                                self.mptcp[name].retest(now)  # a path back up may be another path
                elif kind == "mptcp":
                    if self.mptcp_result(*data, now):
                        dirty = True
                    mptcp_news = True
                elif kind == "tick":
                    # Nothing came: a test may be due; a full reconcile every RESYNC_S.
                    dirty |= now - self.last_reconcile >= RESYNC_S - MIN_WAKE_S
                else:
                    dirty = True
            if stop.is_set():
                break
            try:
                if dirty:
                    self.reconcile()
                elif self.last_state is not None:
                    if mptcp_news:
                        self.refresh_mptcp()
                    self.refresh_rtts(now)
                self.ask_mptcp_tests(time.time())
            except Exception:  # a kernel read failing once must not end the daemon
                log.exception("reconcile failed; retrying on the next event")
        self.stop()
        return 0
