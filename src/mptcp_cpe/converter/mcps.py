"""Which MCPs a LAN connection tries: mcp.json's and the static ones, and which are held back."""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from ..mcptrust import mcp_verdicts
from ..state import StateFileError, dhcp_mcps, read_json
from .config import ConverterConfig

log = logging.getLogger(__name__)

NOT_AUTHORIZED_HOLD_S = 300.0  # an MCP that refuses us will not change its mind soon
# Not Authorized may be about a destination (deny list, hairpinning) or about us (our
# prefix is not a client): this many different destinations refused in a minute means us.
REFUSALS_TO_HOLD = 3


def family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


class SharedHolds:
    """Which MCP addresses are held back, until when: shared by the workers (an anonymous
    shared mapping made before they fork), so one worker's timeout spares the others the
    wait. Slots of 16 octets of address and a CLOCK_MONOTONIC deadline; a lost race between
    two writers costs at most one more try of a dead MCP."""

    SLOT = struct.Struct("=16sd")
    SLOTS = 256

    def __init__(self) -> None:
        self.mem = mmap.mmap(-1, self.SLOT.size * self.SLOTS)

    @staticmethod
    def _key(what: str) -> bytes:
        """An address as its 16 octets; anything else (an MCP and a destination) hashed."""
        try:
            return socket.inet_pton(family(what), what).ljust(16, b"\xff")
        except OSError:
            return hashlib.sha256(what.encode()).digest()[:16]

    def _slots(self):
        for i in range(self.SLOTS):
            yield i, *self.SLOT.unpack_from(self.mem, i * self.SLOT.size)

    def get(self, address: str) -> float | None:
        key = self._key(address)
        now = time.monotonic()
        for _, k, until in self._slots():
            if k == key and until > now:
                return until
        return None

    def set(self, address: str, until: float) -> None:
        key, now = self._key(address), time.monotonic()
        free = None
        for i, k, t in self._slots():
            if k == key:
                free = i
                break
            if free is None and t <= now:
                free = i
        if free is None:  # every slot held: replace the one that frees first
            free = min(self._slots(), key=lambda slot: slot[2])[0]
        self.SLOT.pack_into(self.mem, free * self.SLOT.size, key, until)


@dataclass
class McpBook:
    """The MCP addresses to try, in order, and which ones are held back for a while."""

    cfg: ConverterConfig
    held: SharedHolds = field(default_factory=SharedHolds)
    cookies: dict[str, bytes] = field(default_factory=dict)
    refusals: dict[str, list] = field(default_factory=dict)
    local: Any = frozenset()  # the CPE's own addresses: a LocalAddresses in a worker
    _dhcp: tuple[tuple[str, ...], ...] = ()
    _stat: tuple | None = None
    _checked: float = -1.0
    _loads: int = 0  # times mcp.json was read
    _judged: tuple | None = None  # (_loads, the local addresses' generation) the verdicts are for
    _usable: tuple[str, ...] = ()
    _said: tuple | None = None  # the refusals last logged

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        self._checked = now
        try:
            st = os.stat(self.cfg.mcp_file)
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            key = None
        if key == self._stat:
            return
        self._stat = key
        try:
            state = read_json(self.cfg.mcp_file, {}) or {}
        except StateFileError as exc:
            log.warning("%s; keeping the MCPs known before", exc)
            return
        self._dhcp = dhcp_mcps(state)
        self._loads += 1
        log.info("MCPs from %s: %s", self.cfg.mcp_file, "; ".join(",".join(m) for m in self._dhcp) or "none")

    def addresses(self) -> list[str]:
        """The MCP addresses to try, in order: mcp.json's, then the static ones, without
        those `mcp_verdicts` refuses. Judged again when the file or the local addresses change;
        the refusals are logged once per change, not per connection."""
        self._refresh()
        key = (self._loads, getattr(self.local, "generation", 0))
        if key != self._judged:
            new_file = self._judged is None or key[0] != self._judged[0]
            self._judged = key
            dhcp, refused = mcp_verdicts(self._dhcp, self.cfg.mcp_prefixes, self.cfg.lan_prefixes, self.local)
            static, refused_static = mcp_verdicts(self.cfg.mcps, (), (), self.local)  # the rest was checked at load
            seen: list[str] = []
            for mcp in (*dhcp, *static):
                seen.extend(a for a in mcp if a not in seen)
            self._usable = tuple(seen)
            refused += refused_static
            if refused and (new_file or refused != self._said):
                log.warning("MCP addresses not used: %s", "; ".join(str(r) for r in refused))
            elif not refused and self._said:
                log.info("every MCP address known is used again")
            self._said = refused
        return list(self._usable)

    def usable(self, address: str) -> bool:
        return self.held.get(address) is None

    def hold(self, address: str, seconds: float, why: str) -> None:
        self.held.set(address, time.monotonic() + seconds)
        log.warning("MCP %s: %s; not used for %g s", address, why, seconds)

    def refused(self, address: str, destination: str) -> bool:
        """Not Authorized for ``destination``: that destination is not asked of this MCP for a
        while. Refusals for REFUSALS_TO_HOLD different destinations within a minute say the
        MCP refuses this CPE: True, hold the MCP itself."""
        now = time.monotonic()
        self.held.set(f"{address}|{destination}", now + NOT_AUTHORIZED_HOLD_S)
        recent = [(t, d) for t, d in self.refusals.get(address, []) if now - t < 60 and d != destination]
        recent.append((now, destination))
        self.refusals[address] = recent
        return len(recent) >= REFUSALS_TO_HOLD

    def usable_for(self, address: str, destination: str) -> bool:
        return self.usable(address) and self.held.get(f"{address}|{destination}") is None
