"""Filters the roles use to check inventories and read kernel state.

The checks themselves live in the ``mptcp_cpe`` package (one checker for roles, lab and
daemons); this file only adapts them to Ansible: errors become AnsibleFilterError with
the host, the field and the value in the message.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ansible.errors import AnsibleFilterError

try:
    from mptcp_cpe import inventory, kea
    from mptcp_cpe.wand import config as wand_config
except ImportError:  # ansible run from a virtualenv without the package: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from mptcp_cpe import inventory, kea
    from mptcp_cpe.wand import config as wand_config

# The kernel's in-kernel path manager refuses limits above this (MPTCP_PM_ADDR_MAX).
MPTCP_LIMIT_MAX = 8


def _checked(fn, *args):
    try:
        return fn(*args)
    except inventory.InventoryError as exc:
        raise AnsibleFilterError(str(exc)) from None


def cpe_wans(wans, host):
    """The host's WAN list, checked and normalised (static addresses as strings)."""
    return [w.as_dict() for w in _checked(inventory.parse_wans, host, wans)]


def cpe_platform(distribution, host):
    """'Debian' or 'OpenWrt' from the distribution fact; anything else is an error naming it."""
    return _checked(inventory.platform, host, distribution)


def option_code(value, family, host, field):
    """A DHCP option code (family 4 or 6) from the inventory, checked."""
    return _checked(inventory.option_code, host, field, value, int(family))


def kea_config(host, family, subnets, classes, mcps, code, hook_library, lease_file, socket,
               lease_lifetime=3600, listen=None):
    """The operator's kea-dhcp4/kea-dhcp6 configuration, from the inventory (checked)."""
    return _checked(lambda: kea.render(
        host, int(family), subnets_raw=subnets, classes_raw=classes, mcps_raw=mcps, option_code_raw=code,
        hook_library=hook_library, lease_file=lease_file, socket=socket, lease_lifetime=lease_lifetime,
        listen=listen))


def wand_config_for(wans, host, **settings):
    """wand's config (``mptcp-cpe wand --config``) for the host's WANs, checked by the
    daemon's own loader: what the role renders is exactly what wand will accept."""
    raw = {**settings, "host": host, "wans": wans}
    return _checked(lambda: wand_config.from_dict(raw, host).as_dict())


def sysctl_key(device: str, leaf: str, family: str = "ipv4") -> str:
    # A dot in a device name (VLAN eth0.100) is written as a slash in a sysctl key.
    return f"net.{family}.conf.{device.replace('.', '/')}.{leaf}"


def cpe_base_sysctls(wans, extra=None):
    """The sysctls a CPE needs for its (checked) WANs, plus the operator's extra ones."""
    sysctls = {
        "net.mptcp.enabled": "1",
        "net.ipv4.ip_forward": "1",
        "net.ipv6.conf.all.forwarding": "1",
    }
    for wan in wans:
        # Loose reverse-path filtering: a reply may arrive on another WAN than its request left by.
        sysctls[sysctl_key(wan["device"], "rp_filter")] = "2"
        if wan["ipv6"] in ("dhcp", "slaac"):
            # A router (forwarding=1) ignores router advertisements unless accept_ra is 2.
            sysctls[sysctl_key(wan["device"], "accept_ra", "ipv6")] = "2"
    for key, value in (extra or {}).items():
        sysctls[str(key)] = str(int(value) if isinstance(value, bool) else value)
    return sysctls


def sysctl_drift(desired, current_lines):
    """``key=value`` for each desired sysctl whose value in force (``sysctl -n`` lines, same order) differs."""
    current = list(current_lines)
    if len(current) != len(desired):
        raise AnsibleFilterError(f"sysctl -n returned {len(current)} values for {len(desired)} keys")
    # sysctl prints multi-valued keys with tabs; the config form uses single spaces.
    return [f"{k}={v}" for (k, v), now in zip(desired.items(), current) if " ".join(str(v).split()) != " ".join(now.split())]


def mptcp_limits(text):
    """Parse ``ip mptcp limits show`` ("add_addr_accepted 0 subflows 2") into a dict of ints."""
    words = text.split()
    if len(words) % 2 or not words:
        raise AnsibleFilterError(f"cannot read MPTCP limits from {text!r}")
    try:
        return {k: int(v) for k, v in zip(words[::2], words[1::2])}
    except ValueError:
        raise AnsibleFilterError(f"cannot read MPTCP limits from {text!r}") from None


def mptcp_limits_for(wans):
    """Limits sized to the WANs: one subflow and one accepted address per WAN, within the kernel's maximum."""
    n = min(len(wans), MPTCP_LIMIT_MAX)
    return {"add_addr_accepted": n, "subflows": n}


class FilterModule:
    def filters(self):
        return {
            "mptcp_cpe_wans": cpe_wans,
            "mptcp_cpe_platform": cpe_platform,
            "mptcp_cpe_option_code": option_code,
            "mptcp_cpe_kea_config": kea_config,
            "mptcp_cpe_base_sysctls": cpe_base_sysctls,
            "mptcp_cpe_sysctl_drift": sysctl_drift,
            "mptcp_cpe_limits": mptcp_limits,
            "mptcp_cpe_limits_for": mptcp_limits_for,
            "mptcp_cpe_wand_config": wand_config_for,
        }
