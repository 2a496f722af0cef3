"""The CPE's own DHCPv4 server on its LANs (role cpe_lan_dhcp): Kea, configured from the
inventory's ``cpe_lans[].dhcp``, answering single-homed MPTCP hosts as
draft-wr-mptcp-single-homed asks.

- A host that lists mp-avail (225) in its parameter request list gets it: one octet, the
  number of WANs after the first (every one configured, up or not, so that k keeps naming
  the same WAN).
- A host that sends mp-range (226) = k gets a lease from the k-th range and 226 = k back;
  one that does not gets an ordinary lease from the pool and nothing else. Kea's own client
  classes do it (``option[226].hex``); the pool is guarded too, or mp-range clients would
  draw from it.
- A range whose WAN is down hands out nothing: its class also needs the WAN's "up" class,
  whose test Kea reads from a file of its own (``<?include?>``) that wand rewrites when the
  WAN goes down or comes back, and then reloads Kea. The role writes each file once (up), so
  Kea can start before wand.

Both options carry one octet (the draft gives no format): ``uint8``. The codes are settings.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checks import Errors, InventoryError, absolute_path, integer, ip_address
from .inventory import Lan, Wan, option_code, parse_lans, parse_wans
from .state import write_text_atomic

# What the WAN's "up" class tests: Kea's expressions have no boolean literal, so a
# comparison of two strings that does (not) hold.
UP_TEST = "'up' == 'up'"
DOWN_TEST = "'down' == 'up'"
PRIMARY_CLASS = "mptcp_cpe_primary"
INCLUDE = re.compile(r'"@include ([^"@]+)@"')
LEASE_RANGE = (60, 7 * 86400)


@dataclass(frozen=True)
class Settings:
    mp_avail_code: int = 225
    mp_range_code: int = 226
    lease_s: int = 3600
    dns_servers: tuple[str, ...] = ()
    state_dir: Path = Path("/var/lib/mptcp-cpe/lan-dhcp")
    leases_file: Path = Path("/var/lib/kea/kea-leases4.csv")
    control_socket: Path = Path("/run/kea/kea4-ctrl-socket")


def range_class(k: int) -> str:
    return f"mptcp_cpe_range_{k}"


def up_class(wan: str) -> str:
    return f"mptcp_cpe_wan_{wan}_up"


def up_file(state_dir: Path, wan: str) -> Path:
    """The file holding the test of WAN ``wan``'s "up" class (one JSON string)."""
    return Path(state_dir) / f"{wan}.test"


def up_text(up: bool) -> str:
    return json.dumps(UP_TEST if up else DOWN_TEST) + "\n"


def write_up(state_dir: Path, wan: str, up: bool) -> bool:
    """Write WAN ``wan``'s state for Kea, atomically (Kea may read it at any moment).
    True when it changed (Kea must reload)."""
    path = up_file(state_dir, wan)
    text = up_text(up)
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass  # missing or unreadable: written below
    write_text_atomic(path, text)
    return True


def settings(host: str, raw: dict[str, Any]) -> Settings:
    """The role's settings, checked (every mistake at once)."""
    d = Settings()
    errors = Errors()
    avail = errors.check(option_code, host, "cpe_lan_dhcp_mp_avail_code", raw.get("mp_avail_code", d.mp_avail_code), 4)
    rng = errors.check(option_code, host, "cpe_lan_dhcp_mp_range_code", raw.get("mp_range_code", d.mp_range_code), 4)
    lease = errors.check(integer, host, "cpe_lan_dhcp_lease_s", raw.get("lease_s", d.lease_s), *LEASE_RANGE)
    dns_raw = raw.get("dns_servers", [])
    dns: list[str] = []
    if not isinstance(dns_raw, list):
        errors.add(InventoryError(host, "cpe_lan_dhcp_dns_servers", "must be a list of IPv4 addresses", dns_raw))
    else:
        dns = [str(errors.check(ip_address, host, f"cpe_lan_dhcp_dns_servers[{i}]", a, 4)) for i, a in enumerate(dns_raw)]
    state_dir = errors.check(absolute_path, host, "cpe_lan_dhcp_state_dir", raw.get("state_dir", str(d.state_dir)))
    leases = errors.check(absolute_path, host, "cpe_lan_dhcp_leases_file", raw.get("leases_file", str(d.leases_file)))
    sock = errors.check(absolute_path, host, "cpe_lan_dhcp_control_socket", raw.get("control_socket", str(d.control_socket)))
    errors.raise_any()
    # DHCP options a client always sends or a server always needs are not free for these.
    for field, code in (("cpe_lan_dhcp_mp_avail_code", avail), ("cpe_lan_dhcp_mp_range_code", rng)):
        if code < 224:
            raise InventoryError(host, field, "must be in the site-specific range 224-254 (RFC 3942): the codes below are assigned", code)
    if avail == rng:
        raise InventoryError(host, "cpe_lan_dhcp_mp_range_code", "is the same code as cpe_lan_dhcp_mp_avail_code", rng)
    return Settings(avail, rng, lease, tuple(dns), state_dir, leases, sock)


