"""The collection mptcp_cpe.cpe: built by scripts/build-collection, installed offline from its
tarball, and used by FQCN from a scratch directory that sees nothing of the repository."""

from __future__ import annotations

import subprocess
import textwrap

import pytest

from helpers import TOP, VENV_BIN, run, tool_env

WHEELHOUSE = TOP / ".build" / "wheelhouse"
ROLES = ["cpe_base", "cpe_firewall", "cpe_dhcp_client", "cpe_multiwan", "cpe_converter", "isp_dhcp", "mcp_converter"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(collections dir, the installed collection's root, scratch dir with its own ansible.cfg)."""
    if not list(WHEELHOUSE.glob("mptcp_cpe-*.whl")):
        pytest.skip("no wheelhouse in .build/wheelhouse (scripts/setup builds it)")
    tmp = tmp_path_factory.mktemp("collection")
    proc = run(TOP / "scripts" / "build-collection", tmp / "dist")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [tarball] = (tmp / "dist").glob("mptcp_cpe-cpe-*.tar.gz")
    collections = tmp / "collections"
    proc = run("ansible-galaxy", "collection", "install", "--offline", "--force", "-p", collections, tarball)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = collections / "ansible_collections" / "mptcp_cpe" / "cpe"
    scratch = tmp / "scratch"
    scratch.mkdir()
    (scratch / "ansible.cfg").write_text(textwrap.dedent(f"""\
        [defaults]
        collections_path = {collections}
        roles_path = {scratch / "roles"}
        interpreter_python = auto_silent
        retry_files_enabled = false
        """))
    return collections, root, scratch


def playbook(scratch, name, text, *args, **env_extra):
    """ansible-playbook from the scratch directory, with its ansible.cfg and nothing of the repo's."""
    (scratch / name).write_text(textwrap.dedent(text))
    env = tool_env()
    env["ANSIBLE_CONFIG"] = str(scratch / "ansible.cfg")
    env.update(env_extra)
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", *args, name], cwd=scratch,
                          env=env, text=True, capture_output=True, timeout=300)


def test_roles_by_fqcn_pass_syntax_check(installed):
    _, _, scratch = installed
    roles = "".join(f"    - role: mptcp_cpe.cpe.{r}\n" for r in ROLES)
    proc = playbook(scratch, "site.yml", "- name: Every role by FQCN\n  hosts: all\n  gather_facts: false\n  roles:\n" + roles,
                    "--syntax-check")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_filter_by_fqcn(installed):
    _, _, scratch = installed
    proc = playbook(scratch, "filter.yml", """\
        - name: A filter by FQCN
          hosts: localhost
          connection: local
          gather_facts: false
          tasks:
            - name: Check a WAN list
              ansible.builtin.assert:
                that:
                  - wans | length == 1
                  - wans[0].device == 'eth1'
                  - wans[0].weight == 1
                  - "wans[0].probes == [{'kind': 'icmp', 'target': 'gateway'}]"
              vars:
                wans: "{{ [{'name': 'wan1', 'device': 'eth1', 'kind': 'dsl', 'ipv4': 'dhcp', 'ipv6': 'none'}] | mptcp_cpe.cpe.mptcp_cpe_wans('h') }}"
        """)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "failed=0" in proc.stdout


def test_firewall_check_renders_its_config(installed):
    """A role's own checks from the installed collection: no host is changed. Its tasks name
    the filters by short name, found through filter_plugins pointing into the collection."""
    _, root, scratch = installed
    proc = playbook(scratch, "check.yml", """\
        - name: The firewall's checks from the collection
          hosts: localhost
          connection: local
          gather_facts: false
          vars:
            cpe_wans:
              - {name: wan1, device: eth1, kind: fibre, ipv4: dhcp, ipv6: none}
            cpe_lans:
              - {name: office, device: eth0, ipv4: 192.168.1.1/24, ipv6: none}
            cpe_management_prefixes: [198.18.200.0/24]
          tasks:
            - name: Check the cpe_firewall data
              ansible.builtin.include_role:
                name: mptcp_cpe.cpe.cpe_firewall
                tasks_from: check.yml

            - name: The config is rendered
              ansible.builtin.assert:
                that:
                  - __cpe_firewall_config.wans | map(attribute='device') | list == ['eth1']
                  - __cpe_firewall_config.lans | map(attribute='device') | list == ['eth0']
                  - __cpe_firewall_config.nft_table == 'mptcp_cpe_firewall'
        """, ANSIBLE_FILTER_PLUGINS=str(root / "plugins" / "filter"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "changed=0" in proc.stdout and "failed=0" in proc.stdout


def test_wheelhouse_is_inside_the_collection(installed):
    _, root, _ = installed
    # cpe_base_wheelhouse defaults to "{{ role_path }}/files/wheelhouse".
    wheels = sorted(p.name for p in (root / "roles" / "cpe_base" / "files" / "wheelhouse").glob("*.whl"))
    assert wheels == sorted(p.name for p in WHEELHOUSE.glob("*.whl"))
    assert any(w.startswith("mptcp_cpe-") for w in wheels)


def test_the_pure_wheelhouse_is_inside_the_collection(installed):
    # OpenWrt routers take it (cpe_base's files/wheelhouse-any): every wheel pure.
    _, root, _ = installed
    wheels = sorted(p.name for p in (root / "roles" / "cpe_base" / "files" / "wheelhouse-any").glob("*.whl"))
    assert wheels == sorted(p.name for p in (TOP / ".build" / "wheelhouse-any").glob("*.whl"))
    assert any(w.startswith("mptcp_cpe-") for w in wheels) and all(w.endswith("-py3-none-any.whl") for w in wheels)
