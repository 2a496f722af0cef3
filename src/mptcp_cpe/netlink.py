"""pyroute2, lean: the names mptcp-cpe uses, without what pyroute2's package ``__init__``
imports besides them.

``import pyroute2`` imports the whole library (IPDB, NDB, conntrack, IPVS, nl80211, plan9...):
122 ms on an x86 core for the 60 ms that rtnetlink and the MPTCP family need, and wand,
the converter and the firewall each pay it when a router boots - under qemu's TCG, seconds
(bench/firmware: boot_to_ready). So the package is put in ``sys.modules`` unexecuted, its
submodules import as usual, and the first use of a top-level name (``pyroute2.IPRoute``,
``from pyroute2 import NDB``, by any code in the process) runs the real ``__init__`` then:
nothing that expects the whole package finds less. A process that imported pyroute2
before this module keeps its pyroute2 as it is.

Import pyroute2's names from here, not from pyroute2, in mptcp-cpe's code.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def _lean_package() -> None:
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        raise ImportError("pyroute2 is not installed as a package")
    package = importlib.util.module_from_spec(spec)

    def whole(name: str):
        """PEP 562: a top-level name not defined yet. A submodule (``from pyroute2 import
        config``, which pyroute2's own modules do) is imported alone; any other name runs the
        package's __init__."""
        if name.startswith("__"):
            raise AttributeError(name)
        if importlib.util.find_spec(f"pyroute2.{name}") is not None:
            return importlib.import_module(f"pyroute2.{name}")
        del package.__getattr__
        spec.loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = whole
    sys.modules["pyroute2"] = package


def whole_package_loaded(module: ModuleType | None = None) -> bool:
    """Whether pyroute2's own __init__ has run in this process (for tests and benches)."""
    module = module or sys.modules.get("pyroute2")
    return module is not None and "__getattr__" not in vars(module)


_lean_package()

# ruff: noqa: E402  (the package must be lean before its submodules load)
from pyroute2.iproute.linux import IPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic.mptcp import MPTCP, MPTCP_PM_CMD_SET_FLAGS, mptcp_msg
from pyroute2.netlink.rtnl import (
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV4_RULE,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_LINK,
)

__all__ = ["IPRoute", "MPTCP", "MPTCP_PM_CMD_SET_FLAGS", "NLM_F_ACK", "NLM_F_REQUEST", "NetlinkError",
           "RTMGRP_IPV4_IFADDR", "RTMGRP_IPV4_ROUTE", "RTMGRP_IPV4_RULE", "RTMGRP_IPV6_IFADDR", "RTMGRP_IPV6_ROUTE",
           "RTMGRP_LINK", "mptcp_msg", "whole_package_loaded"]
