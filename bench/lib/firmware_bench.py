"""bench/firmware: what a firmware image costs to build and to boot.

With a warm base cache (one build first, not counted): the time of firmware.yml for one
device and for ten (a fleet inventory made from the lab CPE's data, one host per device);
the artifacts' sizes, the root split by part (kernel and modules, Python and the
mptcp-cpe venv, the rest: unpacked, and compressed alone with the image's squashfs
options); the disk image booted under qemu (TCG) from power-on until the converter serves
(its Type=notify unit started), beside the same image's boot to multi-user.target with
mptcp-cpe's units masked on the kernel command line. Last line:
  n10_over_n1=R per_device_s=S squashfs_mb=M disk_mb=D boot_to_ready_s=B
(MB: 10^6 bytes.) Targets (issue 15): R <= 2.0, M <= 100, B <= 1.5 x the masked boot.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "src"))
from mptcp_cpe.firmware import ESP_MIB, MIB  # noqa: E402  (the disk layout the image has)

MB = 1e6
FLEET = int(os.environ.get("BENCH_FLEET", "10"))
BOOTS = int(os.environ.get("BENCH_BOOTS", "3"))
BOOT_TIMEOUT_S = float(os.environ.get("BENCH_BOOT_TIMEOUT_S", "300"))
WORK = Path(os.environ.get("BENCH_DIR", "/var/tmp"))

# The VM's NICs: the MACs the fleet's images name wan1, wan2 and lan0 (cpe_firmware_nics),
# each on a qemu user network of its own inside the benchmark address plan, cut off from
# everything outside qemu (restrict=on).
NICS = [("wan1", "52:54:00:c0:00:01", "198.18.10.0/24"), ("wan2", "52:54:00:c0:00:02", "198.18.11.0/24"),
        ("lan0", "52:54:00:c0:00:03", "198.18.12.0/24")]
READY = re.compile(r"Started .*mptcp-cpe converter")
MULTI_USER = re.compile(r"Reached target .*Multi-User System")


def fleet(root: Path, count: int) -> Path:
    """An inventory of count CPEs cpe01..: the lab CPE's data, its NIC names by MAC."""
    inv = root / f"fleet{count}"
    shutil.copytree(TOP / "inventories/lab/group_vars", inv / "group_vars")
    (inv / "host_vars").mkdir(parents=True)
    lab_cpe = (TOP / "inventories/lab/host_vars/cpe.yml").read_text()
    names = [f"cpe{i:02d}" for i in range(1, count + 1)]
    for name in names:
        nics = "".join(f"  - {{name: {dev}, mac: \"{mac}\"}}\n" for dev, mac, _ in NICS)
        (inv / "host_vars" / f"{name}.yml").write_text(f"{lab_cpe}\ncpe_firmware_nics:\n{nics}")
    (inv / "hosts.yml").write_text("all:\n  children:\n    cpes:\n      hosts:\n"
                                   + "".join(f"        {n}:\n" for n in names))
    return inv


def build(inv: Path, out: Path) -> float:
    """firmware.yml on every CPE of inv; its wall time."""
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, ANSIBLE_CONFIG=str(TOP / "ansible.cfg"))
    t0 = time.monotonic()
    proc = subprocess.run([str(TOP / ".venv/bin/ansible-playbook"), "-i", str(inv), "firmware.yml",
                           "-e", f"cpe_firmware_output_dir={out}"], cwd=TOP, env=env, capture_output=True, text=True)
    took = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit(f"bench/firmware: firmware.yml on {inv.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-1500:]}")
    for host in json.loads(subprocess.run([str(TOP / ".venv/bin/ansible-inventory"), "-i", str(inv), "--list"],
                                          capture_output=True, text=True, check=True).stdout)["cpes"]["hosts"]:
        if not (out / host / "manifest.json").exists():
            sys.exit(f"bench/firmware: {host}: no manifest.json under {out / host}")
    return took


def tree_bytes(paths: list[Path]) -> int:
    seen: set[tuple[int, int]] = set()
    total = 0
    for p in paths:
        for dirpath, _, files in os.walk(p):
            for f in files:
                st = os.lstat(os.path.join(dirpath, f))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
    return total


