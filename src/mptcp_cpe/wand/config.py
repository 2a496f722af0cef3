"""wand's configuration: one JSON file rendered by the role cpe_multiwan, loaded and checked
whole at start and on SIGHUP. A bad file is refused with one line that names the host, the
field and the value; the running state is kept.

::

    {"host": "cpe-lyon-01", "policy": "balance",
     "probe": {"interval_s": 1.0, "timeout_s": 1.0, "down_count": 3, "up_count": 2},
     "mptcp_probe": {"enabled": true, "interval_s": 300, "backoff_min_s": 30, "backoff_max_s": 900,
                     "stripped_count": 2, "timeout_s": 3.0, "port": 5124, "mcps": [], "mcp_prefixes": []},
     "route_protocol": 201, "rule_priority": 10000, "default_table": 200, "table_base": 100,
     "endpoint_id_base": 100, "nft_table": "mptcp_cpe_wand",
     "state_file": "/run/mptcp-cpe/wan.json", "mcp_state": "/run/mptcp-cpe/mcp.json",
     "wans": [{"name": "dsl", "device": "wan1", "kind": "dsl", "ipv4": "dhcp", ...}, ...],
     "lans": [{"name": "lan", "device": "lan0", "ipv4": "198.18.1.1/24", "pd_subnet": 0,
               "dhcp": {"pool": "198.18.1.128 - 198.18.1.191", "ranges": {"lte": "198.18.1.192 - 198.18.1.223"}}}],
     "ra": {"config": "/run/mptcp-cpe/radvd.conf", "reload": [...], "interval_s": 30, ...},
     "lan_dhcp": {"state_dir": "/var/lib/mptcp-cpe/lan-dhcp", "reload": ["systemctl", "try-reload-or-restart", "kea-dhcp4-server"]}}

Every key but ``wans`` has the default shown (``lans`` none, ``ra`` as in
`lanprefix.RaSettings`). A WAN without ``table`` gets ``table_base + 1 + its index``.
``mptcp_probe``: whether MPTCP survives each WAN's path to the MCPs (`probe.MptcpVerdict`):
an MPTCP connection to an MCP on ``port``, from the WAN's address; ``mcps`` are tried when
mcp.json names none for the WAN (after those other WANs learned). A learned MCP outside
``mcp_prefixes`` (when set: the converter's) is never tried, as the converter never uses it. A WAN whose path strips
MPTCP options keeps its routes and NAT but loses its MPTCP endpoint (``mptcp-blocked``).
``lans``: the LANs that get a /64 of each WAN's delegated prefix (`lanprefix`); without
``ra`` wand numbers and routes them but announces nothing. A LAN's ``dhcp`` ranges (role
cpe_lan_dhcp: single-homed MPTCP hosts) are routed out of their WANs; with ``lan_dhcp``
wand also tells the LAN's Kea which ranges may lease (`landhcp`): it rewrites each range's
WAN state file in ``state_dir`` and runs ``reload`` when one changed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checks import (
    TABLE_RANGE,
    check_keys,
    ConfigError,
    Errors,
    absolute_path,
    boolean,
    integer,
    key_names,
    mcp_lists,
    prefixes,
    nft_name,
    number,
    parse_table,
    route_protocol,
)
from ..inventory import MAX_WANS, Lan, Wan, number_tables, parse_lans, parse_wans
from ..mcptrust import address_problem
from ..settings import config_host, read_config
from ..state import MCP_STATE, WAN_STATE
from .lanprefix import RaSettings, ra_settings

POLICIES = ("balance", "failover")
# wand's rules occupy [rule_priority, rule_priority + RULE_BAND), below the main table's 32766.
RULE_BAND = 100
MAIN_RULE_PRIORITY = 32766
# Each WAN may have an IPv4 and an IPv6 endpoint: ids endpoint_id_base .. + 2 * MAX_WANS - 1.
ENDPOINT_IDS = 2 * MAX_WANS

TOP_KEYS = frozenset({"host", "policy", "probe", "mptcp_probe", "route_protocol", "rule_priority", "default_table",
                      "table_base", "endpoint_id_base", "nft_table", "state_file", "mcp_state", "wans",
                      "lans", "ra", "lan_dhcp"})
LAN_DHCP_KEYS = frozenset({"state_dir", "reload"})
PROBE_KEYS = frozenset({"interval_s", "timeout_s", "down_count", "up_count"})
MPTCP_PROBE_KEYS = frozenset({"enabled", "interval_s", "backoff_min_s", "backoff_max_s", "stripped_count", "timeout_s",
                              "port", "mcps", "mcp_prefixes"})


@dataclass(frozen=True)
class ProbeSettings:
    interval_s: float = 1.0  # one probe round per WAN every interval
    timeout_s: float = 1.0  # a probe unanswered after this has failed (at most interval_s)
    down_count: int = 3  # this many failed rounds in a row: the WAN is down
    up_count: int = 2  # this many good rounds in a row: the WAN is up again


@dataclass(frozen=True)
class MptcpProbeSettings:
    """The MPTCP test of each WAN's path to the MCPs (`probe.MptcpVerdict` keeps the schedule)."""

    enabled: bool = True
    interval_s: float = 300.0  # a WAN where MPTCP passes is tested again after this
    backoff_min_s: float = 30.0  # a blocked WAN is tested again after this, doubling each time it is still stripped,
    backoff_max_s: float = 900.0  # up to this
    stripped_count: int = 2  # this many stripped results in a row: mptcp-blocked
    timeout_s: float = 3.0  # the MPTCP handshake with the MCP may take this long (then: no verdict)
    port: int = 5124  # the MCPs' port (RFC 8803; the converter's mcp_port)
    mcps: tuple[tuple[str, ...], ...] = ()  # static MCPs (the converter's mcps), for a WAN that learned none
    mcp_prefixes: tuple = ()  # where MCPs may be (empty: anywhere; the converter's): learned ones outside are not tried


