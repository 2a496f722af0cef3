"""``mptcp-cpe kernel``: what the running kernel's MPTCP can do, asked of the kernel itself.

The converter's Convert message rides in the SYN only where the kernel takes
TCP_FASTOPEN_CONNECT on an MPTCP socket; elsewhere it waits for the handshake (one more
round trip before the first byte). Which kernels do is not a version rule: Debian 12's
6.1.176 does (its image converted with the Convert message in the SYN, counted at the MCP),
although the project first read 6.2 as the start. Routers run many kernels; the converter
and cpe_base (its local fact) use this one probe rather than a version table.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

IPPROTO_MPTCP = getattr(socket, "IPPROTO_MPTCP", 262)
TCP_FASTOPEN_CONNECT = getattr(socket, "TCP_FASTOPEN_CONNECT", 30)
PROC_SYS = Path("/proc/sys")


@dataclass(frozen=True)
class KernelCaps:
    release: str
    mptcp_enabled: bool  # net.mptcp.enabled is 1 (in this network namespace)
    mptcp_socket: bool  # an MPTCP socket opens
    mptcp_fast_open: bool  # TCP_FASTOPEN_CONNECT on an MPTCP socket (client side: what the converter needs)
    tcp_fastopen: int | None  # net.ipv4.tcp_fastopen (bit 1: clients send data in the SYN)
    why_no_fast_open: str | None = None  # the kernel's answer when mptcp_fast_open is false

    @property
    def convert_in_syn(self) -> bool:
        """The Convert message can ride in the SYN: the socket option, and the client bit."""
        return self.mptcp_fast_open and bool((self.tcp_fastopen or 0) & 1)

    def as_dict(self) -> dict:
        return {**asdict(self), "convert_in_syn": self.convert_in_syn}

    def text(self) -> str:
        lines = [f"kernel {self.release}",
                 f"  MPTCP: {'enabled' if self.mptcp_enabled else 'disabled (net.mptcp.enabled=0)'}, "
                 f"sockets {'open' if self.mptcp_socket else 'do not open'}"]
        if self.convert_in_syn:
            lines.append("  TCP Fast Open on MPTCP sockets: yes (the Convert message rides in the SYN)")
        else:
            lines.append(f"  TCP Fast Open on MPTCP sockets: no ({self.no_fast_open_reason()}): the Convert "
                         "message goes in the first data segment after the handshake, one more round trip")
        return "\n".join(lines)

    def no_fast_open_reason(self) -> str:
        if not self.mptcp_fast_open:
            return self.why_no_fast_open or "the kernel refuses TCP_FASTOPEN_CONNECT on MPTCP sockets"
        return f"net.ipv4.tcp_fastopen={self.tcp_fastopen} lacks the client bit (1)"


def _sysctl_int(name: str) -> int | None:
    try:
        return int((PROC_SYS / name.replace(".", "/")).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def probe() -> KernelCaps:
    """Ask the running kernel (no state is changed: one socket, opened and closed)."""
    why = None
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    except OSError as exc:
        opens, fast_open, why = False, False, f"no MPTCP socket: {exc.strerror}"
    else:
        opens = True
        with s:
            try:
                s.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)
                fast_open = True
            except OSError as exc:
                fast_open = False
                why = (f"the kernel refuses TCP_FASTOPEN_CONNECT on MPTCP sockets: "
                       f"{errno.errorcode.get(exc.errno, exc.errno)} (Linux 6.2+ has it)")
    return KernelCaps(
        release=os.uname().release,
        mptcp_enabled=_sysctl_int("net.mptcp.enabled") == 1,
        mptcp_socket=opens,
        mptcp_fast_open=fast_open,
        tcp_fastopen=_sysctl_int("net.ipv4.tcp_fastopen"),
        why_no_fast_open=why,
    )


def main(args: argparse.Namespace) -> int:
    caps = probe()
    print(json.dumps(caps.as_dict(), sort_keys=True) if args.json else caps.text())
    return 0 if caps.mptcp_socket else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("kernel", help="what the running kernel's MPTCP can do (exit 1 when no MPTCP socket opens)")
    p.add_argument("--json", action="store_true", help="one JSON object (cpe_base's local fact)")
    p.set_defaults(func=main)
