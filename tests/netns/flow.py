"""A test server and client for bulk TCP flows whose every byte is checked.

    flow.py serve ADDR [ADDR...] --port P [--mptcp]  until killed; one thread per connection
    flow.py get HOST PORT OCTETS [--seed S] [--mptcp] download; prints one JSON line
    flow.py put HOST PORT OCTETS [--seed S] [--mptcp] upload; prints one JSON line
    flow.py who HOST PORT [--mptcp]                   prints the address the server saw

``--mptcp``: MPTCP sockets (a server or a host that speaks MPTCP itself); an MPTCP server
still accepts plain TCP clients, and an MPTCP client falls back to TCP where the path or
the server does not speak it.

The client sends one line, ``GET n seed`` or ``PUT n seed``. The data is a pseudo-random
stream from the seed, so both sides know the sha256 it must have: GET checks what arrived,
PUT has the server answer with the sha256 and count of what it received.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import socket
import sys
import threading
import time

CHUNK = 1 << 16
IPPROTO_MPTCP = 262  # socket.IPPROTO_MPTCP from Python 3.10 on Linux; named here for older ones


def stream(n: int, seed: int):
    rng = random.Random(seed)
    while n > 0:
        k = min(CHUNK, n)
        yield rng.randbytes(k)
        n -= k


def expected_sha(n: int, seed: int) -> str:
    h = hashlib.sha256()
    for block in stream(n, seed):
        h.update(block)
    return h.hexdigest()


def _handle(conn: socket.socket) -> None:
    with conn:
        f = conn.makefile("rb")
        line = f.readline().decode().split()
        if len(line) != 3:
            return
        verb, n, seed = line[0], int(line[1]), int(line[2])
        if verb == "WHO":  # who is asking: tells a converted connection from a forwarded one
            conn.sendall(conn.getpeername()[0].encode() + b"\n")
            return
        if verb == "GET":
            for block in stream(n, seed):
                conn.sendall(block)
            conn.shutdown(socket.SHUT_WR)
            f.read()  # until the client closes
        elif verb == "PUT":
            h, got = hashlib.sha256(), 0
            while True:
                block = f.read1(CHUNK)
                if not block:
                    break
                h.update(block)
                got += len(block)
            conn.sendall(json.dumps({"octets": got, "sha256": h.hexdigest()}).encode() + b"\n")


def _socket(family: int, mptcp: bool) -> socket.socket:
    return socket.socket(family, socket.SOCK_STREAM, IPPROTO_MPTCP if mptcp else 0)


def serve(addrs: list[str], port: int, mptcp: bool = False) -> None:
    socks = []
    for a in addrs:
        s = _socket(socket.AF_INET6 if ":" in a else socket.AF_INET, mptcp)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((a, port))
        s.listen(1024)
        socks.append(s)
    for s in socks[1:]:
        threading.Thread(target=_accept_loop, args=(s,), daemon=True).start()
    print("serving", flush=True)
    _accept_loop(socks[0])


def _accept_loop(s: socket.socket) -> None:
    while True:
        conn, _ = s.accept()
        threading.Thread(target=_handle, args=(conn,), daemon=True).start()


def connect(host: str, port: int, timeout: float, source: str | None = None, mptcp: bool = False) -> socket.socket:
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    s = _socket(info[0], mptcp)
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    s.connect(info[4])
    return s


def client(verb: str, host: str, port: int, n: int, seed: int, timeout: float, source: str | None = None,
           mptcp: bool = False) -> dict:
    t0 = time.monotonic()
    s = connect(host, port, timeout, source, mptcp)
    s.sendall(f"{verb} {n} {seed}\n".encode())
    out: dict = {"verb": verb, "octets_asked": n}
    if verb == "GET":
        h, got, first = hashlib.sha256(), 0, None
        while True:
            block = s.recv(CHUNK)
            if not block:
                break
            if first is None:
                first = time.monotonic() - t0
            h.update(block)
            got += len(block)
        out.update(octets=got, sha256=h.hexdigest(), ttfb_s=first)
    else:
        for block in stream(n, seed):
            s.sendall(block)
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while True:
            block = s.recv(4096)
            if not block:
                break
            answer += block
        reply = json.loads(answer or b"{}")
        out.update(octets=reply.get("octets"), sha256=reply.get("sha256"))
    s.close()
    out["seconds"] = time.monotonic() - t0
    out["expected_sha256"] = expected_sha(n, seed)
    out["ok"] = out["sha256"] == out["expected_sha256"] and out["octets"] == n
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    sv = sub.add_parser("serve")
    sv.add_argument("addrs", nargs="+")
    sv.add_argument("--port", type=int, required=True)
    sv.add_argument("--mptcp", action="store_true", help="listen with MPTCP sockets (plain TCP clients still served)")
    for verb in ("get", "put"):
        c = sub.add_parser(verb)
        c.add_argument("host")
        c.add_argument("port", type=int)
        c.add_argument("octets", type=int)
        c.add_argument("--seed", type=int, default=1)
        c.add_argument("--timeout", type=float, default=60)
        c.add_argument("--source", help="the local address to connect from")
        c.add_argument("--mptcp", action="store_true", help="connect with an MPTCP socket (a host that speaks MPTCP itself)")
    w = sub.add_parser("who")
    w.add_argument("host")
    w.add_argument("port", type=int)
    w.add_argument("--timeout", type=float, default=20)
    w.add_argument("--source", help="the local address to connect from")
    w.add_argument("--mptcp", action="store_true", help="connect with an MPTCP socket (a host that speaks MPTCP itself)")
    a = p.parse_args()
    if a.cmd == "serve":
        serve(a.addrs, a.port, a.mptcp)
        return 0
    if a.cmd == "who":
        try:
            s = connect(a.host, a.port, a.timeout, a.source, a.mptcp)
            s.sendall(b"WHO 0 0\n")
            print(s.makefile("rb").readline().decode().strip())
            return 0
        except OSError as exc:
            print(f"error: {exc}")
            return 1
    try:
        result = client(a.cmd.upper(), a.host, a.port, a.octets, a.seed, a.timeout, a.source, a.mptcp)
    except OSError as exc:
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
