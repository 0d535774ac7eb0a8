"""rsync's include/exclude rules: parsing the options and matching paths, as rsync does.

Sources, in command-line order (:func:`rules_from_args`): ``--exclude=PATTERN``,
``--include=PATTERN``, ``--exclude-from=FILE``, ``--include-from=FILE`` (``-`` is
stdin) and ``--filter=RULE`` limited to the exclude (``-``, ``exclude``) and include
(``+``, ``include``) rules without modifiers.  Everything else rsync's ``--filter``
knows (merge ``.``, dir-merge ``:``, hide ``H``, show ``S``, protect ``P``, risk
``R``, clear ``!``, modifiers such as ``-/`` or ``+!``) is refused with
:class:`FilterError` naming the rule, and so is the old-style clear (a lone ``!``
given to ``--exclude``/``--include`` or on a line of an ``-from`` file).

As in rsync:

* ``--exclude``/``--include`` and the lines of ``-from`` files take one pattern
  each, spaces included, but a leading ``"- "`` or ``"+ "`` says the kind
  (``--include='- foo'`` excludes foo).  ``-from`` files: one pattern a line (a line
  ends at ``\\n`` or ``\\r``), blank lines and lines starting with ``;`` or ``#``
  skipped.  An empty ``--exclude``/``--filter`` adds nothing; ``--filter='-'`` (no
  pattern) is an error.
* The first rule that matches decides; no match means included.
* A pattern with a ``/`` that is not trailing, or with ``**``, is matched against
  the path from the transfer root; otherwise against the last name only.  A leading
  ``/`` anchors it at the transfer root; unanchored, a pattern with ``n`` slashes
  and no ``**`` must match exactly the last ``n + 1`` names, and one with an infix
  or trailing ``**`` may start at the root or just after any ``/``.  A pattern that
  starts with ``**`` is matched against ``"/" + path``, so ``**/foo`` also matches a
  top-level ``foo``.
* A trailing ``/`` restricts the rule to directories; a trailing ``***`` matches
  the directory itself as well as everything below it (``dir/***``).
* Wildcards (rsync's wildmatch): ``*`` any run of bytes but ``/``; ``**`` (or more
  stars) any run of bytes; ``?`` one byte but ``/``; ``[...]`` a class (``!`` or
  ``^`` negates, ranges, ``\\`` escapes, ``[:alpha:]``-style classes in ASCII, never
  ``/``).  A malformed class (unterminated, unknown ``[:name:]``) matches nothing,
  and so does a pattern ending in a lone backslash.
* A backslash escapes the next character only when the pattern holds a wildcard
  (one of ``*?[``): ``foo\\bar`` matches that backslash, ``foo\\bar*`` matches
  ``foobar...``.
* Names and patterns are bytes, compared byte by byte (``?`` is one byte, not one
  UTF-8 character).

Why no library: rsync's dialect (``**`` vs ``*``, the ``/``-counting rule for
unanchored patterns, ``***``, backslashes that only escape in wild patterns)
matches neither :mod:`fnmatch` nor wcmatch's glob flags, so each pattern is
translated once to a compiled ``re`` bytes regex and matched against the right
subject (last name, path, or ``/`` + path).

What stays with the caller:

* rsync does not descend into an excluded directory, so nothing below it is
  considered, whatever the include rules say: walk top-down and prune a directory
  for which :meth:`Rules.excluded` is true.  The transfer root itself is never
  matched.
* ``--delete-excluded``: with it, excluded files on the receiver are deleted too;
  without it, ``--delete`` leaves excluded receiver files alone (the rules
  "protect" them).  Both are decided by the sync command with the same
  :meth:`Rules.excluded` on receiver-relative paths.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "FilesFrom",
    "FilterError",
    "Listed",
    "Rule",
    "Rules",
    "clean_listed",
    "compile_rule",
    "parse_filter",
    "read_list",
    "rules_from_args",
]


class FilterError(ValueError):
    """A filter rule or option that is malformed or not supported."""


_WILD = re.compile(rb"[*?\[]")
_NEVER = re.compile(rb"(?!)")

# wildmatch's [:name:] classes, with C-locale (ASCII) ctype semantics
_CLASSES: dict[bytes, frozenset[int]] = {
    b"alnum": frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
    b"alpha": frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
    b"blank": frozenset(b" \t"),
    b"cntrl": frozenset([*range(32), 127]),
    b"digit": frozenset(b"0123456789"),
    b"graph": frozenset(range(33, 127)),
    b"lower": frozenset(b"abcdefghijklmnopqrstuvwxyz"),
    b"print": frozenset(range(32, 127)),
    b"punct": frozenset(c for c in range(33, 127) if not chr(c).isalnum()),
    b"space": frozenset(b" \t\n\v\f\r"),
    b"upper": frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    b"xdigit": frozenset(b"0123456789ABCDEFabcdef"),
}


class _Malformed(Exception):
    """A pattern that rsync's wildmatch aborts on: it can never match."""


