"""Imports go one way, down the layers of docs/design.md: nothing calls back up.

CLI -> commands' helpers (demo, progress, bench) -> API -> cp's path rules ->
walker -> options -> pool -> binding (engine) -> step table -> the cffi module.
Inside one package (walker/, bench/) the modules may use each other.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "uringsync"

# top-level module (or subpackage) -> layer; a lower number is higher up
LAYERS = {
    "cli": 0,
    "entry": -1,  # picks synccli or the typer app (cli)
    "synccli": 0.5,  # sync's command line, without typer
    "cpcli": 0.5,  # cp's command line, without typer
    "config": 3.5,  # site defaults (TOML) for the commands: pure, read by the parsers
    "shutilapi": 1.5,  # copytree and friends, over api.copy
    "jsonout": 0.8,  # the --json object of cp and sync
    "__main__": -2,
    "demo": 1,
    "progress": 1,
    "bench": 1,
    "api": 2,
    "syncapi": 1.5,  # the sync API, over api.py's run_walker and Result
    "verifyapi": 1.4,  # verify: sync's dry run with -c, and manifests checked
    "apiargs": 2.5,  # the API's argument checks
    "cpargs": 3,
    "cpargv": 3,  # cp's options (GNU getopt), pure
    "syncargs": 3,
    "walker": 4,
    "options": 5,
    "filters": 5,
    "itemize": 5,
    "manifest": 5,
    "pool": 6,
    "engine": 7,
    "steps": 8,
    "quote": 8.5,  # names quoted as cp quotes them (steps.show)
    "_version": 8,
    "_uring": 9,
}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every ``uringsync.X`` this file imports, type-only ones too."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "uringsync":  # from uringsync import engine -> uringsync.engine
                out += [(node.lineno, f"uringsync.{a.name}") for a in node.names]
            elif node.module.startswith("uringsync."):
                out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("uringsync.")]
    return out


def _top(module: str) -> str:
    return module.split(".")[1]


def test_every_module_has_a_layer() -> None:
    tops = {p.relative_to(PKG).parts[0].removesuffix(".py") for p in PKG.rglob("*.py")}
    tops.discard("__init__")
    assert tops <= set(LAYERS), sorted(tops - set(LAYERS))


def test_imports_only_go_down() -> None:
    up = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        if rel.name == "__init__.py" and len(rel.parts) == 1:
            continue  # the package's public face re-exports from every layer
        here = rel.parts[0].removesuffix(".py")
        for line, mod in _imports(path):
            there = _top(mod)
            if there != here and there in LAYERS and LAYERS[there] <= LAYERS[here]:
                up.append(f"{rel}:{line} imports {mod} ({here} is not above {there})")
    assert not up, "\n".join(up)


# What importing ``uringsync sync``'s command line leaves for later: the typer
# app and rich (sync --help, the progress bar), json (--json), cp's path rules,
# psutil (a run sizing its workers) and socket (a pool forking and feeding them).
NOT_AT_SYNC_START = (
    "typer",
    "rich",
    "json",
    "uringsync.cli",
    "uringsync.progress",
    "uringsync.cpargs",
    "psutil",
    "socket",
)


def test_sync_start_up_imports_only_what_it_needs() -> None:
    """Importing sync's command line leaves these unloaded (start-up time; a
    module loaded before it, by site say, is not counted)."""
    code = (
        "import sys; before = set(sys.modules); import uringsync.synccli; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PKG.parent, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "uringsync.synccli" in out
    loaded = [m for m in out if m.split(".")[0] in NOT_AT_SYNC_START or m in NOT_AT_SYNC_START]
    assert not loaded, loaded
