"""``mptcp-cpe mcp``: the network side of RFC 8803, the MPTCP Conversion Point.

An MPTCP listener (TCP Fast Open on, so the client's Convert message rides in its SYN).
For each connection: the client's address must lie in ``clients`` (otherwise Error Not
Authorized: an MCP is never an open proxy); the Convert message is read and checked
(malformed → its Error code, echoing the message); the Connect TLV's destination must not
be in ``deny_destinations`` nor one of the client prefixes (hairpinning → Not
Authorized); then a TCP connection to the destination within ``connect_timeout_s``. On
success the MCP answers with a Convert message of its own (the fixed header, no TLV),
sends on whatever the client had already sent, and relays both ways with splice. On
failure it answers with the Error TLV for what happened and closes (FIN, never RST at
once, so the Error reaches the client).

Limits: ``max_connections`` and ``max_connections_per_client`` answer Resource Exceeded
with ``retry_after_s``. They hold across all workers: a ClientTable shared by them counts
each client address's connections per worker, plus each worker's total (refusals still
lingering count in the total, not in their client's count). A worker reads the others'
counts without waiting for them, so a limit may be passed by as many connections as other
workers accept in the same instant. The table is sized at start for ``max_connections``
(a reload does not resize it: past the addresses it was sized for, a new client address
may get Resource Exceeded until a restart, and the reload says so); a full table refuses
the new address with Resource Exceeded and a log line naming it. Should the table's lock
not be had within 0.2 s, a client new to the worker is held to the worker's share of
``max_connections_per_client`` instead. ``max_subflows`` is the kernel's per-connection
subflow limit, set at start. When more than ``cookie_syn_rate`` connections a second
arrive (per worker's share), a connection without a valid Cookie TLV gets Missing Cookie
with a cookie bound to the client's address, valid two minutes.

::

    {"host": "mcp-1", "listen": "::", "port": 5124, "clients": ["198.51.100.0/24"],
     "deny_destinations": [], "max_connections": 20000, "max_connections_per_client": 2000,
     "max_subflows": 8, "connect_timeout_s": 10, "handshake_timeout_s": 10,
     "cookie_syn_rate": 0, "retry_after_s": 30, "workers": 0, "pipe_size": 262144,
     "mptcp_rcvbuf": 4194304, "drain_timeout_s": 30}

Signals: SIGHUP re-reads the config (bad: refused with one line, the running one kept;
the START_ONLY settings change only with a restart), SIGTERM stops accepting and drains.
"""

from ..checks import ConfigError
from .clients import COOKIE_PERIOD_S, ClientTable, ClientTableBusy, ClientTableFull, Cookies, RateMeter
from .command import _check_table_size, add_parser, main, set_subflow_limit
from .config import START_ONLY, TOP_KEYS, McpConfig, _plain, from_dict, in_any, load
from .session import Session, connect_error
from .worker import UNCOUNTED, UNSHARED, McpWorker, listener

__all__ = ["COOKIE_PERIOD_S", "START_ONLY", "TOP_KEYS", "UNCOUNTED", "UNSHARED", "ClientTable", "ClientTableBusy",
           "ClientTableFull", "ConfigError", "Cookies", "McpConfig", "McpWorker", "RateMeter", "Session", "_check_table_size",
           "_plain", "add_parser", "connect_error", "from_dict", "in_any", "listener", "load", "main", "set_subflow_limit"]
