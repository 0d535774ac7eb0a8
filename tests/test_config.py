"""Site defaults (uringsync/config.py): real files in temporary directories,
the command run as a user runs it, with XDG_CONFIG_HOME in its environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from uringsync import config


def _tree(tmp: Path) -> Path:
    src = tmp / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "b.tmp").write_text("b")
    (src / "sub" / "c.tmp").write_text("c")
    return src


def _user_config(tmp: Path, text: str) -> dict[str, str]:
    home = tmp / "xdg"
    (home / "uringsync").mkdir(parents=True, exist_ok=True)
    (home / "uringsync" / "config.toml").write_text(text)
    return {**os.environ, "XDG_CONFIG_HOME": str(home)}


def _run(env: dict[str, str], *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uringsync", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def _names(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def test_sync_takes_excludes_from_the_user_config(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    env = _user_config(tmp_path, '[sync]\nexclude = ["*.tmp"]\njobs = 0\n')
    p = _run(env, "sync", "-a", f"{src}/", tmp_path / "d1")
    assert p.returncode == 0, p.stderr
    assert _names(tmp_path / "d1") == ["a.txt", "sub"]
    # the command line wins: its --include matches before the file's --exclude
    p = _run(env, "sync", "-a", "--include=b.tmp", f"{src}/", tmp_path / "d2")
    assert p.returncode == 0, p.stderr
    assert _names(tmp_path / "d2") == ["a.txt", "b.tmp", "sub"]
    # --no-config: the built-in defaults
    p = _run(env, "sync", "-a", "--no-config", f"{src}/", tmp_path / "d3")
    assert p.returncode == 0, p.stderr
    assert _names(tmp_path / "d3") == ["a.txt", "b.tmp", "sub", "sub/c.tmp"]


def test_config_file_option_and_command_line_jobs(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    env = _user_config(tmp_path, "[sync]\njobs = 1\n")
    other = tmp_path / "other.toml"
    other.write_text('[sync]\nexclude = ["a.txt"]\n')
    p = _run(env, "sync", "-a", "--config", other, f"{src}/", tmp_path / "d")
    assert p.returncode == 0, p.stderr
    assert "a.txt" not in _names(tmp_path / "d")  # --config FILE replaces the user's file
    # jobs from the file, then from the command line
    a = config.defaults("sync", str(tmp_path / "xdg" / "uringsync" / "config.toml"))
    assert a == {"jobs": 1}
    from uringsync import syncargs

    os.environ["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    try:
        assert syncargs.parse(["-a", "s/", "d/"]).jobs == 1
        assert syncargs.parse(["-a", "-j", "3", "s/", "d/"]).jobs == 3
        assert syncargs.parse(["-a", "--no-config", "s/", "d/"]).jobs is None
    finally:
        del os.environ["XDG_CONFIG_HOME"]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[sync]\nverify = true\njobs = \n", ":3:"),  # not TOML: tomllib's line
        ("[sync]\nverify = true\njobs = 'x'\n", ":3: [sync] jobs"),  # wrong type
        ("# c\n[sync]\nfrobnicate = 1\n", ":3: [sync] frobnicate"),  # unknown key
        ("[cpp]\njobs = 1\n", ":1: [cpp]"),  # unknown table
    ],
    ids=["syntax", "type", "key", "table"],
)
def test_bad_file_names_file_line_and_key(tmp_path: Path, text: str, where: str) -> None:
    src = _tree(tmp_path)
    env = _user_config(tmp_path, text)
    path = tmp_path / "xdg" / "uringsync" / "config.toml"
    p = _run(env, "sync", "-a", f"{src}/", tmp_path / "d")
    assert p.returncode == 1
    assert f"{path}{where}" in p.stderr, p.stderr
    assert len(p.stderr.splitlines()) == 1, p.stderr
    assert not (tmp_path / "d").exists()
    if where == ":3:":
        assert "jobs" in p.stderr  # the key on that line
    # --no-config does not read it
    p = _run(env, "sync", "-a", "--no-config", f"{src}/", tmp_path / "d")
    assert p.returncode == 0, p.stderr


def test_verify_takes_jobs_and_refuses_a_bad_file(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    env = _user_config(tmp_path, "[verify]\njobs = 0\n")
    p = _run(env, "sync", "-a", f"{src}/", tmp_path / "d")
    assert p.returncode == 0, p.stderr
    p = _run(env, "verify", src, tmp_path / "d")
    assert p.returncode == 0, p.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[verify]\nengine = 'fast'\n")
    p = _run(env, "verify", "--config", bad, src, tmp_path / "d")
    assert p.returncode == 1
    assert f"{bad}:2: [verify] engine" in p.stderr, p.stderr


def test_config_api_for_cp(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        "[cp]\njobs = 4\nqueue_depth = 64\npreserve = 'mode,timestamps'\nprogress = false\n"
    )
    assert config.defaults("cp", str(f)) == {
        "jobs": 4,
        "queue_depth": 64,
        "preserve": "mode,timestamps",
        "progress": False,
    }
    assert config.defaults("cp", str(f), use=False) == {}
    assert config.defaults("bench", str(f)) == {}
    with pytest.raises(config.ConfigError, match="cannot read"):
        config.defaults("cp", str(tmp_path / "missing.toml"))
    f.write_text("[cp]\njobs = -1\n")
    with pytest.raises(config.ConfigError, match=r"c\.toml:2: \[cp\] jobs"):
        config.defaults("cp", str(f))