def sqfs_bytes(sources: list[Path], out: Path, exclude: list[str] = ()) -> int:
    """What these paths take compressed alone, with the image's squashfs options (xz, 1 MiB, BCJ x86)."""
    cmd = ["mksquashfs", *map(str, sources), str(out), "-noappend", "-comp", "xz", "-Xbcj", "x86", "-b", "1M",
           "-no-progress", "-quiet", "-processors", "2"]
    if exclude:
        cmd += ["-wildcards", "-e", *exclude]
    subprocess.run(cmd, check=True, capture_output=True)
    size = out.stat().st_size
    out.unlink()
    return size


def parts(rootfs_tar: Path, scratch: Path) -> list[tuple[str, int, int]]:
    """The root by part: (part, unpacked bytes, compressed bytes)."""
    root = scratch / "root"
    root.mkdir()
    subprocess.run(["tar", "--extract", "--file", str(rootfs_tar), "--directory", str(root), "--numeric-owner"],
                   check=True)
    groups = {
        "kernel and modules": ["boot", "usr/lib/modules"],
        "Python and the mptcp-cpe venv": [*(str(p.relative_to(root)) for p in sorted(root.glob("usr/lib/python3*"))),
                                          "opt/mptcp-cpe"],
    }
    rows = []
    listed = []
    for name, rels in groups.items():
        paths = [root / r for r in rels if (root / r).exists()]
        listed += [str(p.relative_to(root)) for p in paths]
        rows.append((name, tree_bytes(paths), sqfs_bytes(paths, scratch / "part.sqfs")))
    everything = tree_bytes([root])
    rest = sqfs_bytes([root], scratch / "part.sqfs", exclude=listed)
    rows.append(("the rest", everything - sum(r[1] for r in rows), rest))
    shutil.rmtree(root)
    return rows


def mptcp_cpe_units(rootfs_tar: Path) -> list[str]:
    """The mptcp-cpe units the image enables (its *.wants links)."""
    names = subprocess.run(["tar", "--list", "--file", str(rootfs_tar)], capture_output=True, text=True, check=True).stdout
    units = {Path(n).name for n in names.splitlines()
             if re.search(r"etc/systemd/system/[^/]+\.wants/mptcp-cpe-[^/]+$", n)}
    return sorted(units)


def masked_copy(disk: Path, out: Path, units: list[str]) -> None:
    """The same disk image whose boot entry masks the given units (systemd.mask=)."""
    shutil.copyfile(disk, out)
    img = f"{out}@@{MIB}"
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    entry = subprocess.run(["mtype", "-i", img, "::loader/entries/mptcp-cpe.conf"], capture_output=True, text=True,
                           env=env, check=True).stdout
    masks = " ".join(f"systemd.mask={u}" for u in units)
    new = re.sub(r"^options (.*)$", lambda m: f"options {m.group(1)} {masks}", entry, flags=re.M)
    tmp = out.with_suffix(".entry")
    tmp.write_text(new)
    subprocess.run(["mcopy", "-o", "-i", img, str(tmp), "::loader/entries/mptcp-cpe.conf"], env=env, check=True)
    tmp.unlink()


