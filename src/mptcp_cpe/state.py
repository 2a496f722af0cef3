"""The state files under /run/mptcp-cpe and their one owner: their paths (``mcp.json``,
written by the DHCP hooks, read by the converter and ``status``; ``wan.json``, written by
wand, read by ``status``), what mcp.json's layout says (`dhcp_mcps`), and the one way they
are read and written.

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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
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


def dhcp_mcps(state: Any) -> tuple[tuple[str, ...], ...]:
    """The MCP lists of mcp.json, WANs in name order, IPv4-learned first, without repeats."""
    out: list[tuple[str, ...]] = []
    wans = state.get("wans", {}) if isinstance(state, dict) else {}
    for name in sorted(wans):
        for fam in ("v4", "v6"):
            entry = wans[name].get(fam) if isinstance(wans[name], dict) else None
            for mcp in (entry or {}).get("mcps", []) if isinstance(entry, dict) else []:
                t = tuple(str(a) for a in mcp)
                if t and t not in out:
                    out.append(t)
    return tuple(out)

