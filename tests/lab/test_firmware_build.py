"""firmware.yml on the lab inventory: the lab CPE's image is built twice from the same inputs
(byte-identical), holds what site.yml would install with the image-mode branches' effects
(units enabled, not run; sysctl files; no identity baked in), keeps the kernel modules a CPE
needs, and bad input stops the build with one clear line and nothing under the output.
Root and docker; the first build of a base fetches from the Debian archive."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile

import yaml

import pytest

from helpers import TOP, needs_root_docker, run

pytestmark = [pytest.mark.lab, pytest.mark.root, needs_root_docker]

EPOCH = "1767225600"
ARTIFACTS = ("rootfs.tar", "base.squashfs", "layer.squashfs", "disk.img", "manifest.json")


def build(out, *extra, limit="cpe", inventory="inventories/lab"):
    """firmware.yml into out (None: its default, build/firmware, as the README's command)."""
    where = [] if out is None else ["-e", f"cpe_firmware_output_dir={out}"]
    return run(TOP / ".venv/bin/ansible-playbook", "-i", inventory, "firmware.yml", "--limit", limit, *where,
               "-e", f"cpe_firmware_source_date_epoch={EPOCH}", *extra, timeout=1500)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# The lab CPE's twin: the same role inputs, its own name and NICs. Its name sorts first, so
# in the fleet build it is the one that applies the roles for both.
TWIN = "another-cpe"
TWIN_NICS = [{"name": "wan1", "mac": "52:54:00:c0:01:01"}, {"name": "lan0", "path": "pci-0000:00:05.0"}]


def twin_inventory(inv):
    """The lab inventory with the lab CPE's twin beside it, at inv."""
    shutil.copytree(TOP / "inventories/lab", inv)
    hosts = yaml.safe_load((inv / "hosts.yml").read_text())
    hosts["all"]["children"]["cpes"]["hosts"][TWIN] = None
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    twin_vars = yaml.safe_load((inv / "host_vars/cpe.yml").read_text())
    (inv / "host_vars" / f"{TWIN}.yml").write_text(yaml.safe_dump({**twin_vars, "cpe_firmware_nics": TWIN_NICS}))
    return inv


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """The lab CPE's image built alone, then built again with its twin in one run."""
    inv = twin_inventory(tmp_path_factory.mktemp("fleet") / "inventory")
    # The first build where the README's command puts it (firmware.yml's own default).
    outs = [TOP / "build/firmware", tmp_path_factory.mktemp("fw-b")]
    for out, inventory, limit in ((None, "inventories/lab", "cpe"), (outs[1], str(inv), f"cpe,{TWIN}")):
        proc = build(out, limit=limit, inventory=inventory)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    # Each group's tree is gone once its devices are assembled.
    assert not [o for o in outs if (o / ".groups").exists()]
    # One application of the roles for both, by the twin.
    applied = proc.stdout.split("TASK [Apply cpe_base]", 1)[1].split("\n", 2)[1]
    assert applied == f"included: cpe_base for {TWIN}", applied
    return outs


def test_two_builds_are_byte_identical_alone_or_with_its_fleet(images):
    a, b = (out / "cpe" for out in images)
    assert sorted(p.name for p in a.iterdir()) == sorted(ARTIFACTS)
    for name in ARTIFACTS:
        assert sha256(a / name) == sha256(b / name), name
    manifest = json.loads((a / "manifest.json").read_text())
    for name in ("rootfs.tar", "base.squashfs", "layer.squashfs", "disk.img"):
        assert manifest["artifacts"][name]["sha256"] == sha256(a / name)
    assert manifest["source_date_epoch"] == int(EPOCH) and manifest["host"] == "cpe"
    assert len(manifest["mptcp_cpe_build_id"]) == 16
    assert manifest["kernel"]["choice"] == "backports" and manifest["kernel"]["versions"][0].startswith("6.12")
    names = {p["name"] for p in manifest["packages"]}
    assert {"systemd", "nftables", "dhcpcd-base", "radvd", "python3", "linux-image-amd64"} <= names
    # The inventory data that went in, nothing that is not the roles'.
    assert manifest["device"]["cpe_wans"][0]["device"] == "wan1"
    assert not [k for k in manifest["device"] if not k.startswith("cpe_")]


def test_the_twin_differs_from_the_cpe_by_its_identity_only(images):
    cpe, twin = images[1] / "cpe", images[1] / TWIN
    manifests = [json.loads((d / "manifest.json").read_text()) for d in (cpe, twin)]
    assert manifests[1]["host"] == TWIN and manifests[1]["device"]["cpe_firmware_nics"] == TWIN_NICS
    assert manifests[0]["artifacts"]["base.squashfs"] == manifests[1]["artifacts"]["base.squashfs"]
    trees = []
    for d in (cpe, twin):
        with tarfile.open(d / "rootfs.tar") as tar:
            trees.append({m.name.removeprefix("./"): (m.type, m.mode, m.size, m.linkname,
                                                      tar.extractfile(m).read() if m.isfile() else None)
                          for m in tar})
    differ = {name for name in trees[0].keys() | trees[1].keys() if trees[0].get(name) != trees[1].get(name)}
    assert differ == {"etc/hostname", "etc/systemd/network/10-mptcp-cpe-00-wan1.link",
                      "etc/systemd/network/10-mptcp-cpe-01-lan0.link"}, differ
    assert trees[1]["etc/hostname"][4] == f"{TWIN}\n".encode()
    assert b"MACAddress=52:54:00:c0:01:01" in trees[1]["etc/systemd/network/10-mptcp-cpe-00-wan1.link"][4]
    # The daemons' configs name no device: each names itself by the router's hostname.
    for config in ("etc/mptcp-cpe/wand.json", "etc/mptcp-cpe/converter.json", "etc/mptcp-cpe/firewall.json"):
        assert "host" not in json.loads(trees[1][config][4]), config


@pytest.fixture(scope="module")
def tree(images):
    """The image's rootfs.tar: path -> member."""
    with tarfile.open(images[0] / "cpe" / "rootfs.tar") as tar:
        members = {m.name[2:] if m.name.startswith("./") else m.name: m for m in tar}
        texts = {name: tar.extractfile(members[name]).read().decode()
                 for name in ("etc/hostname", "etc/machine-id", "etc/ansible/facts.d/mptcp_cpe_base.fact",
                              "etc/systemd/system/mptcp-cpe-lan.service")}
        config = next(n for n in members if n.startswith("boot/config-"))
        texts["kconfig"] = tar.extractfile(members[config]).read().decode()
    return members, texts


def test_the_image_is_what_site_yml_installs_with_its_services_left_to_boot(tree):
    members, texts = tree
    for unit in ("multi-user.target.wants/mptcp-cpe-wand.service", "multi-user.target.wants/mptcp-cpe-converter.service",
                 "multi-user.target.wants/mptcp-cpe-dhcp4@wan1.service", "multi-user.target.wants/mptcp-cpe-dhcp6@wan2.service",
                 "multi-user.target.wants/mptcp-cpe-limits.service", "multi-user.target.wants/mptcp-cpe-radvd.service",
                 "sysinit.target.wants/mptcp-cpe-firewall.service", "multi-user.target.wants/mptcp-cpe-lan.service"):
        assert members[f"etc/systemd/system/{unit}"].issym(), unit
    # The LAN's addresses (cpe_lans): nothing else in an image sets them.
    lan = texts["etc/systemd/system/mptcp-cpe-lan.service"].splitlines()
    assert "ExecStart=/sbin/ip -4 address replace 198.18.1.1/24 dev lan0" in lan
    assert "ExecStart=/sbin/ip -6 address replace 2001:db8:0:100::1/64 dev lan0" in lan
    for path in ("etc/sysctl.d/90-mptcp-cpe.conf", "etc/sysctl.d/91-mptcp-cpe-converter.conf",
                 "etc/mptcp-cpe/wand.json", "etc/mptcp-cpe/converter.json", "etc/mptcp-cpe/firewall.json",
                 "etc/mptcp-cpe/dhcpcd.conf", "opt/mptcp-cpe/venv/bin/mptcp-cpe"):
        assert members[path].isfile(), path
    # No identity baked in: each device makes its machine-id and SSH host keys at first boot.
    assert texts["etc/machine-id"] == ""
    keys = [m for n, m in members.items() if n.startswith("etc/ssh/ssh_host_")]
    assert keys and all(m.issym() and m.linkname.startswith("/data/ssh-keys/") for m in keys)
    assert texts["etc/hostname"] == "cpe\n"
    # The build machine's kernel was not probed; nothing of the build is left.
    assert json.loads(texts["etc/ansible/facts.d/mptcp_cpe_base.fact"])["kernel"] is None
    assert not [n for n in members if n.startswith(("root/.ansible/", "tmp/", "run/mptcp-cpe"))]
    assert ".dockerenv" not in members


def test_the_pruned_image_keeps_what_a_cpe_needs(tree):
    members, texts = tree
    # MPTCP is built into Debian's kernel; nftables, TPROXY, veth, macvlan, virtio and the
    # common NICs are modules that the prune list must leave.
    assert "CONFIG_MPTCP=y" in texts["kconfig"] and "CONFIG_MPTCP_IPV6=y" in texts["kconfig"]
    modules = {n.rsplit("/", 1)[-1].split(".ko")[0] for n in members if "/kernel/" in n and ".ko" in n}
    needed = {"nf_tables", "nft_tproxy", "nf_tproxy_ipv4", "nf_tproxy_ipv6", "nft_socket", "nft_nat", "nft_masq",
              "veth", "macvlan", "virtio_net", "virtio_blk", "e1000e", "igb", "igc", "r8169", "ixgbe",
              "cdc_ether", "qmi_wwan", "pppoe", "squashfs", "overlay", "ext4"}
    assert needed <= modules, needed - modules
    # And what it is for is gone.
    assert not [n for n in members if "/kernel/drivers/gpu/" in n or "/kernel/sound/" in n]
    assert not [n for n in members if n.startswith("usr/share/man/") and members[n].isfile()]
    assert not [n for n in members if "/gconv/" in n and n.endswith(".so")]
    assert [n for n in members if n.endswith("/gconv/gconv-modules")]


def test_an_unknown_host_is_one_line_and_builds_nothing(tmp_path):
    proc = run(TOP / "scripts/build-firmware", "nosuchcpe", timeout=600)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == \
        "build-firmware: inventories/lab: no CPE named 'nosuchcpe' (its CPEs: cpe)"


def test_an_inventory_error_is_validate_yml_s_message_and_builds_nothing(tmp_path):
    proc = build(tmp_path, "-e", "cpe_firmware_arch=sparc")
    assert proc.returncode != 0
    assert "cpe: cpe_firmware_arch: must be one of amd64, arm64 (got 'sparc')" in proc.stdout
    # The same line validate.yml gives.
    check = run(TOP / ".venv/bin/ansible-playbook", "-i", "inventories/lab", "validate.yml", "--limit", "cpe",
                "-e", "cpe_firmware_arch=sparc")
    assert "cpe: cpe_firmware_arch: must be one of amd64, arm64 (got 'sparc')" in check.stdout
    assert list(tmp_path.iterdir()) == []


def test_one_wrong_cpe_stops_the_build_of_every_cpe(tmp_path):
    """Two CPEs, the second one wrong: neither is built."""
    inv = tmp_path / "inv"
    shutil.copytree(TOP / "inventories/lab", inv)
    hosts = yaml.safe_load((inv / "hosts.yml").read_text())
    hosts["all"]["children"]["cpes"]["hosts"]["cpe2"] = None
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    cpe2 = yaml.safe_load((inv / "host_vars/cpe.yml").read_text())
    (inv / "host_vars/cpe2.yml").write_text(yaml.safe_dump({**cpe2, "cpe_firmware_kernel": "6.1"}))
    out = tmp_path / "out"
    proc = run(TOP / ".venv/bin/ansible-playbook", "-i", inv, "firmware.yml", "-e", f"cpe_firmware_output_dir={out}",
               timeout=600)
    assert proc.returncode != 0
    assert "cpe2: cpe_firmware_kernel: must be backports (bookworm-backports' 6.12) or stable (bookworm's 6.1) (got '6.1')" \
        in proc.stdout
    assert "no image built: the inventory checks above failed for cpe2" in proc.stdout
    assert not out.exists()


def test_a_package_the_archive_lacks_is_named_and_builds_nothing(tmp_path):
    """The lab CPE and its twin, one group: the twin's base fails, and neither is built."""
    inv, out = twin_inventory(tmp_path / "inv"), tmp_path / "out"
    out.mkdir()
    proc = build(out, "-e", '{"cpe_firmware_packages_extra": ["mptcp-cpe-no-such-package"]}',
                 limit=f"cpe,{TWIN}", inventory=str(inv))
    assert proc.returncode != 0
    assert "E: Unable to locate package mptcp-cpe-no-such-package" in proc.stdout, proc.stdout[-3000:]
    assert f"cpe: no image built: it shares the build of {TWIN}, which failed above" in proc.stdout
    assert list(out.iterdir()) == []
    assert run("docker", "ps", "-a", "--filter", "name=mptcp-cpe-fw-", "--format", "{{.Names}}").stdout.strip() == ""


def test_the_disk_image_is_gpt_with_systemd_boot_the_squashfs_parts_and_an_empty_data_partition(images):
    out = images[0] / "cpe"
    table = json.loads(run("sfdisk", "--json", out / "disk.img", check=True).stdout)["partitiontable"]
    assert table["label"] == "gpt"
    parts = {p["name"]: p for p in table["partitions"]}
    assert list(parts) == ["cpe-efi", "cpe-base", "cpe-layer", "cpe-data"]
    assert parts["cpe-efi"]["type"] == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    with open(out / "disk.img", "rb") as disk:
        for name, artifact in (("cpe-base", "base.squashfs"), ("cpe-layer", "layer.squashfs")):
            size = (out / artifact).stat().st_size
            disk.seek(parts[name]["start"] * 512)
            assert hashlib.sha256(disk.read(size)).hexdigest() == sha256(out / artifact), name
        # The data partition is empty: the router formats it at its first boot.
        disk.seek(parts["cpe-data"]["start"] * 512)
        assert disk.read(1 << 20) == bytes(1 << 20)
    esp = f"{out / 'disk.img'}@@{parts['cpe-efi']['start'] * 512}"
    listing = run("mdir", "-i", esp, "-/", "-b", "::", check=True).stdout
    assert {"::/EFI/BOOT/BOOTX64.EFI", "::/vmlinuz", "::/initrd.img", "::/loader/entries/mptcp-cpe.conf"} <= \
        set(listing.split())
    entry = run("mtype", "-i", esp, "::/loader/entries/mptcp-cpe.conf", check=True).stdout
    assert "root=PARTLABEL=cpe-base rootfstype=squashfs ro mptcp_cpe.layer=PARTLABEL=cpe-layer" in entry
