"""What the CPE roles want of an OpenWrt router's UCI, from the inventory: the wants that the
router's mptcp_cpe_uci module applies (mptcp_cpe.uci) and firmware renders.

On OpenWrt netifd runs the WANs' DHCP clients (udhcpc for proto dhcp, odhcp6c for proto
dhcpv6) from /etc/config/network; mptcp-cpe adds its option codes to each WAN interface's
``reqopts`` and gives each WAN a metric of its own, and its hooks (in /etc/udhcpc.user.d/
and /etc/odhcp6c.user.d/, which netifd's scripts source) do the rest, as on Debian.
"""

from __future__ import annotations

from typing import Any

from .checks import Errors, InventoryError
from .inventory import openwrt_interfaces, parse_wans


def network_want(host: str, wans_raw: Any, v4_code: int, v6_code: int, metric_base: int) -> list[dict[str, Any]]:
    """The network config's want for the DHCP WANs: ``reqopts`` holds the MCP option's code
    (the operator's other codes stay) and ``metric`` is base + the WAN's index + 1, as the
    Debian client scripts set it (netifd needs a distinct metric per WAN for both default
    routes to exist, and wand learns each WAN's gateway from its default route)."""
    wans = parse_wans(host, wans_raw)
    errors = Errors()
    want: list[dict[str, Any]] = []
    for i, wan in enumerate(wans):
        if wan.ipv4 != "dhcp" and wan.ipv6 != "dhcp":
            continue
        names = errors.check(openwrt_interfaces, host, i, wan)
        if names is None:
            continue
        iface, iface6 = names
        metric = str(metric_base + i + 1)
        if wan.ipv4 == "dhcp":
            want.append({"name": iface, "options": {"metric": metric}, "tokens": {"reqopts": [str(v4_code)]}})
        if wan.ipv6 == "dhcp":
            want.append({"name": iface6, "options": {"metric": metric}, "tokens": {"reqopts": [str(v6_code)]}})
    errors.raise_any()
    return want


def mwan3_conflicts(host: str, mwan3_show: str, wans_raw: Any) -> list[str]:
    """The netifd interfaces of these WANs that mwan3 manages (`uci -q show mwan3`: an
    interface section of that name with enabled 1; mwan3's default is 0). A WAN whose
    interfaces cannot be named is not looked for: nothing of mwan3 can name it either."""
    from .uci import parse_show

    mwan3 = parse_show("mwan3", mwan3_show) if mwan3_show.strip() else {}
    managed = {name for name, options in mwan3.items()
               if options.get(".type") == "interface" and options.get("enabled") in ("1", "on", "true", "yes")}
    found = []
    for i, wan in enumerate(parse_wans(host, wans_raw)):
        try:
            names = openwrt_interfaces(host, i, wan)
        except InventoryError:
            continue
        found.extend(f"{name} ({wan.name})" for name in names if name in managed)
    return found
