"""The operator's Kea configuration, from the inventory (role isp_dhcp).

``render(host, family, ...)`` checks the inventory's subnets, classes and MCP lists and
returns the whole kea-dhcp4 / kea-dhcp6 configuration as a dict (Ansible writes it with
``to_nice_json``). Errors name the host and the inventory field; the hook checks the same
MCP rules again in its load(), and Kea's ``-t`` checks the rest.

DHCPv6 subnets may delegate prefixes (``pd_pool``); Kea's own run_script hook then calls the
role's route script, which routes each delegated prefix to the CPE holding it.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from .checks import Errors, InventoryError, integer, ip_address, is_ifname, only_keys
from .inventory import option_code

HOOK_NAME = "libdhcp_mptcp.so"
CLASS_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
FQDN = re.compile(r"(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}\.?")
SUBNET_KEYS = {"id", "subnet", "interface", "pool", "router", "mcps"}
# v6: no router (IPv6 routers come from RAs); prefix delegation (IA_PD) is DHCPv6 only.
SUBNET6_KEYS = (SUBNET_KEYS - {"router"}) | {"pd_pool"}
PD_POOL_KEYS = frozenset({"prefix", "delegated_length"})
# A CPE numbers its LANs from the delegated prefix with SLAAC: /64 at the longest.
PD_LENGTH_MAX = 64
CLASS_KEYS = {"name", "test", "mcps"}


def mcp_lists(host: str, field: str, raw: Any, family: int) -> list[list[str]]:
    """A list of MCPs; each MCP a non-empty list of addresses, or one FQDN (resolved by the hook)."""
    if not isinstance(raw, list) or not raw:
        raise InventoryError(host, field, "must be a non-empty list of MCPs, each a list of addresses or [FQDN]", raw)
    out = []
    for i, mcp in enumerate(raw):
        where = f"{field}[{i}]"
        if not isinstance(mcp, list) or not mcp:
            raise InventoryError(host, where, "an MCP is a non-empty list of its addresses, or [FQDN]", mcp)
        if len(mcp) == 1 and isinstance(mcp[0], str) and FQDN.fullmatch(mcp[0]) and not _is_ip(mcp[0]):
            out.append([mcp[0]])
            continue
        if family == 4 and len(mcp) > 63:
            raise InventoryError(host, where, "at most 63 addresses in one DHCPv4 MCP list", len(mcp))
        addrs = []
        for j, a in enumerate(mcp):
            addr = ip_address(host, f"{where}[{j}]", a, family)
            # v6: an IPv4-mapped address names an IPv4 MCP; check the address it maps.
            check = addr.ipv4_mapped if family == 6 and addr.ipv4_mapped else addr
            if check.is_multicast or check.is_loopback or check.is_unspecified:
                raise InventoryError(host, f"{where}[{j}]", "multicast, loopback and unspecified addresses cannot be MCPs", a)
            # Written as ::ffff:a.b.c.d, as operators do (Python 3.11 would say ::ffff:cb00:7102).
            addrs.append(f"::ffff:{addr.ipv4_mapped}" if family == 6 and addr.ipv4_mapped else str(addr))
        out.append(addrs)
    return out


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


def _pool(host: str, field: str, value: Any, net) -> str:
    if not isinstance(value, str) or value.count("-") != 1:
        raise InventoryError(host, field, f"must be 'FIRST - LAST' inside {net}", value)
    first, last = (ip_address(host, field, p.strip(), net.version) for p in value.split("-"))
    if first not in net or last not in net:
        raise InventoryError(host, field, f"must lie inside the subnet {net}", value)
    if first > last:
        raise InventoryError(host, field, "its first address is after its last", value)
    return f"{first} - {last}"


def _pd_pool(host: str, field: str, value: Any) -> dict:
    """A pd_pool: {prefix, delegated_length}, CPEs each get one delegated_length piece of prefix."""
    if not isinstance(value, dict):
        raise InventoryError(host, field, "must be a mapping with prefix and delegated_length", value)
    only_keys(host, field, value, PD_POOL_KEYS)
    for key in sorted(PD_POOL_KEYS):
        if key not in value:
            raise InventoryError(host, f"{field}.{key}", "missing", show_value=False)
    try:
        if not isinstance(value["prefix"], str):
            raise ValueError
        net = ipaddress.ip_network(value["prefix"], strict=True)
    except ValueError:
        raise InventoryError(host, f"{field}.prefix", "not an IPv6 prefix (host bits must be zero)", value["prefix"]) from None
    if net.version != 6:
        raise InventoryError(host, f"{field}.prefix", "not an IPv6 prefix (host bits must be zero)", value["prefix"])
    if net.prefixlen >= PD_LENGTH_MAX:
        raise InventoryError(host, f"{field}.prefix", f"must be shorter than /{PD_LENGTH_MAX}, to hold delegated prefixes", value["prefix"])
    length = integer(host, f"{field}.delegated_length", value["delegated_length"], net.prefixlen + 1, PD_LENGTH_MAX)
    return {"prefix": net, "delegated_length": length}


def _check_pd_overlaps(host: str, field: str, subs: list[dict]) -> None:
    """A delegated prefix is routed to its CPE: it may not cover a subnet (whose clients are on
    the server's link) nor another subnet's pd_pool (two CPEs, one prefix)."""
    for i, s in enumerate(subs):
        if "pd_pool" not in s:
            continue
        pd = s["pd_pool"]["prefix"]
        where = f"{field}[{i}].pd_pool.prefix"
        for j, other in enumerate(subs):
            net = ipaddress.ip_network(other["subnet"])
            if pd.overlaps(net):
                whose = "its own subnet" if i == j else f"the subnet of {field}[{j}]"
                raise InventoryError(host, where, f"overlaps {whose} ({net})", str(pd))
        for j, other in enumerate(subs[:i]):
            if "pd_pool" in other and pd.overlaps(other["pd_pool"]["prefix"]):
                raise InventoryError(host, where, f"overlaps {field}[{j}].pd_pool.prefix ({other['pd_pool']['prefix']})", str(pd))


def subnets(host: str, field: str, raw: Any, family: int) -> list[dict]:
    if not isinstance(raw, list) or not raw:
        raise InventoryError(host, field, "must be a non-empty list of subnets", raw)
    seen_ids: dict[int, int] = {}
    seen_nets: dict[Any, int] = {}
    out = []
    for i, s in enumerate(raw):
        where = f"{field}[{i}]"
        if not isinstance(s, dict):
            raise InventoryError(host, where, "must be a mapping with id, subnet, interface, pool", s)
        if family == 4 and "pd_pool" in s:
            raise InventoryError(host, f"{where}.pd_pool", "prefix delegation is DHCPv6 only: move it to a subnet of isp_dhcp_v6_subnets", s["pd_pool"])
        only_keys(host, where, s, SUBNET_KEYS if family == 4 else SUBNET6_KEYS)
        for key in ("id", "subnet", "pool"):
            if key not in s:
                raise InventoryError(host, f"{where}.{key}", "missing", show_value=False)
        sid = integer(host, f"{where}.id", s["id"], 1, 4294967294)
        if sid in seen_ids:
            raise InventoryError(host, f"{where}.id", f"already used by {field}[{seen_ids[sid]}]", sid)
        seen_ids[sid] = i
        try:
            net = ipaddress.ip_network(s["subnet"])
        except (ValueError, TypeError):
            raise InventoryError(host, f"{where}.subnet", f"not an IPv{family} prefix", s["subnet"]) from None
        if net.version != family:
            raise InventoryError(host, f"{where}.subnet", f"not an IPv{family} prefix", s["subnet"])
        if net in seen_nets:
            raise InventoryError(host, f"{where}.subnet", f"already used by {field}[{seen_nets[net]}]", s["subnet"])
        # A client's MCPs follow its subnet: subnets inside one another would make that
        # depend on where in the wider one the address lies.
        for other, j in seen_nets.items():
            if net.overlaps(other):
                raise InventoryError(host, f"{where}.subnet", f"overlaps {field}[{j}] ({other})", s["subnet"])
        seen_nets[net] = i
        # No interface: the subnet is reached through relays (selected by the relay's address).
        if "interface" in s and not is_ifname(s["interface"]):
            raise InventoryError(host, f"{where}.interface", "not a Linux interface name", s["interface"])
        entry = {"id": sid, "subnet": str(net), "pool": _pool(host, f"{where}.pool", s["pool"], net)}
        if "interface" in s:
            entry["interface"] = s["interface"]
        if family == 4 and "router" in s:
            router = ip_address(host, f"{where}.router", s["router"], 4)
            if router not in net:
                raise InventoryError(host, f"{where}.router", f"outside the subnet {net}", s["router"])
            entry["router"] = str(router)
        if "mcps" in s:
            entry["mcps"] = mcp_lists(host, f"{where}.mcps", s["mcps"], family)
        if family == 6 and "pd_pool" in s:
            entry["pd_pool"] = _pd_pool(host, f"{where}.pd_pool", s["pd_pool"])
        out.append(entry)
    _check_pd_overlaps(host, field, out)
    return out


def classes(host: str, field: str, raw: Any, family: int) -> list[dict]:
    if raw in (None, []):
        return []
    if not isinstance(raw, list):
        raise InventoryError(host, field, "must be a list of classes", raw)
    out, seen = [], {}
    for i, c in enumerate(raw):
        where = f"{field}[{i}]"
        if not isinstance(c, dict):
            raise InventoryError(host, where, "must be a mapping with name, test, mcps", c)
        only_keys(host, where, c, CLASS_KEYS)
        for key in CLASS_KEYS:
            if key not in c:
                raise InventoryError(host, f"{where}.{key}", "missing", show_value=False)
        name = c["name"]
        if not isinstance(name, str) or not CLASS_NAME.fullmatch(name):
            raise InventoryError(host, f"{where}.name", "1-64 characters of letters, digits, _ . -", name)
        if name in seen:
            raise InventoryError(host, f"{where}.name", f"already used by {field}[{seen[name]}]", name)
        seen[name] = i
        if not isinstance(c["test"], str) or not c["test"].strip():
            raise InventoryError(host, f"{where}.test", "must be a Kea class test expression", c["test"])
        out.append({"name": name, "test": c["test"],
                    "mcps": mcp_lists(host, f"{where}.mcps", c["mcps"], family)})
    return out


def render(host: str, family: int, *, subnets_raw: Any, classes_raw: Any, mcps_raw: Any,
           option_code_raw: Any, hook_library: str, lease_file: str, socket: str,
           lease_lifetime: int = 3600, listen: Any = None, run_script_library: str | None = None,
           pd_route_script: str | None = None) -> dict:
    """The whole kea-dhcp<family> configuration for the operator's server.

    DHCPv6 with a subnet that delegates prefixes, and both ``run_script_library`` (Kea's
    libdhcp_run_script.so) and ``pd_route_script`` given: Kea runs the script at each lease
    event (the role's isp-pd-route, which routes the delegated prefixes). Either left out:
    prefixes are delegated but not routed by this server."""
    fam = f"v{family}"
    prefix = f"isp_dhcp_{fam}"
    # Every variable's own mistakes at once.
    errors = Errors()
    code = errors.check(option_code, host, f"{prefix}_option_code", option_code_raw, family)
    subs = errors.check(subnets, host, f"{prefix}_subnets", subnets_raw, family)
    cls = errors.check(classes, host, f"{prefix}_classes", classes_raw, family)
    default = errors.check(mcp_lists, host, f"{prefix}_mcps", mcps_raw, family) if mcps_raw not in (None, []) else []
    lifetime = errors.check(integer, host, "isp_dhcp_lease_lifetime", lease_lifetime, 60, 7 * 86400)
    listen = [] if listen is None else listen
    if not isinstance(listen, list) or not all(is_ifname(i) for i in listen):
        errors.add(InventoryError(host, "isp_dhcp_listen", "must be a list of interface names", listen))
    errors.raise_any()
    interfaces = sorted(set(listen) | {s["interface"] for s in subs if "interface" in s})
    if not interfaces:
        raise InventoryError(host, "isp_dhcp_listen", "no interface to serve on: give subnets an interface, or list the relay-facing ones here", listen)

    params: dict[str, Any] = {f"{fam}-option-code": code}
    fam_params: dict[str, Any] = {}
    if default:
        fam_params["mcps"] = default
    # By Kea subnet id: the hook binds each id to the subnet Kea selected for the client
    # (relayed and shared-network clients included) and refuses a config naming an unknown id.
    with_mcps = [{"id": s["id"], "mcps": s["mcps"]} for s in subs if "mcps" in s]
    if with_mcps:
        fam_params["subnets"] = with_mcps
    if cls:
        fam_params["classes"] = [{"name": c["name"], "mcps": c["mcps"]} for c in cls]
    params[fam] = fam_params

    kea_subnets = []
    for s in subs:
        sub: dict[str, Any] = {"id": s["id"], "subnet": s["subnet"], "pools": [{"pool": s["pool"]}]}
        if "interface" in s:
            sub["interface"] = s["interface"]
        if family == 4 and "router" in s:
            sub["option-data"] = [{"name": "routers", "data": s["router"]}]
        if "pd_pool" in s:
            pd = s["pd_pool"]
            sub["pd-pools"] = [{"prefix": str(pd["prefix"].network_address), "prefix-len": pd["prefix"].prefixlen,
                                "delegated-len": pd["delegated_length"]}]
        kea_subnets.append(sub)

    hooks = [{"library": hook_library, "parameters": params}]
    if family == 6 and run_script_library and pd_route_script and any("pd_pool" in s for s in subs):
        # Not sync: Kea would wait for the script on every lease (and 2.2 cannot).
        hooks.append({"library": run_script_library, "parameters": {"name": pd_route_script, "sync": False}})

    server: dict[str, Any] = {
        "interfaces-config": {"interfaces": interfaces},
        "control-socket": {"socket-type": "unix", "socket-name": socket},
        "lease-database": {"type": "memfile", "persist": True, "name": lease_file, "lfc-interval": 3600},
        "valid-lifetime": lifetime,
        "renew-timer": lifetime // 2,
        "rebind-timer": lifetime * 7 // 8,
        "hooks-libraries": hooks,
        f"subnet{family}": kea_subnets,
        "loggers": [{"name": f"kea-dhcp{family}", "output_options": [{"output": "syslog"}], "severity": "INFO"}],
    }
    if family == 6:
        server["preferred-lifetime"] = lifetime * 3 // 4
    if cls:
        server["client-classes"] = [{"name": c["name"], "test": c["test"]} for c in cls]
    return {f"Dhcp{family}": server}
