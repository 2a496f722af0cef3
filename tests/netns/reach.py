"""What an attacker (or an operator) can reach: small probes that print one JSON line.

    reach.py tcp HOST PORT [--source S] [--timeout T]     {"result": "open"|"refused"|"timeout"|"unreachable", "banner": ...}
    reach.py udp HOST PORT [--source S] [--payload P]     sends one datagram: {"result": "sent"}
    reach.py serve ADDR PORT [--banner B] [--udp-log F]   until killed: TCP says the banner, UDP datagrams are logged to F
    reach.py burst HOST PORT --count N [--timeout T] [--batch K] [--source S]
                                                          N connection attempts, K at a time, each given T seconds:
                                                          {"open": a, "refused": r, "timeout": t, "seconds": s}

Used by the netns tests and Molecule's verify: the same code tells "dropped" (timeout) from
"refused" (reset) from "open" wherever it runs. Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import errno
import json
import select
import socket
import sys
import threading
import time


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _sock(host: str, kind: int, source: str | None) -> socket.socket:
    s = socket.socket(_family(host), kind)
    if source:
        s.bind((source, 0))
    return s


def tcp(host: str, port: int, source: str | None, timeout: float) -> dict:
    s = _sock(host, socket.SOCK_STREAM, source)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
    except socket.timeout:
        return {"result": "timeout"}
    except ConnectionRefusedError:
        return {"result": "refused"}
    except OSError as exc:
        return {"result": "unreachable", "error": exc.strerror}
    try:
        s.settimeout(min(timeout, 2.0))
        banner = s.recv(256).decode(errors="replace").strip()
    except OSError:
        banner = ""
    finally:
        s.close()
    return {"result": "open", "banner": banner}


def udp(host: str, port: int, source: str | None, payload: str) -> dict:
    with _sock(host, socket.SOCK_DGRAM, source) as s:
        s.sendto(payload.encode(), (host, port))
    return {"result": "sent"}


def serve(addr: str, port: int, banner: str, udp_log: str | None) -> None:
    t = socket.socket(_family(addr), socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind((addr, port))
    t.listen(64)
    if udp_log:
        u = socket.socket(_family(addr), socket.SOCK_DGRAM)
        u.bind((addr, port))

        def log_udp() -> None:
            while True:
                data, peer = u.recvfrom(2048)
                with open(udp_log, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"from": peer[0], "data": data.decode(errors="replace")}) + "\n")

        threading.Thread(target=log_udp, daemon=True).start()
    while True:
        conn, peer = t.accept()
        with conn:
            conn.sendall(f"{banner} {peer[0]}\n".encode())


def burst(host: str, port: int, count: int, timeout: float, batch: int, source: str | None) -> dict:
    """``count`` non-blocking connects, ``batch`` in flight at once, each waited for at most
    ``timeout`` seconds: what the kernel said to each."""
    out = {"open": 0, "refused": 0, "timeout": 0, "error": 0}
    start = time.monotonic()
    left = count
    while left > 0:
        socks = []
        for _ in range(min(batch, left)):
            s = _sock(host, socket.SOCK_STREAM, source)
            s.setblocking(False)
            err = s.connect_ex((host, port))
            if err not in (0, errno.EINPROGRESS):
                out["error"] += 1
                s.close()
                continue
            socks.append(s)
        left -= min(batch, left)
        deadline = time.monotonic() + timeout
        pending = list(socks)
        while pending and time.monotonic() < deadline:
            _, ready, _ = select.select([], pending, [], max(0.0, deadline - time.monotonic()))
            for s in ready:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                out["open" if err == 0 else "refused" if err == errno.ECONNREFUSED else "error"] += 1
                pending.remove(s)
        out["timeout"] += len(pending)
        for s in socks:
            s.close()
    out["seconds"] = round(time.monotonic() - start, 3)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("tcp", "udp", "burst"):
        c = sub.add_parser(name)
        c.add_argument("host")
        c.add_argument("port", type=int)
        c.add_argument("--source")
        c.add_argument("--timeout", type=float, default=2.0)
        if name == "udp":
            c.add_argument("--payload", default="probe")
        if name == "burst":
            c.add_argument("--count", type=int, required=True)
            c.add_argument("--batch", type=int, default=100)
    s = sub.add_parser("serve")
    s.add_argument("addr")
    s.add_argument("port", type=int)
    s.add_argument("--banner", default="reach")
    s.add_argument("--udp-log")
    a = p.parse_args()
    if a.cmd == "serve":
        serve(a.addr, a.port, a.banner, a.udp_log)
        return 0
    if a.cmd == "tcp":
        result = tcp(a.host, a.port, a.source, a.timeout)
    elif a.cmd == "udp":
        result = udp(a.host, a.port, a.source, a.payload)
    else:
        if not 0 < a.count <= 100000 or not 0 < a.timeout <= 30:
            print("reach.py burst: --count 1-100000 and --timeout up to 30 s", file=sys.stderr)
            return 2
        result = burst(a.host, a.port, a.count, a.timeout, a.batch, a.source)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
