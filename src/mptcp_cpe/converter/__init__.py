"""``mptcp-cpe converter``: the CPE side of RFC 8803. Each TCP connection from the LAN becomes
one MPTCP connection to an MCP, the Convert message in its SYN (TCP Fast Open), then a
splice relay; when no MCP answers, the connection goes straight to its destination
(routed and NATed by wand), so the CPE never blackholes.

Interception: an nftables table the daemon owns (``inet mptcp_cpe_converter``) sends new
TCP connections arriving on the LAN interfaces to the TPROXY listeners, except the bypass
(destination prefixes and ports, LAN sources) and what is not for the WANs (local,
broadcast, multicast, routed back into the LAN, the MCP port). A policy rule sends the
marked packets to a table with ``local default dev lo``. If the daemon is not running, the
TPROXY rule finds no listener and the packets are forwarded as usual.

Only diverted connections are converted. The listen port is open to nothing else, twice
over: the table's ``input`` chain drops (and counts) TCP to ``listen_port`` without the
fwmark TPROXY set, or to one of the CPE's own addresses (a LAN packet to the CPE's address
and that port matches the transparent listener in the socket rule, and is marked too);
and each worker refuses (RST, before any MCP is asked) an accepted connection whose
destination is one of the CPE's own addresses (or loopback, multicast, unspecified): it
came from a WAN, from the LAN to the CPE or from the CPE itself, and converting it, or
going direct with it, would loop back into the listener. Refusals are counted
(``stats["not_diverted"]``) and logged one line per 10 s at most. Each worker keeps the
CPE's addresses current from rtnetlink (`localaddrs.LocalAddresses`, in its epoll loop).

MCPs: the lists in ``mcp.json`` (learned by DHCP on the WANs), then the static ones of the
config; each MCP's addresses in order, without those `mcptrust.mcp_verdicts` refuses: with
``mcp_prefixes`` set, a learned address outside them (a rogue DHCP server's MCP,
draft-boucadair-mptcp-dhc §5); always, one of the CPE's own addresses, one inside
``lan_prefixes``, link-local, loopback or multicast (one line per change of mcp.json or of
the CPE's addresses, not per connection). A static MCP outside ``mcp_prefixes`` or inside
``lan_prefixes`` is a config error. An MCP address that does not answer within
``connect_timeout_s``, closes before answering or answers with an Error about itself is
skipped for ``retry_after_s`` (or the delay its Error names). ``connect_timeout_s`` is
also what a LAN connection waits for MCPs in all: silent MCP addresses after the first
are left to later connections, so an MCP outage costs one connection that long, not that
long per address. The file is looked at again
at most once a second, when a connection starts: a change applies to new connections,
live ones go on. Data the LAN client sends before the MCP's answer is kept (up to
``replay_limit`` octets; reading pauses there), so a connection can move to the next MCP,
answer a Cookie challenge or go direct without losing a byte. ``mptcp_rcvbuf`` fixes the
MPTCP socket's receive buffer (0: the kernel's autotuning), see `relay.set_rcvbuf`; the
role sizes it from the WANs' lines (`buffers`). Its send buffer is the kernel's autotuning.

::

    {"host": "cpe-1", "lan_interfaces": ["lan0"], "mcp_port": 5124, "listen_port": 5125,
     "mcps": [["198.51.100.1"]], "mcp_file": "/run/mptcp-cpe/mcp.json",
     "mcp_prefixes": ["198.51.100.0/24"], "lan_prefixes": ["198.18.1.0/24", "2001:db8:1::/64"],
     "bypass": {"destinations": ["192.0.2.0/24"], "ports": [22], "sources": []},
     "connect_timeout_s": 3, "reply_timeout_s": 15, "retry_after_s": 30,
     "replay_limit": 65536, "workers": 0, "pipe_size": 262144, "mptcp_rcvbuf": 4194304,
     "drain_timeout_s": 30,
     "fwmark": 8803, "route_table": 199, "rule_priority": 9000, "route_protocol": 202,
     "nft_table": "mptcp_cpe_converter"}

Signals: SIGHUP re-reads the config (a bad one is refused with one line and the running
one kept; so is one changing a START_ONLY setting, which needs a restart), SIGTERM stops intercepting,
drains live connections for at most ``drain_timeout_s`` and removes what it made.
"""

from ..checks import ConfigError
from .command import add_parser, main
from .config import BYPASS_KEYS, START_ONLY, TOP_KEYS, Bypass, ConverterConfig, from_dict, load
from .conversion import Conversion
from .intercept import Interception, nft_ruleset
from .mcps import McpBook, SharedHolds, dhcp_mcps
from .worker import ConverterWorker, RefusalLog, listeners, not_diverted

__all__ = ["BYPASS_KEYS", "START_ONLY", "TOP_KEYS", "Bypass", "ConfigError", "Conversion", "ConverterConfig", "ConverterWorker",
           "Interception", "McpBook", "RefusalLog", "SharedHolds", "add_parser", "dhcp_mcps", "from_dict", "listeners", "load",
           "main", "nft_ruleset", "not_diverted"]