@dataclass(frozen=True)
class LanDhcpSettings:
    state_dir: Path  # the WANs' state files the LAN's Kea includes
    reload: tuple[str, ...]  # makes Kea read them again


def _lan_dhcp(host: str, raw: Any) -> LanDhcpSettings:
    check_keys(host, "lan_dhcp", raw, LAN_DHCP_KEYS)
    reload = raw.get("reload")
    if not isinstance(reload, list) or not reload or not all(isinstance(a, str) and a for a in reload):
        raise ConfigError(host, "lan_dhcp.reload", "must be a non-empty list of strings (a command and its arguments)", reload)
    if "state_dir" not in raw:
        raise ConfigError(host, "lan_dhcp.state_dir", "missing", show_value=False)
    return LanDhcpSettings(absolute_path(host, "lan_dhcp.state_dir", raw["state_dir"]), tuple(reload))


@dataclass(frozen=True)
class WandConfig:
    host: str
    wans: tuple[Wan, ...]  # every WAN has its table
    policy: str = "balance"
    probe: ProbeSettings = ProbeSettings()
    mptcp_probe: MptcpProbeSettings = MptcpProbeSettings()
    route_protocol: int = 201
    rule_priority: int = 10000
    default_table: int = 200
    table_base: int = 100
    endpoint_id_base: int = 100
    nft_table: str = "mptcp_cpe_wand"
    state_file: Path = WAN_STATE
    mcp_state: Path = MCP_STATE  # the delegated prefixes, as the DHCP hooks record them
    lans: tuple[Lan, ...] = ()
    ra: RaSettings | None = None
    lan_dhcp: LanDhcpSettings | None = None

    def wan(self, name: str) -> Wan:
        return next(w for w in self.wans if w.name == name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "policy": self.policy,
            "probe": dataclasses.asdict(self.probe),
            "mptcp_probe": {**dataclasses.asdict(self.mptcp_probe), "mcps": [list(m) for m in self.mptcp_probe.mcps],
                            "mcp_prefixes": [str(p) for p in self.mptcp_probe.mcp_prefixes]},
            "route_protocol": self.route_protocol,
            "rule_priority": self.rule_priority,
            "default_table": self.default_table,
            "table_base": self.table_base,
            "endpoint_id_base": self.endpoint_id_base,
            "nft_table": self.nft_table,
            "state_file": str(self.state_file),
            "mcp_state": str(self.mcp_state),
            "wans": [w.as_dict() for w in self.wans],
            "lans": [lan.as_dict() for lan in self.lans],
            **({"ra": self.ra.as_dict()} if self.ra is not None else {}),
            **({"lan_dhcp": {"state_dir": str(self.lan_dhcp.state_dir), "reload": list(self.lan_dhcp.reload)}}
               if self.lan_dhcp is not None else {}),
        }


