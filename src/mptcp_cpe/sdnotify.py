"""systemd's notify protocol (sd_notify(3)) for the daemons systemd runs as ``Type=notify``:
one datagram to ``$NOTIFY_SOCKET``. Without that variable (run by hand, in tests) nothing
is sent."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def sd_notify(state: str) -> bool:
    """Tell systemd ``state`` (``READY=1``, ``RELOADING=1``, ``STOPPING=1``, ``STATUS=...``,
    newline-separated); True when it was sent."""
    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(path)
            s.sendall(state.encode())
        return True
    except OSError as exc:
        log.warning("cannot tell systemd %s through %s: %s", state.replace("\n", " "), path, exc)
        return False
