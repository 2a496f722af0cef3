"""What the CPE roles want of an OpenWrt router's UCI, from the inventory: the wants that the
router's mptcp_cpe_uci module applies (mptcp_cpe.uci) and firmware renders.

On OpenWrt netifd runs the WANs' DHCP clients (udhcpc for proto dhcp, odhcp6c for proto
dhcpv6) from /etc/config/network; mptcp-cpe adds its option codes to each WAN interface's
``reqopts`` and gives each WAN a metric of its own, and its hooks (in /etc/udhcpc.user.d/
and /etc/odhcp6c.user.d/, which netifd's scripts source) do the rest, as on Debian.
"""

from __future__ import annotations

import re
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


# fw4 zone names: fw4 names chains after them, and keeps them to 11 characters as fw3 did.
FW4_ZONE = re.compile(r"[A-Za-z0-9_]{1,11}")


def _zone(host: str, field: str, value: Any) -> str:
    if not isinstance(value, str) or FW4_ZONE.fullmatch(value) is None:
        raise InventoryError(host, field, "not an fw4 zone name (1-11 characters of A-Z, a-z, 0-9 and _)", value)
    return value


def firewall_want(host: str, config_raw: Any, wan_zone: Any, lan_zone: Any) -> list[dict[str, Any]]:
    """The security issue's policy as fw4 sections (the firewall config's ``want``), on top of
    the zones an OpenWrt router has: every WAN's interfaces in ``wan_zone`` (added where
    missing: its input and forward stay the operator's, REJECT by default); SSH from the
    management prefixes through it; each port forward as a DNAT redirect (IPv4) or an accept
    rule (IPv6, no translation). fw4 owns nftables' filtering on OpenWrt: a drop in any other
    table would drop what fw4 lets in, so the Debian table is not made there. What fw4 cannot
    say stays in the daemons' own tables, which fw4 never touches: the converter's input
    chain refuses connections to its listen port that it did not divert (a fib lookup, which
    fw4's rules have no option for)."""
    from . import firewall

    cfg = firewall.from_dict(config_raw, host)
    errors = Errors()
    wan_zone = errors.check(_zone, host, "cpe_firewall_openwrt_wan_zone", wan_zone)
    lan_zone = errors.check(_zone, host, "cpe_firewall_openwrt_lan_zone", lan_zone)
    networks: list[str] = []
    for i, wan in enumerate(cfg.wans):
        names = errors.check(openwrt_interfaces, host, i, wan)
        if names is not None:
            networks.extend(names if wan.ipv6 == "dhcp" else names[:1])
    for i, fw in enumerate(cfg.port_forwards):
        if fw.wans and set(fw.wans) != {w.name for w in cfg.wans}:
            errors.add(InventoryError(host, f"cpe_port_forwards[{i}] ({fw.name}).wans",
                                      "a port forward on some WANs only cannot be told to fw4, whose redirects "
                                      "name a zone (all of the WANs): leave wans out on OpenWrt", list(fw.wans)))
    errors.raise_any()

    want: list[dict[str, Any]] = [{"match": {"type": "zone", "name": wan_zone}, "items": {"network": networks}}]
    if cfg.management_prefixes:
        want.append({"name": "mptcp_cpe_ssh", "type": "rule", "options": {
            "name": "mptcp-cpe: SSH from the management prefixes", "src": wan_zone, "proto": "tcp",
            "dest_port": str(cfg.ssh_port), "src_ip": [str(p) for p in cfg.management_prefixes], "target": "ACCEPT"}})
    for fw in cfg.port_forwards:
        want.extend(_forward_sections(fw, wan_zone, lan_zone))
    return want


