""".ci/: the script that keeps one copy of the files the releases' environments share links only files whose
content and permissions are the same, and every file reads back unchanged; the shell scripts are shellcheck-clean."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CI = REPO / ".ci"


def write(path: Path, content: bytes, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    path.chmod(mode)
    return path


def test_identical_files_are_linked_and_others_left_alone(tmp_path):
    library = os.urandom(512 * 1024)
    other_content = os.urandom(512 * 1024)
    first = write(tmp_path / "a" / "venv" / "libtorch.so", library)
    same = write(tmp_path / "b" / "venv" / "nested" / "libtorch.so", library)
    differs = write(tmp_path / "b" / "venv" / "other.so", other_content)
    executable = write(tmp_path / "c" / "venv" / "libtorch.so", library, mode=0o755)

    run = subprocess.run([sys.executable, str(CI / "link-identical-files"), str(tmp_path / "a"), str(tmp_path / "b"),
                          str(tmp_path / "c")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "0.0 GiB freed" in run.stderr

    assert first.stat().st_ino == same.stat().st_ino
    assert differs.stat().st_ino != first.stat().st_ino
    assert executable.stat().st_ino != first.stat().st_ino  # permissions differ: a link would change one of them
    assert executable.stat().st_mode & 0o777 == 0o755
    assert [first.read_bytes(), same.read_bytes(), differs.read_bytes(), executable.read_bytes()] == \
        [library, library, other_content, library]
    assert not list(tmp_path.rglob("*.linking"))


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed (apt install shellcheck)")
def test_ci_shell_scripts_are_shellcheck_clean():
    scripts = [path for path in CI.iterdir() if path.read_bytes().startswith(b"#!/usr/bin/env bash")]
    assert scripts
    run = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout
