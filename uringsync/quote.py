"""Names in messages quoted as GNU cp quotes them: gnulib's quotearg with
``shell_escape_always_quoting_style`` (coreutils' ``quoteaf``), so that one
message is one line whatever bytes a name holds, and what is printed can be
pasted into a shell.

- the name goes in single quotes: ``'a b'``;
- a byte the locale cannot print becomes an escape inside ``$'...'``:
  ``'a'$'\\n''b'``, ``''$'\\377'`` (``\\a \\b \\f \\n \\r \\t \\v`` by letter,
  others as three octal digits);
- a single quote is written ``'\\''``, unless the name has nothing but
  characters that are plain in both C and shell quoting: then the name goes in
  double quotes instead (``"it's"``);
- in a UTF-8 locale a printable multibyte character stays as it is
  (``'é'``); in the C locale every byte above 0x7f is escaped.

Checked against ``ls --quoting-style=shell-escape-always`` (the same gnulib
function as cp's) in tests/test_quote.py, for every byte value."""

from __future__ import annotations

import functools
import locale
from collections.abc import Callable

__all__ = ["quote"]

_LETTER = {7: "a", 8: "b", 12: "f", 10: "n", 13: "r", 9: "t", 11: "v"}
# characters that are plain in both C's and the shell's quotes
_COMPAT = frozenset(b"%+,-./:]_0123456789'" + bytes(range(65, 91)) + bytes(range(97, 123)))
# shell specials: not C-and-shell compatible ('?' and '\\' neither)
_SPECIAL = frozenset(b'!"$&()*;<=>[^`|?\\')


@functools.lru_cache(maxsize=1)
def _utf8() -> bool:
    """Whether the locale is multibyte (UTF-8), as MB_CUR_MAX > 1 says in C."""
    try:
        return locale.nl_langinfo(locale.CODESET).upper().replace("-", "") == "UTF8"
    except (AttributeError, ValueError):  # pragma: no cover - not on Linux
        return True


@functools.lru_cache(maxsize=1)
def _iswprint() -> Callable[[int], int]:
    import ctypes  # only for names with non-ASCII characters

    f = ctypes.CDLL(None).iswprint
    f.argtypes = [ctypes.c_uint32]
    f.restype = ctypes.c_int
    return f


def _mb_len(name: bytes, i: int) -> tuple[int, bool]:
    """At a byte >= 0x80 in a UTF-8 locale: (bytes the character spans,
    printable), as mbrtowc and iswprint see it: an invalid byte is one
    unprintable byte; an incomplete sequence runs to the end, unprintable."""
    lead = name[i]
    if 0xC2 <= lead <= 0xDF:
        n = 2
    elif 0xE0 <= lead <= 0xEF:
        n = 3
    elif 0xF0 <= lead <= 0xF4:
        n = 4
    else:
        return 1, False
    for k in range(1, n):
        if i + k >= len(name):
            return len(name) - i, False  # incomplete at the end
        if not 0x80 <= name[i + k] <= 0xBF:
            return 1, False
    try:
        ch = name[i : i + n].decode("utf-8")
    except UnicodeDecodeError:  # overlong, a surrogate, beyond U+10FFFF
        return 1, False
    return n, bool(_iswprint()(ord(ch)))


def _pass(name: bytes, utf8: bool, pending: bool) -> tuple[str, bool, bool, bool]:
    """One pass of gnulib's loop: (text, still inside $'...' at the end,
    every character C-and-shell compatible, a single quote met)."""
    out: list[str] = ["'"]
    compat = True
    single = False
    n = len(name)
    i = 0

    def esc(code: str) -> None:
        nonlocal pending
        if not pending:
            out.append("'$'")
            pending = True
        out.append("\\" + code)

    def plain(text: str) -> None:
        nonlocal pending
        if pending:
            out.append("''")
            pending = False
        out.append(text)

    while i < n:
        c = name[i]
        if c in _LETTER:
            esc(_LETTER[c])
            compat = False
        elif c == 0x27:  # '
            single = True
            out.append("'\\''")
            pending = False
        elif c in _COMPAT or (c in b"{}" and n == 1) or (c in b"#~" and i == 0) or c == 0x20:
            plain(chr(c))
        elif c in _SPECIAL or c in b"{}#~":
            plain(chr(c))
            compat = False
        elif c < 0x80 or not utf8:
            if 0x20 <= c < 0x7F:
                plain(chr(c))
            else:
                esc(f"{c:03o}")
                compat = False
        else:
            m, printable = _mb_len(name, i)
            if printable:
                plain(name[i : i + m].decode("utf-8"))
            else:
                compat = False
                for b in name[i : i + m]:
                    esc(f"{b:03o}")
            i += m
            continue
        i += 1
    return "".join(out), pending, compat, single


def quote(name: bytes) -> str:
    """``name`` as GNU cp prints it in a message (see the module's text)."""
    utf8 = _utf8()
    text, pending, compat, single = _pass(name, utf8, False)
    if single:
        if compat:
            return '"' + name.decode("utf-8" if utf8 else "latin-1") + '"'
        # gnulib writes the name again, its second pass starting in the
        # first one's $'...' state: coreutils 9.1 prints a'b<newline> as
        # '''a'\''b'$'\n'.  What cp prints is what users' log parsers know.
        text = _pass(name, utf8, pending)[0]
    return text + "'"