def served_lans(host: str, raw_lans: Any, raw_wans: Any) -> tuple[list[Lan], list[Wan]]:
    """The LANs with a ``dhcp`` section, checked against the WANs (ranges in cpe_wans order)."""
    wans = parse_wans(host, raw_wans if raw_wans is not None else [])
    lans = parse_lans(host, raw_lans if raw_lans is not None else [], wans)
    return [lan for lan in lans if lan.dhcp is not None], wans


def config(host: str, lans: list[Lan], cfg: Settings) -> dict[str, Any]:
    """Kea's Dhcp4 configuration as a dict; each WAN's "up" test is a placeholder string that
    `text` turns into Kea's include directive."""
    served = [lan for lan in lans if lan.dhcp is not None]
    if not served:
        raise InventoryError(host, "cpe_lans", "no LAN has a dhcp section: nothing for the LAN's DHCP server to serve",
                             show_value=False)
    range_wans: list[str] = []
    for lan in served:
        names = [w for w, _ in lan.dhcp.ranges]
        if names and range_wans and names != range_wans:
            raise InventoryError(host, f"cpe_lans ({lan.name}).dhcp.ranges", "must name the same WANs on every LAN", names)
        range_wans = range_wans or names
    classes: list[dict[str, Any]] = [{"name": up_class(w), "test": f"@include {up_file(cfg.state_dir, w)}@"} for w in range_wans]
    classes.append({"name": PRIMARY_CLASS, "test": f"not option[{cfg.mp_range_code}].exists"})
    for k, wan in enumerate(range_wans, start=1):
        classes.append({"name": range_class(k),
                        "test": f"option[{cfg.mp_range_code}].hex == 0x{k:02x} and member('{up_class(wan)}')"})
    subnets = []
    for i, lan in enumerate(served):
        opts: list[dict[str, Any]] = [{"name": "routers", "data": str(lan.ipv4.ip)}]
        if cfg.dns_servers:
            opts.append({"name": "domain-name-servers", "data": ", ".join(cfg.dns_servers)})
        if lan.dhcp.ranges:
            # Sent only to hosts that list it in their parameter request list (no always-send).
            opts.append({"name": "mp-avail", "code": cfg.mp_avail_code, "data": str(len(lan.dhcp.ranges))})
        pools: list[dict[str, Any]] = [{"pool": str(lan.dhcp.pool), "client-class": PRIMARY_CLASS}]
        for k, (_, r) in enumerate(lan.dhcp.ranges, start=1):
            pools.append({"pool": str(r), "client-class": range_class(k),
                          "option-data": [{"name": "mp-range", "code": cfg.mp_range_code, "data": str(k), "always-send": True}]})
        subnets.append({"id": i + 1, "subnet": str(lan.ipv4.network), "interface": lan.device,
                        "option-data": opts, "pools": pools})
    return {"Dhcp4": {
        "interfaces-config": {"interfaces": [lan.device for lan in served]},
        "control-socket": {"socket-type": "unix", "socket-name": str(cfg.control_socket)},
        "lease-database": {"type": "memfile", "persist": True, "name": str(cfg.leases_file), "lfc-interval": 3600},
        "authoritative": True,
        "valid-lifetime": cfg.lease_s,
        "renew-timer": cfg.lease_s // 2,
        "rebind-timer": cfg.lease_s * 7 // 8,
        "option-def": [{"name": "mp-avail", "code": cfg.mp_avail_code, "type": "uint8", "space": "dhcp4"},
                       {"name": "mp-range", "code": cfg.mp_range_code, "type": "uint8", "space": "dhcp4"}],
        "client-classes": classes,
        "subnet4": subnets,
        "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "syslog"}], "severity": "INFO"}],
    }}


def text(conf: dict[str, Any]) -> str:
    """The configuration as Kea reads it: JSON, with each "up" test included from its file."""
    body = json.dumps(conf, indent=2)
    return INCLUDE.sub(lambda m: f'<?include "{m.group(1)}"?>', body) + "\n"


def wan_states(lans: list[Lan]) -> list[str]:
    """The WANs whose "up" files Kea includes (the WANs of the ranges)."""
    out: list[str] = []
    for lan in lans:
        for w, _ in lan.dhcp.ranges if lan.dhcp else ():
            if w not in out:
                out.append(w)
    return out
