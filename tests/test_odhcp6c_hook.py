"""The odhcp6c hook as OpenWrt's dhcpv6.script sources it (`. hook "$@"`, $1 the device,
$2 the state, OPTION_<code> one option instance as hex). odhcp6c itself is not packaged
for Debian, so this drives the hook the way odhcp6c's script does, not odhcp6c."""

from __future__ import annotations

import json
import subprocess

import jinja2

from helpers import TOP, VENV_BIN

INSTANCE = "20010db8000002000000000000000001"  # 2001:db8:0:200::1


def run_hook(tmp_path, device, state, option=None):
    state_file = tmp_path / "mcp.json"
    wrapper = tmp_path / "mptcp-cpe"
    wrapper.write_text(f'#!/bin/sh\nsub=$1; shift\nexec {VENV_BIN}/mptcp-cpe "$sub" --state-file {state_file} "$@"\n')
    wrapper.chmod(0o755)
    hook = tmp_path / "odhcp6c-hook"
    template = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(
        (TOP / "hooks" / "dhcp-client" / "odhcp6c-hook.j2").read_text())
    hook.write_text(template.render(wan_devices=["wan1", "wan2"], v6_option_code=65000, hook_timeout=10,
                                    mptcp_cpe_bin=wrapper))
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
    if option is not None:
        env["OPTION_65000"] = option
    # What OpenWrt's dhcpv6.script does for each file of /etc/odhcp6c.user.d/.
    proc = subprocess.run(["sh", "-c", f'. {hook} "$@"', "dhcpv6.script", device, state],
                          env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return json.loads(state_file.read_text()) if state_file.exists() else None


def test_bound_records_then_unbound_withdraws(tmp_path):
    state = run_hook(tmp_path, "wan1", "bound", INSTANCE)
    assert state["wans"]["wan1"]["v6"] == {**state["wans"]["wan1"]["v6"], "mcps": [["2001:db8:0:200::1"]],
                                           "client": "odhcp6c", "event": "bound"}
    assert run_hook(tmp_path, "wan1", "unbound") == {"version": 1, "wans": {}}


def test_a_device_that_is_no_wan_is_left_alone(tmp_path):
    assert run_hook(tmp_path, "br-lan", "bound", INSTANCE) is None


def test_malformed_instance_keeps_what_the_wan_had(tmp_path):
    run_hook(tmp_path, "wan2", "bound", INSTANCE)
    assert run_hook(tmp_path, "wan2", "updated", "20010db8")["wans"]["wan2"]["v6"]["mcps"] == [["2001:db8:0:200::1"]]
