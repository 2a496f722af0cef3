"""cpe_base ships the wheelhouse of the router's CPU: mptcp_cpe carries a compiled codec, so
an aarch64 router must get an aarch64 wheel (scripts/wheelhouse arm64), never the
controller's x86_64 one. The role's choice and its check (tasks/wheel.yml), run on the
controller with the router's CPU given (no router needed: nothing is copied yet)."""

from __future__ import annotations

import re

import yaml

from helpers import run

WHEEL = "mptcp_cpe-0.1.0-cp311-cp311-linux_{}.whl"


def test_each_router_gets_the_wheels_of_its_cpu(tmp_path):
    both, only_x86 = tmp_path / "both", tmp_path / "x86"
    for d, machine in ((both, "x86_64"), (tmp_path / "both-aarch64", "aarch64"), (only_x86, "x86_64")):
        d.mkdir()
        (d / WHEEL.format(machine)).write_bytes(b"")
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump({"all": {"vars": {"ansible_connection": "local"}, "hosts": {
        "arm1": {"__cpe_base_machine": "aarch64", "cpe_base_wheelhouse": str(both)},
        "arm2": {"__cpe_base_machine": "aarch64", "cpe_base_wheelhouse": str(only_x86)},
        "pc1": {"__cpe_base_machine": "x86_64", "cpe_base_wheelhouse": str(both)}}}}))
    play = tmp_path / "play.yml"
    play.write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "tasks": [
        {"ansible.builtin.include_role": {"name": "cpe_base", "tasks_from": "wheel.yml"}},
        {"ansible.builtin.debug": {"msg": "chose {{ __cpe_base_wheelhouse }}/{{ __cpe_base_wheel }}"}}]}]))
    proc = run("ansible-playbook", "-i", inv, play)
    out = proc.stdout
    assert proc.returncode == 2, out
    chose = dict(re.findall(r"ok: \[(\w+)\] => \n\s+msg: chose (\S+)", out))
    assert chose == {"arm1": f"{both}-aarch64/{WHEEL.format('aarch64')}", "pc1": f"{both}/{WHEEL.format('x86_64')}"}, out
    assert (f"arm2: cpe_base_wheelhouse: {only_x86}/{WHEEL.format('x86_64')} is built for x86_64, but this router "
            f"is aarch64 and there is no mptcp_cpe wheel in {only_x86}-aarch64 (run scripts/wheelhouse arm64 on "
            "the controller to build it)") in " ".join(out.split()), out
