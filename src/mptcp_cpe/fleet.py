"""Fleet operations' settings, checked like every inventory value: the commit-confirmed
apply's (role cpe_rollback). Every mistake at once, each naming host, field and value."""

from __future__ import annotations

import re
from typing import Any

from .checks import Errors, InventoryError, boolean, integer, number
from .rollback import TIMEOUT_MAX, TIMEOUT_MIN  # the agent's own bounds: it refuses the same
EXPECT = re.compile(r"^([^=]+)=(up|down|any)$")
DECIMAL = re.compile(r"^[0-9]{1,6}$")


def from_command_line(value: Any) -> Any:
    """These settings are often given for one run (``-e cpe_rollback_timeout_s=120``), which
    makes them strings: a plain decimal integer or true/false is taken as what it spells.
    Anything else stays as it came, for the check to refuse."""
    if isinstance(value, str):
        if DECIMAL.match(value):
            return int(value)
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
    return value


def rollback_settings(raw: dict[str, Any], host: str, wans: list[str]) -> dict[str, Any]:
    """Role cpe_rollback's settings (its variables without the prefix), checked against the
    CPE's WAN names."""
    errors = Errors()
    raw = {k: from_command_line(v) for k, v in raw.items()}
    out = {
        "enabled": errors.check(boolean, host, "cpe_rollback_enabled", raw.get("enabled")),
        "timeout_s": errors.check(number, host, "cpe_rollback_timeout_s", raw.get("timeout_s"), TIMEOUT_MIN, TIMEOUT_MAX),
        "reconnect_timeout_s": errors.check(integer, host, "cpe_rollback_reconnect_timeout_s",
                                            raw.get("reconnect_timeout_s"), 5, 3600),
        "health_wait_s": errors.check(integer, host, "cpe_rollback_health_wait_s", raw.get("health_wait_s"), 0, 3600),
    }
    expect = raw.get("health_expect")
    if not isinstance(expect, list):
        errors.add(InventoryError(host, "cpe_rollback_health_expect", "must be a list of NAME=up|down|any", expect))
        expect = []
    names = set()
    for i, item in enumerate(expect):
        field = f"cpe_rollback_health_expect[{i}]"
        m = EXPECT.match(item) if isinstance(item, str) else None
        if m is None:
            errors.add(InventoryError(host, field, "must be NAME=up, NAME=down or NAME=any", item))
        elif m.group(1) not in wans:
            errors.add(InventoryError(host, field, f"{m.group(1)} is not a WAN of cpe_wans ({', '.join(wans) or 'none'})", item))
        elif m.group(1) in names:
            errors.add(InventoryError(host, field, f"{m.group(1)} is named twice", item))
        else:
            names.add(m.group(1))
    errors.raise_any()
    return {**out, "health_expect": list(expect)}
