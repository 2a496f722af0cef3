#!/usr/bin/env python3
"""The container lab: hosts of an inventory as systemd containers, cabled as it says.

Every host of the inventory is a container of the lab image with no docker network at
all (``--network none``). Each network of ``lab_networks`` is a bridge inside a network
namespace of its own (a "switch"), and each ``lab_links`` entry of a host is a veth pair
from that switch into the container, named as the link's ``device``. So the host machine
has no address on any lab network (it is nobody's gateway), docker hands out no address a
DHCP client would have to fight, and several copies of the same address plan (the lab,
each Molecule scenario) live side by side under different prefixes.

A link with no ``network`` is a veth to nowhere: a LAN with nobody on it (the CPEs of
inventories/fleet). An inventory with ``lab_controller`` is managed over the network, as
operators manage routers: the controller gets a namespace of its own cabled into that
network (its ssh runs there, through ``nc``), every host's root account accepts the lab's
own SSH key (made once, under ``/var/lib/mptcp-cpe-lab/<prefix>``), and a host whose
``lab_management`` is ``ssh`` is reached at its ``ansible_host``, one of its lab addresses.
A change that breaks that path on the router then really cuts Ansible off.

    labctl.py up      [--inventory DIR] [--prefix P] [--hosts a,b] [--image HOST=IMAGE] [--json]
    labctl.py down    [--prefix P]
    labctl.py status  [--prefix P]
    labctl.py summary [--inventory DIR] [--prefix P]
    labctl.py image
    labctl.py ssh-key [--prefix P]   (the private key's path)
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP / "src"))

from mptcp_cpe.checks import InventoryError, is_ifname  # noqa: E402
from mptcp_cpe.state import MCP_STATE, delegated_prefixes, learned_mcps  # noqa: E402

DEFAULT_PREFIX = "mptcp-lab"
DEFAULT_INVENTORY = TOP / "inventories" / "lab"
LABEL = "mptcp-cpe.lab"
SWITCH_BRIDGE = "br0"
# Per host, once the containers are started: twenty booting at once on two cores need more
# than one alone (MPTCP_LAB_BOOT_TIMEOUT_S).
SYSTEMD_TIMEOUT_S = float(os.environ.get("MPTCP_LAB_BOOT_TIMEOUT_S", "180"))
KEY_DIR = Path("/var/lib/mptcp-cpe-lab")
CONTROLLER_DEVICE = "ctl0"

# What a systemd container needs here, and no more: --privileged fails on these machines.
# systempaths=unconfined leaves /proc/sys writable, so roles set the (per-netns) net.*
# sysctls exactly as on a real router.
CONTAINER_ARGS = [
    "--network", "none",
    "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW", "--cap-add", "SYS_ADMIN",
    "--security-opt", "systempaths=unconfined",
    "--cgroupns", "host",
    "--tmpfs", "/run", "--tmpfs", "/run/lock",
    "--volume", "/sys/fs/cgroup:/sys/fs/cgroup:ro",
    "--stop-signal", "SIGRTMIN+3",
]


class LabError(RuntimeError):
    pass


def run(*cmd: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, text=True, capture_output=capture)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(cmd)}: exit {proc.returncode}: {(proc.stderr or '').strip()}")
    return proc


# ---------------------------------------------------------------------------- the model

@dataclass(frozen=True)
class Network:
    name: str
    ipv4: ipaddress.IPv4Network
    ipv6: ipaddress.IPv6Network | None


@dataclass(frozen=True)
class Link:
    network: str | None  # None: a veth to nowhere, cabled to nothing
    device: str
    ipv4: ipaddress.IPv4Interface | None  # None: the host gets it by DHCP, or has none
    ipv6: ipaddress.IPv6Interface | None
    ipv4_gateway: ipaddress.IPv4Address | None
    ipv6_gateway: ipaddress.IPv6Address | None


@dataclass
class Host:
    name: str
    links: list[Link] = field(default_factory=list)
    forwarding: bool = False
    ssh_address: str | None = None  # managed over SSH at this address (lab_management: ssh)


@dataclass(frozen=True)
class Controller:
    """Where Ansible sits on a network-managed lab: one link, as a host's."""

    link: Link


def parse_networks(host: str, raw: Any) -> dict[str, Network]:
    if not isinstance(raw, dict) or not raw:
        raise InventoryError(host, "lab_networks", "must be a mapping of network name to its ipv4 (and ipv6) prefix", raw)
    nets = {}
    for name, spec in raw.items():
        where = f"lab_networks.{name}"
        if not isinstance(spec, dict) or "ipv4" not in spec:
            raise InventoryError(host, where, "must be a mapping with ipv4 (and optionally ipv6) prefixes", spec)
        try:
            v4 = ipaddress.IPv4Network(spec["ipv4"])
        except ValueError:
            raise InventoryError(host, f"{where}.ipv4", "not an IPv4 prefix", spec["ipv4"]) from None
        v6 = None
        if spec.get("ipv6") is not None:
            try:
                v6 = ipaddress.IPv6Network(spec["ipv6"])
            except ValueError:
                raise InventoryError(host, f"{where}.ipv6", "not an IPv6 prefix", spec["ipv6"]) from None
        nets[name] = Network(name, v4, v6)
    return nets


def _address(host, where, value, net, version):
    if value in (None, "dhcp", "none"):
        return None
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        raise InventoryError(host, where, f"not an IPv{version} address with prefix length, nor dhcp", value) from None
    if iface.version != version:
        raise InventoryError(host, where, f"not an IPv{version} address with prefix length, nor dhcp", value)
    if net is not None and iface.network != net:
        raise InventoryError(host, where, f"must lie in the network's prefix {net}", value)
    if net is None and iface.network.prefixlen == iface.max_prefixlen:
        raise InventoryError(host, where, "an unconnected link's address needs the prefix it stands for", value)
    return iface


def _gateway(host, where, value, net, version):
    if value is None:
        return None
    try:
        gw = ipaddress.ip_address(value)
    except ValueError:
        raise InventoryError(host, where, f"not an IPv{version} address", value) from None
    if net is None:
        raise InventoryError(host, where, "a link with no network has no gateway", value)
    if gw.version != version or gw not in net:
        raise InventoryError(host, where, f"must lie in the network's prefix {net}", value)
    return gw


def parse_host(name: str, hostvars: dict, nets: dict[str, Network]) -> Host:
    raw = hostvars.get("lab_links", [])
    if not isinstance(raw, list):
        raise InventoryError(name, "lab_links", "must be a list of links", raw)
    host = Host(name, forwarding=bool(hostvars.get("lab_forwarding", False)))
    devices: set[str] = set()
    for i, link in enumerate(raw):
        where = f"lab_links[{i}]"
        parsed = parse_link(name, where, link, nets)
        if parsed.device in devices:
            raise InventoryError(name, f"{where}.device", "used twice on this host", parsed.device)
        devices.add(parsed.device)
        host.links.append(parsed)
    management = hostvars.get("lab_management", "docker")
    if management not in ("docker", "ssh"):
        raise InventoryError(name, "lab_management", "must be docker or ssh", management)
    if management == "ssh":
        address = hostvars.get("ansible_host")
        mine = {str(a.ip) for lk in host.links for a in (lk.ipv4, lk.ipv6) if a is not None}
        if address not in mine:
            raise InventoryError(name, "ansible_host", "a host managed over SSH is reached at one of its static "
                                 f"lab addresses ({', '.join(sorted(mine)) or 'none'})", address)
        host.ssh_address = address
    return host


def parse_link(name: str, where: str, link: Any, nets: dict[str, Network]) -> Link:
    if not isinstance(link, dict):
        raise InventoryError(name, where, "must be a mapping", link)
    net = None
    if link.get("network") is not None:
        net = nets.get(link["network"])
        if net is None:
            raise InventoryError(name, f"{where}.network", f"not one of lab_networks ({', '.join(nets)})", link["network"])
    dev = link.get("device")
    if not is_ifname(dev):
        raise InventoryError(name, f"{where}.device", "not a Linux interface name", dev)
    return Link(
        network=net.name if net else None,
        device=dev,
        ipv4=_address(name, f"{where}.ipv4", link.get("ipv4"), net.ipv4 if net else None, 4),
        ipv6=_address(name, f"{where}.ipv6", link.get("ipv6"), net.ipv6 if net else None, 6),
        ipv4_gateway=_gateway(name, f"{where}.ipv4_gateway", link.get("ipv4_gateway"), net.ipv4 if net else None, 4),
        ipv6_gateway=_gateway(name, f"{where}.ipv6_gateway", link.get("ipv6_gateway"), net.ipv6 if net else None, 6),
    )


def parse_controller(host: str, raw: Any, nets: dict[str, Network]) -> Controller | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("network") is None:
        raise InventoryError(host, "lab_controller", "must be a mapping with the network the controller sits on "
                             "and its address there", raw)
    link = parse_link(host, "lab_controller", {"device": CONTROLLER_DEVICE, **raw}, nets)
    if link.ipv4 is None and link.ipv6 is None:
        raise InventoryError(host, "lab_controller", "needs a static ipv4 or ipv6 address", raw)
    return Controller(link)


def check_unique_addresses(hosts: list[Host]) -> None:
    """Addresses on the lab's networks are unique (an unconnected link's are the host's own)."""
    seen: dict[Any, str] = {}
    for host in hosts:
        for i, link in enumerate(host.links):
            for key in ("ipv4", "ipv6"):
                iface = getattr(link, key)
                if iface is None or link.network is None:
                    continue
                if iface.ip in seen:
                    raise InventoryError(host.name, f"lab_links[{i}].{key}", f"already used by {seen[iface.ip]}", str(iface))
                seen[iface.ip] = host.name


def load_topology(inventory: Path, only: list[str] | None = None) -> tuple[dict[str, Network], list[Host]]:
    """Resolve the inventory exactly as Ansible does (group_vars, host_vars) and read the lab model."""
    nets, hosts, _ = load_lab(inventory, only)
    return nets, hosts


def load_lab(inventory: Path, only: list[str] | None = None
             ) -> tuple[dict[str, Network], list[Host], Controller | None]:
    """The topology and where the controller sits (None: it reaches the hosts by docker exec)."""
    tool = Path(sys.executable).parent / "ansible-inventory"
    proc = run(str(tool) if tool.exists() else "ansible-inventory", "-i", str(inventory), "--list")
    data = json.loads(proc.stdout)
    hostvars = data.get("_meta", {}).get("hostvars", {})
    names = sorted(hostvars)
    if only:
        missing = [h for h in only if h not in hostvars]
        if missing:
            raise LabError(f"{inventory}: no such hosts: {', '.join(missing)}")
        names = only
    if not names:
        raise LabError(f"{inventory}: no hosts")
    nets = parse_networks(names[0], hostvars[names[0]].get("lab_networks"))
    hosts = [parse_host(h, hostvars[h], nets) for h in names]
    controller = parse_controller(names[0], hostvars[names[0]].get("lab_controller"), nets)
    # The controller's address is on a lab network too: unique like a host's.
    check_unique_addresses(hosts + ([Host("lab_controller", [controller.link])] if controller else []))
    managed = [h.name for h in hosts if h.ssh_address]
    if managed and controller is None:
        raise InventoryError(managed[0], "lab_management", "ssh needs lab_controller: where Ansible sits on the lab", "ssh")
    return nets, hosts, controller


# ---------------------------------------------------------------------------- docker

def ensure_image() -> str:
    proc = subprocess.run([str(TOP / "lab" / "image" / "build")], text=True, stdout=subprocess.PIPE)
    if proc.returncode != 0:
        raise LabError("building the lab image failed (see above)")
    return proc.stdout.strip().splitlines()[-1]


def container_name(prefix: str, host: str) -> str:
    return f"{prefix}-{host}"


def inspect(name: str) -> dict | None:
    proc = run("docker", "inspect", "--type", "container", name, check=False)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout)[0]


def ensure_container(prefix: str, host: str, image: str) -> int:
    """The host's container, running the wanted image; returns its PID 1 (for its netns)."""
    name = container_name(prefix, host)
    info = inspect(name)
    if info is not None and info["Config"]["Image"] != image:
        print(f"lab: {name}: image changed, recreating", file=sys.stderr)
        run("docker", "rm", "-f", name)
        info = None
    if info is None:
        run("docker", "run", "-d", "--name", name, "--hostname", host,
            "--label", f"{LABEL}={prefix}", *CONTAINER_ARGS, image)
    elif not info["State"]["Running"]:
        run("docker", "start", name)
    info = inspect(name)
    assert info is not None
    return int(info["State"]["Pid"])


