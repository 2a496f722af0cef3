"""The state files under /run/mptcp-cpe and their one owner: their paths (``mcp.json``,
written by the DHCP hooks, read by the converter and ``status``; ``wan.json``, written by
wand, read by ``status`` and by the next wand), their layouts (mcp.json's MCP lists,
`learned_mcps`; wan.json as `WanState`), and the one way they are read and written.

Writers hold an exclusive lock on ``<file>.lock`` for the whole read-modify-write (two WAN
DHCP clients may renew at the same moment), and replace the file atomically (write a
temporary file in the same directory, fsync, rename), so a reader sees the old file or
the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

RUN_DIR = Path("/run/mptcp-cpe")
MCP_STATE = RUN_DIR / "mcp.json"  # the MCPs learned by DHCP, per WAN device and family
WAN_STATE = RUN_DIR / "wan.json"  # wand's WANs: addresses, health, since


class StateFileError(RuntimeError):
    pass


def read_json(path: Path, default: Any) -> Any:
    """The file's JSON, or ``default`` when it does not exist."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as exc:
        raise StateFileError(f"{path}: cannot read: {exc}") from None


def write_json_atomic(path: Path, data: Any, mode: int = 0o644) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode)


def write_text_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace the file with ``text``: a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the writers' lock of ``path`` (a sibling ``.lock`` file) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# ---------------------------------------------------------------- mcp.json

MCP_STATE_VERSION = 1
FAMILIES = ("v4", "v6")


def learned_mcps(state: Any) -> Iterator[tuple[str, str, list[list[str]]]]:
    """mcp.json's MCP lists as (WAN device, family, lists): devices in name order, v4 before
    v6; whatever does not have the layout (a family without a list of lists) is left out."""
    wans = state.get("wans", {}) if isinstance(state, dict) else {}
    for device in sorted(wans):
        for fam in FAMILIES:
            entry = wans[device].get(fam) if isinstance(wans[device], dict) else None
            lists = entry.get("mcps", []) if isinstance(entry, dict) else None
            if isinstance(lists, list):
                yield device, fam, [[str(a) for a in m] for m in lists if isinstance(m, list)]


EMPTY_MCP_STATE = {"version": MCP_STATE_VERSION, "wans": {}}


def with_learned(state: Any, device: str, family: str, entry: dict | None) -> dict:
    """mcp.json with what WAN ``device`` learned for ``family`` (``{"mcps": [...], "client",
    "event", "learned"}``) put in, or taken out (None); a WAN left with nothing goes."""
    wans = dict(state.get("wans", {})) if isinstance(state, dict) else {}
    learned = dict(wans.get(device, {}))
    if entry is None:
        learned.pop(family, None)
    else:
        learned[family] = entry
    if learned:
        wans[device] = learned
    else:
        wans.pop(device, None)
    return {"version": MCP_STATE_VERSION, "wans": wans}


def delegated_prefixes(state: Any) -> dict[str, list[str]]:
    """mcp.json's delegated IPv6 prefixes per WAN device (only WANs that have some)."""
    out: dict[str, list[str]] = {}
    wans = state.get("wans", {}) if isinstance(state, dict) else {}
    for device in sorted(wans):
        entry = wans[device].get("v6") if isinstance(wans[device], dict) else None
        prefixes = entry.get("prefixes") if isinstance(entry, dict) else None
        if isinstance(prefixes, list) and prefixes:
            out[device] = [str(p) for p in prefixes]
    return out


def dhcp_mcps(state: Any) -> tuple[tuple[str, ...], ...]:
    """The MCP lists of mcp.json, WANs in name order, IPv4-learned first, without repeats."""
    out: list[tuple[str, ...]] = []
    for _, _, lists in learned_mcps(state):
        for mcp in lists:
            t = tuple(mcp)
            if t and t not in out:
                out.append(t)
    return tuple(out)


# ---------------------------------------------------------------- wan.json

WAN_STATE_VERSION = 1


