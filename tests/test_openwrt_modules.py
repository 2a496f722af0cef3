"""The OpenWrt modules (plugins/modules) load and run under Ansible here, where neither uci
nor apk nor opkg exists: each says so in one line naming the host, and changes nothing.
What they do on a router runs in the gated `openwrt` Molecule scenario; their logic
(mptcp_cpe.uci, the opkg listing) is unit-tested."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from helpers import TOP, VENV_BIN, tool_env

pytestmark = pytest.mark.skipif(shutil.which("uci") or shutil.which("opkg") or shutil.which("apk"),
                                reason="this machine has uci, opkg or apk: the refusals below would not happen")


def adhoc(module: str, args: dict) -> dict:
    env = tool_env()
    env["ANSIBLE_LOAD_CALLBACK_PLUGINS"] = "1"
    env["ANSIBLE_STDOUT_CALLBACK"] = "json"
    proc = subprocess.run([str(VENV_BIN / "ansible"), "localhost", "-c", "local", "-m", module, "-a", json.dumps(args),
                           "-e", f"ansible_python_interpreter={VENV_BIN / 'python'}"],
                          cwd=TOP, env=env, capture_output=True, text=True, timeout=120)
    out = json.loads(proc.stdout)
    return out["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_packages_module_refuses_without_a_package_manager():
    result = adhoc("mptcp_cpe_openwrt_packages", {"name": ["python3"], "host": "cpe-1"})
    assert result.get("failed") and result["msg"] == "cpe-1: neither apk nor opkg on this OpenWrt: cannot install python3"


def test_packages_module_refuses_a_bad_name():
    result = adhoc("mptcp_cpe_openwrt_packages", {"name": ["ok", "rm -rf"], "host": "cpe-1"})
    assert result.get("failed") and result["msg"] == "cpe-1: not package names: 'rm -rf'"


def test_uci_module_needs_uci():
    result = adhoc("mptcp_cpe_uci", {"config": "network", "sections": [], "host": "cpe-1"})
    assert result.get("failed") and "uci" in result["msg"]


def test_opkg_listing_is_read_by_name():
    import importlib.util
    spec = importlib.util.spec_from_file_location("pkgs", TOP / "plugins/modules/mptcp_cpe_openwrt_packages.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.opkg_installed("python3 - 3.11.10-r1\nip-full - 6.11.0-r1\nkmod-nft-tproxy - 6.6.86-r1\n") == {
        "python3", "ip-full", "kmod-nft-tproxy"}
