"""mptcp-cpe: network-assisted Multipath TCP for customer routers."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mptcp-cpe")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
