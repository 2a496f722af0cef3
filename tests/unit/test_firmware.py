"""Firmware images (mptcp_cpe.firmware): the role's settings, the base's inputs, the
manifest's inventory data, and the layer a device adds to its base."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import stat
import tarfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mptcp_cpe import firmware
from mptcp_cpe.checks import InventoryError, error_list

GOOD = {"arch": "amd64", "kernel": "backports", "source_date_epoch": "", "base_epoch": 1735689600,
        "packages_extra": [], "prune_extra": []}


def test_defaults_are_accepted():
    s = firmware.settings("cpe1", GOOD)
    assert s == firmware.Settings("amd64", "backports", None, 1735689600, (), ())
    assert s.kernel_package() == "linux-image-amd64/bookworm-backports"


def test_stable_kernel_and_arm64():
    s = firmware.settings("cpe1", {**GOOD, "arch": "arm64", "kernel": "stable", "source_date_epoch": 1700000000})
    assert s.kernel_package() == "linux-image-arm64" and s.source_date_epoch == 1700000000


def test_every_mistake_at_once_naming_host_field_and_value():
    with pytest.raises(InventoryError) as exc:
        firmware.settings("cpe7", {**GOOD, "arch": "sparc", "kernel": "6.1", "base_epoch": -5,
                                   "packages_extra": ["Bad Name"], "prune_extra": ["usr/share/doc"]})
    lines = [str(e) for e in error_list(exc.value)]
    assert lines == [
        "cpe7: cpe_firmware_arch: must be one of amd64, arm64 (got 'sparc')",
        "cpe7: cpe_firmware_kernel: must be backports (bookworm-backports' 6.12) or stable (bookworm's 6.1) (got '6.1')",
        "cpe7: cpe_firmware_base_epoch: must be an integer from 1 to 4294967295 (got -5)",
        "cpe7: cpe_firmware_packages_extra: each item must be a Debian package name (pkg or pkg/release) (got 'Bad Name')",
        "cpe7: cpe_firmware_prune_extra: each item must be an absolute path pattern for dpkg's path-exclude (got 'usr/share/doc')",
    ]


def test_epochs_may_be_digits_as_from_the_environment_or_extra_vars():
    s = firmware.settings("cpe1", {**GOOD, "source_date_epoch": "1767225600", "base_epoch": "1735689600"})
    assert (s.source_date_epoch, s.base_epoch) == (1767225600, 1735689600)
    with pytest.raises(InventoryError, match=r"cpe1: cpe_firmware_source_date_epoch: .*\(got '17e8'\)"):
        firmware.settings("cpe1", {**GOOD, "source_date_epoch": "17e8"})


def test_lists_must_be_lists():
    with pytest.raises(InventoryError, match=r"cpe1: cpe_firmware_packages_extra: must be a list"):
        firmware.settings("cpe1", {**GOOD, "packages_extra": "htop"})


def test_base_packages_and_prune_options():
    s = firmware.settings("cpe1", {**GOOD, "packages_extra": ["htop", "ethtool/bookworm-backports"],
                                   "prune_extra": ["/usr/share/zoneinfo/*"]})
    listed = "# comment\nsystemd\n\npython3  # the daemons\n"
    assert firmware.base_packages(listed, s) == ["systemd", "python3", "linux-image-amd64/bookworm-backports",
                                                 "htop", "ethtool/bookworm-backports"]
    assert firmware.prune_options("# x\npath-exclude=/usr/share/doc/*\n", s) == \
        "path-exclude=/usr/share/doc/*\npath-exclude=/usr/share/zoneinfo/*\n"


class Vaulted(str):
    """Stands for Ansible's AnsibleVaultEncryptedUnicode (it carries _ciphertext)."""
    _ciphertext = b"$ANSIBLE_VAULT;1.1;AES256"


def test_device_data_leaves_secrets_out():
    hostvars = {
        "cpe_wans": [{"name": "dsl", "device": "wan1"}],
        "cpe_firmware_arch": "amd64",
        "cpe_firmware_output_dir": "/tmp/out",
        "cpe_admin_password": "hunter2",
        "cpe_api_token": "t",
        "cpe_ssh_key": "k",
        "cpe_vaulted": Vaulted("x"),
        "cpe_nested": {"user": "ops", "secret": "s", "list": [Vaulted("y"), 1]},
        "ansible_host": "10.0.0.1",
        "lab_links": [],
    }
    assert firmware.device_data(hostvars) == {
        "cpe_firmware_arch": "amd64",
        "cpe_nested": {"list": [1], "user": "ops"},
        "cpe_wans": [{"device": "wan1", "name": "dsl"}],
    }


def _tree(root, files):
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            p.mkdir(exist_ok=True)
        elif isinstance(content, tuple):
            os.symlink(content[0], p)
        else:
            p.write_bytes(content)


