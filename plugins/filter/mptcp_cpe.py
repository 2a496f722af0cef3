"""Filters the roles use to check inventories and read kernel state.

The checks themselves live in the ``mptcp_cpe`` package (one checker for roles, lab and
daemons); this file only adapts them to Ansible: errors become AnsibleFilterError with
the host, the field and the value in the message, a line per mistake, and
``mptcp_cpe_problems`` returns those lines instead, for a fail task to show.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import sys
from pathlib import Path

from ansible.errors import AnsibleFilterError

try:
    from mptcp_cpe import buffers, checks, converter, firewall, firmware, fleet, inventory, kea, landhcp, mcp, openwrt, uci
    from mptcp_cpe.host import config as host_config
    from mptcp_cpe.wand import config as wand_config
except ImportError:  # ansible run from a virtualenv without the package: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from mptcp_cpe import buffers, checks, converter, firewall, firmware, fleet, inventory, kea, landhcp, mcp, openwrt, uci
    from mptcp_cpe.host import config as host_config
    from mptcp_cpe.wand import config as wand_config

# The kernel's in-kernel path manager refuses limits above this (MPTCP_PM_ADDR_MAX).
MPTCP_LIMIT_MAX = 8


class CheckFailed(AnsibleFilterError):
    """The mistakes a check found, one line each (``lines``): ``<host>: <field>: <problem> (got <value>)``."""

    def __init__(self, lines):
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


def _checked(fn, *args):
    try:
        return fn(*args)
    except checks.InventoryError as exc:
        raise CheckFailed(str(e) for e in checks.error_list(exc)) from None


def problems(name, *args, **kwargs):
    """Every mistake the check filter ``name`` finds in its arguments, one line each (none:
    the data is right), where the filter itself would fail at the first:
    ``'mptcp_cpe_wans' | mptcp_cpe_problems(cpe_wans, inventory_hostname)``. The roles' check
    tasks gather them and a fail task shows them all, a line each, without the text Ansible
    wraps around a failed filter."""
    if name not in CHECKS:
        raise AnsibleFilterError(f"mptcp_cpe_problems: {name!r} is not one of the checks ({', '.join(sorted(CHECKS))})")
    try:
        FilterModule().filters()[name](*args, **kwargs)
    except CheckFailed as exc:
        return exc.lines
    return []


def cpe_wans(wans, host):
    """The host's WAN list, checked and normalised (static addresses as strings)."""
    return [w.as_dict() for w in _checked(inventory.parse_wans, host, wans)]


def openwrt_network(wans, host, v4_code, v6_code, metric_base):
    """The UCI network want (module mptcp_cpe_uci) of an OpenWrt CPE's DHCP WANs."""
    return _checked(openwrt.network_want, host, wans, int(v4_code), int(v6_code), int(metric_base))


def mwan3_conflicts(mwan3_show, wans, host):
    """The WAN interfaces an OpenWrt CPE's mwan3 manages (`uci -q show mwan3` output), each
    as '<interface> (<WAN name>)'; [] when mwan3 manages none of them (or is not there)."""
    try:
        return _checked(openwrt.mwan3_conflicts, host, mwan3_show, wans)
    except ValueError as exc:
        raise AnsibleFilterError(f"{host}: /etc/config/mwan3: {exc}") from None


def openwrt_firewall(config, host, wan_zone, lan_zone):
    """The fw4 want (module mptcp_cpe_uci, config firewall) of an OpenWrt CPE's firewall
    config (``mptcp_cpe_firewall_config``'s)."""
    return _checked(openwrt.firewall_want, host, config, wan_zone, lan_zone)


def openwrt_image_settings(raw, host):
    """An OpenWrt device's firmware settings (role cpe_firmware), checked."""
    return _checked(openwrt.image_settings, host, raw)


def openwrt_make(settings, packages, files_dir, bin_dir):
    """ImageBuilder's `make image` for an OpenWrt device: {argv, shell}."""
    return openwrt.make_image(settings, list(packages), files_dir, bin_dir)