def _probe_settings(host: str, raw: Any) -> ProbeSettings:
    if not isinstance(raw, dict):
        raise ConfigError(host, "probe", "must be a mapping with interval_s, timeout_s, down_count, up_count", raw)
    unknown = set(raw) - PROBE_KEYS
    if unknown:
        raise ConfigError(host, "probe", f"unknown keys {key_names(unknown)}; allowed: {sorted(PROBE_KEYS)}", show_value=False)
    d = ProbeSettings()
    interval = number(host, "probe.interval_s", raw.get("interval_s", d.interval_s), 0.1, 3600)
    timeout = number(host, "probe.timeout_s", raw.get("timeout_s", min(d.timeout_s, interval)), 0.05, 3600)
    if timeout > interval:
        raise ConfigError(host, "probe.timeout_s", f"longer than probe.interval_s ({interval:g})", raw.get("timeout_s"))
    return ProbeSettings(
        interval_s=interval,
        timeout_s=timeout,
        down_count=integer(host, "probe.down_count", raw.get("down_count", d.down_count), 1, 100),
        up_count=integer(host, "probe.up_count", raw.get("up_count", d.up_count), 1, 100),
    )


def _mptcp_probe_settings(host: str, raw: Any) -> MptcpProbeSettings:
    check_keys(host, "mptcp_probe", raw, MPTCP_PROBE_KEYS)
    d = MptcpProbeSettings()
    errors = Errors()
    backoff_min = errors.check(number, host, "mptcp_probe.backoff_min_s", raw.get("backoff_min_s", d.backoff_min_s), 1, 86400)
    settings = MptcpProbeSettings(
        enabled=errors.check(boolean, host, "mptcp_probe.enabled", raw.get("enabled", d.enabled)),
        interval_s=errors.check(number, host, "mptcp_probe.interval_s", raw.get("interval_s", d.interval_s), 1, 86400),
        backoff_min_s=backoff_min,
        backoff_max_s=errors.check(number, host, "mptcp_probe.backoff_max_s", raw.get("backoff_max_s", d.backoff_max_s), 1, 86400),
        stripped_count=errors.check(integer, host, "mptcp_probe.stripped_count", raw.get("stripped_count", d.stripped_count), 1, 100),
        timeout_s=errors.check(number, host, "mptcp_probe.timeout_s", raw.get("timeout_s", d.timeout_s), 0.1, 60),
        port=errors.check(integer, host, "mptcp_probe.port", raw.get("port", d.port), 1, 65535),
        mcps=errors.check(mcp_lists, host, "mptcp_probe.mcps", raw.get("mcps", [])),
        mcp_prefixes=errors.check(prefixes, host, "mptcp_probe.mcp_prefixes", raw.get("mcp_prefixes", [])),
    )
    errors.raise_any()
    for i, mcp in enumerate(settings.mcps):
        for j, address in enumerate(mcp):
            problem = address_problem(address, settings.mcp_prefixes)
            if problem is not None:
                errors.add(ConfigError(host, f"mptcp_probe.mcps[{i}][{j}]", f"cannot be an MCP: {problem}", address))
    errors.raise_any()
    if settings.backoff_max_s < settings.backoff_min_s:
        raise ConfigError(host, "mptcp_probe.backoff_max_s", f"shorter than mptcp_probe.backoff_min_s ({backoff_min:g})",
                          raw.get("backoff_max_s"))
    return settings


