"""The shipped inventories pass validation, and a bad one fails naming host, field and value."""

from __future__ import annotations

import re
import shutil

import pytest

from helpers import TOP, run

INVENTORIES = ["lab", "example", "fleet"]


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_inventory_validates(inventory):
    proc = run("ansible-playbook", "-i", TOP / "inventories" / inventory, "validate.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "failed=0" in proc.stdout


def test_example_is_a_fleet():
    proc = run("ansible-inventory", "-i", TOP / "inventories" / "example", "--graph", "cpes")
    sites = [line for line in proc.stdout.splitlines() if "@site_" in line]
    cpes = [line for line in proc.stdout.splitlines() if "mgmt.example.net" in line]
    assert len(sites) >= 3 and len(cpes) >= 5, proc.stdout


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("gateway: 192.0.2.17", "gateway: 192.0.2.33"),
         "cpe-lyon-01.mgmt.example.net: cpe_wans[1] (fibre).ipv4.gateway: outside the WAN's prefix 192.0.2.16/29 (got '192.0.2.33')"),
        (("kind: lte", "kind: lte-advanced"),
         "cpe-lyon-01.mgmt.example.net: cpe_wans[2] (lte).kind: must be one of"),
        (("device: eth2", "device: eth1"),
         "cpe-lyon-01.mgmt.example.net: cpe_wans[1] (fibre).device: already used by cpe_wans[0] (vdsl) (got 'eth1')"),
        (("down_mbit: 1000,", "down_mbit: 1000M,"),
         "cpe-lyon-01.mgmt.example.net: cpe_wans[1] (fibre).rate.down_mbit: must be a number from 0.064 to 100000 "
         "(got '1000M')"),
    ],
)
def test_bad_inventory_names_host_field_value(tmp_path, edit, expected):
    inv = tmp_path / "inv"
    shutil.copytree(TOP / "inventories" / "example", inv)
    hv = inv / "host_vars" / "cpe-lyon-01.mgmt.example.net.yml"
    text = hv.read_text()
    assert edit[0] in text
    hv.write_text(text.replace(edit[0], edit[1], 1))
    proc = run("ansible-playbook", "-i", inv, "validate.yml")
    assert proc.returncode != 0
    out = " ".join((proc.stdout + proc.stderr).split())
    assert expected in out, out
    # Only the broken host fails; the rest of the fleet still validates.
    assert re.search(r"cpe-rennes-01\.mgmt\.example\.net\s*: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", proc.stdout)


def test_every_mistake_of_a_host_in_one_run(tmp_path):
    """Three mistakes in three places (two WANs and the firewall's data): one run of
    validate.yml names all three, each on its own line, without the text Ansible wraps
    around a failed filter."""
    inv = tmp_path / "inv"
    shutil.copytree(TOP / "inventories" / "example", inv)
    hv = inv / "host_vars" / "cpe-lyon-01.mgmt.example.net.yml"
    text = hv.read_text()
    for old, new in (("gateway: 192.0.2.17", "gateway: 192.0.2.33"), ("kind: lte", "kind: lte-advanced")):
        assert old in text
        text = text.replace(old, new, 1)
    hv.write_text(text + "cpe_management_prefixes: [198.18.200.1/24]\n")
    proc = run("ansible-playbook", "-i", inv, "validate.yml")
    assert proc.returncode != 0
    lines = [line.strip() for line in proc.stdout.splitlines()]
    host = "cpe-lyon-01.mgmt.example.net"
    for expected in (
        f"{host}: cpe_wans[1] (fibre).ipv4.gateway: outside the WAN's prefix 192.0.2.16/29 (got '192.0.2.33')",
        f"{host}: cpe_wans[2] (lte).kind: must be one of 5g, cable, dsl, ethernet, fibre, lte, satellite (got 'lte-advanced')",
        f"{host}: cpe_management_prefixes[0]: not a prefix (an address and a length, host bits zero) (got '198.18.200.1/24')",
    ):
        assert expected in lines, proc.stdout
    out = proc.stdout + proc.stderr
    assert "Finalization of task args" not in out and "filter plugin" not in out, out
    assert re.search(rf"{re.escape(host)}\s*: ok=\d+\s+changed=0\s+unreachable=0\s+failed=1", proc.stdout)
    assert re.search(r"cpe-rennes-01\.mgmt\.example\.net\s*: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", proc.stdout)