def uci_defaults(config, want, header=""):
    """An /etc/uci-defaults script applying a UCI want at the first boot (mptcp_cpe.uci)."""
    try:
        return uci.defaults_script(config, want, header)
    except uci.UciError as exc:
        raise AnsibleFilterError(str(exc)) from None


def cpe_platform(distribution, host):
    """'Debian' or 'OpenWrt' from the distribution fact; anything else is an error naming it."""
    return _checked(inventory.platform, host, distribution)


def option_code(value, family, host, field):
    """A DHCP option code (family 4 or 6) from the inventory, checked."""
    return _checked(inventory.option_code, host, field, value, int(family))


def kea_config(host, family, subnets, classes, mcps, code, hook_library, lease_file, socket,
               lease_lifetime=3600, listen=None, run_script_library=None, pd_route_script=None):
    """The operator's kea-dhcp4/kea-dhcp6 configuration, from the inventory (checked); with
    run_script_library and pd_route_script, DHCPv6 routes the prefixes it delegates."""
    return _checked(lambda: kea.render(
        host, int(family), subnets_raw=subnets, classes_raw=classes, mcps_raw=mcps, option_code_raw=code,
        hook_library=hook_library, lease_file=lease_file, socket=socket, lease_lifetime=lease_lifetime,
        listen=listen, run_script_library=run_script_library, pd_route_script=pd_route_script))


def lan_dhcp_config(role_settings, host, lans, wans):
    """The CPE's LAN Kea (role cpe_lan_dhcp): ``{"text": the kea-dhcp4 configuration as Kea
    reads it, "wans": the WANs whose "up" files it includes, "state_dir": where they are}``.
    ``role_settings``: the role's variables without their prefix."""
    def render():
        cfg = landhcp.settings(host, role_settings)
        served, _ = landhcp.served_lans(host, lans, wans)
        conf = landhcp.config(host, served, cfg)
        return {"text": landhcp.text(conf), "wans": landhcp.wan_states(served), "state_dir": str(cfg.state_dir),
                "up_text": landhcp.up_text(True)}
    return _checked(render)


def wand_config_for(wans, host, **settings):
    """wand's config (``mptcp-cpe wand --config``) for the host's WANs, checked by the
    daemon's own loader: what the role renders is exactly what wand will accept."""
    raw = {**settings, "host": host, "wans": wans}
    return _checked(lambda: wand_config.from_dict(raw, host).as_dict())


