"""The Python API's arguments checked before anything is read or written:
a wrong type is a :class:`TypeError`, a value an option cannot take an
:class:`~uringsync.options.ArgumentError` (a :class:`ValueError` and a
:class:`~uringsync.CopyError`), each message naming the argument as the
Python call spells it.  The enumerated options' ``Literal`` types live here
too.

:func:`check` takes a function's arguments by name (its ``locals()`` before
anything else runs) and checks those it has a rule for, so a parameter added
to a function is checked once its name has a rule in :data:`RULES`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, get_args

from uringsync.options import PRESERVE_NAMES, ArgumentError

# the enumerated options, as the API types them
When = Literal["auto", "always", "never"]  # sparse, reflink
EngineName = Literal["auto", "io_uring", "threads"]
Dereference = Literal["auto", "never", "command-line", "always"]
Backup = Literal["none", "off", "numbered", "t", "existing", "nil", "simple", "never"]

__all__ = ["Backup", "Dereference", "EngineName", "When", "check"]

Rule = Callable[[str, Any], None]


def _kind(value: Any) -> str:
    return type(value).__name__


def _bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {_kind(value)} {value!r}")


def _opt_bool(name: str, value: Any) -> None:
    if value is not None:
        _bool(name, value)


def _choice(choices: tuple[str, ...], optional: bool = False) -> Rule:
    def rule(name: str, value: Any) -> None:
        if value is None and optional:
            return
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, not {_kind(value)}")
        if value not in choices:
            word = name.removesuffix("_name")
            raise ArgumentError(f"invalid {word} {value!r}: use one of {', '.join(choices)}")

    return rule


def _int(low: int, high: int | None = None, optional: bool = False) -> Rule:
    def rule(name: str, value: Any) -> None:
        if value is None and optional:
            return
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, not {_kind(value)}")
        if value < low or (high is not None and value > high):
            bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise ArgumentError(f"{name} must be {bounds}, not {value}")

    return rule


def _callable(name: str, value: Any) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be a callable or None, not {_kind(value)}")


def _path(name: str, value: Any) -> None:
    if not isinstance(value, (str, bytes, os.PathLike)):
        raise TypeError(f"{name} must be a path (str, bytes or os.PathLike), not {_kind(value)}")
    if not os.fspath(value):
        raise ArgumentError(f"{name} is an empty path")


def _opt_path(name: str, value: Any) -> None:
    if value is not None:
        _path(name, value)


def _paths(name: str, value: Any) -> None:
    """One path, or a sequence of them (an iterator is taken as it is)."""
    if isinstance(value, (str, bytes, os.PathLike)):
        _path(name, value)
        return
    if isinstance(value, Sequence):
        if not value:
            raise ArgumentError(f"{name} is empty: give at least one path")
        for i, item in enumerate(value):
            _path(f"{name}[{i}]", item)
        return
    if not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a path or a sequence of paths, not {_kind(value)}")


def _patterns(name: str, value: Any) -> None:
    """A sequence of str/bytes patterns: a lone str would be its characters."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list of patterns (str or bytes), not {_kind(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, (str, bytes)):
            raise TypeError(f"{name}[{i}] must be a str or bytes pattern, not {_kind(item)}")


def _attributes(name: str, value: Any) -> None:
    """preserve/no_preserve: a comma-separated list of attribute names."""
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str such as 'mode,timestamps', not {_kind(value)}")
    for word in filter(None, (w.strip() for w in value.split(","))):
        if word not in PRESERVE_NAMES:
            listed = ", ".join(PRESERVE_NAMES)
            raise ArgumentError(
                f"{name}: unknown attribute {word!r} (a comma-separated list of: {listed})"
            )


def _suffix(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {_kind(value)}")
    if not value:
        raise ArgumentError(f"{name} must not be empty")


RULES: dict[str, Rule] = {
    "srcs": _paths,
    "dst": _path,
    "src": _path,
    "manifest_file": _opt_path,
    "manifest_path": _path,
    "preserve": _attributes,
    "no_preserve": _attributes,
    "sparse": _choice(get_args(When)),
    "reflink": _choice(get_args(When)),
    "engine": _choice(get_args(EngineName), optional=True),
    "engine_name": _choice(get_args(EngineName), optional=True),
    "dereference": _choice(get_args(Dereference)),
    "backup": _choice(get_args(Backup), optional=True),
    "suffix": _suffix,
    "queue_depth": _int(1, 1024),
    "jobs": _int(0, optional=True),
    "copy_range_min": _int(0, optional=True),
    "max_delete": _int(0, optional=True),
    "block_size": _int(4096, 1 << 20),
    "direct": _opt_bool,
    "target_is_dir": _opt_bool,
    "exclude": _patterns,
    "include": _patterns,
    **{
        name: _bool
        for name in (
            "archive",
            "recursive",
            "one_file_system",
            "verbose",
            "fsync",
            "verify",
            "parents",
            "no_clobber",
            "update",
            "force",
            "remove_destination",
            "link",
            "symbolic_link",
            "attributes_only",
            "check",
            "delete",
            "dry_run",
            "checksum",
            "hard_links",
            "acls",
            "xattrs",
            "size_only",
            "ignore_times",
            "ignore_existing",
            "existing",
            "inplace",
            "delta",
            "delete_after",
            "delete_excluded",
        )
    },
    **{
        name: _callable
        for name in (
            "progress",
            "on_error",
            "on_verbose",
            "on_notice",
            "on_itemize",
            "on_info",
            "on_failed",
            "ignore",
            "ask",
        )
    },
}


def check(args: Mapping[str, Any]) -> None:
    """Check a call's arguments (a function's ``locals()`` at its start):
    TypeError for a wrong type, ArgumentError (a ValueError) for a value the
    option cannot take or two options that cannot go together."""
    for name, value in args.items():
        rule = RULES.get(name)
        if rule is not None:
            rule(name, value)
    get = args.get
    if get("link") and get("symbolic_link"):
        raise ArgumentError("link and symbolic_link cannot both be True")
    if get("no_clobber") and get("backup") not in (None, "none", "off"):
        raise ArgumentError("no_clobber and backup cannot go together")


def ignore_in_bytes(
    ignore: Callable[[str, list[str]], Iterable[str]],
) -> Callable[[bytes, list[bytes]], Iterable[bytes]]:
    """``ignore`` (shutil.copytree's: a directory's path and its entries'
    names as str) as the walker calls it, with bytes: names that are not
    UTF-8 go through ``os.fsdecode`` and back (surrogateescape), unchanged."""
    decode, encode = os.fsdecode, os.fsencode

    def in_bytes(path: bytes, names: list[bytes]) -> Iterable[bytes]:
        return [encode(n) for n in ignore(decode(path), [decode(n) for n in names])]

    return in_bytes