def _class(pat: bytes, i: int) -> tuple[bytes, int]:
    """Translate the class opening at ``pat[i] == '['``; return (regex, index after ']')."""
    i += 1
    negate = i < len(pat) and pat[i] in b"!^"
    if negate:
        i += 1
    members: set[int] = set()
    prev = 0  # wildmatch's prev_ch: 0 after a range or a [:class:]
    first = True
    while True:
        if i >= len(pat):
            raise _Malformed
        c = pat[i]
        if c == ord("]") and not first:
            break
        first = False
        if c == ord("\\"):
            i += 1
            if i >= len(pat):
                raise _Malformed
            c = pat[i]
            members.add(c)
        elif c == ord("-") and prev and i + 1 < len(pat) and pat[i + 1] != ord("]"):
            i += 1
            hi = pat[i]
            if hi == ord("\\"):
                i += 1
                if i >= len(pat):
                    raise _Malformed
                hi = pat[i]
            members.update(range(prev, hi + 1))
            c = 0
        elif c == ord("[") and i + 1 < len(pat) and pat[i + 1] == ord(":"):
            end = pat.find(b"]", i + 2)
            if end < 0:
                raise _Malformed
            if end - 1 >= i + 2 and pat[end - 1] == ord(":"):
                name = pat[i + 2 : end - 1]
                if name not in _CLASSES:
                    raise _Malformed
                members |= _CLASSES[name]
                i = end
                c = 0
            else:  # no ":]": the '[' is an ordinary member
                members.add(c)
        else:
            members.add(c)
        prev = c
        i += 1
    members.discard(ord("/"))
    if negate:
        members = set(range(256)) - members - {ord("/")}
    if not members:
        return b"(?!)", i + 1
    body = b"".join(re.escape(bytes([m])) for m in sorted(members))
    return b"[" + body + b"]", i + 1


def _translate(pat: bytes) -> bytes:
    """rsync's wildmatch pattern -> a regex (for fullmatch, with DOTALL)."""
    out: list[bytes] = []
    i = 0
    n = len(pat)
    while i < n:
        c = pat[i]
        if c == ord("*"):
            j = i
            while j < n and pat[j] == ord("*"):
                j += 1
            out.append(b".*" if j - i > 1 else b"[^/]*")
            i = j
            continue
        if c == ord("?"):
            out.append(b"[^/]")
        elif c == ord("["):
            rx, i = _class(pat, i)
            out.append(rx)
            continue
        elif c == ord("\\"):
            i += 1
            if i >= n:
                raise _Malformed  # a lone trailing backslash matches nothing
            out.append(re.escape(pat[i : i + 1]))
        else:
            out.append(re.escape(pat[i : i + 1]))
        i += 1
    return b"".join(out)