def _plain(value):
    """A daemon's loaded config as JSON data: dataclasses as objects, tuples as lists, paths,
    addresses and prefixes as their text (what the daemon's loader reads back unchanged)."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, (Path, ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return str(value)
    return value


def _role_error(exc, prefix, keys):
    """A daemon's config error, told in the role's terms: a field that is one of the config's
    keys is named as the variable an operator sets (``bypass.ports[0]`` is
    ``cpe_converter_bypass.ports[0]``), and so are the keys the problem mentions."""
    return CheckFailed(_role_line(e, prefix, keys) for e in checks.error_list(exc))


def _role_line(exc, prefix, keys):
    head = re.match(r"[a-z_]+", exc.field)
    if head is None or head.group(0) not in keys:
        return str(exc)
    # Only the keys with an underscore: plain words (host, port, listen) are also English.
    named = "|".join(sorted((k for k in keys if "_" in k), key=len, reverse=True))
    problem = re.sub(rf"\b({named})\b", lambda m: prefix + m.group(1), exc.problem)
    got = str(exc)[len(f"{exc.host}: {exc.field}: {exc.problem}"):]
    return f"{exc.host}: {prefix}{exc.field}: {problem}{got}"


def converter_config(role_settings, host, wans=None):
    """The converter's config (``mptcp-cpe converter --config``) from the role cpe_converter's
    settings (by the config's own keys), loaded by the daemon's own loader: what the role
    renders is what the converter will accept. With the CPE's WANs, a LAN interface that is
    a WAN's device is refused too (the converter would intercept the internet's connections)."""
    errors = checks.Errors()
    cfg = errors.check(converter.from_dict, {**role_settings, "host": host}, host)
    checked_wans = errors.check(inventory.parse_wans, host, wans, default=()) if wans else ()
    for wan in checked_wans if cfg else ():
        if wan.device in cfg.lan_interfaces:
            errors.add(checks.ConfigError(
                host, f"lan_interfaces[{cfg.lan_interfaces.index(wan.device)}]",
                f"is the device of WAN {wan.name}: the converter would intercept connections from the internet",
                wan.device))
    try:
        errors.raise_any()
    except checks.InventoryError as exc:
        raise _role_error(exc, "cpe_converter_", converter.TOP_KEYS) from None
    return _plain(cfg)


def mptcp_buffers(wans, host):
    """The MPTCP buffers in octets the CPE with these WANs needs (``mptcp_cpe.buffers``):
    ``download``, the converter's receive buffer; ``upload``, what the receiver of its uploads
    (the MCP) needs; ``declared``, whether a WAN declared its line. The WANs are checked by the
    inventory's WAN checker. No WANs: the fixed 4 MiB, as when none declares its line."""
    if wans is None or wans == []:
        return buffers.Buffers(buffers.FIXED, buffers.FIXED, False).as_dict()
    return _checked(lambda: buffers.mptcp_buffers(inventory.parse_wans(host, wans)).as_dict())


def lan_prefixes(lans, host):
    """Every prefix of the host's LANs (``cpe_lans``, checked by the inventory's LAN checker),
    as text: what the converter must never take for an MCP's place. No LANs: none."""
    if lans is None or lans == []:
        return []
    return [str(net) for lan in _checked(inventory.parse_lans, host, lans) for net in lan.prefixes]


def mcp_config(role_settings, host):
    """The MCP's config (``mptcp-cpe mcp --config``) from the role mcp_converter's settings,
    loaded by the daemon's own loader."""
    try:
        return _plain(mcp.from_dict({**role_settings, "host": host}, host))
    except checks.InventoryError as exc:
        raise _role_error(exc, "mcp_converter_", mcp.TOP_KEYS) from None


def host_config_for(role_settings, host):
    """The LAN host's config (``mptcp-cpe host --config``) from the role mptcp_host's settings
    (by the config's own keys), loaded by the daemon's own loader."""
    try:
        return host_config.from_dict({**role_settings, "host": host}, host).as_dict()
    except checks.InventoryError as exc:
        raise _role_error(exc, "mptcp_host_", host_config.TOP_KEYS) from None


# The firewall's inputs that are the inventory's shared data: errors name the inventory's
# variable (cpe_port_forwards[0] (web).to), the one an operator edits.
FIREWALL_SHARED = {"wans": "cpe_wans", "lans": "cpe_lans", "management_prefixes": "cpe_management_prefixes",
                   "port_forwards": "cpe_port_forwards"}


def firewall_config(role_settings, host):
    """The firewall's config (``mptcp-cpe firewall --config``) from the role cpe_firewall's
    settings (by the config's own keys), loaded by the firewall's own loader: what the role
    renders is what ``mptcp-cpe firewall --check`` accepts."""
    try:
        return firewall.from_dict({**role_settings, "host": host}, host, names=FIREWALL_SHARED).as_dict()
    except checks.InventoryError as exc:
        raise _role_error(exc, "cpe_firewall_", firewall.TOP_KEYS - set(FIREWALL_SHARED)) from None


