"""firmware.yml for OpenWrt CPEs (cpe_firmware_platform: openwrt): the roles of site.yml
render ImageBuilder's FILES overlay and the package list on the controller (no docker, no
root). The overlay is checked file by file; its scripts by shellcheck and busybox ash, its
uci-defaults by running them against tests/openwrt/uci; `make image` is run in an
ImageBuilder when one is named (here a stand-in Makefile that records what it was asked:
no OpenWrt ImageBuilder can be had on these machines) and printed when none is."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import TOP, VENV_BIN, run_uci_defaults, tool_env
from mptcp_cpe import uci
from mptcp_cpe.openwrt import firewall_want, network_want

BUSYBOX = shutil.which("busybox")
SHELLCHECK = shutil.which("shellcheck", path=str(VENV_BIN)) or shutil.which("shellcheck")
WHEELHOUSE_ANY = TOP / ".build" / "wheelhouse-any"

WANS = [{"name": "wan", "device": "eth1", "kind": "fibre", "ipv4": "dhcp", "ipv6": "dhcp"},
        {"name": "lte", "device": "wwan0", "kind": "lte", "ipv4": "dhcp", "uci_interface": "wwan"}]
HOST_VARS = {
    "cpe_firmware_platform": "openwrt",
    "cpe_firmware_openwrt_release": "24.10.4",
    "cpe_multiwan_ra": False,
    "cpe_wans": WANS,
    "cpe_lans": [{"name": "lan", "device": "br-lan", "ipv4": "198.18.1.1/24"}],
    "cpe_management_prefixes": ["203.0.113.0/28"],
    "cpe_port_forwards": [{"name": "web", "port": 443, "to": "198.18.1.12", "to_port": 8443}],
}
FILES = {
    "etc/init.d/mptcp-cpe-converter", "etc/init.d/mptcp-cpe-limits", "etc/init.d/mptcp-cpe-wand",
    "etc/mptcp-cpe/converter.json", "etc/mptcp-cpe/wand.json",
    "etc/odhcp6c.user.d/50-mptcp-cpe", "etc/udhcpc.user.d/50-mptcp-cpe",
    "etc/sysctl.d/90-mptcp-cpe.conf", "etc/sysctl.d/91-mptcp-cpe-converter.conf",
    "etc/uci-defaults/80-mptcp-cpe-install", "etc/uci-defaults/90-mptcp-cpe-network",
    "etc/uci-defaults/91-mptcp-cpe-firewall",
}
LINKS = {"etc/rc.d/S15mptcp-cpe-limits": "../init.d/mptcp-cpe-limits", "etc/rc.d/K85mptcp-cpe-limits": "../init.d/mptcp-cpe-limits",
         "etc/rc.d/S25mptcp-cpe-wand": "../init.d/mptcp-cpe-wand", "etc/rc.d/K75mptcp-cpe-wand": "../init.d/mptcp-cpe-wand",
         "etc/rc.d/S30mptcp-cpe-converter": "../init.d/mptcp-cpe-converter",
         "etc/rc.d/K70mptcp-cpe-converter": "../init.d/mptcp-cpe-converter"}
PACKAGES = ["python3", "python3-venv", "python3-packaging", "python3-pip", "ip-full", "nftables-json", "kmod-nft-tproxy",
            "kmod-nft-socket"]
# What `make image` is given, as a stand-in ImageBuilder's Makefile records it.
FAKE_IMAGEBUILDER = "image:\n\t@printf '%s\\n' \"$(PROFILE)\" \"$(PACKAGES)\" \"$(FILES)\" \"$(BIN_DIR)\" > $(BIN_DIR)/make-image.args\n"

pytestmark = pytest.mark.skipif(not list(WHEELHOUSE_ANY.glob("mptcp_cpe-*.whl")),
                                reason="no pure wheelhouse in .build/wheelhouse-any (scripts/wheelhouse-pure builds it)")


def firmware(tmp_path: Path, **over) -> subprocess.CompletedProcess:
    inv = tmp_path / "inventory"
    (inv / "host_vars").mkdir(parents=True, exist_ok=True)
    (inv / "hosts.yml").write_text("all:\n  children:\n    cpes:\n      hosts:\n        cpe-ow-1:\n")
    (inv / "host_vars" / "cpe-ow-1.yml").write_text(
        yaml.safe_dump({**HOST_VARS, "cpe_firmware_output_dir": str(tmp_path / "out"), **over}))
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(inv), "firmware.yml"], cwd=TOP, env=tool_env(),
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("owfw")
    proc = firmware(tmp)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return tmp / "out" / "cpe-ow-1", proc


def test_the_overlay_holds_exactly_the_roles_files(rendered):
    out, _ = rendered
    root = out / "files"
    found = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.is_symlink()}
    wheels = {p for p in found if p.startswith("opt/mptcp-cpe/wheelhouse/")}
    assert found - wheels == FILES
    assert {Path(p).name for p in wheels} == {p.name for p in WHEELHOUSE_ANY.glob("*.whl")}
    assert all(p.endswith("-py3-none-any.whl") for p in wheels)
    links = {str(p.relative_to(root)): os.readlink(p) for p in root.rglob("*") if p.is_symlink()}
    assert links == LINKS
    for path in ("etc/init.d/mptcp-cpe-wand", "etc/init.d/mptcp-cpe-converter", "etc/uci-defaults/80-mptcp-cpe-install"):
        assert (root / path).stat().st_mode & 0o111, path


def test_the_package_list_is_the_roles_and_the_command_is_printed(rendered):
    out, proc = rendered
    assert (out / "packages.txt").read_text().split() == PACKAGES
    text = " ".join(proc.stdout.split())
    assert "no ImageBuilder named (cpe_firmware_openwrt_imagebuilder_dir), so nothing was built" in text
    assert f'run: make image PROFILE=generic PACKAGES="{" ".join(PACKAGES)}" FILES={out}/files BIN_DIR={out}/bin' in text


def test_the_configs_are_the_daemons_and_name_no_host(rendered):
    out, _ = rendered
    for name in ("wand.json", "converter.json"):
        text = (out / "files/etc/mptcp-cpe" / name).read_text()
        assert "cpe-ow-1" not in text and '"host"' not in text, name
    for daemon in ("wand", "converter"):
        proc = subprocess.run([str(VENV_BIN / "mptcp-cpe"), daemon, "--check", "--config",
                               str(out / "files/etc/mptcp-cpe" / f"{daemon}.json")], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(BUSYBOX is None, reason="busybox is not installed (scripts/setup installs it)")
def test_every_script_passes_shellcheck_and_ash(rendered):
    out, _ = rendered
    root = out / "files"
    scripts = [*root.glob("etc/init.d/*"), *root.glob("etc/uci-defaults/*"), *root.glob("etc/*.user.d/*")]
    assert len(scripts) == 8
    for script in scripts:
        assert subprocess.run([BUSYBOX, "ash", "-n", str(script)], capture_output=True).returncode == 0, script
        if SHELLCHECK:
            proc = subprocess.run([SHELLCHECK, "-s", "sh", "-S", "style", str(script)], capture_output=True, text=True)
            assert proc.returncode == 0, proc.stdout


@pytest.mark.skipif(BUSYBOX is None, reason="busybox is not installed (scripts/setup installs it)")
def test_first_boot_makes_what_site_yml_makes(rendered, tmp_path):
    """The overlay's uci-defaults, run on OpenWrt's default config, leave what the live
    module would leave: the same sections and options."""
    out, _ = rendered
    defaults = {"network": "network.wan=interface\nnetwork.wan.proto='dhcp'\nnetwork.wan6=interface\n"
                           "network.wan6.proto='dhcpv6'\nnetwork.wwan=interface\nnetwork.wwan.proto='dhcp'\n",
                "firewall": "firewall.@zone[0]=zone\nfirewall.@zone[0].name='lan'\nfirewall.@zone[1]=zone\n"
                            "firewall.@zone[1].name='wan'\nfirewall.@zone[1].network='wan' 'wan6'\n"}
    firewall_config = {"host": "cpe-ow-1", "wans": WANS, "lans": HOST_VARS["cpe_lans"],
                       "management_prefixes": HOST_VARS["cpe_management_prefixes"], "port_forwards": HOST_VARS["cpe_port_forwards"]}
    wants = {"network": network_want("cpe-ow-1", WANS, 224, 65000, 100),
             "firewall": firewall_want("cpe-ow-1", firewall_config, "wan", "lan")}
    for config, script in (("network", "90-mptcp-cpe-network"), ("firewall", "91-mptcp-cpe-firewall")):
        after, _ = run_uci_defaults(out / "files/etc/uci-defaults" / script, config, defaults[config], tmp_path / "uci")
        current = uci.parse_show(config, defaults[config])
        live = uci.apply(config, current, uci.plan(config, current, wants[config]))
        assert after == live, config


def test_an_imagebuilder_named_is_run_with_the_overlay(tmp_path):
    builder = tmp_path / "imagebuilder"
    builder.mkdir()
    (builder / "Makefile").write_text(FAKE_IMAGEBUILDER)
    proc = firmware(tmp_path, cpe_firmware_openwrt_imagebuilder_dir=str(builder), cpe_firmware_openwrt_profile="generic")
    assert proc.returncode == 0, proc.stdout[-3000:]
    out = tmp_path / "out" / "cpe-ow-1"
    assert (out / "bin" / "make-image.args").read_text().splitlines() == [
        "generic", " ".join(PACKAGES), str(out / "files"), str(out / "bin")]
    assert "nothing was built" not in proc.stdout


def test_bad_openwrt_settings_build_nothing_and_say_each(tmp_path):
    proc = firmware(tmp_path, cpe_firmware_openwrt_release="22.03", cpe_firmware_openwrt_profile="bad profile",
                    cpe_firmware_openwrt_imagebuilder_dir="relative/dir")
    assert proc.returncode != 0
    text = " ".join(proc.stdout.split())
    for line in ("cpe-ow-1: cpe_firmware_openwrt_release: before 23.05 netifd's scripts read no /etc/udhcpc.user.d or "
                 "/etc/odhcp6c.user.d (got '22.03')",
                 "cpe-ow-1: cpe_firmware_openwrt_profile: not an ImageBuilder profile name",
                 "cpe-ow-1: cpe_firmware_openwrt_imagebuilder_dir: must be an absolute path to an unpacked ImageBuilder, "
                 "or empty (got 'relative/dir')"):
        assert line in text, line
    assert not (tmp_path / "out").exists()


def test_a_wan_that_must_name_its_interface_is_told_so(tmp_path):
    proc = firmware(tmp_path, cpe_wans=[*WANS[:1], {"name": "lte-2", "device": "wwan0", "kind": "lte", "ipv4": "dhcp"}])
    assert proc.returncode != 0
    assert "cpe-ow-1: cpe_wans[1] (lte-2).uci_interface: missing: the WAN's name is no netifd interface name" in \
        " ".join(proc.stdout.split())


@pytest.mark.parametrize("release, manager", [("24.10", "opkg"), ("24.10.4", "opkg"), ("25.12.0", "apk"), ("SNAPSHOT", "apk")])
def test_the_release_says_the_package_manager(release, manager):
    from mptcp_cpe.openwrt import image_settings
    assert image_settings("h", {"release": release, "profile": "generic", "imagebuilder_dir": ""})["package_manager"] == manager