# how the subject string is built from the path
_BASENAME, _PATH, _SLASH_PATH = 0, 1, 2


@dataclass(frozen=True)
class Rule:
    """One include or exclude rule, compiled.  Build with :func:`compile_rule`."""

    include: bool
    pattern: bytes  # as given (trailing slash included)
    dir_only: bool
    subject: int  # _BASENAME, _PATH or _SLASH_PATH
    tail: int  # > 0: match only the last `tail` names of the path (0: the whole subject)
    dir_slash: bool  # a directory's subject gets a trailing "/" (a trailing "***")
    regex: re.Pattern[bytes] = field(repr=False, compare=False)

    def matches(self, path: bytes, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        if not path:
            return False
        if self.subject == _BASENAME:
            s = path[path.rfind(b"/") + 1 :]
        elif self.subject == _SLASH_PATH:
            s = b"/" + path
        else:
            s = path
        if self.tail:
            k = self.tail
            pos = len(s)
            while k:
                pos = s.rfind(b"/", 0, pos)
                k -= 1
                if pos < 0:
                    if k:
                        return False
                    break
            s = s[pos + 1 :]
        if is_dir and self.dir_slash:
            s += b"/"
        return self.regex.fullmatch(s) is not None


def compile_rule(include: bool, pattern: bytes | str) -> Rule:
    """One rule as rsync's ``add_rule`` and ``rule_matches`` see it."""
    pat = os.fsencode(pattern)
    if not pat:
        raise FilterError("empty filter pattern")
    body = pat
    dir_only = False
    if len(body) > 1 and body.endswith(b"/"):
        body = body[:-1]
        dir_only = True
    slash_cnt = body.count(b"/")
    wild = _WILD.search(body) is not None
    wild2 = wild and b"**" in body
    wild2_prefix = wild2 and body.startswith(b"**")
    wild3_suffix = wild2 and len(body) >= 3 and body.endswith(b"***")
    anchored = body.startswith(b"/")
    if anchored:
        body = body[1:]

    if not slash_cnt and not wild2:
        subject = _BASENAME
    elif wild2_prefix:
        subject = _SLASH_PATH
    else:
        subject = _PATH

    tail = 0
    anywhere = False  # may start after any "/" of the subject
    if not anchored and slash_cnt and not wild2:
        tail = slash_cnt + 1
    elif not anchored and not wild2_prefix and wild2:
        anywhere = True

    if wild:
        try:
            rx = _translate(body)
        except _Malformed:
            return Rule(include, pat, dir_only, subject, tail, False, _NEVER)
    else:  # a plain string: backslashes are literal
        rx = re.escape(body)
    if anywhere:
        rx = b"(?:.*/)?" + rx
    return Rule(include, pat, dir_only, subject, tail, wild3_suffix, re.compile(rx, re.DOTALL))


class Rules:
    """An ordered list of rules; the first that matches a path decides."""

    def __init__(self, rules: Iterable[Rule | tuple[str, bytes | str]] = ()) -> None:
        """``rules``: compiled rules or ``("include"|"exclude", pattern)`` pairs."""
        out: list[Rule] = []
        for r in rules:
            if isinstance(r, Rule):
                out.append(r)
            else:
                kind, pattern = r
                if kind not in ("include", "exclude"):
                    raise FilterError(f"rule kind {kind!r}: expected 'include' or 'exclude'")
                out.append(compile_rule(kind == "include", pattern))
        self.rules: tuple[Rule, ...] = tuple(out)
        self._files = tuple(r for r in out if not r.dir_only)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def __repr__(self) -> str:
        kinds = ", ".join(f"{'+' if r.include else '-'} {r.pattern!r}" for r in self.rules)
        return f"Rules([{kinds}])"

    def first_match(self, path: bytes, is_dir: bool) -> Rule | None:
        """The rule that decides ``path`` (relative to the transfer root), or None."""
        for r in self.rules if is_dir else self._files:
            if r.matches(path, is_dir):
                return r
        return None

    def excluded(self, path: bytes, is_dir: bool) -> bool:
        """True when rsync would leave ``path`` out (``path``: relative, no leading ``/``).

        This judges one path only: the caller must not descend into an excluded
        directory (rsync never looks at what lies below one).
        """
        r = self.first_match(path, is_dir)
        return r is not None and not r.include

    def protected(self, path: bytes, is_dir: bool, delete_excluded: bool) -> bool:
        """True when ``--delete`` must leave the destination's ``path`` alone
        (an excluded name, unless ``--delete-excluded``)."""
        return not delete_excluded and self.excluded(path, is_dir)

    def protected_below(self, path: bytes, is_dir: bool, delete_excluded: bool) -> bool:
        """The same, for what lies inside a destination directory being
        deleted (or replaced)."""
        return self.protected(path, is_dir, delete_excluded)

    def deletes_in(self, rel: bytes) -> bool:
        """Whether ``--delete`` looks inside the directory ``rel`` (b"" or
        ``"dir/"``) at all."""
        return True


def _old_style(include: bool, text: bytes, where: str) -> tuple[bool, bytes] | None:
    """An ``--include``/``--exclude`` pattern or a ``-from`` line -> (include, pattern)."""
    if not text:
        return None  # rsync ignores an empty --exclude/--include
    if text[:2] in (b"- ", b"+ "):
        include, text = text[:1] == b"+", text[2:]
        if not text:
            raise FilterError(f"unexpected end of rule: nothing after the prefix ({where})")
    elif text == b"!":
        raise FilterError(f"unsupported clear rule '!' ({where}): rules cannot be cleared")
    return include, text


_FILTER_NAMES = {b"-": False, b"+": True, b"exclude": False, b"include": True}


def parse_filter(rule: bytes | str) -> tuple[bool, bytes] | None:
    """A ``--filter`` rule -> (include, pattern); None for an empty rule."""
    text = os.fsencode(rule)
    if not text:
        return None
    shown = os.fsdecode(text)
    for name, include in _FILTER_NAMES.items():
        if text.startswith(name) and text[len(name) : len(name) + 1] in (b" ", b"_"):
            pattern = text[len(name) + 1 :]
            if not pattern:
                raise FilterError(f"filter rule {shown!r} has no pattern")
            return include, pattern
        if text == name:
            raise FilterError(f"filter rule {shown!r} has no pattern")
    raise FilterError(
        f"unsupported filter rule {shown!r}: only '-' and '+' rules "
        "(exclude, include) without modifiers are supported"
    )


def _split_lines(data: bytes, from0: bool) -> list[bytes]:
    """rsync's read_line with RL_DUMP_COMMENTS: a line ends at ``\\n`` or
    ``\\r`` (``from0``: at NUL only); empty lines and lines starting with
    ``#`` or ``;`` are skipped."""
    lines = data.split(b"\0") if from0 else re.split(rb"[\r\n]", data)
    return [ln for ln in lines if ln and ln[:1] not in (b";", b"#")]


def _read(source: str | bytes) -> bytes:
    """A file's bytes; ``-``: standard input."""
    if os.fsencode(source) == b"-":
        return sys.stdin.buffer.read()
    with open(source, "rb") as f:
        return f.read()


def _read_lines(source: str | bytes, from0: bool = False) -> list[bytes]:
    try:
        data = _read(source)
    except OSError as e:
        raise FilterError(f"cannot read filter file {os.fsdecode(source)!r}: {e}") from e
    return _split_lines(data, from0)


_KINDS = ("exclude", "include", "exclude-from", "include-from", "filter")


def rules_from_args(items: Sequence[tuple[str, str | bytes]], from0: bool = False) -> Rules:
    """Rules from the filter options in command-line order.

    ``items``: ``(option, value)`` with option one of ``exclude``, ``include``,
    ``exclude-from``, ``include-from`` (value: a file name, ``-`` for stdin) or
    ``filter``.  ``from0``: the ``-from`` files hold NUL-ended lines (rsync's
    ``--from0``).  Raises :class:`FilterError` for what is malformed or unsupported.
    """
    out: list[Rule] = []
    for kind, value in items:
        if kind in ("exclude", "include"):
            got = _old_style(kind == "include", os.fsencode(value), f"--{kind}")
            if got is not None:
                out.append(compile_rule(*got))
        elif kind in ("exclude-from", "include-from"):
            where = f"--{kind}={os.fsdecode(value)}"
            for line in _read_lines(value, from0):
                got = _old_style(kind == "include-from", line, where)
                if got is not None:
                    out.append(compile_rule(*got))
        elif kind == "filter":
            got = parse_filter(value)
            if got is not None:
                out.append(compile_rule(*got))
        else:
            raise FilterError(f"unknown filter option {kind!r}: expected one of {_KINDS}")
    return Rules(out)


# ----------------------------------------------------------- --files-from


@dataclass(frozen=True)
class Listed:
    """One line of a ``--files-from`` list, cleaned as rsync's sender does."""

    path: bytes  # relative to SRC, no leading or trailing "/"; b"" is SRC itself
    contents: bool  # "dir/" or ".": the directory's own entries are sent too (rsync's -d)
    dot: bool  # a leading "./": SRC itself is sent too, as an implied directory


def _sanitize(p: bytes) -> bytes:
    """rsync's ``sanitize_path(p, "", 0, SP_KEEP_DOT_DIRS)``: leading and
    doubled slashes dropped, each ``..`` takes back the name before it
    (never rising above the top), ``.`` names and a trailing slash kept."""
    out = bytearray()
    i, n = 0, len(p)
    while i < n:
        if p[i] == 0x2F:
            i += 1
            continue
        if p.startswith(b"..", i) and (i + 2 == n or p[i + 2] == 0x2F):
            i += 2
            if out:  # back up one name: out ends with its "/"
                del out[out.rfind(b"/", 0, len(out) - 1) + 1 :]
            continue
        j = p.find(b"/", i)
        j = n if j < 0 else j + 1
        out += p[i:j]
        i = j
    return bytes(out) or b"."


def _clean(p: bytes) -> bytes:
    """rsync's ``clean_fname(CFN_KEEP_TRAILING_SLASH | CFN_DROP_TRAILING_DOT_DIR)``
    on a sanitized path: ``./`` names dropped, a trailing ``.`` too."""
    out = bytearray()
    i, n = 0, len(p)
    while i < n:
        if p[i] == 0x2F:
            i += 1
            continue
        if p[i] == 0x2E and (i + 1 == n or p[i + 1] == 0x2F):
            i += 2  # "./" inside, or a trailing "."
            continue
        j = p.find(b"/", i)
        j = n if j < 0 else j + 1
        out += p[i:j]
        i = j
    return bytes(out)


def clean_listed(line: bytes) -> Listed:
    """A ``--files-from`` line as rsync 3's send_file_list reads it: relative
    to SRC whatever its leading slashes, ``..`` resolved so that it cannot
    rise above SRC (``../foo`` is ``foo``), ``dir/`` and ``.`` send the
    directory's entries too, and a leading ``./`` sends SRC itself as well.
    rsync's ``a/./b`` (send ``SRC/a/b`` as ``b``) is refused with
    :class:`FilterError`: one list here has one base, SRC."""
    p = _sanitize(line)
    if b"/./" in p:
        raise FilterError(
            f"--files-from: {os.fsdecode(line)!r}: a '/./' in a listed path "
            "(rsync's change of base directory) is not supported"
        )
    dot = p.startswith(b"./") and len(p) > 2
    p = _clean(p)
    if not p or p == b".":
        return Listed(b"", True, dot)
    if p.endswith(b"/"):
        return Listed(p.rstrip(b"/"), True, dot)
    return Listed(p, False, dot)


def read_list(source: str | bytes, from0: bool = False) -> list[Listed]:
    """A ``--files-from`` file (``-``: standard input), one path a line
    (``from0``: NUL-ended; rsync's ``--from0``); blank lines and lines
    starting with ``#`` or ``;`` are skipped, as rsync does."""
    try:
        data = _read(source)
    except OSError as e:
        raise FilterError(
            f"failed to open files-from file {os.fsdecode(source)}: {os.strerror(e.errno or 0)}"
        ) from e
    return [clean_listed(ln) for ln in _split_lines(data, from0)]


def _parent(path: bytes) -> bytes:
    return path[: max(path.rfind(b"/"), 0)]


class FilesFrom(Rules):
    """A ``--files-from`` list as a rule set for the sync walk over SRC: a path
    is kept when it is listed, is a directory above a listed path (rsync's
    implied directories, which no rule excludes), or lies in a directory
    whose contents are sent -- a listed ``dir/`` or ``.``, and with ``-r`` a
    listed directory and every directory below it that the user's rules do
    not exclude -- and the user's rules do not exclude it.

    Deletion follows rsync's generator, which deletes only in directories
    whose contents it sends: there the user's rules protect (unless
    ``--delete-excluded``); anywhere else (implied directories, a listed
    directory without ``-r``) nothing is deleted."""

    _CACHE_MAX = 1 << 16

    def __init__(
        self, entries: dict[bytes, bool], recursive: bool, user: Rules | None = None
    ) -> None:
        """``entries``: listed path -> its contents are sent (b"": SRC itself),
        only those that exist and the user's rules keep."""
        super().__init__(user.rules if user is not None else ())
        self.user = user if user else None
        self.recursive = recursive
        self.listed = frozenset(entries)
        self.content = frozenset(p for p, c in entries.items() if c)
        implied: set[bytes] = set()
        for p in entries:
            while b"/" in p:
                p = _parent(p)
                if p in implied:
                    break
                implied.add(p)
        self.implied = frozenset(implied)
        self._dirs: dict[bytes, bool] = {}

    def __bool__(self) -> bool:
        return True  # even with no rule of the user's, it decides

    def __repr__(self) -> str:
        return (
            f"FilesFrom({len(self.listed)} listed, recursive={self.recursive}, user={self.user!r})"
        )

    def _user_excluded(self, path: bytes, is_dir: bool) -> bool:
        return self.user is not None and self.user.excluded(path, is_dir)

    def content_dir(self, d: bytes) -> bool:
        """Whether the directory ``d`` (b"": SRC) has its entries sent."""
        got = self._dirs.get(d)
        if got is None:
            if d in self.content:
                got = True
            elif not self.recursive or not d:
                got = False
            else:
                got = self.content_dir(_parent(d)) and not self._user_excluded(d, True)
            if len(self._dirs) >= self._CACHE_MAX:
                self._dirs.clear()
            self._dirs[d] = got
        return got

    def excluded(self, path: bytes, is_dir: bool) -> bool:
        if path in self.listed or path in self.implied:
            return False
        if not self.content_dir(_parent(path)):
            return True
        return self._user_excluded(path, is_dir)

    def protected(self, path: bytes, is_dir: bool, delete_excluded: bool) -> bool:
        if not self.content_dir(_parent(path)):
            return True
        return not delete_excluded and self._user_excluded(path, is_dir)

    def protected_below(self, path: bytes, is_dir: bool, delete_excluded: bool) -> bool:
        # rsync's delete_dir_contents lists with the receiver's rules only
        return not delete_excluded and self._user_excluded(path, is_dir)

    def deletes_in(self, rel: bytes) -> bool:
        return self.content_dir(rel.rstrip(b"/"))
