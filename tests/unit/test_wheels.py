"""The two wheels setup.py builds: by default the compiled one (the codec's .so, cffi
required), and with MPTCP_CPE_PURE=1 the pure one any router can take (py3-none-any, no
.so, no cffi), which runs the pure-Python codec. Each is built from a copy of the tree with
pip, as scripts/setup and scripts/wheelhouse-pure build them (a few seconds each once pip
has setuptools cached; skipped where pip cannot get the build requirements)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import TOP


def build(tmp_path: Path, pure: bool) -> Path:
    tree = tmp_path / "tree"
    skip = shutil.ignore_patterns("_mcp_codec.*", "__pycache__", "*.egg-info")
    shutil.copytree(TOP / "src", tree / "src", ignore=skip)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(TOP / name, tree)
    (tree / "hooks" / "kea").mkdir(parents=True)
    for name in ("mcp_codec.c", "mcp_codec.h"):
        shutil.copy(TOP / "hooks" / "kea" / name, tree / "hooks" / "kea")
    env = {k: v for k, v in os.environ.items() if k != "MPTCP_CPE_PURE"}
    if pure:
        env["MPTCP_CPE_PURE"] = "1"
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(tree)],
                          env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode and "No matching distribution found for setuptools" in proc.stderr:
        pytest.skip("pip cannot get the build requirements (setuptools>=77, wheel, cffi) here")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    return wheel


def runtime_requires(whl: zipfile.ZipFile) -> list[str]:
    meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
    return [line.removeprefix("Requires-Dist: ") for line in whl.read(meta).decode().splitlines()
            if line.startswith("Requires-Dist: ") and "extra ==" not in line]


def test_the_pure_wheel_has_no_compiled_code_and_needs_no_cffi(tmp_path):
    wheel = build(tmp_path, pure=True)
    assert wheel.name == "mptcp_cpe-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as whl:
        assert [n for n in whl.namelist() if n.endswith(".so")] == []
        assert "mptcp_cpe/_mcp_codec_py.py" in whl.namelist()
        requires = runtime_requires(whl)
        whl.extractall(tmp_path / "site")
    assert [r for r in requires if r.startswith("cffi")] == [] and any(r.startswith("pyroute2") for r in requires), requires
    # Run from the wheel's files alone (-I -S: no site-packages, so no cffi and no other mptcp_cpe).
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from mptcp_cpe import cli, options; print(options.BACKEND); "
            "sys.exit(cli.main(['option', 'encode', 'v4', '192.0.2.1']))")
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(tmp_path / "site")],
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (0, "python\n04c0000201\n"), proc.stderr


def test_the_default_wheel_carries_the_compiled_codec_and_needs_cffi(tmp_path):
    wheel = build(tmp_path, pure=False)
    assert not wheel.name.endswith("-none-any.whl"), wheel.name
    with zipfile.ZipFile(wheel) as whl:
        assert [n for n in whl.namelist() if n.endswith(".so")] == ["mptcp_cpe/_mcp_codec.abi3.so"]
        assert any(r.startswith("cffi") for r in runtime_requires(whl))
