"""Firmware images (firmware.yml, role cpe_firmware), on the controller.

A device's image is a cached base (roles/cpe_firmware/files/build-base: mmdebstrap, once per architecture and
package set) plus the device's own layer: what applying the CPE roles to a container of the
base changed. This module checks the role's settings, computes that layer from the exported
container, and writes the artifacts deterministically (same inputs and SOURCE_DATE_EPOCH:
the same bytes) with their manifest.

Devices whose role inputs are equal (every cpe_* variable but the identity ones, IDENTITY)
get one application of the roles, in one build container: `prepare` exports it once into a
group tree with the layer it makes, and `assemble` makes each device of the group from that
tree and the device's identity (its name and its NICs' names):

    python -m mptcp_cpe.firmware prepare --container C --base DIR --group DIR
    python -m mptcp_cpe.firmware assemble --host H --group DIR --base DIR --out DIR
        --epoch S --device-json FILE|- --nics-json JSON [--kernel-choice K]

A device is assembled the same way whether its group has one device or many: built alone
or with its fleet, its artifacts are the same bytes.

Everything goes to ``<out>.partial`` first and replaces ``<out>`` only when complete: a
failed build leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import checks
from .checks import InventoryError
from .inventory import parse_lans

ARCHES = ("amd64", "arm64")
KERNELS = ("backports", "stable")
# A Debian package name (policy 5.6.1), optionally pinned to a release: pkg/bookworm-backports.
PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+(/[a-z0-9-]+)?")
# dpkg path-exclude/path-include patterns: absolute, no whitespace.
PRUNE = re.compile(r"/\S*")
# Inventory keys that never go into a manifest, wherever they appear.
SECRET = re.compile(r"pass|secret|token|private|(^|_)key($|_)|vault", re.IGNORECASE)
# The settings of role cpe_firmware, by their inventory names.
FIELDS = {"arch": "cpe_firmware_arch", "kernel": "cpe_firmware_kernel",
          "source_date_epoch": "cpe_firmware_source_date_epoch", "base_epoch": "cpe_firmware_base_epoch",
          "packages_extra": "cpe_firmware_packages_extra", "prune_extra": "cpe_firmware_prune_extra",
          "nics": "cpe_firmware_nics"}
MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
# udev's ID_PATH of a NIC (systemd.link Path=), e.g. pci-0000:00:03.0 or platform-fe300000.ethernet.
NIC_PATH = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._*?-]*")
# Paths whose content in an image is the base's, whatever the build container did there:
# docker's own (device nodes, bind-mounted files, /.dockerenv) and the scratch a build leaves
# (Ansible's temporary files, apt's caches, runtime state).
AS_IN_BASE = (".dockerenv", "dev", "proc", "sys", "run", "tmp", "var/tmp", "etc/hosts", "etc/resolv.conf",
              "etc/hostname", "etc/mtab", "root/.ansible", "root/.cache", "var/cache/apt", "var/lib/apt/lists",
              "var/log/apt", "var/log/dpkg.log", "var/log/alternatives.log", "var/cache/ldconfig")
EPOCH_MAX = 2**32 - 1
# Where a build puts things on the controller: no part of what goes into a device.
BUILD_PLACES = frozenset({"cpe_firmware_output_dir", "cpe_firmware_cache_dir"})
# A device's identity: what its image has of its own beyond its group's (assemble writes it,
# the roles never read it). Its name (inventory_hostname, /etc/hostname) is one too.
IDENTITY = frozenset({"cpe_firmware_nics"})


@dataclasses.dataclass(frozen=True)
class Settings:
    arch: str
    kernel: str
    source_date_epoch: int | None
    base_epoch: int
    packages_extra: tuple[str, ...]
    prune_extra: tuple[str, ...]
    nics: tuple[dict, ...] = ()

    def kernel_package(self) -> str:
        """The Debian kernel the image boots: bookworm-backports' (6.12) or bookworm's own (6.1)."""
        pkg = f"linux-image-{self.arch}"
        return f"{pkg}/bookworm-backports" if self.kernel == "backports" else pkg


def _epoch(host: str, field: str, value: Any) -> int:
    """Seconds since 1970, as a number or (SOURCE_DATE_EPOCH's own form, ansible-playbook -e) digits."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    return checks.integer(host, field, value, 1, EPOCH_MAX)


def _strings(host: str, field: str, value: Any, pattern: re.Pattern, what: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise InventoryError(host, field, f"must be a list of {what}", value)
    for item in value:
        if not isinstance(item, str) or pattern.fullmatch(item) is None:
            raise InventoryError(host, field, f"each item must be {what}", item)
    return tuple(value)


def nics(host: str, field: str, value: Any) -> tuple[dict, ...]:
    """The device model's NIC names: each {name, mac} or {name, path} becomes a systemd .link
    file in the image, so the router's NICs carry the names the inventory uses. Every NIC's
    mistakes at once."""
    if not isinstance(value, list):
        raise InventoryError(host, field, "must be a list of {name, mac} or {name, path}", value)
    errors = checks.Errors()
    out, seen = [], set()
    for i, item in enumerate(value):
        nic = errors.check(_nic, host, f"{field}[{i}]", item, seen)
        if nic is not None:
            out.append(nic)
    errors.raise_any()
    return tuple(out)


def _nic(host: str, where: str, item: Any, seen: set[str]) -> dict:
    checks.check_keys(host, where, item, frozenset({"name", "mac", "path"}))
    name = item.get("name")
    if not checks.is_ifname(name):
        raise InventoryError(host, f"{where}.name", "must be an interface name (1-15 octets, no '/', ':' or space)", name)
    if name in seen:
        raise InventoryError(host, f"{where}.name", "names another NIC already", name)
    seen.add(name)
    if ("mac" in item) == ("path" in item):
        raise InventoryError(host, where, "must have exactly one of mac and path", item)
    if "mac" in item:
        mac = item["mac"]
        if not isinstance(mac, str) or MAC.fullmatch(mac.lower()) is None:
            raise InventoryError(host, f"{where}.mac", "must be a MAC address (aa:bb:cc:dd:ee:ff)", mac)
        return {"name": name, "mac": mac.lower()}
    path = item["path"]
    if not isinstance(path, str) or NIC_PATH.fullmatch(path) is None:
        raise InventoryError(host, f"{where}.path", "must be a udev ID_PATH such as pci-0000:00:03.0", path)
    return {"name": name, "path": path}


def link_files(device_nics: Iterable[dict]) -> dict[str, str]:
    """The .link files of the device's NICs (file name -> content), for /etc/systemd/network."""
    out = {}
    for i, nic in enumerate(device_nics):
        match = f"MACAddress={nic['mac']}" if "mac" in nic else f"Path={nic['path']}"
        out[f"10-mptcp-cpe-{i:02d}-{nic['name']}.link"] = (
            f"# mptcp-cpe (role cpe_firmware, cpe_firmware_nics): this NIC is {nic['name']}.\n"
            f"[Match]\n{match}\n\n[Link]\nName={nic['name']}\n")
    return out


LAN_UNIT = "mptcp-cpe-lan.service"


def lan_unit(host: str, raw_lans: Any) -> str:
    """The unit that gives the LANs their addresses at boot (the inventory's cpe_lans: the
    CPE's own IPv4 and IPv6 addresses in each), or "" for a CPE without LANs. A live router
    has them from its own network configuration; an image has nothing else that sets them.
    After the firewall (network-pre.target), before network.target; retried until udev has
    named the device; `ip address replace`, so a copy that is already there is kept, and
    nothing is removed when it stops (wand's /64s from delegated prefixes stay wand's)."""
    lans = parse_lans(host, raw_lans) if raw_lans not in (None, []) else []
    if not lans:
        return ""
    steps = []
    for lan in lans:
        steps.append(f"ExecStart=/sbin/ip link set dev {lan.device} up")
        for iface in ((lan.ipv4,) if lan.ipv4 else ()) + lan.ipv6:
            family = "-4" if iface.version == 4 else "-6"
            steps.append(f"ExecStart=/sbin/ip {family} address replace {iface} dev {lan.device}")
    names = ", ".join(f"{lan.name} on {lan.device}" for lan in lans)
    return (f"# mptcp-cpe (role cpe_firmware, from cpe_lans): the addresses of the CPE on its LANs {names}.\n"
            "[Unit]\n"
            f"Description=mptcp-cpe LAN addresses ({names})\n"
            "DefaultDependencies=no\n"
            "After=network-pre.target systemd-udevd.service\n"
            "Wants=network-pre.target\n"
            "Before=network.target shutdown.target\n"
            "Conflicts=shutdown.target\n"
            "StartLimitIntervalSec=0\n\n"
            "[Service]\n"
            "Type=oneshot\n"
            "RemainAfterExit=yes\n"
            "# Until udev has named the NIC (cpe_firmware_nics): every 2 s.\n"
            "Restart=on-failure\n"
            "RestartSec=2\n"
            + "\n".join(steps) + "\n\n"
            "[Install]\n"
            "# network.target is passive: nothing in an image pulls it in.\n"
            "WantedBy=multi-user.target\n")


def settings(host: str, raw: dict) -> Settings:
    """The role's settings (by the keys of FIELDS), every mistake found at once."""
    errors = checks.Errors()
    arch = raw.get("arch")
    if arch not in ARCHES:
        errors.found.append(InventoryError(host, FIELDS["arch"], f"must be one of {', '.join(ARCHES)}", arch))
    kernel = raw.get("kernel")
    if kernel not in KERNELS:
        errors.found.append(InventoryError(host, FIELDS["kernel"],
                                           "must be backports (bookworm-backports' 6.12) or stable (bookworm's 6.1)", kernel))
    sde = raw.get("source_date_epoch")
    sde = None if sde in (None, "") else errors.check(_epoch, host, FIELDS["source_date_epoch"], sde)
    base_epoch = errors.check(_epoch, host, FIELDS["base_epoch"], raw.get("base_epoch"))
    extra = errors.check(_strings, host, FIELDS["packages_extra"], raw.get("packages_extra"), PACKAGE,
                         "a Debian package name (pkg or pkg/release)", default=())
    prune = errors.check(_strings, host, FIELDS["prune_extra"], raw.get("prune_extra"), PRUNE,
                         "an absolute path pattern for dpkg's path-exclude", default=())
    nic_list = errors.check(nics, host, FIELDS["nics"], raw.get("nics", []), default=())
    errors.raise_any()
    return Settings(arch, kernel, sde, base_epoch, extra, prune, nic_list)


def base_packages(listed: str, s: Settings) -> list[str]:
    """The base's package list: the project's (firmware/debian/packages, comments dropped),
    the kernel of the device's choice, and the inventory's extra packages."""
    names = [line.split("#", 1)[0].strip() for line in listed.splitlines()]
    return [n for n in names if n] + [s.kernel_package(), *s.packages_extra]


def prune_options(listed: str, s: Settings) -> str:
    """dpkg's path-exclude lines for the base: the project's list and the inventory's extra."""
    lines = [line for line in listed.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return "\n".join(lines + [f"path-exclude={p}" for p in s.prune_extra]) + "\n"


def role_groups(inputs: dict[str, dict]) -> dict[str, str]:
    """Which device's build each device shares (host -> its group's first host, by name):
    devices whose cpe_* variables are equal but for their identity (IDENTITY) get the same
    roles applied, so they are built once. Where the build goes counts too: a group's tree
    lives in its output directory, and its devices' files are hard links to it. inputs:
    host -> its cpe_* variables (the rest of hostvars is Ansible's, or connection data no
    role reads)."""
    leaders: dict[str, str] = {}
    out = {}
    for host in sorted(inputs):
        wanted = {k: v for k, v in inputs[host].items() if k.startswith("cpe_") and k not in IDENTITY}
        key = json.dumps(wanted, sort_keys=True, default=str)
        out[host] = leaders.setdefault(key, host)
    return out


def device_data(hostvars: dict) -> dict:
    """The inventory data that went into a device's image, for its manifest: the roles' own
    variables (cpe_*), without anything that looks like a secret or is vault-encrypted, and
    without where the build went on the controller (the same device built elsewhere is the
    same image)."""
    out = {}
    for name in sorted(hostvars):
        if not name.startswith("cpe_") or SECRET.search(name) or name in BUILD_PLACES:
            continue
        value = _public(hostvars[name])
        if value is not _SECRET:
            out[name] = value
    return out


_SECRET = object()


def _public(value: Any) -> Any:
    if type(value).__name__ == "AnsibleVaultEncryptedUnicode" or hasattr(value, "_ciphertext"):
        return _SECRET
    if isinstance(value, dict):
        items = {k: _public(v) for k, v in value.items() if not SECRET.search(str(k))}
        return {k: v for k, v in items.items() if v is not _SECRET}
    if isinstance(value, (list, tuple)):
        return [v for v in (_public(v) for v in value) if v is not _SECRET]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


# --- the layer -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Entry:
    """What makes one path of a tree what it is (mtime aside: the build clamps it)."""
    kind: str          # f, d, l, c, b, p
    mode: int
    uid: int
    gid: int
    size: int = 0
    digest: str = ""   # sha256 of a file's bytes
    target: str = ""   # a symlink's target, a hard link's first path
    dev: tuple[int, int] = (0, 0)


def _sha256(fileobj) -> str:
    h = hashlib.sha256()
    for chunk in iter(lambda: fileobj.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()


def index_tar(path: Path) -> dict[str, Entry]:
    """The entries of a base's rootfs.tar, by path relative to the root ('' is the root)."""
    out: dict[str, Entry] = {}
    with tarfile.open(path) as tar:
        for m in tar:
            name = os.path.normpath(m.name).lstrip("./") if m.name not in (".", "./") else ""
            mode = stat.S_IMODE(m.mode)
            if m.isreg():
                f = tar.extractfile(m)
                out[name] = Entry("f", mode, m.uid, m.gid, m.size, _sha256(f))
            elif m.islnk():
                link = os.path.normpath(m.linkname).lstrip("./")
                out[name] = dataclasses.replace(out[link]) if link in out else Entry("f", mode, m.uid, m.gid)
            elif m.isdir():
                out[name] = Entry("d", mode, m.uid, m.gid)
            elif m.issym():
                out[name] = Entry("l", 0o777, m.uid, m.gid, target=m.linkname)
            elif m.ischr() or m.isblk():
                out[name] = Entry("c" if m.ischr() else "b", mode, m.uid, m.gid, dev=(m.devmajor, m.devminor))
            elif m.isfifo():
                out[name] = Entry("p", mode, m.uid, m.gid)
    return out


def cached_index(base: Path) -> dict[str, Entry]:
    """index_tar of base/rootfs.tar, kept beside it (index.json) after the first time."""
    cache = base / "index.json"
    if cache.exists():
        raw = json.loads(cache.read_text())
        return {k: Entry(*v[:7], tuple(v[7])) for k, v in raw.items()}
    index = index_tar(base / "rootfs.tar")
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")   # groups of one base may be prepared at once
    tmp.write_text(json.dumps({k: dataclasses.astuple(v) for k, v in index.items()}))
    tmp.replace(cache)
    return index


def tree_entry(root: Path, rel: str, base: Entry | None) -> Entry:
    st = os.lstat(root / rel if rel else root)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISREG(st.st_mode):
        if base is not None and base.kind == "f" and base.size != st.st_size:
            return Entry("f", mode, st.st_uid, st.st_gid, st.st_size, "changed")
        with open(root / rel, "rb") as f:
            return Entry("f", mode, st.st_uid, st.st_gid, st.st_size, _sha256(f))
    if stat.S_ISDIR(st.st_mode):
        return Entry("d", mode, st.st_uid, st.st_gid)
    if stat.S_ISLNK(st.st_mode):
        return Entry("l", 0o777, st.st_uid, st.st_gid, target=os.readlink(root / rel))
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return Entry("c" if stat.S_ISCHR(st.st_mode) else "b", mode, st.st_uid, st.st_gid,
                     dev=(os.major(st.st_rdev), os.minor(st.st_rdev)))
    return Entry("p", mode, st.st_uid, st.st_gid)


def walk(root: Path) -> Iterable[str]:
    """Every path under root, relative, sorted (parents before children)."""
    yield ""
    stack = [""]
    while stack:
        rel = stack.pop()
        names = sorted(os.listdir(root / rel if rel else root), reverse=True)
        for name in names:
            sub = f"{rel}/{name}" if rel else name
            yield sub
            if os.path.isdir(root / sub) and not os.path.islink(root / sub):
                stack.append(sub)


def layer_plan(base: dict[str, Entry], root: Path) -> tuple[list[str], list[str]]:
    """What the device's tree adds or changes against the base (paths), and what it removes
    (the topmost removed paths: a removed directory stands for its content)."""
    changed, seen = [], set()
    for rel in walk(root):
        seen.add(rel)
        b = base.get(rel)
        if b is None or tree_entry(root, rel, b) != b:
            changed.append(rel)
    removed = []
    for rel in sorted(set(base) - seen):
        parent = rel.rpartition("/")[0]
        if parent in seen or parent == "":
            removed.append(rel)
    return sorted(changed), removed


def make_layer(root: Path, changed: list[str], removed: list[str], layer: Path) -> None:
    """The layer as an overlayfs upper tree: the changed paths (with the directories leading to
    them, as the device has them) and a whiteout (character device 0/0) per removed path."""
    layer.mkdir()
    wanted = set(changed)
    for rel in changed + removed:
        parts = rel.split("/")
        wanted.update("/".join(parts[:i]) for i in range(1, len(parts)))
    wanted.discard("")
    for rel in sorted(wanted):
        src, dst = root / rel, layer / rel
        if rel in removed:
            continue
        st = os.lstat(src)
        if stat.S_ISDIR(st.st_mode):
            dst.mkdir()
            shutil.copystat(src, dst, follow_symlinks=False)
            os.chown(dst, st.st_uid, st.st_gid)
        elif stat.S_ISREG(st.st_mode):
            os.link(src, dst)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), dst)
            os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
        else:
            os.mknod(dst, st.st_mode, st.st_rdev)
            os.chown(dst, st.st_uid, st.st_gid)
    for rel in removed:
        os.mknod(layer / rel, stat.S_IFCHR | 0o000, os.makedev(0, 0))
    stat_root = os.lstat(root)
    os.chmod(layer, stat.S_IMODE(stat_root.st_mode))


# --- the artifacts ---------------------------------------------------------------------

def run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])}: exit {proc.returncode}: {proc.stderr.strip()[-800:]}")
    return proc


