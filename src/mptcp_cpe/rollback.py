"""Commit-confirmed apply: a snapshot of everything mptcp-cpe owns on a router, a rollback
armed on the router itself, and the restore it runs when nobody confirms in time.

``arm`` (before any role changes the router) takes the snapshot and arms the rollback;
``confirm`` (after the controller reconnected and ``mptcp-cpe health`` passed) disarms it;
``expire`` (the armed timer's job) and ``now`` (an operator) restore the snapshot;
``recover`` (at boot) finishes a restore a power cut interrupted; ``status`` says where
things stand, as one JSON line.

The same file runs as ``mptcp-cpe rollback`` and alone, as ``python3 rollback.py``: the
role copies it out of the package (to a path the snapshot does not own), since a restore
replaces the package it would otherwise run from, and a first install has none yet. It
therefore imports nothing but the standard library.

What a restore guarantees: the snapshot is one file, written beside its place and renamed
into it, so it is whole or absent. A restore writes a journal (``restoring.json``) before it
changes anything and removes it only when everything is back; each owned path is swapped
whole (a file or symlink by one rename, a directory by two), and a restore redone from the
start reaches the same end. So after a power cut, ``recover`` at boot, before the services
start, finishes the restore: the router runs the snapshot's configuration or the new one,
never a mix of the two.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import hashlib
import io
import json
import math
import os
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_DIR = "/var/lib/mptcp-cpe/rollback"
# The rollback's own files: never in a snapshot (a restore must not remove its own timer).
OWN_PREFIX = "mptcp-cpe-rollback"
# What mptcp-cpe owns on a Debian CPE, as globs from the root: the configs, the units, their
# drop-ins and enablement links, the sysctls, the DHCP client's hooks, the LAN's Kea config,
# the package itself (its code and metadata in the venv) and the command's link.
DEBIAN_OWNED = (
    "/etc/mptcp-cpe",
    "/etc/systemd/system/mptcp-cpe-*",
    "/etc/systemd/system/*.wants/mptcp-cpe-*",
    "/etc/systemd/system/kea-dhcp4-server.service.d",
    "/etc/sysctl.d/90-mptcp-cpe.conf",
    "/etc/dhcp/dhclient-enter-hooks.d/mptcp-cpe",
    "/etc/dhcp/dhclient-exit-hooks.d/mptcp-cpe",
    "/etc/dhcp/dhclient.conf",
    "/etc/kea/kea-dhcp4.conf",
    "/opt/mptcp-cpe/venv/lib/python3*/site-packages/mptcp_cpe",
    "/opt/mptcp-cpe/venv/lib/python3*/site-packages/mptcp_cpe-*.dist-info",
    "/usr/local/bin/mptcp-cpe",
)
NFT_PREFIX = "mptcp_cpe_"  # the nftables tables of wand, the converter and the firewall
TIMEOUT_MIN, TIMEOUT_MAX = 60, 3600
EARLY_S = 5.0  # expire this close before the deadline waits it out instead of doing nothing
SNAPSHOT, ARMED, RESTORING, LOG, LOCK = "snapshot.tar", "armed.json", "restoring.json", "log", "lock"
NEW, OLD = ".mptcp-cpe-restore", ".mptcp-cpe-old"  # a path's siblings while it is swapped


class RollbackError(Exception):
    """What stops a rollback command: one line, naming host, field and value where one is at fault."""


def _host() -> str:
    return socket.gethostname()


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    """``data`` into ``path`` whole or not at all: a sibling written, synced, renamed."""
    tmp = path.with_name(f".{path.name}.tmp")
    # Owner-only: the snapshot holds files that are (the configs' secrets, 0600 ones).
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _own(path: str) -> bool:
    return Path(path).name.startswith(OWN_PREFIX)


@dataclass
class Init:
    """The init system's part of a snapshot and a restore: which services run, and making
    them run as they did. ``kind`` systemd, or none (a test's root: nothing to ask)."""

    kind: str

    @classmethod
    def detect(cls, root: Path) -> "Init":
        if root != Path("/"):
            return cls("none")
        if Path("/run/systemd/system").is_dir():
            return cls("systemd")
        raise RollbackError(f"{_host()}: cpe_rollback_enabled: the commit-confirmed apply needs systemd, and this "
                            "router has none (OpenWrt's procd is not supported yet): set it false here")

    def _systemctl(self, *args: str) -> subprocess.CompletedProcess:
        """systemctl ``args``; with no init to ask (a test's root), nothing, as if it worked."""
        if self.kind != "systemd":
            return subprocess.CompletedProcess(args, 0, "", "")
        try:
            return subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return subprocess.CompletedProcess(args, 1, "", str(exc))

    def running(self) -> list[str]:
        """The mptcp-cpe services that run now (the rollback's own left out)."""
        out = self._systemctl("list-units", "--type=service", "--state=active", "--plain", "--no-legend",
                              "mptcp-cpe-*").stdout
        return sorted(name for name in (line.split()[0] for line in out.splitlines() if line.strip()) if not _own(name))

    def restart(self, before: list[str], now: list[str]) -> list[str]:
        """Run what ran at the snapshot, stop what did not; the problems, one line each."""
        problems = []
        self._systemctl("daemon-reload")
        for name in sorted(set(now) - set(before)):
            if self._systemctl("stop", name).returncode:
                problems.append(f"cannot stop {name}")
        for name in before:
            proc = self._systemctl("restart", name)
            if proc.returncode:
                problems.append(f"cannot restart {name}: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
        return problems


def nft_tables() -> dict[str, str]:
    """The mptcp-cpe nftables tables now: ``family name`` to the table's ruleset text."""
    if not shutil.which("nft"):
        return {}
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    tables = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "table" and parts[2].startswith(NFT_PREFIX):
            text = subprocess.run(["nft", "list", "table", parts[1], parts[2]], capture_output=True, text=True).stdout
            tables[f"{parts[1]} {parts[2]}"] = text
    return tables


@dataclass
class Agent:
    """The rollback on one router: its state under ``root``/STATE_DIR."""

    root: Path = Path("/")
    owned: tuple[str, ...] = DEBIAN_OWNED
    init: Init | None = None
    nft: bool = True
    host: str = field(default_factory=_host)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.state = self.root / STATE_DIR.lstrip("/")
        self.init = self.init or Init.detect(self.root)
        for pattern in self.owned:
            if not pattern.startswith("/") or "/../" in f"{pattern}/" or pattern.rstrip("/") in ("", "/etc", "/usr", "/opt"):
                raise RollbackError(f"{self.host}: owned: must be an absolute path inside mptcp-cpe's own files (got {pattern!r})")

    # -- locking and logging

    @contextlib.contextmanager
    def locked(self):
        self.state.mkdir(parents=True, exist_ok=True)
        self.state.chmod(0o700)  # the snapshot and the log are root's alone
        with open(self.state / LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def log(self, line: str) -> None:
        stamped = f"{_iso(time.time())} {line}"
        with open(self.state / LOG, "a") as f:
            f.write(stamped + "\n")
        if self.root == Path("/") and shutil.which("logger"):
            subprocess.run(["logger", "-t", "mptcp-cpe-rollback", line], check=False)
        print(f"mptcp-cpe rollback: {line}", file=sys.stderr)

    # -- what is owned

    def matches(self) -> list[str]:
        """The owned paths that exist now, relative to the root, sorted, parents first; the
        rollback's own files and a swap's leftovers left out."""
        found = set()
        for pattern in self.owned:
            for hit in glob.glob(str(self.root) + pattern if str(self.root) != "/" else pattern):
                rel = "/" + os.path.relpath(hit, self.root)
                if not _own(rel) and not rel.endswith((NEW, OLD)):
                    found.add(rel)
        # A path inside another owned one goes with its parent.
        return sorted(p for p in found if not any(p.startswith(q + "/") for q in found))

    def _path(self, rel: str) -> Path:
        return self.root / rel.lstrip("/")

    # -- arm

    def snapshot(self) -> dict[str, Any]:
        """Everything owned, into SNAPSHOT (atomically): returns its manifest."""
        paths = self.matches()
        manifest = {"version": 1, "host": self.host, "taken": _iso(time.time()), "owned": list(self.owned),
                    "paths": paths, "services": self.init.running(), "nft": nft_tables() if self.nft else {}}
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            data = json.dumps(manifest, indent=1, sort_keys=True).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
            for rel in paths:
                tar.add(self._path(rel), arcname="root" + rel, recursive=True)
        _write_atomic(self.state / SNAPSHOT, buf.getvalue())
        return manifest

    def armed(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.state / ARMED).read_text())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise RollbackError(f"{self.host}: {self.state / ARMED}: not JSON: {exc}") from None

    def arm(self, timeout: float, reason: str) -> dict[str, Any]:
        if isinstance(timeout, bool) or not TIMEOUT_MIN <= timeout <= TIMEOUT_MAX:
            raise RollbackError(f"{self.host}: cpe_rollback_timeout_s: must be a number of seconds from "
                                f"{TIMEOUT_MIN} to {TIMEOUT_MAX} (got {timeout!r})")
        with self.locked():
            if (self.state / RESTORING).exists():
                raise RollbackError(f"{self.host}: a restore is unfinished ({self.state / RESTORING}): "
                                    "run `mptcp-cpe rollback now` or reboot, then apply again")
            now = time.time()
            before = self.armed()
            if before is None:
                manifest = self.snapshot()
                snap = {"taken": manifest["taken"], "paths": len(manifest["paths"]),
                        "digest": hashlib.sha256((self.state / SNAPSHOT).read_bytes()).hexdigest()[:16]}
                kept = False
            else:
                # An apply not confirmed yet: the snapshot keeps the last confirmed state.
                snap, kept = before["snapshot"], True
            armed = {"armed_at": _iso(now), "deadline": now + timeout, "deadline_iso": _iso(now + timeout),
                     "timeout_s": timeout, "reason": reason, "snapshot": snap}
            _write_atomic(self.state / ARMED, json.dumps(armed, sort_keys=True).encode())
            self.log(f"armed: restore at {armed['deadline_iso']} unless confirmed ({reason}); "
                     + (f"keeping the unconfirmed apply's snapshot of {snap['taken']}" if kept
                        else f"snapshot of {snap['paths']} paths taken"))
            return {**armed, "kept_snapshot": kept}

    # -- confirm

    def confirm(self, reason: str) -> dict[str, Any]:
        with self.locked():
            armed = self.armed()
            if armed is None:
                last = self.last_log()
                raise RollbackError(f"{self.host}: nothing armed to confirm (the last event: {last or 'none'})")
            (self.state / ARMED).unlink()
            _fsync_dir(self.state)
            self.log(f"confirmed ({reason}): the apply armed at {armed['armed_at']} stays")
            return armed

    # -- restore

    def restore(self, why: str) -> list[str]:
        """The snapshot back, journaled; the services as they ran at the snapshot. Returns
        the problems met on the way (the files are back whatever they are)."""
        with self.locked():
            return self._restore(why)

    def _restore(self, why: str, services: bool = True) -> list[str]:
        snap = self.state / SNAPSHOT
        if not snap.exists():
            raise RollbackError(f"{self.host}: no snapshot to restore ({snap})")
        journal = self.state / RESTORING
        if journal.exists():
            # Finishing one that was cut short: the log keeps why it began.
            try:
                first = json.loads(journal.read_text())
            except ValueError:
                first = {}
            why = f"{first.get('why', 'reason not recorded')} [interrupted at {first.get('started', '?')}; finished {why}]"
        else:
            _write_atomic(journal, json.dumps({"started": _iso(time.time()), "why": why}).encode())
        running_now = self.init.running() if services else []
        with tarfile.open(snap) as tar:
            manifest = json.loads(tar.extractfile("manifest.json").read())
            kept = manifest["paths"]
            members = [m for m in tar.getmembers() if m.name.startswith("root/")]
            for rel in sorted(set(self.matches()) - set(kept), reverse=True):
                _remove(self._path(rel))  # made since the snapshot
            for rel in kept:
                self._swap(tar, members, rel)
        os.sync()
        problems = []
        if services:
            problems += self.init.restart(manifest["services"], running_now)
            if self.nft:
                problems += self._nft(manifest["nft"])
        journal.unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.state / ARMED).unlink()
        _fsync_dir(self.state)
        self.log(f"restored the snapshot of {manifest['taken']} ({len(kept)} paths): {why}"
                 + (f"; problems: {'; '.join(problems)}" if problems else ""))
        return problems

    def _swap(self, tar: tarfile.TarFile, members: list[tarfile.TarInfo], rel: str) -> None:
        """``rel`` made exactly as in the snapshot: extracted beside itself, then renamed in."""
        target = self._path(rel)
        new, old = target.with_name(target.name + NEW), target.with_name(target.name + OLD)
        _remove(new)
        _remove(old)
        name = "root" + rel
        mine = [(m, new / m.name[len(name) + 1:] if m.name != name else new)
                for m in members if m.name == name or m.name.startswith(name + "/")]
        target.parent.mkdir(parents=True, exist_ok=True)
        for m, dest in mine:
            if m.isdir():
                dest.mkdir(parents=True, exist_ok=True)
            elif m.issym():
                os.symlink(m.linkname, dest)
            elif m.isfile():
                with tar.extractfile(m) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
                    out.flush()
                    os.fsync(out.fileno())
            else:
                continue  # devices, fifos, hard links: nothing mptcp-cpe owns
            if not m.issym():
                with contextlib.suppress(PermissionError):
                    os.chown(dest, m.uid, m.gid)
                os.chmod(dest, m.mode)
        for m, dest in reversed(mine):  # children first: a directory's time is its own at the end
            if m.isdir() or m.isfile():
                os.utime(dest, (m.mtime, m.mtime))
        # A file or link over a file or link: one rename. A directory on either side: the old
        # one moved aside first (a power cut between the two leaves the journal to finish).
        if (target.is_dir() and not target.is_symlink()) or (new.is_dir() and not new.is_symlink()
                                                              and (target.exists() or target.is_symlink())):
            os.rename(target, old)
        os.replace(new, target)
        _remove(old)
        _fsync_dir(target.parent)

    def _nft(self, saved: dict[str, str]) -> list[str]:
        """After the services restarted (they make their own tables): tables made since the
        snapshot deleted, those of the snapshot that no service remade loaded as saved."""
        problems, now = [], nft_tables()
        for key in sorted(set(now) - set(saved)):
            family, name = key.split()
            if subprocess.run(["nft", "delete", "table", family, name], capture_output=True).returncode:
                problems.append(f"cannot delete nftables table {key}")
        for key in sorted(set(saved) - set(now)):
            proc = subprocess.run(["nft", "-f", "-"], input=saved[key], capture_output=True, text=True)
            if proc.returncode:
                problems.append(f"cannot load nftables table {key}: {proc.stderr.strip()[:200]}")
        return problems

    def _live(self, rel: str) -> dict[str, tuple]:
        """``rel`` and what is under it as the snapshot would record it."""
        out = {}
        top = self._path(rel)
        walk = [top] + ([Path(d, n) for d, dirs, files in os.walk(top) for n in dirs + files]
                        if top.is_dir() and not top.is_symlink() else [])
        for p in walk:
            st = p.lstat()
            key = "root/" + os.path.relpath(p, self.root)
            if stat.S_ISLNK(st.st_mode):
                out[key] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[key] = ("dir", stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                out[key] = ("file", stat.S_IMODE(st.st_mode), hashlib.sha256(p.read_bytes()).hexdigest())
        return out

    def unchanged(self) -> bool:
        """Whether the owned files and the running services are as the snapshot has them."""
        with tarfile.open(self.state / SNAPSHOT) as tar:
            manifest = json.loads(tar.extractfile("manifest.json").read())
            if self.matches() != manifest["paths"] or self.init.running() != manifest["services"]:
                return False
            saved = {}
            for m in tar.getmembers():
                if not m.name.startswith("root/"):
                    continue
                if m.issym():
                    saved[m.name] = ("link", m.linkname)
                elif m.isdir():
                    saved[m.name] = ("dir", stat.S_IMODE(m.mode))
                elif m.isfile():
                    saved[m.name] = ("file", stat.S_IMODE(m.mode), hashlib.sha256(tar.extractfile(m).read()).hexdigest())
        live = {}
        for rel in manifest["paths"]:
            live.update(self._live(rel))
        return live == saved

    def expire(self) -> str:
        """The timer's job: restore if still armed and the deadline is past."""
        with self.locked():
            if (self.state / RESTORING).exists():
                problems = self._restore("by the timer's service, run again")
                return "finished an interrupted restore" + (f" with problems: {'; '.join(problems)}" if problems else "")
            armed = self.armed()
            if armed is None:
                return "nothing armed: the apply was confirmed"
            left = armed["deadline"] - time.time()
            if left > EARLY_S:
                return f"not yet: {left:.0f} s before the deadline"
            # The timer's calendar has whole seconds: it may fire a moment early.
            time.sleep(max(0.0, left))
            if self.unchanged():
                # The apply failed before it changed anything (an inventory refused at its
                # checks): nothing to restore, no service to restart.
                (self.state / ARMED).unlink()
                _fsync_dir(self.state)
                self.log(f"not confirmed within {armed['timeout_s']:g} s of {armed['armed_at']} ({armed['reason']}), "
                         "but nothing owned changed since the snapshot: disarmed, nothing restored")
                return "disarmed: nothing changed"
            why = (f"not confirmed within {armed['timeout_s']:g} s of {armed['armed_at']} ({armed['reason']}): "
                   "the controller did not reconnect, or the health check failed")
            problems = self._restore(why)
            return "restored" + (f" with problems: {'; '.join(problems)}" if problems else "")

    def recover(self) -> str:
        """At boot, before the services: a restore a power cut interrupted, finished (files
        only: the services start after this, from the restored files)."""
        with self.locked():
            if not (self.state / RESTORING).exists():
                return "no restore to finish"
            self._restore("at boot", services=False)
            return "finished an interrupted restore"

    def last_log(self) -> str | None:
        try:
            lines = (self.state / LOG).read_text().splitlines()
        except FileNotFoundError:
            return None
        return lines[-1] if lines else None

    def status(self) -> dict[str, Any]:
        armed = self.armed()
        snap = self.state / SNAPSHOT
        out = {"host": self.host, "armed": armed is not None, "restoring": (self.state / RESTORING).exists(),
               "snapshot_octets": snap.stat().st_size if snap.exists() else None, "last": self.last_log()}
        if armed:
            out.update({"deadline": armed["deadline_iso"], "remaining_s": round(armed["deadline"] - time.time()),
                        "reason": armed["reason"], "armed_at": armed["armed_at"], "snapshot": armed["snapshot"]})
        return out


# -- the timer that fires ``expire`` (written by ``arm``, removed by ``confirm``)

SYSTEMD_DIR = "/etc/systemd/system"


def timer_units(script: str, deadline: float) -> dict[str, str]:
    """The systemd units of an armed rollback: a timer at the deadline (Persistent: a router
    that was off then restores as it boots), its service (run again if killed midway), and
    the boot-time recovery of an interrupted restore."""
    python = sys.executable or "/usr/bin/python3"
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(math.ceil(deadline)))
    return {
        f"{OWN_PREFIX}.timer": (
            "[Unit]\nDescription=mptcp-cpe: restore the last confirmed configuration unless confirmed\n\n"
            f"[Timer]\nOnCalendar={when}\nPersistent=true\nAccuracySec=1s\nUnit={OWN_PREFIX}.service\n\n"
            "[Install]\nWantedBy=timers.target\n"),
        f"{OWN_PREFIX}.service": (
            "[Unit]\nDescription=mptcp-cpe: restore the last confirmed configuration (commit-confirmed apply)\n"
            "After=local-fs.target\n\n"
            f"[Service]\nType=oneshot\nExecStart={python} {script} expire\nRestart=on-failure\nRestartSec=5\n"),
        f"{OWN_PREFIX}-recover.service": (
            "[Unit]\nDescription=mptcp-cpe: finish a restore a power cut interrupted\nDefaultDependencies=no\n"
            "After=local-fs.target\nBefore=network-pre.target sysinit.target\nWants=network-pre.target\n\n"
            f"[Service]\nType=oneshot\nExecStart={python} {script} recover\n\n"
            "[Install]\nWantedBy=sysinit.target\n"),
    }


def install_timer(agent: Agent, script: str, deadline: float) -> None:
    if agent.init.kind == "systemd":
        for name, text in timer_units(script, deadline).items():
            _write_atomic(Path(SYSTEMD_DIR) / name, text.encode())
        for argv in (["systemctl", "daemon-reload"], ["systemctl", "enable", f"{OWN_PREFIX}-recover.service"],
                     ["systemctl", "restart", f"{OWN_PREFIX}.timer"]):
            proc = subprocess.run(argv, capture_output=True, text=True)
            if proc.returncode:
                raise RollbackError(f"{agent.host}: {' '.join(argv)}: {proc.stderr.strip()}")
    # no init (a test's root): the caller runs expire itself


def remove_timer(agent: Agent) -> None:
    if agent.init.kind == "systemd":
        subprocess.run(["systemctl", "stop", f"{OWN_PREFIX}.timer"], capture_output=True, check=False)
        with contextlib.suppress(FileNotFoundError):
            (Path(SYSTEMD_DIR) / f"{OWN_PREFIX}.timer").unlink()
        subprocess.run(["systemctl", "daemon-reload"], capture_output=True, check=False)


def main(args: argparse.Namespace) -> int:
    try:
        agent = Agent(root=args.root, owned=tuple(args.owned) or DEBIAN_OWNED)
        if args.action == "arm":
            out = agent.arm(args.timeout, args.reason)
            install_timer(agent, args.script or str(Path(__file__).resolve()), out["deadline"])
        elif args.action == "confirm":
            out = agent.confirm(args.reason)
            remove_timer(agent)
        elif args.action == "now":
            problems = agent.restore(f"asked for by an operator ({args.reason})")
            remove_timer(agent)
            out = {"restored": True, "problems": problems}
        elif args.action == "expire":
            out = {"result": agent.expire()}
            if agent.armed() is None:
                remove_timer(agent)  # fired, or disarmed meanwhile: no timer left behind
        elif args.action == "recover":
            out = {"result": agent.recover()}
        else:
            out = agent.status()
    except RollbackError as exc:
        print(f"mptcp-cpe rollback: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out, sort_keys=True))
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["status", "arm", "confirm", "now", "expire", "recover"],
                   help="status, confirm or now for operators; arm, expire, recover for the role and the timer")
    p.add_argument("--timeout", type=float, default=300, help=f"arm: seconds before the restore ({TIMEOUT_MIN}-{TIMEOUT_MAX})")
    p.add_argument("--reason", default="by hand", help="what armed, confirmed or restored: logged")
    p.add_argument("--owned", action="append", default=[], metavar="GLOB",
                   help="a path (glob) mptcp-cpe owns; repeat; default: Debian's list")
    p.add_argument("--script", help="arm: the copy of this file the timer runs (default: this file)")
    p.add_argument("--root", type=Path, default=Path("/"), help=argparse.SUPPRESS)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rollback", help="commit-confirmed apply: status, confirm or now (restore the last confirmed configuration)")
    add_arguments(p)
    p.set_defaults(func=main)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="mptcp-cpe rollback")
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