def _tar_of(root, out):
    with tarfile.open(out, "w") as tar:
        tar.add(root, arcname=".")


def test_layer_holds_what_the_device_adds_changes_and_removes(tmp_path):
    base, dev = tmp_path / "base", tmp_path / "dev"
    common = {"etc/os-release": b"debian\n", "usr/bin/tool": b"x" * 100, "usr/share/doc/a": b"doc",
              "etc/gone.conf": b"old", "var/lib/old": None, "var/lib/old/state": b"s"}
    _tree(base, common)
    _tree(dev, {**common, "etc/os-release": b"debian\n"})
    # The device: one file changed in place (same size), one added, one symlink added, a
    # file and a directory removed, the rest untouched.
    (dev / "usr/bin/tool").write_bytes(b"y" * 100)
    _tree(dev, {"etc/mptcp-cpe/wand.json": b"{}", "etc/systemd/system/multi-user.target.wants/w.service":
                ("/etc/systemd/system/w.service",)})
    (dev / "etc/gone.conf").unlink()
    (dev / "var/lib/old/state").unlink()
    (dev / "var/lib/old").rmdir()
    _tar_of(base, tmp_path / "base.tar")

    index = firmware.index_tar(tmp_path / "base.tar")
    assert index["usr/bin/tool"].kind == "f" and index["var/lib/old"].kind == "d"
    changed, removed = firmware.layer_plan(index, dev)
    assert "usr/bin/tool" in changed and "etc/mptcp-cpe/wand.json" in changed
    assert "etc/systemd/system/multi-user.target.wants/w.service" in changed
    assert "etc/os-release" not in changed and "usr/share/doc/a" not in changed
    # A removed directory stands for what it held.
    assert removed == ["etc/gone.conf", "var/lib/old"]


@pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts are device nodes: root only")
def test_make_layer_writes_an_overlay_upper_tree(tmp_path):
    dev = tmp_path / "dev"
    _tree(dev, {"etc/mptcp-cpe/wand.json": b"{}", "etc/hostname": b"cpe1\n", "usr/bin/tool": b"t",
                "etc/link": ("wand.json",)})
    firmware.make_layer(dev, ["etc/link", "etc/mptcp-cpe/wand.json"], ["etc/gone.conf"], tmp_path / "layer")
    layer = tmp_path / "layer"
    assert (layer / "etc/mptcp-cpe/wand.json").read_bytes() == b"{}"
    assert os.readlink(layer / "etc/link") == "wand.json"
    assert not (layer / "usr").exists() and not (layer / "etc/hostname").exists()
    st_wh = os.lstat(layer / "etc/gone.conf")
    assert stat.S_ISCHR(st_wh.st_mode) and st_wh.st_rdev == os.makedev(0, 0)


def test_deterministic_tar_ignores_build_time(tmp_path):
    root = tmp_path / "root"
    _tree(root, {"b/file": b"1", "a/file": b"2", "c": None})
    firmware.deterministic_tar(root, tmp_path / "one.tar", 1700000000)
    for p in root.rglob("*"):
        os.utime(p, (2000000000, 2000000000))
    firmware.deterministic_tar(root, tmp_path / "two.tar", 1700000000)
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()
    with tarfile.open(tmp_path / "one.tar") as tar:
        assert [m.name for m in tar][:3] == [".", "./a", "./a/file"]
        assert {m.mtime for m in tar} == {1700000000}


@pytest.mark.skipif(shutil.which("mksquashfs") is None, reason="squashfs-tools (scripts/setup installs it)")
def test_squashfs_is_made_under_firmware_ymls_source_date_epoch(tmp_path, monkeypatch):
    # firmware.yml exports SOURCE_DATE_EPOCH to the build's tools; mksquashfs refuses it
    # beside its own -mkfs-time/-all-time (a fresh base's squashfs failed so in CI).
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    root = tmp_path / "root"
    _tree(root, {"etc/file": b"1"})
    firmware.squashfs(root, tmp_path / "one.squashfs", 1700000000, "amd64")
    os.utime(root / "etc/file", (2000000000, 2000000000))
    firmware.squashfs(root, tmp_path / "two.squashfs", 1700000000, None)
    assert (tmp_path / "one.squashfs").stat().st_size > 0
    listing = subprocess.run(["unsquashfs", "-lls", str(tmp_path / "two.squashfs")],
                             capture_output=True, text=True, check=True).stdout
    assert "2023-11-14" in listing and "2033" not in listing