def firewall_management_path(ssh_connection, host, config, route=None):
    """Refuse a firewall config (``mptcp_cpe_firewall_config``'s) that would cut the SSH
    session this Ansible run uses: ``ssh_connection`` is its SSH_CONNECTION (empty: not over
    SSH), ``route`` what ``ip -j route get <client>`` says on the router (JSON text or data).
    Returns the config unchanged."""
    if isinstance(route, str):
        route = json.loads(route) if route.strip() else []
    dev = (route or [{}])[0].get("dev") if isinstance(route, list) else None
    _checked(firewall.check_management_path, host, ssh_connection, config["management_prefixes"],
             config["ssh_port"], config["trusted_interfaces"], dev,
             "cpe_firewall_management_prefixes", "cpe_firewall_ssh_port")
    return config


# net.ipv4.tcp_fastopen: the bit each side of RFC 8803 needs for the Convert message to ride in the SYN.
FASTOPEN_BITS = {1: "client", 2: "server"}
FASTOPEN_KEY = "net.ipv4.tcp_fastopen"


def converter_sysctls(fastopen, host, variable, bit, base_extra=None):
    """The sysctls a converter needs: MPTCP on, and TCP Fast Open with its side's bit.
    ``base_extra`` (a CPE's cpe_base_extra_sysctls) must not set Fast Open to another value:
    the two roles would set it back and forth on every run."""
    if isinstance(fastopen, str) and fastopen.isdigit():
        fastopen = int(fastopen)  # as sysctl files and cpe_base_extra_sysctls may write it

    def check():
        value = checks.integer(host, variable, fastopen, 0, 0xFFFF)
        if not value & bit:
            raise checks.ConfigError(host, variable, f"must include the {FASTOPEN_BITS[bit]} bit ({bit})", value)
        theirs = (base_extra or {}).get(FASTOPEN_KEY)
        if theirs is not None and _sysctl_text(theirs).strip() != str(value):
            raise checks.ConfigError(
                host, variable, f"differs from cpe_base_extra_sysctls['{FASTOPEN_KEY}'] ({_sysctl_text(theirs)}): "
                "cpe_base and this role would set it back and forth", value)
        return {"net.mptcp.enabled": "1", FASTOPEN_KEY: str(value)}

    return _checked(check)


def _sysctl_text(value) -> str:
    # true/false in YAML are 1/0 to sysctl, not "True"/"False".
    return str(int(value) if isinstance(value, bool) else value)


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
        if wan["ipv6"] == "slaac":
            # A router (forwarding=1) ignores router advertisements unless accept_ra is 2.
            # (A dhcp WAN's RAs are dhcpcd's: it reads them itself and turns the kernel's off.)
            sysctls[sysctl_key(wan["device"], "accept_ra", "ipv6")] = "2"
    for key, value in (extra or {}).items():
        sysctls[str(key)] = _sysctl_text(value)
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


def firmware_settings(role_settings, host):
    """Role cpe_firmware's settings (by firmware.FIELDS' keys), checked; every mistake at once."""
    return dataclasses.asdict(_checked(firmware.settings, host, role_settings))


def _firmware(settings):
    """firmware.Settings from mptcp_cpe_firmware_settings' dict (lists back to tuples)."""
    return firmware.Settings(**{**settings, **{k: tuple(settings[k]) for k in ("packages_extra", "prune_extra", "nics")}})


def firmware_packages(listed, settings):
    """The firmware base's package list: firmware/debian/packages' text, the device's kernel
    and its extra packages (settings: mptcp_cpe_firmware_settings')."""
    return firmware.base_packages(listed, _firmware(settings))


def firmware_prune(listed, settings):
    """The base's dpkg path-exclude file: firmware/debian/prune's text and the device's extra patterns."""
    return firmware.prune_options(listed, _firmware(settings))


def firmware_groups(hostvars, hosts):
    """Which device's build each of hosts shares (host -> its group's first host): equal
    cpe_* variables but for the identity ones (firmware.role_groups)."""
    inputs = {}
    for host in hosts:
        own = hostvars[host]
        inputs[host] = {name: own[name] for name in own.keys() if name.startswith("cpe_")}
    return firmware.role_groups(inputs)


