"""The LANs' IPv6 prefixes from the WANs' delegated prefixes, and the router advertisements
that announce them: pure functions, so every rule is testable without a kernel or radvd.

Each WAN's DHCPv6 client records the prefixes delegated to it in mcp.json (``dhcp-hook
--prefix``). From the first prefix of WAN k, LAN L gets the /64 numbered ``pd_subnet`` (the
inventory's, by default the LAN's index): for 2001:db8:1000::/56 and pd_subnet 1, the /64
2001:db8:1000:1::/64, the CPE's address in it ``::1``. Source-specific routing sends what
the LAN sends from that /64 out of WAN k (a rule per /64 into WAN k's table, after the main
table without its default routes, so LAN to LAN traffic stays inside), so IPv6 needs no NAT.

A /64 is announced (SLAAC) while its WAN has the prefix:

- ``preferred`` while WAN k carries IPv6 (usable and healthy);
- ``deprecated`` (preferred lifetime 0, still valid) while WAN k is down: hosts stop
  choosing it for new connections and come back to it when the WAN does;
- ``retired`` once the prefix is gone (lease ended, WAN removed): announced with both
  lifetimes 0 for ``retire_s`` (hosts keep at most two hours, RFC 4862 5.5.3 e), no longer
  routed, its address removed from the LAN.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checks import ConfigError, absolute_path, check_keys, integer

PREFERRED, DEPRECATED, RETIRED = "preferred", "deprecated", "retired"
RA_KEYS = frozenset({"config", "pid_file", "reload", "interval_s", "preferred_s", "valid_s", "retire_s"})


@dataclass(frozen=True)
class RaSettings:
    """Where wand writes radvd's configuration and how it makes radvd read it again: SIGHUP
    to the process in ``pid_file``, or the ``reload`` command when one is given (another
    platform's service manager)."""

    config: Path = Path("/run/mptcp-cpe/radvd.conf")
    pid_file: Path = Path("/run/mptcp-cpe/radvd.pid")
    reload: tuple[str, ...] | None = None
    interval_s: int = 30  # MaxRtrAdvInterval (radvd: 4-1800)
    preferred_s: int = 1800  # a preferred /64's preferred lifetime
    valid_s: int = 3600  # its valid lifetime (also while deprecated)
    retire_s: int = 7200  # how long a /64 that is gone is still announced with lifetimes 0

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["config"], d["pid_file"] = str(self.config), str(self.pid_file)
        if self.reload is None:
            del d["reload"]
        else:
            d["reload"] = list(self.reload)
        return d


def ra_settings(host: str, raw: Any) -> RaSettings:
    check_keys(host, "ra", raw, RA_KEYS)
    d = RaSettings()
    reload = raw.get("reload")
    if reload is not None and (not isinstance(reload, list) or not reload or not all(isinstance(a, str) and a for a in reload)):
        raise ConfigError(host, "ra.reload", "must be a non-empty list of strings (a command and its arguments)", reload)
    s = RaSettings(
        config=absolute_path(host, "ra.config", raw.get("config", str(d.config))),
        pid_file=absolute_path(host, "ra.pid_file", raw.get("pid_file", str(d.pid_file))),
        reload=None if reload is None else tuple(reload),
        interval_s=integer(host, "ra.interval_s", raw.get("interval_s", d.interval_s), 4, 1800),
        preferred_s=integer(host, "ra.preferred_s", raw.get("preferred_s", d.preferred_s), 0, 2 ** 32 - 2),
        valid_s=integer(host, "ra.valid_s", raw.get("valid_s", d.valid_s), 1, 2 ** 32 - 2),
        retire_s=integer(host, "ra.retire_s", raw.get("retire_s", d.retire_s), 0, 7 * 86400),
    )
    if s.preferred_s > s.valid_s:
        raise ConfigError(host, "ra.preferred_s", f"longer than ra.valid_s ({s.valid_s})", s.preferred_s)
    return s


@dataclass(frozen=True, order=True)
class LanPrefix:
    """One LAN's /64 from one WAN's delegated prefix, and how it is announced."""

    device: str  # the LAN's device
    prefix: str  # the /64
    lan: str  # the LAN's name
    wan: str  # the WAN whose delegated prefix it comes from
    delegated: str  # that prefix
    state: str = PREFERRED

    @property
    def address(self) -> str:
        """The CPE's own address in the /64 (``::1``), with its length."""
        net = ipaddress.IPv6Network(self.prefix)
        return f"{net.network_address + 1}/64"


def numbered(lans, wans, delegated: dict[str, list[str]]) -> tuple[list[LanPrefix], list[str]]:
    """The /64 of every LAN with a ``pd_subnet`` from the first prefix delegated to each WAN
    (state preferred), and a line for each one that cannot be numbered (a WAN's prefix too
    long for the LAN's number). ``delegated``: WAN device -> its prefixes (mcp.json)."""
    out: list[LanPrefix] = []
    problems: list[str] = []
    for wan in wans:
        prefixes = delegated.get(wan.device) or []
        if not prefixes:
            continue
        pd = ipaddress.IPv6Network(prefixes[0])
        for lan in lans:
            if lan.pd_subnet is None:
                continue
            count = 2 ** (64 - pd.prefixlen)
            if lan.pd_subnet >= count:
                problems.append(f"WAN {wan.name}'s delegated {pd} holds {count} /64s (0-{count - 1}): "
                                f"none numbered {lan.pd_subnet} for LAN {lan.name}")
                continue
            net = ipaddress.IPv6Network((int(pd.network_address) + (lan.pd_subnet << 64), 64))
            out.append(LanPrefix(lan.device, str(net), lan.name, wan.name, str(pd)))
    return out, problems


def with_states(current: list[LanPrefix], carrying: set[str]) -> list[LanPrefix]:
    """``current`` with each /64 preferred while its WAN carries IPv6, deprecated while not."""
    return [dataclasses.replace(p, state=PREFERRED if p.wan in carrying else DEPRECATED) for p in current]


def retire(before: dict[tuple[str, str], LanPrefix], retired: dict[tuple[str, str], tuple[LanPrefix, float]],
           current: list[LanPrefix], now: float, retire_s: int) -> dict[tuple[str, str], tuple[LanPrefix, float]]:
    """The retired /64s after this pass: those announced before and gone now join (until now
    + retire_s), those back again or past their time leave."""
    keys = {(p.device, p.prefix) for p in current}
    out = {k: v for k, v in retired.items() if k not in keys and v[1] > now}
    for key, p in before.items():
        if key not in keys and key not in out and retire_s > 0:
            out[key] = (dataclasses.replace(p, state=RETIRED), now + retire_s)
    return out


def radvd_conf(lans, prefixes: list[LanPrefix], ra: RaSettings, default_router: bool) -> str:
    """radvd's configuration: every LAN with a ``pd_subnet``, its /64s with the lifetimes
    their state gives; router lifetime 0 while the CPE has no IPv6 default route (RFC 7084
    G-4), so hosts do not send it traffic it can only drop."""
    lifetime = 3 * ra.interval_s if default_router else 0
    lines = ["# Written by wand (mptcp-cpe) from the WANs' delegated prefixes; radvd rereads it on SIGHUP."]
    for lan in lans:
        if lan.pd_subnet is None:
            continue
        lines += ["", f"interface {lan.device}", "{", "    AdvSendAdvert on;",
                  f"    MinRtrAdvInterval {max(3, ra.interval_s // 3)};", f"    MaxRtrAdvInterval {ra.interval_s};",
                  f"    AdvDefaultLifetime {lifetime};"]
        for p in sorted(p for p in prefixes if p.device == lan.device):
            preferred = ra.preferred_s if p.state == PREFERRED else 0
            valid = 0 if p.state == RETIRED else ra.valid_s
            lines += [f"    # from WAN {p.wan} ({p.delegated}), {p.state}", f"    prefix {p.prefix}", "    {",
                      "        AdvOnLink on;", "        AdvAutonomous on;",
                      f"        AdvPreferredLifetime {preferred};", f"        AdvValidLifetime {valid};", "    };"]
        lines.append("};")
    return "\n".join(lines) + "\n"