def test_dpkg_packages_reads_installed_ones_only(tmp_path):
    status = tmp_path / "var/lib/dpkg/status"
    status.parent.mkdir(parents=True)
    status.write_text("Package: b\nStatus: install ok installed\nVersion: 2\nArchitecture: amd64\n"
                      "Description: x\n more\n\n"
                      "Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n"
                      "Package: a\nStatus: install ok installed\nVersion: 1:1.0\nArchitecture: all\n")
    assert firmware.dpkg_packages(tmp_path) == [{"name": "a", "version": "1:1.0", "arch": "all"},
                                                {"name": "b", "version": "2", "arch": "amd64"}]


@given(st.lists(st.from_regex(r"[a-z0-9][a-z0-9+.-]{1,20}", fullmatch=True), max_size=5))
def test_any_debian_package_name_is_accepted(names):
    assert firmware.settings("h", {**GOOD, "packages_extra": names}).packages_extra == tuple(names)


def test_index_tar_follows_hard_links():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("./usr/bin/a")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
        link = tarfile.TarInfo("./usr/bin/b")
        link.type = tarfile.LNKTYPE
        link.linkname = "./usr/bin/a"
        tar.addfile(link)
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"idx-{os.getpid()}.tar")
    try:
        with open(path, "wb") as f:
            f.write(buf.getvalue())
        index = firmware.index_tar(path)
    finally:
        os.unlink(path)
    assert index["usr/bin/b"] == index["usr/bin/a"] and index["usr/bin/a"].size == 3


def test_nics_become_link_files():
    s = firmware.settings("cpe1", {**GOOD, "nics": [{"name": "wan1", "mac": "52:54:00:AA:00:01"},
                                                    {"name": "lan0", "path": "pci-0000:00:05.0"}]})
    files = firmware.link_files(s.nics)
    assert list(files) == ["10-mptcp-cpe-00-wan1.link", "10-mptcp-cpe-01-lan0.link"]
    assert "[Match]\nMACAddress=52:54:00:aa:00:01\n\n[Link]\nName=wan1\n" in files["10-mptcp-cpe-00-wan1.link"]
    assert "Path=pci-0000:00:05.0" in files["10-mptcp-cpe-01-lan0.link"]


@pytest.mark.parametrize(("nics", "line"), [
    ("eth0", "cpe1: cpe_firmware_nics: must be a list of {name, mac} or {name, path} (got 'eth0')"),
    ([{"name": "wan1"}], "cpe1: cpe_firmware_nics[0]: must have exactly one of mac and path (got {'name': 'wan1'})"),
    ([{"name": "wan1", "mac": "52:54:00:00:00"}], "cpe1: cpe_firmware_nics[0].mac: must be a MAC address (aa:bb:cc:dd:ee:ff) (got '52:54:00:00:00')"),
    ([{"name": "a/b", "path": "pci-0"}], "cpe1: cpe_firmware_nics[0].name: must be an interface name (1-15 octets, no '/', ':' or space) (got 'a/b')"),
    ([{"name": "wan1", "path": "pci-0"}, {"name": "wan1", "path": "pci-1"}],
     "cpe1: cpe_firmware_nics[1].name: names another NIC already (got 'wan1')"),
    ([{"name": "wan1", "path": "pci-0", "speed": 1}], None),
])
def test_bad_nics_are_named(nics, line):
    with pytest.raises(InventoryError) as exc:
        firmware.settings("cpe1", {**GOOD, "nics": nics})
    if line is not None:
        assert str(exc.value) == line
    else:
        assert "cpe1: cpe_firmware_nics[0]" in str(exc.value) and "speed" in str(exc.value)


def test_lan_unit_gives_the_lans_their_addresses():
    unit = firmware.lan_unit("cpe1", [{"name": "lan", "device": "lan0", "ipv4": "198.18.1.1/24",
                                       "ipv6": ["2001:db8:0:100::1/64"]},
                                      {"name": "guest", "device": "lan1", "ipv6": ["2001:db8:0:101::1/64"]}])
    lines = unit.splitlines()
    steps = [line for line in lines if line.startswith("ExecStart=")]
    assert steps == ["ExecStart=/sbin/ip link set dev lan0 up",
                     "ExecStart=/sbin/ip -4 address replace 198.18.1.1/24 dev lan0",
                     "ExecStart=/sbin/ip -6 address replace 2001:db8:0:100::1/64 dev lan0",
                     "ExecStart=/sbin/ip link set dev lan1 up",
                     "ExecStart=/sbin/ip -6 address replace 2001:db8:0:101::1/64 dev lan1"]
    # After the firewall, before the network; kept when stopped (no ExecStop), retried
    # until udev has named the NIC.
    assert "After=network-pre.target systemd-udevd.service" in lines and "Before=network.target shutdown.target" in lines
    assert "RemainAfterExit=yes" in lines and "Restart=on-failure" in lines
    assert not any(line.startswith("ExecStop") for line in lines)
    assert "WantedBy=multi-user.target" in lines


