"""Test helpers: the repo's paths, the venv's tools on PATH, and root/docker gates."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def tool_env() -> dict[str, str]:
    """The environment for ansible-*, molecule and labctl: the venv's tools first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(TOP / "ansible.cfg")
    env.setdefault("ANSIBLE_FORCE_COLOR", "0")
    env["PY_COLORS"] = "0"
    return env


def run(*cmd: str | Path, timeout: float = 600, check: bool = False, **kw) -> subprocess.CompletedProcess:
    """Run a tool from the repo root; output is captured and shown by the failing assertion."""
    return subprocess.run([str(c) for c in cmd], cwd=TOP, env=tool_env(), text=True,
                          capture_output=True, timeout=timeout, check=check, **kw)


def docker_answers() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True).returncode == 0


needs_root_docker = pytest.mark.skipif(
    os.geteuid() != 0 or not docker_answers(),
    reason="needs root and a docker engine (scripts/test provides both)",
)


@contextlib.contextmanager
def option_codec(name: str):
    """mptcp_cpe.options running on this codec, "c" or "python", for the block (skipped for
    "c" where the compiled codec is not built); yields the codec module."""
    from mptcp_cpe import options

    if name == "c":
        pytest.importorskip("mptcp_cpe._mcp_codec", reason="the compiled codec is not built")
    saved = options.codec, options.BACKEND
    options.codec = options.load_codec(name)
    options.BACKEND = options.codec.NAME
    try:
        yield options.codec
    finally:
        options.codec, options.BACKEND = saved


def run_uci_defaults(script: Path, config: str, show: str, state_dir: Path) -> tuple[dict, str]:
    """An /etc/uci-defaults script run by busybox ash against tests/openwrt/uci (a double of
    OpenWrt's uci command) over ``show`` (`uci show` text) as the config's state: the state it
    leaves (mptcp_cpe.uci.parse_show's form) and what it said on stderr. It must exit 0."""
    from mptcp_cpe import uci

    state_dir.mkdir(exist_ok=True)
    (state_dir / config).write_text(show)
    env = {"PATH": f"{TOP / 'tests' / 'openwrt'}:{os.environ['PATH']}", "UCI_STATE_DIR": str(state_dir),
           "PYTHONPATH": str(TOP / "src")}
    proc = subprocess.run([shutil.which("busybox") or "busybox", "ash", str(script)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return uci.parse_show(config, (state_dir / config).read_text()), proc.stderr