@dataclass(frozen=True)
class WanRecord:
    """One WAN in wan.json: wand's view of it when it last wrote the file."""

    name: str
    device: str | None = None
    kind: str | None = None
    table: int | None = None
    backup: bool = False
    weight: int | None = None
    addresses: tuple[str, ...] = ()
    gateway: dict[str, str | None] = field(default_factory=dict)  # ipv4/ipv6 -> address or None
    healthy: bool = False
    state: str | None = None  # up, down, no-address, ...
    since: str | None = None  # ISO time of the last change of state
    last_probe_rtt_ms: float | None = None
    in_default_route: bool = False
    endpoints: tuple[int, ...] = ()
    # The prefixes delegated to it (DHCPv6 IA_PD); None: not a WAN that asks for one.
    delegated: tuple[str, ...] | None = None
    # Whether MPTCP survives its path to the MCPs: passes, blocked (mptcp-blocked: no MPTCP
    # endpoint, direct traffic as before) or unknown; None: a wan.json from before the test.
    mptcp: str | None = None
    mptcp_since: str | None = None  # ISO time of the last change of ``mptcp``
    mptcp_next_test: str | None = None  # ISO time the next test is due (None: none planned)
    mptcp_mcp: str | None = None  # the MCP address of the last test

    @property
    def mptcp_blocked(self) -> bool:
        return self.mptcp == "blocked"

    def as_json(self) -> dict[str, Any]:
        return {"device": self.device, "kind": self.kind, "table": self.table, "backup": self.backup,
                "weight": self.weight, "addresses": list(self.addresses), "gateway": dict(self.gateway),
                "healthy": self.healthy, "state": self.state, "since": self.since,
                "last_probe_rtt_ms": self.last_probe_rtt_ms, "in_default_route": self.in_default_route,
                "endpoints": list(self.endpoints),
                "delegated": None if self.delegated is None else list(self.delegated),
                "mptcp": self.mptcp, "mptcp_since": self.mptcp_since, "mptcp_next_test": self.mptcp_next_test,
                "mptcp_mcp": self.mptcp_mcp}

    @classmethod
    def from_json(cls, name: str, raw: Any) -> WanRecord:
        raw = raw if isinstance(raw, dict) else {}
        return cls(name=name, device=raw.get("device"), kind=raw.get("kind"), table=raw.get("table"),
                   backup=bool(raw.get("backup")), weight=raw.get("weight"),
                   addresses=tuple(raw.get("addresses") or ()), gateway=dict(raw.get("gateway") or {}),
                   healthy=bool(raw.get("healthy")), state=raw.get("state"), since=raw.get("since"),
                   last_probe_rtt_ms=raw.get("last_probe_rtt_ms"), in_default_route=bool(raw.get("in_default_route")),
                   endpoints=tuple(raw.get("endpoints") or ()),
                   delegated=None if raw.get("delegated") is None else tuple(raw.get("delegated") or ()),
                   mptcp=raw.get("mptcp"), mptcp_since=raw.get("mptcp_since"), mptcp_next_test=raw.get("mptcp_next_test"),
                   mptcp_mcp=raw.get("mptcp_mcp"))


@dataclass(frozen=True)
class LanPrefixRecord:
    """One LAN /64 in wan.json: the LAN's device and name, the WAN whose delegated prefix it
    comes from, how it is announced (preferred, deprecated, retired) and since when."""

    device: str
    prefix: str
    lan: str | None = None
    wan: str | None = None
    delegated: str | None = None
    state: str | None = None
    since: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"device": self.device, "prefix": self.prefix, "lan": self.lan, "wan": self.wan,
                "delegated": self.delegated, "state": self.state, "since": self.since}

    @classmethod
    def from_json(cls, raw: Any) -> LanPrefixRecord | None:
        if not isinstance(raw, dict) or not isinstance(raw.get("device"), str) or not isinstance(raw.get("prefix"), str):
            return None
        return cls(device=raw["device"], prefix=raw["prefix"], lan=raw.get("lan"), wan=raw.get("wan"),
                   delegated=raw.get("delegated"), state=raw.get("state"), since=raw.get("since"))


@dataclass(frozen=True)
class WanState:
    """wan.json: the host, wand's policy and build, when it was written, and the WANs in the
    order of wand's config."""

    host: str | None = None
    policy: str | None = None
    build: str | None = None
    updated: str | None = None
    wans: tuple[WanRecord, ...] = ()
    lan_prefixes: tuple[LanPrefixRecord, ...] = ()

    def wan(self, name: str) -> WanRecord | None:
        return next((w for w in self.wans if w.name == name), None)

    def as_json(self) -> dict[str, Any]:
        out = {"version": WAN_STATE_VERSION, "host": self.host, "policy": self.policy, "build": self.build,
               "wans": {w.name: w.as_json() for w in self.wans},
               "lan_prefixes": [p.as_json() for p in self.lan_prefixes]}
        if self.updated is not None:
            out["updated"] = self.updated
        return out

    @classmethod
    def from_json(cls, raw: Any) -> WanState:
        raw = raw if isinstance(raw, dict) else {}
        wans = raw.get("wans") if isinstance(raw.get("wans"), dict) else {}
        lan = raw.get("lan_prefixes") if isinstance(raw.get("lan_prefixes"), list) else []
        return cls(host=raw.get("host"), policy=raw.get("policy"), build=raw.get("build"), updated=raw.get("updated"),
                   wans=tuple(WanRecord.from_json(name, w) for name, w in wans.items()),
                   lan_prefixes=tuple(p for p in map(LanPrefixRecord.from_json, lan) if p is not None))

    def stamped(self, updated: str | None) -> WanState:
        return replace(self, updated=updated)


def read_wan_state(path: Path = WAN_STATE) -> WanState | None:
    """wan.json as wand last wrote it, or None when there is none."""
    raw = read_json(path, None)
    return None if raw is None else WanState.from_json(raw)


def write_wan_state(state: WanState, path: Path = WAN_STATE) -> None:
    write_json_atomic(path, state.as_json())