def test_lan_unit_none_without_lans_and_inventory_errors_as_validate():
    assert firmware.lan_unit("cpe1", []) == "" and firmware.lan_unit("cpe1", None) == ""
    with pytest.raises(InventoryError) as exc:
        firmware.lan_unit("cpe1", [{"name": "lan", "device": "lan0", "ipv4": "198.18.1.1"}])
    assert str(exc.value).startswith("cpe1: cpe_lans[0] (lan).ipv4: not the CPE's IPv4 address")


LAB_CPE = {"cpe_wans": [{"name": "wan1", "device": "wan1"}], "cpe_lans": [{"name": "lan", "device": "lan0"}],
           "cpe_firmware_arch": "amd64"}


def test_devices_with_equal_role_inputs_share_one_build():
    inputs = {
        "cpe03": {**LAB_CPE, "cpe_firmware_nics": [{"name": "wan1", "mac": "52:54:00:00:00:03"}]},
        "cpe01": {**LAB_CPE, "cpe_firmware_nics": [{"name": "wan1", "mac": "52:54:00:00:00:01"}]},
        # A LAN of its own: the roles render it (firewall, radvd, the LAN unit).
        "cpe02": {**LAB_CPE, "cpe_lans": [{"name": "lan", "device": "lan1"}]},
        "cpe04": dict(LAB_CPE),
        # Built elsewhere: its files cannot be links to a tree in the others' directory.
        "cpe05": {**LAB_CPE, "cpe_firmware_output_dir": "/elsewhere"},
    }
    assert firmware.role_groups(inputs) == {"cpe01": "cpe01", "cpe02": "cpe02", "cpe03": "cpe01", "cpe04": "cpe01",
                                            "cpe05": "cpe05"}
    # Only the roles' variables count: no role reads how Ansible reaches a host.
    assert firmware.role_groups({"b": {**LAB_CPE, "ansible_host": "198.18.0.2"},
                                 "a": {**LAB_CPE, "ansible_host": "198.18.0.1"}}) == {"a": "a", "b": "a"}
    # And which device builds does not depend on the order the inventory lists them.
    assert firmware.role_groups(dict(reversed(list(inputs.items())))) == firmware.role_groups(inputs)


@pytest.mark.skipif(os.geteuid() != 0, reason="the identity's files are root's")
def test_identity_is_written_beside_the_group_tree_never_through_it(tmp_path):
    group = tmp_path / "group"
    _tree(group, {"etc/hostname": b"debian\n", "etc/mptcp-cpe/wand.json": b"{}", "etc/systemd": None})
    _tar_of(group, tmp_path / "base.tar")
    index = firmware.index_tar(tmp_path / "base.tar")
    (group / "etc/mptcp-cpe/wand.json").write_text('{"wans": []}')
    dev = tmp_path / "dev"
    subprocess.run(["cp", "--archive", "--link", str(group), str(dev)], check=True)
    nics = firmware.nics("cpe7", "cpe_firmware_nics", [{"name": "wan1", "mac": "52:54:00:00:00:07"}])
    written = firmware.write_identity(dev, "cpe7", nics)
    assert written == ["etc/hostname", "etc/systemd/network", "etc/systemd/network/10-mptcp-cpe-00-wan1.link"]
    assert (dev / "etc/hostname").read_text() == "cpe7\n" and (group / "etc/hostname").read_text() == "debian\n"
    assert not (group / "etc/systemd/network").exists()
    plan = {"changed": ["etc/mptcp-cpe/wand.json"], "removed": []}
    assert firmware.device_layer(index, dev, plan, written) == [
        "etc/hostname", "etc/mptcp-cpe/wand.json", "etc/systemd/network", "etc/systemd/network/10-mptcp-cpe-00-wan1.link"]
    # A device named as the base is leaves the base's file alone.
    same = tmp_path / "same"
    subprocess.run(["cp", "--archive", "--link", str(group), str(same)], check=True)
    assert firmware.device_layer(index, same, plan, firmware.write_identity(same, "debian", ())) == plan["changed"]


def test_every_nic_mistake_at_once():
    with pytest.raises(InventoryError) as exc:
        firmware.settings("cpe1", {**GOOD, "nics": [{"name": "wan1", "mac": "52:54:00:zz:00:01"},
                                                    {"name": "wan1", "path": "pci-0000:00:04.0"},
                                                    {"name": "lan0", "path": "pci 0"}]})
    assert str(exc.value).splitlines() == [
        "cpe1: cpe_firmware_nics[0].mac: must be a MAC address (aa:bb:cc:dd:ee:ff) (got '52:54:00:zz:00:01')",
        "cpe1: cpe_firmware_nics[1].name: names another NIC already (got 'wan1')",
        "cpe1: cpe_firmware_nics[2].path: must be a udev ID_PATH such as pci-0000:00:03.0 (got 'pci 0')",
    ]