def wait_systemd(prefix: str, host: str) -> None:
    """Until the container's init has booted: systemd, or OpenWrt's procd (molecule/openwrt),
    whose ubus answers once its services are up."""
    name = container_name(prefix, host)
    deadline = time.monotonic() + SYSTEMD_TIMEOUT_S
    procd = run("docker", "exec", name, "test", "-x", "/sbin/procd", check=False).returncode == 0
    state = ""
    while time.monotonic() < deadline:
        if procd:
            proc = run("docker", "exec", name, "ubus", "call", "system", "board", check=False)
            if proc.returncode == 0:
                return
            state = proc.stderr.strip()
        else:
            state = run("docker", "exec", name, "systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return
        time.sleep(0.5)
    init = "procd" if procd else "systemd"
    raise LabError(f"{name}: {init} did not finish booting in {SYSTEMD_TIMEOUT_S:g} s (state {state!r})")


# ---------------------------------------------------------------------------- cabling

def switch_ns(prefix: str, network: str) -> str:
    return f"{prefix}-{network}"


def netns_list() -> list[str]:
    proc = run("ip", "-j", "netns", "list", check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    return [ns["name"] for ns in json.loads(proc.stdout)]


def ensure_switch(prefix: str, network: str) -> str:
    ns = switch_ns(prefix, network)
    if ns not in netns_list():
        run("ip", "netns", "add", ns)
    if run("ip", "-n", ns, "link", "show", SWITCH_BRIDGE, check=False).returncode != 0:
        run("ip", "-n", ns, "link", "add", SWITCH_BRIDGE, "type", "bridge")
        # No IPv6 on the switch itself: it is a wire, not a host.
        run("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{SWITCH_BRIDGE}.disable_ipv6=1")
    run("ip", "-n", ns, "link", "set", SWITCH_BRIDGE, "up")
    return ns


def port_name(host: str, device: str) -> str:
    # Switch-side names must be unique per switch and fit IFNAMSIZ.
    return f"{host[:7]}-{device}"[:15]


def in_ns(pid: int, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return run("nsenter", "-t", str(pid), "-n", *cmd, check=check)


def cable(prefix: str, host: Host, pid: int) -> None:
    # docker turns IPv6 off in a container with no docker network; the lab is dual-stack.
    in_ns(pid, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.default.disable_ipv6=0")
    for link in host.links:
        plug(prefix, host.name, link, ("nsenter", "-t", str(pid), "-n"), str(pid))
    if host.forwarding:
        in_ns(pid, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")


def plug(prefix: str, host: str, link: Link, enter: tuple[str, ...], netns: str) -> None:
    """One link into a namespace (``enter`` runs a command there; ``netns`` names it to
    `ip link ... netns`): a veth to its network's switch, or to nowhere; addresses, gateways."""
    def here(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return run(*enter, *cmd, check=check)

    if link.network is None:
        # A veth whose peer stays in the same namespace, up: a LAN with carrier and nobody on
        # it (these kernels may lack the dummy driver).
        if here("ip", "link", "show", link.device, check=False).returncode != 0:
            peer = f"{link.device[:11]}-nc"
            here("ip", "link", "add", link.device, "type", "veth", "peer", "name", peer)
            here("ip", "link", "set", peer, "up")
    else:
        ns = ensure_switch(prefix, link.network)
        port = port_name(host, link.device)
        if here("ip", "link", "show", link.device, check=False).returncode != 0:
            # A container that restarted lost its end; the switch may still hold a stale one.
            run("ip", "-n", ns, "link", "del", port, check=False)
            run("ip", "link", "add", "name", link.device, "netns", netns, "type", "veth",
                "peer", "name", port, "netns", ns)
        run("ip", "-n", ns, "link", "set", port, "master", SWITCH_BRIDGE, "up")
    here("sysctl", "-qw", f"net.ipv6.conf.{link.device}.disable_ipv6=0")
    here("ip", "link", "set", link.device, "up")
    if link.ipv4 is not None:
        here("ip", "addr", "replace", str(link.ipv4), "dev", link.device)
    if link.ipv6 is not None:
        here("ip", "addr", "replace", str(link.ipv6), "dev", link.device, "nodad")
    if link.ipv4_gateway is not None:
        here("ip", "route", "replace", "default", "via", str(link.ipv4_gateway), "dev", link.device)
    if link.ipv6_gateway is not None:
        here("ip", "-6", "route", "replace", "default", "via", str(link.ipv6_gateway), "dev", link.device)


# ---------------------------------------------------------------------------- management

def controller_ns(prefix: str) -> str:
    return f"{prefix}-controller"


def ensure_controller(prefix: str, controller: Controller) -> None:
    """The controller's namespace on the management network: Ansible's ssh reaches the
    hosts from there (ProxyCommand ``ip netns exec <prefix>-controller nc %h %p``)."""
    ns = controller_ns(prefix)
    if ns not in netns_list():
        run("ip", "netns", "add", ns)
    run("ip", "-n", ns, "link", "set", "lo", "up")
    plug(prefix, "control", controller.link, ("ip", "netns", "exec", ns), ns)


def ssh_key(prefix: str) -> Path:
    """The lab's SSH key (made on first use): what a CPE's factory image would trust."""
    key = KEY_DIR / prefix / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(key.parent, 0o700)
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"mptcp-cpe lab {prefix}", "-f", str(key))
    return key


def authorize(prefix: str, host: str, key: Path) -> None:
    """Let the lab's key log in as root: the bootstrap every network-managed router gets."""
    pub = key.with_suffix(".pub").read_text().strip()
    run("docker", "exec", container_name(prefix, host), "sh", "-c",
        'umask 077 && mkdir -p /root/.ssh && { grep -qxF "$1" /root/.ssh/authorized_keys 2>/dev/null'
        ' || echo "$1" >>/root/.ssh/authorized_keys; }', "sh", pub)


# ---------------------------------------------------------------------------- commands

def parse_images(specs: list[str], hosts: list[str]) -> dict[str, str]:
    """--image HOST=IMAGE options: the hosts that run another image than the lab's (a CPE's
    firmware, molecule/firmware)."""
    out = {}
    for spec in specs:
        host, sep, image = spec.partition("=")
        if not sep or not image:
            raise LabError(f"--image: {spec!r} is not HOST=IMAGE")
        if host not in hosts:
            raise LabError(f"--image: {host!r} is not one of the hosts brought up ({', '.join(hosts)})")
        out[host] = image
    return out


# Each systemd container takes several inotify instances from root's one budget (no user
# namespaces here); Debian's 128 stops the twentieth or so container's systemd in its boot.
INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
INOTIFY_PER_CONTAINER = 16


def raise_inotify_limit(containers: int) -> None:
    want = max(128, INOTIFY_PER_CONTAINER * (containers + len(run("docker", "ps", "-q").stdout.split())))
    have = int(INOTIFY_INSTANCES.read_text())
    if have < want:
        print(f"lab: fs.inotify.max_user_instances {have} -> {want} for {containers} more systemd containers",
              file=sys.stderr)
        INOTIFY_INSTANCES.write_text(f"{want}\n")


def up(inventory: Path, prefix: str, only: list[str] | None, images: list[str] | None = None) -> list[dict]:
    _, hosts, controller = load_lab(inventory, only)
    raise_inotify_limit(len(hosts))
    own = parse_images(images or [], [h.name for h in hosts])
    image = ensure_image()
    pids = {h.name: ensure_container(prefix, h.name, own.get(h.name, image)) for h in hosts}
    key = None
    if controller is not None:
        key = ssh_key(prefix)
        ensure_controller(prefix, controller)
    for h in hosts:
        wait_systemd(prefix, h.name)
        cable(prefix, h, pids[h.name])
        if key is not None:
            authorize(prefix, h.name, key)
    return [instance(prefix, h, key) for h in hosts]


def instance(prefix: str, host: Host, key: Path | None) -> dict:
    """How Molecule reaches a host: docker exec, or SSH from the controller's namespace."""
    if host.ssh_address is None or key is None:
        return {"instance": host.name, "address": container_name(prefix, host.name),
                "connection": "community.docker.docker"}
    return {"instance": host.name, "address": host.ssh_address, "user": "root", "port": 22,
            "identity_file": str(key), "connection": "ssh"}


def lab_containers(prefix: str) -> list[str]:
    out = run("docker", "ps", "-a", "--filter", f"label={LABEL}={prefix}", "--format", "{{.Names}}").stdout
    return sorted(out.split())


def down(prefix: str) -> None:
    names = lab_containers(prefix)
    if names:
        run("docker", "rm", "-f", *names)
    for ns in netns_list():
        if ns.startswith(prefix + "-"):
            run("ip", "netns", "del", ns)
    if (KEY_DIR / prefix).is_dir():
        shutil.rmtree(KEY_DIR / prefix)


def status(prefix: str) -> int:
    names = lab_containers(prefix)
    switches = [ns for ns in netns_list() if ns.startswith(prefix + "-")]
    if not names and not switches:
        print(f"lab {prefix}: down")
        return 1
    for name in names:
        info = inspect(name)
        state = info["State"]["Status"] if info else "gone"
        addrs = ""
        if info and info["State"]["Running"]:
            addrs = run("docker", "exec", name, "ip", "-br", "addr", check=False).stdout
        print(f"{name}: {state}")
        for line in addrs.splitlines():
            if not line.startswith("lo "):
                print(f"    {line}")
    print(f"switches: {', '.join(switches) or 'none'}")
    return 0


def summary(inventory: Path, prefix: str) -> int:
    """One paragraph per provisioned host, from the local facts the roles recorded there."""
    _, hosts = load_topology(inventory)
    for h in hosts:
        name = container_name(prefix, h.name)
        proc = run("docker", "exec", name, "sh", "-c",
                   "cat /etc/ansible/facts.d/mptcp_cpe_base.fact 2>/dev/null", check=False)
        if proc.returncode != 0 or not proc.stdout.strip():
            kea = run("docker", "exec", name, "sh", "-c",
                      "test -x /usr/local/sbin/kea-mptcp-check && for f in 4 6; do "
                      "printf 'kea-dhcp%s %s, ' $f $(systemctl is-active kea-dhcp$f-server); done", check=False)
            if kea.returncode == 0 and kea.stdout.strip():
                print(f"{h.name}: operator DHCP with the MCP hook: {kea.stdout.strip().rstrip(',')}")
            else:
                print(f"{h.name}: not provisioned by mptcp-cpe")
            continue
        fact = json.loads(proc.stdout)
        limits = fact["mptcp_limits"]
        print(f"{h.name}: {fact['platform']}, mptcp-cpe {fact['package']['version']} in {fact['package']['venv']}")
        print(f"    WANs: {', '.join(fact['wan_devices'])} (rp_filter=2); "
              f"MPTCP limits: subflows {limits['subflows']}, add_addr_accepted {limits['add_addr_accepted']}")
        print("    sysctls: " + ", ".join(f"{k}={v}" for k, v in sorted(fact["sysctls"].items())))
        mcp = run("docker", "exec", name, "cat", str(MCP_STATE), check=False)
        print("    MCPs by DHCP: " + mcp_summary(json.loads(mcp.stdout) if mcp.returncode == 0 else {}))
    return 0


def mcp_summary(mcp_state: Any) -> str:
    """What a CPE's DHCP clients learned (mcp.json), per WAN and family, with the prefixes
    delegated to it: ``wan1 v4 [a] v6 [b] delegated 2001:db8:1000::/56; wan2 v4 [a] [b, c]``."""
    by_wan: dict[str, list[str]] = {}
    for device, fam, lists in learned_mcps(mcp_state):
        by_wan.setdefault(device, []).append(f"{fam} " + (" ".join("[" + ", ".join(m) + "]" for m in lists) or "none"))
    for device, prefixes in delegated_prefixes(mcp_state).items():
        by_wan.setdefault(device, []).append("delegated " + ", ".join(prefixes))
    learned = [f"{wan} " + " ".join(parts) for wan, parts in sorted(by_wan.items())]
    return "; ".join(learned) if learned else "none yet"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labctl", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd in ("up", "down", "status", "summary", "image", "ssh-key"):
        p = sub.add_parser(cmd)
        p.add_argument("--prefix", default=DEFAULT_PREFIX, help="names of containers and switches start with this")
        p.add_argument("--inventory", type=Path, default=DEFAULT_INVENTORY)
        if cmd == "up":
            p.add_argument("--hosts", help="comma-separated subset of the inventory's hosts")
            p.add_argument("--json", action="store_true", help="print the instances as JSON (for Molecule)")
            p.add_argument("--image", action="append", metavar="HOST=IMAGE",
                           help="run this host from another image (e.g. a CPE's firmware); repeatable")
    args = parser.parse_args(argv)
    if os.geteuid() != 0 and args.command != "image":
        print("labctl: run as root (docker, network namespaces)", file=sys.stderr)
        return 1
    try:
        if args.command == "up":
            instances = up(args.inventory, args.prefix, args.hosts.split(",") if args.hosts else None, args.image)
            if args.json:
                print(json.dumps(instances))
            else:
                status(args.prefix)
            return 0
        if args.command == "down":
            down(args.prefix)
            return 0
        if args.command == "status":
            return status(args.prefix)
        if args.command == "summary":
            return summary(args.inventory, args.prefix)
        if args.command == "ssh-key":
            print(ssh_key(args.prefix))
            return 0
        print(ensure_image())
        return 0
    except (InventoryError, LabError) as exc:
        print(f"labctl: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
