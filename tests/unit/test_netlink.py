"""mptcp_cpe.netlink: pyroute2's names without its package __init__, and the whole package for
whoever asks for more. Each case in a fresh interpreter (the test process has pyroute2 already)."""

from __future__ import annotations

import subprocess
import sys

from helpers import TOP


def python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=TOP, env={"PYTHONPATH": str(TOP / "src")},
                          capture_output=True, text=True, check=True).stdout.split()


def test_the_names_mptcp_cpe_uses_come_without_the_rest_of_pyroute2():
    out = python("import sys; from mptcp_cpe import netlink, wand; import mptcp_cpe.wand.kernel, mptcp_cpe.wand.daemon;"
                 "print(netlink.whole_package_loaded(), 'pyroute2.ndb' in sys.modules, 'pyroute2.ipdb' in sys.modules,"
                 " netlink.IPRoute.__module__, netlink.MPTCP.__module__)")
    assert out == ["False", "False", "False", "pyroute2.iproute.linux", "pyroute2.netlink.generic.mptcp"]


def test_a_top_level_name_loads_the_whole_package():
    out = python("from mptcp_cpe import netlink; from pyroute2 import IPRoute, NDB; import pyroute2;"
                 "print(IPRoute is netlink.IPRoute, netlink.whole_package_loaded(), NDB.__name__, pyroute2.__version__ != '')")
    assert out == ["True", "True", "NDB", "True"]


def test_a_process_that_has_pyroute2_keeps_it():
    out = python("import pyroute2; from mptcp_cpe import netlink; import sys;"
                 "print(sys.modules['pyroute2'] is pyroute2, netlink.whole_package_loaded(), netlink.IPRoute is pyroute2.IPRoute)")
    assert out == ["True", "True", "True"]
