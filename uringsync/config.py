"""Site and user defaults from a TOML file.

The file is the first of these that exists (first found wins; no merging, so
a user's file is read whole and what it leaves out keeps the built-in
default, not the system file's):

1. ``--config FILE`` (then FILE must exist);
2. ``$XDG_CONFIG_HOME/uringsync/config.toml`` (``~/.config`` when unset);
3. ``/etc/uringsync.toml``.

``--no-config`` reads none.  Each command has its own table (``[cp]``,
``[sync]``, ``[verify]``, ``[bench]``) whose keys are long option names with
``_`` for ``-``; a value is a default the command line overrides::

    [cp]
    jobs = 4
    queue_depth = 64

    [sync]
    exclude = ["*.tmp", ".cache/"]
    verify = true

A file that does not parse, an unknown table or key, or a value of the wrong
type is a :class:`ConfigError` naming the file, the line and the key.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["PARAMS", "SCHEMA", "ConfigError", "defaults", "find", "load", "unset"]

SYSTEM_PATH = "/etc/uringsync.toml"

# option name -> the type its value must have ("str|list" accepts a string
# or a list of strings; an enumeration is a tuple of the allowed strings)
_ENGINE = ("auto", "io_uring", "threads")
_WHEN = ("auto", "always", "never")
SCHEMA: dict[str, dict[str, object]] = {
    "cp": {
        "jobs": int,
        "queue_depth": int,
        "engine": _ENGINE,
        "sparse": _WHEN,
        "reflink": _WHEN,
        "direct": bool,
        "fsync": bool,
        "verify": bool,
        "preserve": "str|list",
        "one_file_system": bool,
        "quiet": bool,
        "progress": bool,
    },
    "sync": {
        "jobs": int,
        "exclude": "list",
        "include": "list",
        "filter": "list",
        "verify": bool,
        "delete": bool,
        "checksum": bool,
        "quiet": bool,
        "progress": bool,
    },
    "verify": {
        "jobs": int,
        "engine": _ENGINE,
    },
    "bench": {
        "workloads": str,
        "entries": int,
        "big_size": str,
        "mixed_files": int,
        "mixed_big": str,
        "rounds": int,
        "cold": bool,
        "warm": bool,
        "jobs_sweep": bool,
        "workdir": str,
        "loop": bool,
        "image_size": str,
        "keep": bool,
        "settle": float,
        "verify": ("count", "rsync", "none"),
        "rss_entries": int,
        "seed": int,
        "uringsync_args": str,
    },
}


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file,
    the line (when known) and the key."""


def user_path() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "uringsync", "config.toml")


def find(path: str | None = None, use: bool = True) -> str | None:
    """The file to read: ``path`` if given, else the first that exists."""
    if not use:
        return None
    if path is not None:
        return path
    for p in (user_path(), SYSTEM_PATH):
        if os.path.isfile(p):
            return p
    return None


def _line_of(text: str, table: str, key: str | None) -> int | None:
    """The line of ``key`` in ``[table]`` (or of the table), by scanning."""
    current = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        m = re.match(r"^\[\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]", line)
        if m:
            current = m.group(1).strip("\"'")
            if key is None and current == table:
                return n
            continue
        if key is not None and current == table:
            k = re.match(r"^([A-Za-z0-9_\-\"']+)\s*=", line)
            if k and k.group(1).strip("\"'") == key:
                return n
        elif key is not None and current is None:
            k = re.match(r"^([A-Za-z0-9_\-\"']+)\s*\.\s*([A-Za-z0-9_\-\"']+)\s*=", line)
            if k and k.group(1) == table and k.group(2) == key:
                return n
    return None


def _where(path: str, text: str, table: str, key: str | None) -> str:
    n = _line_of(text, table, key)
    at = f"{path}:{n}" if n is not None else path
    return f"{at}: [{table}]" + (f" {key}" if key is not None else "")


def _check(value: object, kind: object) -> str | None:
    """None if ``value`` fits ``kind``, else what was expected."""
    if kind is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if kind is bool:
        return None if isinstance(value, bool) else "true or false"
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else "a number"
    if kind is str:
        return None if isinstance(value, str) else "a string"
    if kind == "list":
        ok = isinstance(value, list) and all(isinstance(x, str) for x in value)
        return None if ok else "a list of strings"
    if kind == "str|list":
        if isinstance(value, str):
            return None
        ok = isinstance(value, list) and all(isinstance(x, str) for x in value)
        return None if ok else "a string or a list of strings"
    if isinstance(kind, tuple):
        return None if value in kind else "one of " + ", ".join(map(repr, kind))
    raise AssertionError(kind)


def load(path: str) -> dict[str, dict[str, Any]]:
    """Read and check the whole file: {command: {option: value}}."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the configuration file: {e.strerror}") from None
    text = data.decode("utf-8", "replace")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # tomllib's message ends with "(at line L, column C)"
        m = re.search(r"at line (\d+), column (\d+)", str(e))
        if m is None:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
        n = int(m.group(1))
        lines = text.splitlines()
        k = re.match(r"\s*([A-Za-z0-9_\-\"'.]+)\s*=", lines[n - 1]) if n <= len(lines) else None
        key = f" (key {k.group(1)})" if k else ""
        raise ConfigError(f"{path}:{n}:{m.group(2)}: not valid TOML{key}: {e}") from None
    out: dict[str, dict[str, Any]] = {}
    for table, values in doc.items():
        if table not in SCHEMA:
            where = _where(path, text, table, None)
            known = ", ".join(f"[{t}]" for t in SCHEMA)
            raise ConfigError(f"{where}: unknown table (known: {known})")
        if not isinstance(values, dict):
            raise ConfigError(f"{_where(path, text, table, None)}: must be a table")
        schema = SCHEMA[table]
        for key, value in values.items():
            if key not in schema:
                known = ", ".join(schema)
                raise ConfigError(f"{_where(path, text, table, key)}: unknown key (known: {known})")
            wrong = _check(value, schema[key])
            if wrong is not None:
                raise ConfigError(
                    f"{_where(path, text, table, key)}: must be {wrong}, not {value!r}"
                )
            if schema[key] in (int, float) and value < 0:
                raise ConfigError(f"{_where(path, text, table, key)}: must not be negative")
        out[table] = dict(values)
    return out


# a key whose command-line parameter (click's name) differs from it
PARAMS: dict[str, dict[str, str]] = {"verify": {"engine": "engine_name"}}


def unset(ctx: Any, param: str) -> bool:
    """Whether a typer/click command's ``param`` was not given on the command
    line (nor by an environment variable): a configuration value may set it."""
    source = ctx.get_parameter_source(param)  # typer's click or click's ParameterSource
    return source is None or source.name in ("DEFAULT", "DEFAULT_MAP")


def defaults(command: str, path: str | None = None, use: bool = True) -> dict[str, Any]:
    """The defaults the configuration file sets for ``command`` (a table of
    :data:`SCHEMA`), checked; ``{}`` when there is no file or ``use`` is
    false.  ``path`` is ``--config FILE``.  Raises :class:`ConfigError`."""
    if command not in SCHEMA:
        raise KeyError(command)
    found = find(path, use)
    if found is None:
        return {}
    return load(found).get(command, {})