def deterministic_tar(root: Path, out: Path, epoch: int) -> None:
    """root as a tar whose bytes depend only on the tree and epoch: sorted names, numeric
    owners, mtimes clamped to epoch, no atime/ctime, xattrs (file capabilities) kept."""
    run("tar", "--create", "--file", str(out), "--directory", str(root), "--sort=name", "--format=posix",
        "--numeric-owner", f"--mtime=@{epoch}", "--clamp-mtime", "--xattrs", "--xattrs-include=security.*",
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime", ".")


# squashfs compression: xz in 1 MiB blocks (12 % smaller than zstd -19 on a CPE's base),
# with the branch-call filter of the target's instruction set where squashfs has one.
XZ_BCJ = {"amd64": "x86"}


def squashfs(src: Path, out: Path, epoch: int, arch: str | None) -> None:
    """src as a reproducible squashfs: every timestamp is epoch. With arch, the branch-call
    filter of its instruction set too (mksquashfs then compresses each block twice and keeps
    the smaller): for the base, whose binaries gain from it; a layer (Python, configs) gains
    a few KB for twice the time, so its arch is None."""
    bcj = ["-Xbcj", XZ_BCJ[arch]] if arch in XZ_BCJ else []
    # The times are given on the command line; mksquashfs refuses them beside a
    # SOURCE_DATE_EPOCH in its environment (firmware.yml exports one for the build's tools).
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    run("mksquashfs", str(src), str(out), "-noappend", "-comp", "xz", *bcj, "-b", "1M", "-reproducible",
        "-mkfs-time", str(epoch), "-all-time", str(epoch), "-no-progress", "-quiet", "-processors", "2",
        env=env)


def base_squashfs(base: Path, epoch: int, arch: str) -> Path:
    """The base's squashfs, compressed once per base and cached beside its rootfs.tar."""
    out = base / "base.squashfs"
    if out.exists():
        return out
    tmp = Path(run("mktemp", "-d", str(base / ".sqfs.XXXXXX")).stdout.strip())
    try:
        root = tmp / "root"
        root.mkdir()
        run("tar", "--extract", "--file", str(base / "rootfs.tar"), "--directory", str(root), "--numeric-owner",
            "--same-permissions", "--xattrs", "--xattrs-include=*")
        squashfs(root, tmp / "base.squashfs", epoch, arch)
        (tmp / "base.squashfs").replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# The disk image: GPT, an EFI system partition with systemd-boot, the kernel and the
# initramfs; the base and the layer as raw squashfs partitions; an empty data partition
# that the router formats at its first boot (fstab: x-systemd.makefs).
MIB = 1 << 20
SECTOR = 512
ESP_MIB = 64
DATA_MIB = 64
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
EFI_NAMES = {"amd64": ("x64", "BOOTX64.EFI"), "arm64": ("aa64", "BOOTAA64.EFI")}


def _uuid(*parts: str) -> str:
    """A UUID that depends only on its inputs (the image stays reproducible)."""
    h = hashlib.sha256("/".join(parts).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}".upper()


def kernel_cmdline() -> str:
    """The root from its two partitions (the initramfs's mptcp-cpe-overlay-root), the
    consoles (the serial line the primary one, for headless boxes), and the journal on the console: what the
    router does at boot, on its serial line."""
    return ("root=PARTLABEL=cpe-base rootfstype=squashfs ro mptcp_cpe.layer=PARTLABEL=cpe-layer "
            "console=tty0 console=ttyS0,115200 panic=10 systemd.journald.forward_to_console=1")


def esp_image(root: Path, out: Path, host: str, arch: str, epoch: int) -> None:
    """The EFI system partition's FAT file system: systemd-boot, its one entry, the kernel
    and the initramfs of the image's /boot."""
    efi_arch, efi_name = EFI_NAMES[arch]
    loader = root / f"usr/lib/systemd/boot/efi/systemd-boot{efi_arch}.efi"
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if not loader.exists() or not kernels:
        raise RuntimeError(f"the image has no {'systemd-boot' if not loader.exists() else 'kernel'} to boot")
    version = kernels[-1].name.removeprefix("vmlinuz-")
    stage = out.with_suffix(".d")
    (stage / "loader/entries").mkdir(parents=True)
    (stage / "loader/loader.conf").write_text("default mptcp-cpe.conf\ntimeout 0\n")
    (stage / "loader/entries/mptcp-cpe.conf").write_text(
        f"title mptcp-cpe {host} ({version})\nlinux /vmlinuz\ninitrd /initrd.img\noptions {kernel_cmdline()}\n")
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch), TZ="UTC")
    run("mkfs.vfat", "-C", "--invariant", "-i", _uuid(host, "esp")[:8], "-n", "CPE-EFI", str(out), str(ESP_MIB * 1024),
        env=env)
    copies = [(loader, f"::EFI/BOOT/{efi_name}"), (kernels[-1], "::vmlinuz"),
              (root / f"boot/initrd.img-{version}", "::initrd.img"),
              (stage / "loader/loader.conf", "::loader/loader.conf"),
              (stage / "loader/entries/mptcp-cpe.conf", "::loader/entries/mptcp-cpe.conf")]
    for d in ("::EFI", "::EFI/BOOT", "::loader", "::loader/entries"):
        run("mmd", "-i", str(out), d, env=env)
    for src, dst in copies:
        run("mcopy", "-i", str(out), str(src), dst, env=env)
    shutil.rmtree(stage)