def config_file(config, image=False):
    """A daemon's config as the role writes it on the CPE. In an image (mptcp_cpe_image), without
    the device's name: the devices of one build share the file, and each daemon names itself
    by the router's hostname, which firmware.yml gives each image (/etc/hostname)."""
    if not image:
        return config
    return {k: v for k, v in config.items() if k != "host"}


def rollback_settings(role_settings, host, wans):
    """Role cpe_rollback's settings, checked against the CPE's WAN names; every mistake at once."""
    return _checked(fleet.rollback_settings, dict(role_settings), host, list(wans))


def firmware_lan_unit(lans, host):
    """The unit that gives the image's LANs the CPE's addresses ("" without LANs)."""
    return _checked(firmware.lan_unit, host, lans)


def firmware_device(hostvars):
    """The inventory data that goes into a device's manifest (the cpe_* variables, secrets
    and vault-encrypted values left out)."""
    return firmware.device_data(dict(hostvars))


# The filters that check inventory data, which mptcp_cpe_problems runs.
CHECKS = frozenset({"mptcp_cpe_wans", "mptcp_cpe_lan_dhcp_config", "mptcp_cpe_option_code", "mptcp_cpe_kea_config", "mptcp_cpe_wand_config",
                    "mptcp_cpe_converter_config", "mptcp_cpe_lan_prefixes", "mptcp_cpe_mptcp_buffers", "mptcp_cpe_mcp_config",
                    "mptcp_cpe_converter_sysctls", "mptcp_cpe_firewall_config", "mptcp_cpe_host_config", "mptcp_cpe_firmware_settings",
                    "mptcp_cpe_openwrt_image_settings", "mptcp_cpe_rollback_settings"})


class FilterModule:
    def filters(self):
        return {
            "mptcp_cpe_wans": cpe_wans,
            "mptcp_cpe_platform": cpe_platform,
            "mptcp_cpe_openwrt_network": openwrt_network,
            "mptcp_cpe_mwan3_conflicts": mwan3_conflicts,
            "mptcp_cpe_openwrt_firewall": openwrt_firewall,
            "mptcp_cpe_openwrt_image_settings": openwrt_image_settings,
            "mptcp_cpe_openwrt_make": openwrt_make,
            "mptcp_cpe_uci_defaults": uci_defaults,
            "mptcp_cpe_option_code": option_code,
            "mptcp_cpe_kea_config": kea_config,
            "mptcp_cpe_base_sysctls": cpe_base_sysctls,
            "mptcp_cpe_sysctl_drift": sysctl_drift,
            "mptcp_cpe_limits": mptcp_limits,
            "mptcp_cpe_limits_for": mptcp_limits_for,
            "mptcp_cpe_wand_config": wand_config_for,
            "mptcp_cpe_lan_dhcp_config": lan_dhcp_config,
            "mptcp_cpe_converter_config": converter_config,
            "mptcp_cpe_lan_prefixes": lan_prefixes,
            "mptcp_cpe_mptcp_buffers": mptcp_buffers,
            "mptcp_cpe_mcp_config": mcp_config,
            "mptcp_cpe_host_config": host_config_for,
            "mptcp_cpe_converter_sysctls": converter_sysctls,
            "mptcp_cpe_firewall_config": firewall_config,
            "mptcp_cpe_firewall_management_path": firewall_management_path,
            "mptcp_cpe_firmware_settings": firmware_settings,
            "mptcp_cpe_firmware_packages": firmware_packages,
            "mptcp_cpe_firmware_prune": firmware_prune,
            "mptcp_cpe_firmware_device": firmware_device,
            "mptcp_cpe_firmware_groups": firmware_groups,
            "mptcp_cpe_config_file": config_file,
            "mptcp_cpe_firmware_lan_unit": firmware_lan_unit,
            "mptcp_cpe_rollback_settings": rollback_settings,
            "mptcp_cpe_problems": problems,
        }
