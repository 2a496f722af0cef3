"""``mptcp-cpe host event``: what a lease event of one of the host's udhcpc does. udhcpc
runs it as its script (``-s``) with its event as $1 and the lease in its environment
(``ip``, ``mask``, ``router``, ``dns``, ``domain``, ``opt<code>``); the daemon's wrapper
adds which client it is (``--path 0`` the primary, ``k`` path k's macvlan) and the config
the daemon runs (``state_dir/running.json``).

- The primary (LAN interface): ``bound``/``renew`` set the address and the default route
  as udhcpc's default.script would, and record mp-avail in ``primary.json`` for the daemon;
  ``deconfig`` removes them. mp-avail stays recorded then: the extra paths live by their
  own leases.
- Path k (its macvlan): ``bound``/``renew`` check that the answer carries mp-range = k,
  then add the address (no prefix route in main), table ``table_base + k`` (the subnet and
  the default route out of the macvlan), the rule from the address, and the subflow
  endpoint; ``deconfig``, ``leasefail`` and ``nak`` remove them. ``path-<k>.json``
  records the lease.

A malformed option, or a lease that cannot be used, is refused with one line and changes
nothing. Every error ends in a log line and exit status 0 (udhcpc must never stop because
of its script), and the whole event is bounded by ``HOOK_TIMEOUT_S``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import signal
from pathlib import Path
from typing import Any

from ..state import locked, read_json, write_json_atomic, write_text_atomic
from . import options
from .config import HostConfig
from .plan import Lease, endpoint_id, lease_from_env, macvlan_name, path_objects, primary_objects

log = logging.getLogger(__name__)

HOOK_TIMEOUT_S = 10  # udhcpc waits for its script: never longer than this
BIND, END, IGNORE = "bind", "end", "ignore"
# busybox udhcpc's events; nak is followed by deconfig, but a lease the server refused is
# over already.
EVENTS = {"bound": BIND, "renew": BIND, "deconfig": END, "leasefail": END, "nak": END}


def primary_file(cfg: HostConfig) -> Path:
    return cfg.state_dir / "primary.json"


def path_file(cfg: HostConfig, k: int) -> Path:
    return cfg.state_dir / f"path-{k}.json"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _record(path: Path, update: dict[str, Any]) -> dict[str, Any]:
    with locked(path):
        state = read_json(path, {})
        state = {**(state if isinstance(state, dict) else {}), **update, "updated": _now()}
        write_json_atomic(path, state)
    return state


def _write_resolv_conf(cfg: HostConfig, env: dict[str, str]) -> None:
    if cfg.resolv_conf is None or not env.get("dns"):
        return
    servers = []
    for word in env["dns"].split():
        try:
            servers.append(str(ipaddress.ip_address(word)))
        except ValueError:
            log.warning("primary: DNS server %r ignored: not an address", word)
    lines = ["# written by mptcp-cpe host from the DHCP lease of " + cfg.interface]
    if env.get("domain"):
        lines.append(f"search {' '.join(env['domain'].split())}")
    lines += [f"nameserver {s}" for s in servers]
    write_text_atomic(cfg.resolv_conf, "\n".join(lines) + "\n")


def primary_event(cfg: HostConfig, kernel, event: str, env: dict[str, str]) -> None:
    state_file = primary_file(cfg)
    old = read_json(state_file, {})
    old_address, old_router = old.get("address"), old.get("router")
    action = EVENTS.get(event, IGNORE)
    if action == IGNORE:
        return
    if action == END:
        if event != "deconfig":
            return  # leasefail, nak: deconfig follows or nothing was bound
        if old_address:
            address, route = primary_objects(cfg, Lease(old_address, old_router))
            kernel.remove(cfg, routes=[route] if route else [], addresses=[address])
            log.info("primary: lease %s on %s ended: address and default route removed", old_address, cfg.interface)
        kernel.up(cfg.interface)
        _record(state_file, {"event": event, "address": None, "router": None})
        return
    lease = lease_from_env(env)
    code = cfg.mp_avail_code
    try:
        mp_avail = options.mp_avail(env.get(f"opt{code}"), code)
    except options.OptionError as exc:
        mp_avail = old.get("mp_avail", 0)
        log.error("primary: %s: refused, mp-avail stays %d", exc, mp_avail)
    if old_address and old_address != lease.address:
        address, route = primary_objects(cfg, Lease(old_address, old_router))
        kernel.remove(cfg, routes=[route] if route else [], addresses=[address])
    address, route = primary_objects(cfg, lease)
    kernel.up(cfg.interface)
    kernel.add_address(address, cfg)
    if route is not None:
        kernel.replace_route(route, cfg)
    _write_resolv_conf(cfg, env)
    if mp_avail != old.get("mp_avail"):
        log.info("primary: mp-avail %d: the gateway offers %d extra path(s)", mp_avail, mp_avail)
    log.info("primary: %s %s on %s, router %s", event, lease.address, cfg.interface, lease.router)
    _record(state_file, {"event": event, "address": lease.address, "router": lease.router,
                         "last_address": lease.ip, "mp_avail": mp_avail})


def _remove_path(cfg: HostConfig, kernel, k: int, device: str, old: dict[str, Any]) -> bool:
    if not old.get("address"):
        return False
    objs = path_objects(cfg, k, device, Lease(old["address"], old.get("router")))
    kernel.remove(cfg, endpoints=[objs.endpoint], rules=[objs.rule], routes=objs.routes, addresses=[objs.address])
    return True


def path_event(cfg: HostConfig, kernel, k: int, event: str, env: dict[str, str]) -> None:
    state_file = path_file(cfg, k)
    device = macvlan_name(cfg.interface, k)
    old = read_json(state_file, {})
    action = EVENTS.get(event, IGNORE)
    if action == IGNORE:
        return
    if action == END:
        if _remove_path(cfg, kernel, k, device, old):
            log.info("path %d: lease %s on %s ended (%s): endpoint, rule, routes and address removed",
                     k, old["address"], device, event)
        elif event == "leasefail":
            log.info("path %d: no lease on %s (no answer for range %d): nothing configured", k, device, k)
        _record(state_file, {"k": k, "device": device, "event": event, "address": None, "router": None,
                             "endpoint_id": None})
        return
    try:
        lease = lease_from_env(env)
        options.mp_range(env.get(f"opt{cfg.mp_range_code}"), k, cfg.mp_range_code)
    except (options.OptionError, ValueError) as exc:
        log.error("path %d: %s on %s: %s: lease refused, nothing changed", k, event, device, exc)
        return
    if lease.router is None:
        log.error("path %d: %s on %s: the lease %s has no router: refused, nothing changed", k, event, device, lease.address)
        return
    if old.get("address") and (old["address"], old.get("router")) != (lease.address, lease.router):
        _remove_path(cfg, kernel, k, device, old)
    objs = path_objects(cfg, k, device, lease)
    kernel.add_address(objs.address, cfg)
    for r in objs.routes:
        kernel.replace_route(r, cfg)
    kernel.add_rule(objs.rule, cfg)
    kernel.add_endpoint(objs.endpoint, cfg)
    kernel.raise_limits((k, k))
    log.info("path %d: %s %s on %s, router %s, table %d, endpoint %d", k, event, lease.address, device,
             lease.router, cfg.table(k), endpoint_id(cfg, k))
    _record(state_file, {"k": k, "device": device, "event": event, "address": lease.address, "router": lease.router,
                         "last_address": lease.ip, "endpoint_id": objs.endpoint.id})


def run(cfg: HostConfig, k: int, event: str, env: dict[str, str]) -> None:
    from .kernel import HostKernel

    def on_alarm(*_):
        raise TimeoutError(f"the event took more than {HOOK_TIMEOUT_S} s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(HOOK_TIMEOUT_S)
    kernel = HostKernel()
    try:
        if k == 0:
            primary_event(cfg, kernel, event, env)
        else:
            path_event(cfg, kernel, k, event, env)
    finally:
        signal.alarm(0)
        kernel.close()