def disk_image(root: Path, base_sqfs: Path, layer_sqfs: Path, out: Path, host: str, arch: str, epoch: int) -> None:
    """A bootable GPT disk image: ESP, base, layer, data (empty)."""
    esp = out.with_name("esp.img")
    esp_image(root, esp, host, arch, epoch)
    parts = [("cpe-efi", ESP_TYPE, esp, ESP_MIB * MIB),
             ("cpe-base", LINUX_TYPE, base_sqfs, -(-base_sqfs.stat().st_size // MIB) * MIB),
             ("cpe-layer", LINUX_TYPE, layer_sqfs, -(-layer_sqfs.stat().st_size // MIB) * MIB),
             ("cpe-data", LINUX_TYPE, None, DATA_MIB * MIB)]
    total = MIB + sum(p[3] for p in parts) + MIB
    with open(out, "wb") as f:
        f.truncate(total)
    script = [f"label: gpt", f"label-id: {_uuid(host, 'disk')}", "unit: sectors", "first-lba: 2048"]
    start = MIB
    for name, ptype, _, size in parts:
        script.append(f"start={start // SECTOR}, size={size // SECTOR}, type={ptype}, uuid={_uuid(host, name)}, name={name}")
        start += size
    proc = subprocess.run(["sfdisk", "--no-reread", "--no-tell-kernel", "--quiet", str(out)], input="\n".join(script) + "\n",
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"sfdisk: {proc.stderr.strip()}")
    start = MIB
    with open(out, "r+b") as f:
        for _, _, src, size in parts:
            if src is not None:
                f.seek(start)
                with open(src, "rb") as g:
                    shutil.copyfileobj(g, f, MIB)
            start += size
    esp.unlink()


def dpkg_packages(root: Path) -> list[dict]:
    """The packages installed in a tree (its dpkg status), sorted by name."""
    out = []
    for para in (root / "var/lib/dpkg/status").read_text().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in para.splitlines() if ": " in line and not line.startswith(" "))
        if fields.get("Status", "").endswith(" installed"):
            out.append({"name": fields["Package"], "version": fields["Version"], "arch": fields.get("Architecture", "")})
    return sorted(out, key=lambda p: p["name"])


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return _sha256(f)


def cached_sha256(path: Path) -> str:
    """file_sha256 of a file that never changes once written (the base's squashfs), kept
    beside it (<name>.sha256) after the first time: every device of the base names it."""
    cache = path.with_name(path.name + ".sha256")
    if cache.exists() and cache.stat().st_mtime >= path.stat().st_mtime:
        return cache.read_text().strip()
    digest = file_sha256(path)
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    tmp.write_text(digest + "\n")
    tmp.replace(cache)
    return digest


def clean_export(root: Path, base: Path, index: dict[str, Entry]) -> None:
    """Put the paths of AS_IN_BASE back as the base has them (or take them out, where the base
    has none)."""
    for rel in AS_IN_BASE:
        p = root / rel
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    present = [f"./{rel}" for rel in AS_IN_BASE if rel in index]
    run("tar", "--extract", "--file", str(base / "rootfs.tar"), "--directory", str(root), "--numeric-owner",
        "--same-permissions", "--xattrs", "--xattrs-include=*", *present)


def write_identity(root: Path, host: str, device_nics: Iterable[dict]) -> list[str]:
    """Give a copy of its group's tree the device's identity: its name (/etc/hostname) and
    its NICs' names (systemd .link files). Files are replaced, never written through: the
    copy shares its files with the group's tree. Returns the paths it wrote or created."""
    written = ["etc/hostname"]
    files = {"etc/hostname": f"{host}\n"}
    links = link_files(device_nics)
    if links:
        net = root / "etc/systemd/network"
        if not net.is_dir():
            net.mkdir(mode=0o755, parents=True)
            os.chmod(net, 0o755)
            written.append("etc/systemd/network")
        files.update({f"etc/systemd/network/{name}": text for name, text in links.items()})
        written += [f"etc/systemd/network/{name}" for name in links]
    for rel, text in files.items():
        path = root / rel
        if path.exists() or path.is_symlink():
            path.unlink()
        path.write_text(text)
        os.chown(path, 0, 0)
        os.chmod(path, 0o644)
    return written


def prepare(container: str, base: Path, group: Path) -> dict:
    """A group's tree from its build container (the roles have been applied): exported,
    cleaned of the build's own traces, with what it changes against the base, the packages
    it holds and the mptcp-cpe build id (group/plan.json). Via group.partial, like assemble."""
    partial = group.with_name(group.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    root = partial / "root"
    root.mkdir(parents=True)
    try:
        export = subprocess.Popen(["docker", "export", container], stdout=subprocess.PIPE)
        untar = subprocess.run(["tar", "--extract", "--directory", str(root), "--numeric-owner", "--same-permissions",
                                "--xattrs", "--xattrs-include=*"], stdin=export.stdout, capture_output=True, text=True)
        export.stdout.close()
        if export.wait() != 0 or untar.returncode != 0:
            raise RuntimeError(f"docker export {container}: {untar.stderr.strip()[-400:]}")
        index = cached_index(base)
        clean_export(root, base, index)
        changed, removed = layer_plan(index, root)
        # cpe_base's link to the installed package: which code the image carries.
        build_id = run("docker", "exec", container, "/usr/local/bin/mptcp-cpe", "--build-id").stdout.strip()
        inputs = json.loads((base / "inputs.json").read_text())
        shared = base_squashfs(base, inputs["source_date_epoch"], inputs["arch"])
        plan = {"changed": changed, "removed": removed, "build_id": build_id, "packages": dpkg_packages(root),
                "base_squashfs_sha256": cached_sha256(shared)}
        (partial / "plan.json").write_text(json.dumps(plan) + "\n")
        shutil.rmtree(group, ignore_errors=True)
        partial.replace(group)
        return plan
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def device_layer(index: dict[str, Entry], root: Path, plan: dict, identity: list[str]) -> list[str]:
    """The paths a device's layer holds: its group's, and those of its identity that differ
    from the base (a device named as the base's /etc/hostname has that file from the base)."""
    changed = set(plan["changed"])
    for rel in identity:
        if tree_entry(root, rel, index.get(rel)) != index.get(rel):
            changed.add(rel)
    return sorted(changed)


@contextlib.contextmanager
def group_links(group: Path, exclusive: bool):
    """The group's devices are assembled at once from hard links to its tree's files. Making
    or removing a link changes the file's ctime, which a tar reading that file at that moment
    takes for a changed file: links are made and removed alone (exclusive), tars read
    together (shared)."""
    with open(group / "links.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def assemble(host: str, group: Path, base: Path, out: Path, epoch: int, device: dict,
             kernel_choice: str, device_nics: Iterable[dict]) -> dict:
    """The device's artifacts and manifest from its group's tree (prepare) and its identity,
    written to out (via out.partial). Returns the manifest."""
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    work = partial / ".work"
    try:
        plan = json.loads((group / "plan.json").read_text())
        work.mkdir()
        root = work / "root"
        # The group's tree, its files shared (hard links), then the device's own.
        with group_links(group, exclusive=True):
            run("cp", "--archive", "--link", str(group / "root"), str(root))
        identity = write_identity(root, host, device_nics)
        index = cached_index(base)
        changed = device_layer(index, root, plan, identity)
        with group_links(group, exclusive=True):
            make_layer(root, changed, plan["removed"], work / "layer")

        inputs = json.loads((base / "inputs.json").read_text())
        shared = base / "base.squashfs"
        try:
            os.link(shared, partial / "base.squashfs")
        except OSError:
            shutil.copyfile(shared, partial / "base.squashfs")
        squashfs(work / "layer", partial / "layer.squashfs", epoch, None)
        with group_links(group, exclusive=False):
            deterministic_tar(root, partial / "rootfs.tar", epoch)
        disk_image(root, shared, partial / "layer.squashfs", partial / "disk.img", host, inputs["arch"], epoch)

        packages = plan["packages"]
        kernels = sorted(p["version"] for p in packages if re.fullmatch(r"linux-image-\d.*", p["name"]))
        artifacts = {name: {"sha256": file_sha256(partial / name), "bytes": (partial / name).stat().st_size}
                     for name in ("rootfs.tar", "layer.squashfs", "disk.img")}
        artifacts["base.squashfs"] = {"sha256": plan["base_squashfs_sha256"], "bytes": shared.stat().st_size}
        manifest = {
            "version": 1,
            "host": host,
            "mptcp_cpe_build_id": plan["build_id"],
            "source_date_epoch": epoch,
            "base": {**inputs, "squashfs_sha256": plan["base_squashfs_sha256"]},
            "kernel": {"choice": kernel_choice, "versions": kernels},
            "layout": {"root": "overlay of layer.squashfs over base.squashfs (read-only)",
                       "disk": {"partitions": ["cpe-efi", "cpe-base", "cpe-layer", "cpe-data"],
                                "cmdline": kernel_cmdline()},
                       "layer_paths": len(changed), "layer_removed": plan["removed"]},
            "artifacts": dict(sorted(artifacts.items())),
            "packages": packages,
            "device": device,
        }
        with group_links(group, exclusive=True):
            shutil.rmtree(work)
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        partial.replace(out)
        return manifest
    except BaseException:
        if group.is_dir():
            with group_links(group, exclusive=True):
                shutil.rmtree(partial, ignore_errors=True)
        else:
            shutil.rmtree(partial, ignore_errors=True)
        raise


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mptcp_cpe.firmware")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("prepare", help="a group's tree from its build container")
    g.add_argument("--container", required=True)
    g.add_argument("--base", required=True, type=Path)
    g.add_argument("--group", required=True, type=Path)
    a = sub.add_parser("assemble", help="a device's artifacts and manifest from its group's tree")
    a.add_argument("--host", required=True)
    a.add_argument("--group", required=True, type=Path)
    a.add_argument("--base", required=True, type=Path)
    a.add_argument("--out", required=True, type=Path)
    a.add_argument("--epoch", required=True, type=int)
    a.add_argument("--device-json", required=True, help="the device's manifest data: a JSON file, or - for stdin")
    a.add_argument("--nics-json", required=True, help="cpe_firmware_nics, as JSON")
    a.add_argument("--kernel-choice", default="backports")
    args = p.parse_args(argv)
    if args.command == "prepare":
        try:
            plan = prepare(args.container, args.base, args.group)
        except (RuntimeError, OSError) as exc:
            print(f"firmware: {args.container}: {exc}", file=sys.stderr)
            return 1
        print(json.dumps({"layer_paths": len(plan["changed"]), "build_id": plan["build_id"]}))
        return 0
    try:
        device_nics = nics(args.host, FIELDS["nics"], json.loads(args.nics_json))
        device = json.loads(sys.stdin.read() if args.device_json == "-" else Path(args.device_json).read_text())
        m = assemble(args.host, args.group, args.base, args.out, args.epoch, device, args.kernel_choice, device_nics)
    except InventoryError as exc:
        print(f"firmware: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError, ValueError) as exc:
        print(f"firmware: {args.host}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({k: v["sha256"] for k, v in m["artifacts"].items()}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
