"""``mptcp-cpe wand``: the multi-WAN daemon.

One loop owns the kernel state. It wakes on netlink events (a WAN address appears, changes
or goes; a link or a DHCP/RA default route changes), on a probe verdict that flips a WAN's
health, on a change of mcp.json (a delegated prefix comes or goes), on SIGHUP and SIGTERM,
and every ``RESYNC_S`` to repair what someone else removed. Each wake: read the WAN links
and what wand owns, number the LANs' /64s from the delegated prefixes (``lanprefix``),
compute what should be (``plan``), apply the difference, write wan.json and radvd's
configuration (radvd told to reread it when it changed).

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
from pathlib import Path
from socket import AF_INET6
from typing import Any

from .. import landhcp
from ..build import build_id
from ..inventory import InventoryError
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
from .probe import Health, Prober

log = logging.getLogger(__name__)

RESYNC_S = 30.0  # a full reconcile at least this often, events or not
COALESCE_S = 0.05  # events arriving together are handled in one reconcile
RTT_WRITE_S = 10.0  # wan.json is rewritten for RTTs alone at most this often
UPGRADE_CHECK_S = 30.0  # the new code's config check before a live upgrade, at most
UPGRADED_FROM = "MPTCP_CPE_WAND_UPGRADED_FROM"  # set across the re-exec: the build before it
STATE_POLL_S = 1.0  # how often mcp.json is looked at for a new or withdrawn delegated prefix
RA_RELOAD_S = 10.0  # radvd's reload command may take this long
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
    carry the default route, e.g. ``1 of 2 WANs up: dsl up, lte down; default route: dsl``."""
    up = [w.name for w in state.wans if w.healthy]
    each = ", ".join(f"{w.name} {w.state or '?'}" for w in state.wans)
    default = [w.name for w in state.wans if w.in_default_route]
    return f"{len(up)} of {len(state.wans)} WANs up: {each}; default route: {', '.join(default) or 'none'}"


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
        self.applied_nft: str | None = None
        self.extra_tables: set[int] = set()
        self.last_state: WanState | None = None
        self.last_write = 0.0
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
            if any(have.get(ep_id) and have[ep_id].device == wan.device for ep_id in ids):
                h.healthy, h.state = True, "up"
                log.info("WAN %s: endpoint left by the previous run, starting as up", wan.name)
            elif old.state == "down" and old.device == wan.device:
                h.state = "down"
            else:
                continue
            if old.state == h.state and old.device == wan.device:
                h.since = _parse_iso(old.since) or h.since

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
        healthy = {n: h.healthy for n, h in self.health.items()}
        lan = self.plan_lans(links, healthy, now)
        want = desired(self.cfg, links, healthy, lan)
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

    def read_delegated(self) -> dict[str, list[str]]:
        """The delegated prefixes per WAN device (mcp.json); the last ones read when the file
        cannot be read now (a half-broken file must not take the LANs' prefixes away)."""
        try:
            self.delegated = delegated_prefixes(read_json(self.cfg.mcp_state, {}))
            self.told.discard("mcp-unreadable")
        except StateFileError as exc:
            self._tell_once("mcp-unreadable", logging.ERROR, "%s; keeping the delegated prefixes read before", exc)
        return self.delegated

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
        self.status = status_line(self.last_state or WanState())
        sd_notify(f"READY=1\nSTATUS={self.status}")
        log.info("ready: %s", self.status)
        while not stop.is_set():
            try:
                batch = [self.events.get(timeout=RESYNC_S)]
            except queue.Empty:
                batch = [("resync", None)]
            time.sleep(COALESCE_S)
            while True:
                try:
                    batch.append(self.events.get_nowait())
                except queue.Empty:
                    break
            now = time.time()
            # A probe round that changes no verdict needs no kernel work: only its RTT is news.
            dirty = False
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
                else:
                    dirty = True
            if stop.is_set():
                break
            try:
                if dirty:
                    self.reconcile()
                elif self.last_state is not None:
                    self.refresh_rtts(now)
            except Exception:  # a kernel read failing once must not end the daemon
                log.exception("reconcile failed; retrying on the next event")
        self.stop()
        return 0
