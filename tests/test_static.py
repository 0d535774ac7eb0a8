"""The package stays clean under the project's static checks (run in CI via pytest)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.base import REPO_DIR

PY_TREES = ("uringsync", "tests", "benchmarks", "build_ffi.py", "build_share.py", "setup.py")


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=REPO_DIR, capture_output=True, text=True, check=False)


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
def test_ruff() -> None:
    r = run("ruff", "check", *PY_TREES)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
def test_python_formatted() -> None:
    """As pre-commit's ruff format leaves it (`make format` mends it)."""
    r = run("ruff", "format", "--check", *PY_TREES)
    assert r.returncode == 0, r.stdout + r.stderr


def test_c_formatted() -> None:
    """As .clang-format says (`make format` mends it); setup.sh installs clang-format."""
    srcs = sorted(str(p.relative_to(REPO_DIR)) for p in (REPO_DIR / "csrc").glob("*.[ch]"))
    r = run("clang-format", "--dry-run", "-Werror", *srcs)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_strict() -> None:
    r = run(sys.executable, "-m", "mypy", "--strict", "uringsync")
    assert r.returncode == 0, r.stdout + r.stderr


def test_c_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    """Every csrc/*.c compiles alone with -Wall -Wextra -Werror (also -Wshadow)."""
    for src in sorted((REPO_DIR / "csrc").glob("*.c")):
        r = run(
            "cc",
            "-std=gnu11",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wshadow",
            "-c",
            str(src),
            "-o",
            str(tmp_path / (src.stem + ".o")),
        )
        assert r.returncode == 0, f"{src.name}:\n{r.stderr}"
