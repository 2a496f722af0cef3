"""mptcp-cpe: network-assisted Multipath TCP for customer routers."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # __version__ on first use only: importlib.metadata is half of what a daemon imports
    # before it can start (about 23 ms here, seconds on a slow router's CPU).
    if name != "__version__":
        raise AttributeError(f"module 'mptcp_cpe' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("mptcp-cpe")
    except PackageNotFoundError:  # running from a source tree that was never installed
        value = "0+unknown"
    globals()["__version__"] = value
    return value
