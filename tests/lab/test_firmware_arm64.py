"""firmware.yml for an arm64 CPE (the lab CPE with cpe_firmware_arch=arm64): the base is
Debian's arm64 archive, mmdebstrap under qemu-user through binfmt_misc; mptcp_cpe's codec is
compiled for aarch64 (scripts/wheelhouse arm64, in an arm64 Debian container) and the roles
install that wheel, never the controller's x86_64 .so; the disk boots with systemd-boot's
aarch64 loader. Opt-in, as every maintainer script and the compiler run emulated (about
25 minutes on 2 cores with no cached base, 5 with them): MPTCP_CPE_TEST_ARM64=1."""

from __future__ import annotations

import json
import os
import struct
import tarfile

import pytest

from helpers import TOP, needs_root_docker, run

pytestmark = [pytest.mark.lab, pytest.mark.root, needs_root_docker,
              pytest.mark.skipif(os.environ.get("MPTCP_CPE_TEST_ARM64") != "1",
                                 reason="arm64 images build under qemu-user (slow): set MPTCP_CPE_TEST_ARM64=1")]

EM_X86_64, EM_AARCH64 = 62, 183


def elf_machine(data: bytes) -> int:
    assert data[:4] == b"\x7fELF", data[:4]
    return struct.unpack_from("<H", data, 18)[0]


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    out = tmp_path_factory.mktemp("fw-arm64")
    proc = run(TOP / ".venv/bin/ansible-playbook", "-i", "inventories/lab", "firmware.yml", "--limit", "cpe",
               "-e", f"cpe_firmware_output_dir={out}", "-e", "cpe_firmware_arch=arm64",
               "-e", "cpe_firmware_source_date_epoch=1767225600", timeout=3600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return out / "cpe"


def test_the_arm64_image_runs_arm64_code_and_its_own_codec(image):
    manifest = json.loads((image / "manifest.json").read_text())
    assert manifest["base"]["arch"] == "arm64"
    arches = {p["arch"] for p in manifest["packages"]}
    assert arches <= {"arm64", "all"}, arches
    assert "linux-image-arm64" in {p["name"] for p in manifest["packages"]}
    with tarfile.open(image / "rootfs.tar") as tar:
        members = {m.name.removeprefix("./"): m for m in tar}
        codec = [n for n in members if n.startswith("opt/mptcp-cpe/venv/lib/") and "/mptcp_cpe/_mcp_codec" in n
                 and n.endswith(".so")]
        assert len(codec) == 1, codec
        assert elf_machine(tar.extractfile(members[codec[0]]).read(64)) == EM_AARCH64
        python = members["usr/bin/python3.11"]
        assert elf_machine(tar.extractfile(python).read(64)) == EM_AARCH64
        wheels = [n for n in members if n.startswith("opt/mptcp-cpe/wheelhouse/mptcp_cpe-")]
        assert wheels and all(n.endswith("-linux_aarch64.whl") for n in wheels), wheels


def test_the_arm64_disk_boots_with_the_aarch64_loader(image):
    table = json.loads(run("sfdisk", "--json", image / "disk.img", check=True).stdout)["partitiontable"]
    esp = next(p for p in table["partitions"] if p["name"] == "cpe-efi")
    listing = run("mdir", "-i", f"{image / 'disk.img'}@@{esp['start'] * 512}", "-/", "-b", "::", check=True).stdout
    assert {"::/EFI/BOOT/BOOTAA64.EFI", "::/vmlinuz", "::/initrd.img"} <= set(listing.split())
    assert "::/EFI/BOOT/BOOTX64.EFI" not in listing