def boot(disk: Path, scratch: Path, wanted: list[re.Pattern]) -> dict[str, float]:
    """Power on a VM with this disk (written to a snapshot); seconds until each pattern is
    on its serial console. Stopped once all are seen, or at BOOT_TIMEOUT_S."""
    vars_fd = scratch / "OVMF_VARS.fd"
    shutil.copyfile("/usr/share/OVMF/OVMF_VARS_4M.fd", vars_fd)
    cmd = ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "768",
           "-display", "none", "-monitor", "none", "-serial", "stdio", "-nodefaults",
           "-drive", "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
           "-drive", f"if=pflash,format=raw,file={vars_fd}",
           "-drive", f"file={disk},format=raw,if=virtio,snapshot=on"]
    for i, (_, mac, net) in enumerate(NICS):
        cmd += ["-netdev", f"user,id=n{i},restrict=on,net={net}", "-device", f"virtio-net-pci,netdev=n{i},mac={mac}"]
    seen: dict[str, float] = {}
    log = (scratch / f"serial-{disk.stem}.log").open("w", errors="replace")
    t0 = time.monotonic()
    vm = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    timer = threading.Timer(BOOT_TIMEOUT_S, vm.kill)
    timer.start()
    try:
        for raw in vm.stdout:
            line = raw.decode(errors="replace")
            log.write(line)
            for pat in wanted:
                if pat.pattern not in seen and pat.search(line):
                    seen[pat.pattern] = time.monotonic() - t0
            if len(seen) == len(wanted):
                break
    finally:
        timer.cancel()
        vm.kill()
        vm.wait()
        log.close()
    missing = [p.pattern for p in wanted if p.pattern not in seen]
    if missing:
        sys.exit(f"bench/firmware: {disk.name}: not on the console within {BOOT_TIMEOUT_S:.0f} s: {missing} "
                 f"(console: {log.name})")
    return seen


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="bench-firmware.", dir=WORK))
    try:
        one, many = fleet(scratch, 1), fleet(scratch, FLEET)
        print(f"bench/firmware: warming the base cache (one build, not counted) in {scratch}", flush=True)
        build(one, scratch / "warm")
        shutil.rmtree(scratch / "warm")
        t1 = build(one, scratch / "out1")
        print(f"  1 device: {t1:.1f} s", flush=True)
        tn = build(many, scratch / f"out{FLEET}")
        print(f"  {FLEET} devices: {tn:.1f} s", flush=True)
        shutil.rmtree(scratch / f"out{FLEET}")

        dev = scratch / "out1" / "cpe01"
        sizes = {a: (dev / a).stat().st_size for a in ("rootfs.tar", "base.squashfs", "layer.squashfs", "disk.img")}
        split = parts(dev / "rootfs.tar", scratch)

        units = mptcp_cpe_units(dev / "rootfs.tar")
        masked = scratch / "masked.img"
        masked_copy(dev / "disk.img", masked, units)
        ready, plain = [], []
        for _ in range(BOOTS):
            got = boot(dev / "disk.img", scratch, [READY, MULTI_USER])
            ready.append((got[READY.pattern], got[MULTI_USER.pattern]))
            plain.append(boot(masked, scratch, [MULTI_USER])[MULTI_USER.pattern])
        ready.sort()
        plain.sort()
        b_ready, b_mu = ready[len(ready) // 2]
        b_plain = plain[len(plain) // 2]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    ratio = tn / t1
    per_device = (tn - t1) / (FLEET - 1)
    sqfs = (sizes["base.squashfs"] + sizes["layer.squashfs"]) / MB
    print()
    print(f"{'build (warm base cache)':<40}{'wall s':>10}")
    print(f"{'1 device':<40}{t1:>10.1f}")
    print(f"{f'{FLEET} devices':<40}{tn:>10.1f}")
    print(f"{'each device beyond the first':<40}{per_device:>10.1f}")
    print()
    print(f"{'artifact':<40}{'MB':>10}")
    for name, size in sizes.items():
        print(f"{name:<40}{size / MB:>10.1f}")
    print(f"{'squashfs (base + layer)':<40}{sqfs:>10.1f}")
    print(f"{'disk.img: ESP':<40}{ESP_MIB * MIB / MB:>10.1f}")
    print()
    print(f"{'root by part':<40}{'unpacked MB':>12}{'squashfs MB':>12}")
    for name, raw, comp in split:
        print(f"{name:<40}{raw / MB:>12.1f}{comp / MB:>12.1f}")
    print()
    print(f"{'boot under qemu (TCG), power-on to':<52}{'s':>8}")
    print(f"{'the converter serving':<52}{b_ready:>8.1f}")
    print(f"{'multi-user.target (same boot)':<52}{b_mu:>8.1f}")
    print(f"{'multi-user.target, mptcp-cpe units masked':<52}{b_plain:>8.1f}")
    print(f"  masked: {', '.join(units)}")
    if BOOTS > 1:
        print(f"  medians of {BOOTS} boots each; converter serving: {', '.join(f'{r:.1f}' for r, _ in ready)}; "
              f"masked multi-user.target: {', '.join(f'{b:.1f}' for b in plain)}")
    print()
    print(f"targets: n10_over_n1 <= 2.0 ({'met' if ratio <= 2.0 else 'NOT met'}), squashfs_mb <= 100 "
          f"({'met' if sqfs <= 100 else 'NOT met'}), boot_to_ready <= 1.5 x masked boot = {1.5 * b_plain:.1f} s "
          f"({'met' if b_ready <= 1.5 * b_plain else 'NOT met'})")
    print(f"n10_over_n1={ratio:.2f} per_device_s={per_device:.1f} squashfs_mb={sqfs:.1f} "
          f"disk_mb={sizes['disk.img'] / MB:.1f} boot_to_ready_s={b_ready:.1f}")


if __name__ == "__main__":
    main()
