"""The LAN host's configuration (``mptcp-cpe host``, draft-wr-mptcp-single-homed): one JSON
file rendered by the role mptcp_host, loaded and checked whole at start and on SIGHUP. A bad
file is refused with one line that names the host, the field and the value; the running
state is kept.

::

    {"host": "laptop-7", "interface": "eth0", "mp_avail_code": 225, "mp_range_code": 226,
     "dhcp_client": "udhcpc", "table_base": 300, "rule_priority": 5000,
     "endpoint_id_base": 200, "route_protocol": 203, "state_dir": "/run/mptcp-cpe/host",
     "resolv_conf": "/etc/resolv.conf", "ipv6_poll_s": 2.0}

Every key but ``interface`` has the default shown. ``dhcp_client``: busybox udhcpc, as one
command (``udhcpc``, ``busybox udhcpc``, or either by its path). ``resolv_conf``: where the
primary lease's DNS servers go, null to leave name resolution alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checks import (
    IFNAME_MAX_OCTETS,
    RESERVED_TABLES,
    TABLE_RANGE,
    ConfigError,
    Errors,
    absolute_path,
    integer,
    is_ifname,
    key_names,
    number,
    route_protocol,
)
from ..settings import config_host, read_config

CONFIG = Path("/etc/mptcp-cpe/host.json")
# The in-kernel path manager's maximum of addresses and subflows (MPTCP_PM_ADDR_MAX): no
# more extra paths than this, whatever mp-avail says.
MAX_PATHS = 8
# The host's rules occupy [rule_priority, rule_priority + RULE_BAND), below main's 32766.
RULE_BAND = 100
MAIN_RULE_PRIORITY = 32766
# Endpoint ids: one per extra IPv4 path, then one per IPv6 prefix on the LAN interface.
ENDPOINT_IDS = 2 * MAX_PATHS
# The extra paths' macvlans are "<interface>.mp<k>", the interface's name cut to this.
IFNAME_MAX_OCTETS_SUFFIX = IFNAME_MAX_OCTETS - len(".mp8")

TOP_KEYS = frozenset({"host", "interface", "mp_avail_code", "mp_range_code", "dhcp_client", "table_base",
                      "rule_priority", "endpoint_id_base", "route_protocol", "state_dir", "resolv_conf",
                      "ipv6_poll_s"})


@dataclass(frozen=True)
class HostConfig:
    host: str
    interface: str  # the LAN interface: the primary lease, and the parent of the macvlans
    mp_avail_code: int = 225
    mp_range_code: int = 226
    dhcp_client: tuple[str, ...] = ("udhcpc",)
    table_base: int = 300  # path k routes in table table_base + k
    rule_priority: int = 5000
    endpoint_id_base: int = 200
    route_protocol: int = 203
    state_dir: Path = Path("/run/mptcp-cpe/host")
    resolv_conf: Path | None = Path("/etc/resolv.conf")
    ipv6_poll_s: float = 2.0  # how often the LAN interface's IPv6 addresses are looked at

    def table(self, k: int) -> int:
        return self.table_base + k

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["dhcp_client"] = " ".join(self.dhcp_client)
        out["state_dir"] = str(self.state_dir)
        out["resolv_conf"] = None if self.resolv_conf is None else str(self.resolv_conf)
        return out


def _interface(host: str, value: Any) -> str:
    if not is_ifname(value):
        raise ConfigError(host, "interface", "not an interface name (1-15 octets, no '/', ':' or blanks)", value)
    return value


def _dhcp_client(host: str, value: Any) -> tuple[str, ...]:
    words = tuple(value.split()) if isinstance(value, str) else ()
    ok = (len(words) == 1 and Path(words[0]).name == "udhcpc") or (
        len(words) == 2 and Path(words[0]).name == "busybox" and words[1] == "udhcpc")
    if not ok:
        raise ConfigError(host, "dhcp_client", "must be busybox's udhcpc: 'udhcpc' or 'busybox udhcpc' (either by its path)", value)
    return words


def _option_code(host: str, field: str, value: Any) -> int:
    # 0 is the pad option, 255 the end; 1-254 all carry data.
    return integer(host, field, value, 1, 254)


def _table_base(host: str, value: Any) -> int:
    base = integer(host, "table_base", value, TABLE_RANGE[0], TABLE_RANGE[1] - MAX_PATHS)
    clash = sorted(RESERVED_TABLES & set(range(base + 1, base + MAX_PATHS + 1)))
    if clash:
        raise ConfigError(host, "table_base", f"tables table_base+1..+{MAX_PATHS} would take the kernel's table {clash[0]}", value)
    return base


def _resolv_conf(host: str, value: Any) -> Path | None:
    return None if value is None else absolute_path(host, "resolv_conf", value)


def from_dict(raw: Any, host: str = "localhost") -> HostConfig:
    """The checked config. ``host`` names the machine in messages when the file does not."""
    host = config_host(raw, host)
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise ConfigError(host, "(config)", f"unknown keys {key_names(unknown)}; allowed: {sorted(TOP_KEYS)}", show_value=False)
    d = HostConfig(host=host, interface="")
    errors = Errors()
    if "interface" not in raw:
        errors.add(ConfigError(host, "interface", "missing: the LAN interface the host gets its leases on", show_value=False))
    else:
        interface = errors.check(_interface, host, raw["interface"])
    avail = errors.check(_option_code, host, "mp_avail_code", raw.get("mp_avail_code", d.mp_avail_code))
    rng = errors.check(_option_code, host, "mp_range_code", raw.get("mp_range_code", d.mp_range_code))
    client = errors.check(_dhcp_client, host, raw.get("dhcp_client", " ".join(d.dhcp_client)))
    table_base = errors.check(_table_base, host, raw.get("table_base", d.table_base))
    prio = errors.check(integer, host, "rule_priority", raw.get("rule_priority", d.rule_priority), 1, MAIN_RULE_PRIORITY - RULE_BAND)
    id_base = errors.check(integer, host, "endpoint_id_base", raw.get("endpoint_id_base", d.endpoint_id_base), 1, 255 - ENDPOINT_IDS + 1)
    proto = errors.check(route_protocol, host, "route_protocol", raw.get("route_protocol", d.route_protocol))
    state_dir = errors.check(absolute_path, host, "state_dir", raw.get("state_dir", str(d.state_dir)))
    resolv = errors.check(_resolv_conf, host, raw.get("resolv_conf", str(d.resolv_conf)))
    poll = errors.check(number, host, "ipv6_poll_s", raw.get("ipv6_poll_s", d.ipv6_poll_s), 0.2, 60)
    errors.raise_any()
    if avail == rng:
        raise ConfigError(host, "mp_range_code", "is mp_avail_code too: the two options need their own codes", rng)
    return HostConfig(host=host, interface=interface, mp_avail_code=avail, mp_range_code=rng, dhcp_client=client,
                      table_base=table_base, rule_priority=prio, endpoint_id_base=id_base, route_protocol=proto,
                      state_dir=state_dir, resolv_conf=resolv, ipv6_poll_s=poll)


def load(path: Path, host: str = "localhost") -> HostConfig:
    return from_dict(read_config(path, host), host)
