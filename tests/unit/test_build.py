"""The build id: a digest of the package's code files, which changes with any of them."""

from __future__ import annotations

import re

import pytest

from mptcp_cpe.build import build_id
from mptcp_cpe.cli import main


def _tree(root):
    (root / "wand").mkdir(parents=True)
    (root / "__init__.py").write_text("x = 1\n")
    (root / "wand" / "daemon.py").write_text("y = 2\n")
    (root / "_codec.abi3.so").write_bytes(b"\x7fELF")
    return root


def test_build_id_changes_with_any_code_file_and_nothing_else(tmp_path):
    root = _tree(tmp_path / "pkg")
    first = build_id(root)
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    assert build_id(root) == first
    # Not code: caches, notes, data files.
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "daemon.cpython-311.pyc").write_bytes(b"junk")
    (root / "README.txt").write_text("notes")
    assert build_id(root) == first
    (root / "wand" / "daemon.py").write_text("y = 3\n")
    assert build_id(root) != first
    (root / "wand" / "daemon.py").write_text("y = 2\n")
    assert build_id(root) == first
    (root / "_codec.abi3.so").write_bytes(b"\x7fELF\x02")
    assert build_id(root) != first


def test_a_file_moved_is_another_build(tmp_path):
    root = _tree(tmp_path / "pkg")
    first = build_id(root)
    (root / "wand" / "daemon.py").rename(root / "wand" / "other.py")
    assert build_id(root) != first


def test_cli_prints_the_installed_build(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--build-id"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == build_id()