def _forward_sections(fw: Any, wan_zone: str, lan_zone: str) -> list[dict[str, Any]]:
    """One port forward as fw4 sections: a DNAT redirect for IPv4 (a range shifted to other
    ports is one redirect per port: fw4, like nftables, has no offset form), an accept rule
    for IPv6."""
    from .firewall import _ports

    base = "mptcp_cpe_fwd_" + fw.name.replace("-", "_")
    common = {"name": f"mptcp-cpe: port forward {fw.name}", "src": wan_zone, "dest": lan_zone, "proto": fw.proto}
    if fw.to.version == 6:
        return [{"name": base, "type": "rule", "options": {
            **common, "family": "ipv6", "dest_ip": str(fw.to), "dest_port": _ports(fw.ports), "target": "ACCEPT"}}]
    redirect = {**common, "family": "ipv4", "dest_ip": str(fw.to), "target": "DNAT"}
    if fw.to_ports == fw.ports:
        return [{"name": base, "type": "redirect", "options": {**redirect, "src_dport": _ports(fw.ports)}}]
    if fw.ports[0] == fw.ports[1]:
        return [{"name": base, "type": "redirect", "options": {
            **redirect, "src_dport": str(fw.ports[0]), "dest_port": str(fw.to_ports[0])}}]
    return [{"name": f"{base}_{p}", "type": "redirect", "options": {
        **redirect, "src_dport": str(p), "dest_port": str(fw.to_ports[0] + p - fw.ports[0])}}
            for p in range(fw.ports[0], fw.ports[1] + 1)]


# ---------------------------------------------------------------- firmware

# An OpenWrt release as the inventory names it: 24.10, 24.10.4, 25.12.0-rc1, SNAPSHOT.
RELEASE = re.compile(r"(?P<major>[0-9]{2})\.(?P<minor>[0-9]{2})(?:\.[0-9]+)?(?:-rc[0-9]+)?|SNAPSHOT")
PROFILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_,.+-]*")
# The first release whose package manager is apk (opkg before it).
APK_SINCE = (25, 0)


def image_settings(host: str, raw: Any) -> dict[str, Any]:
    """An OpenWrt device's firmware settings (role cpe_firmware's ``cpe_firmware_openwrt_*``):
    the release (which says opkg or apk), the ImageBuilder profile, and the unpacked
    ImageBuilder, if any. Every mistake at once."""
    errors = Errors()
    release = raw.get("release")
    m = RELEASE.fullmatch(release) if isinstance(release, str) else None
    if m is None:
        errors.add(InventoryError(host, "cpe_firmware_openwrt_release",
                                  "not an OpenWrt release (24.10, 24.10.4, 25.12.0-rc1 or SNAPSHOT)", release))
    elif m.group("major") and (int(m.group("major")), int(m.group("minor"))) < (23, 5):
        errors.add(InventoryError(host, "cpe_firmware_openwrt_release",
                                  "before 23.05 netifd's scripts read no /etc/udhcpc.user.d or /etc/odhcp6c.user.d", release))
    profile = raw.get("profile")
    if not isinstance(profile, str) or PROFILE.fullmatch(profile) is None:
        errors.add(InventoryError(host, "cpe_firmware_openwrt_profile",
                                  "not an ImageBuilder profile name (`make info` lists them, e.g. generic)", profile))
    builder = raw.get("imagebuilder_dir") or ""
    if not isinstance(builder, str) or (builder and not builder.startswith("/")):
        errors.add(InventoryError(host, "cpe_firmware_openwrt_imagebuilder_dir",
                                  "must be an absolute path to an unpacked ImageBuilder, or empty", builder))
    errors.raise_any()
    apk = m.group("major") is None or (int(m.group("major")), int(m.group("minor"))) >= APK_SINCE
    return {"release": release, "profile": profile, "imagebuilder_dir": builder,
            "package_manager": "apk" if apk else "opkg"}


def make_image(settings: dict[str, Any], packages: list[str], files_dir: str, bin_dir: str) -> dict[str, Any]:
    """ImageBuilder's `make image` for the device: its profile, the packages (names
    ImageBuilder installs from its feeds), the FILES overlay and where the images go. ``argv``
    runs it in the named ImageBuilder; ``shell`` is the same command as an operator types it
    inside one (a value with spaces in double quotes)."""
    args = ["image", f"PROFILE={settings['profile']}", f"PACKAGES={' '.join(packages)}", f"FILES={files_dir}",
            f"BIN_DIR={bin_dir}"]
    words = [a if " " not in a else '{}="{}"'.format(*a.split("=", 1)) for a in args]
    return {"argv": ["make", "-C", settings["imagebuilder_dir"], *args], "shell": " ".join(["make", *words])}