def _policy(host: str, value: Any) -> str:
    if value not in POLICIES:
        raise ConfigError(host, "policy", f"must be one of {', '.join(POLICIES)}", value)
    return value


def from_dict(raw: Any, host: str = "localhost") -> WandConfig:
    """The checked config. ``host`` names the router in messages when the file does not."""
    host = config_host(raw, host)
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise ConfigError(host, "(config)", f"unknown keys {key_names(unknown)}; allowed: {sorted(TOP_KEYS)}", show_value=False)
    d = WandConfig(host=host, wans=())
    # Every field's own mistakes at once, then those between fields.
    errors = Errors()
    policy = errors.check(_policy, host, raw.get("policy", d.policy))
    proto = errors.check(route_protocol, host, "route_protocol", raw.get("route_protocol", d.route_protocol))
    prio = errors.check(integer, host, "rule_priority", raw.get("rule_priority", d.rule_priority), 1, MAIN_RULE_PRIORITY - RULE_BAND)
    table_base = errors.check(integer, host, "table_base", raw.get("table_base", d.table_base), 1, TABLE_RANGE[1] - MAX_WANS - 1)
    default_table = errors.check(parse_table, host, "default_table", raw.get("default_table", d.default_table))
    id_base = errors.check(integer, host, "endpoint_id_base", raw.get("endpoint_id_base", d.endpoint_id_base), 1, 255 - ENDPOINT_IDS + 1)
    nft_table = errors.check(nft_name, host, "nft_table", raw.get("nft_table", d.nft_table))
    state_file = errors.check(absolute_path, host, "state_file", raw.get("state_file", str(d.state_file)))
    mcp_state = errors.check(absolute_path, host, "mcp_state", raw.get("mcp_state", str(d.mcp_state)))
    probe = errors.check(_probe_settings, host, raw.get("probe", {}))
    mptcp_probe = errors.check(_mptcp_probe_settings, host, raw.get("mptcp_probe", {}))
    ra = errors.check(ra_settings, host, raw["ra"]) if raw.get("ra") is not None else None
    lan_dhcp = errors.check(_lan_dhcp, host, raw["lan_dhcp"]) if raw.get("lan_dhcp") is not None else None
    if "wans" not in raw:
        errors.add(ConfigError(host, "wans", "missing", show_value=False))
    else:
        wans = errors.check(parse_wans, host, raw["wans"], field="wans")
    errors.raise_any()
    lans = parse_lans(host, raw["lans"], wans, field="lans") if raw.get("lans") not in (None, []) else []

    numbered = number_tables(host, wans, table_base, error=ConfigError)
    seen: dict[int, str] = {}
    for i, wan in enumerate(numbered):
        if wan.table == default_table:
            raise ConfigError(host, f"wans[{i}] ({wan.name}).table", "is the default_table, which holds the balanced default route", wan.table)
        if wan.table in seen:
            raise ConfigError(host, f"wans[{i}] ({wan.name}).table", f"already used by {seen[wan.table]} (a WAN without table gets table_base + 1 + its index)", wan.table)
        seen[wan.table] = f"wans[{i}] ({wan.name})"
    if policy == "failover":
        primaries = [w.name for w in numbered if not w.backup]
        if len(primaries) > 1:
            raise ConfigError(host, "wans", "more than one primary WAN: with policy failover mark all but one backup: true", primaries)
    return WandConfig(
        host=host,
        wans=tuple(numbered),
        policy=policy,
        probe=probe,
        mptcp_probe=mptcp_probe,
        route_protocol=proto,
        rule_priority=prio,
        default_table=default_table,
        table_base=table_base,
        endpoint_id_base=id_base,
        nft_table=nft_table,
        state_file=state_file,
        mcp_state=mcp_state,
        lans=tuple(lans),
        ra=ra,
        lan_dhcp=lan_dhcp,
    )


def load(path: Path, host: str = "localhost") -> WandConfig:
    return from_dict(read_config(path, host), host)
