"""Who may come in: cookies for SYN floods, the arrival rate, and the ClientTable the workers share."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import hmac
import mmap
import os
import socket
import time

COOKIE_PERIOD_S = 60  # a cookie is valid in its minute and the next


class Cookies:
    """Stateless cookies: HMAC of the client's address and the minute, under a secret made
    at start (shared by the workers, forked from the same parent)."""

    def __init__(self, secret: bytes):
        self.secret = secret

    def make(self, client: str, period: int | None = None) -> bytes:
        period = int(time.time() // COOKIE_PERIOD_S) if period is None else period
        return hmac.new(self.secret, f"{client}|{period}".encode(), hashlib.sha256).digest()[:12]

    def valid(self, client: str, cookie: bytes) -> bool:
        now = int(time.time() // COOKIE_PERIOD_S)
        return any(hmac.compare_digest(self.make(client, p), bytes(cookie[:12])) for p in (now, now - 1)) and len(cookie) >= 12


class RateMeter:
    """Connections in the last second (a sliding one-second window)."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def tick(self) -> int:
        now = time.monotonic()
        self.stamps.append(now)
        cut = 0
        while cut < len(self.stamps) and self.stamps[cut] < now - 1.0:
            cut += 1
        del self.stamps[:cut]
        return len(self.stamps)


class ClientTableFull(Exception):
    """No slot for a new client address within ClientTable.MAX_PROBES of its hash."""


class ClientTableBusy(Exception):
    """The table's lock was not had within ClientTable.LOCK_WAIT_S."""


class ClientTable:
    """Connections per client address and per worker, shared by the workers (a memfd mapped
    before they fork): the MCP's limits hold across all of them.

    Each worker writes only its own column of counts and its own total, so counts need no
    lock; a worker reading the others' races with their writes (a limit passed by what they
    accept in that instant). Addresses are 16-octet keys in slots found by open addressing
    from a keyed hash (an address cannot choose its slot), at most MAX_PROBES apart. Keys
    are read and written only under an fcntl lock, which the kernel releases if its holder
    dies (a semaphore would stay taken). A key is placed in the first slot of its probe
    sequence whose counts are all zero (never used, or reclaimed); a worker keeps a key's
    slot without the lock only while its own count there is above zero, which no one else
    can then reclaim. A worker starting, first or after a crash, zeroes its own column:
    a dead worker's counts last until it is started again.

    Layout: the workers' totals, then their columns (column w: ``slots`` counts), then the
    keys. Memory: ``slots`` x (16 + 4 x workers) octets."""

    MIN_SLOTS, MAX_SLOTS = 1 << 10, 1 << 20
    MAX_PROBES = 64
    LOCK_WAIT_S = 0.2
    NEVER_USED = bytes(16)  # "::", never a peer

    def __init__(self, workers: int, slots: int):
        if slots & (slots - 1):
            raise ValueError(f"slots must be a power of two (got {slots})")
        self.workers, self.slots = workers, slots
        ints = workers * (1 + slots)
        self.fd = os.memfd_create("mptcp-cpe-mcp-clients")
        os.ftruncate(self.fd, 4 * ints + 16 * slots)
        self.mem = mmap.mmap(self.fd, 4 * ints + 16 * slots)
        view = memoryview(self.mem)
        self.totals = view[:4 * workers].cast("i")
        self.counts = view[4 * workers:4 * ints].cast("i")
        self.keys = view[4 * ints:]
        self.secret = os.urandom(16)

    @classmethod
    def slots_for(cls, max_connections: int) -> int:
        """Slots for ``max_connections``: every live connection has at most one client
        address, and a table at most half full keeps probe sequences short."""
        return min(cls.MAX_SLOTS, max(cls.MIN_SLOTS, 1 << (2 * max_connections - 1).bit_length()))

    @property
    def sized_for(self) -> int:
        """The client addresses the table is sized for (it takes more while probes allow)."""
        return self.slots // 2

    @staticmethod
    def key(address: str) -> bytes:
        """16 octets: an IPv6 address as it is, an IPv4 one as its IPv4-mapped form (peers
        come through _plain, so no IPv6 peer is ever mapped: the keys never collide)."""
        if ":" in address:
            return socket.inet_pton(socket.AF_INET6, address)
        return b"\0" * 10 + b"\xff\xff" + socket.inet_pton(socket.AF_INET, address)

    def count(self, slot: int) -> int:
        """Connections of the slot's client, all workers."""
        return sum(self.counts[slot::self.slots])

    def own(self, slot: int, worker: int) -> int:
        return self.counts[worker * self.slots + slot]

    def add(self, slot: int, worker: int, delta: int) -> int:
        """Add ``delta`` to ``worker``'s count in ``slot`` (only that worker may); the new count."""
        i = worker * self.slots + slot
        self.counts[i] += delta
        return self.counts[i]

    def total(self) -> int:
        """Connections of all workers."""
        return sum(self.totals)

    def set_total(self, worker: int, n: int) -> None:
        self.totals[worker] = n

    def clear(self, worker: int) -> None:
        """Zero ``worker``'s column and total: what a worker (re)starting does first."""
        start = 4 * (self.workers + worker * self.slots)
        self.mem[start:start + 4 * self.slots] = bytes(4 * self.slots)
        self.totals[worker] = 0

    def claim(self, key: bytes, worker: int, limit: int) -> int | None:
        """The slot of ``key``, one more connection counted in ``worker``'s column there;
        None (and nothing counted) when the key's connections are at ``limit`` already.
        Raises ClientTableFull or ClientTableBusy."""
        if not self._lock():
            raise ClientTableBusy
        try:
            slot, found = self._find(key)
            if self.count(slot) >= limit:  # a slot not yet the key's counts nothing
                return None
            if not found:
                self.keys[16 * slot:16 * slot + 16] = key
            self.add(slot, worker, 1)  # before the lock goes: the slot cannot be reclaimed now
            return slot
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def _find(self, key: bytes) -> tuple[int, bool]:
        """(slot, True) where ``key`` is, else (the slot it would take, False). Under the lock:
        keys only move under it, and a never-used slot ends every probe sequence."""
        digest = hashlib.blake2b(key, digest_size=8, key=self.secret).digest()
        home, mask = int.from_bytes(digest, "little"), self.slots - 1
        free = None
        for i in range(min(self.MAX_PROBES, self.slots)):
            slot = (home + i) & mask
            k = self.keys[16 * slot:16 * slot + 16]
            if k == key:
                return slot, True
            if k == self.NEVER_USED:
                return (slot if free is None else free), False
            if free is None and self.count(slot) == 0:
                free = slot
        if free is None:
            raise ClientTableFull
        return free, False

    def close(self) -> None:
        for view in (self.totals, self.counts, self.keys):
            view.release()
        self.mem.close()
        os.close(self.fd)

    def _lock(self) -> bool:
        deadline = time.monotonic() + self.LOCK_WAIT_S
        while True:
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() >= deadline:
                    return False
            time.sleep(0.001)

