"""Names in messages are quoted as GNU cp quotes them (uringsync/quote.py):
checked against ``ls --quoting-style=shell-escape-always`` (coreutils'
quotearg, the function cp's messages use) for every byte value, alone and
inside a name, in a UTF-8 and in the C locale; and against cp itself on a
message about a name with a newline: one message, one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.base import REPO_DIR

# every byte but NUL and '/', alone, between letters, and after a quote; and
# the cases gnulib treats apart: multibyte characters (printable or not,
# cut short), quotes with and without other escapes, '#', '~', '{', '}'
NAMES = (
    [bytes([c]) for c in range(1, 256) if c not in (0x2E, 0x2F)]
    + [b"a" + bytes([c]) + b"b" for c in range(1, 256) if c != 0x2F]
    + [b"'" + bytes([c]) for c in range(1, 256) if c != 0x2F]
    + [
        b"it's",
        b"a'b\n",
        b"\n'a\n",
        b"x~",
        b"~x",
        b"{",
        b"{}",
        b"''",
        b"\xc3\xa9",
        b"\xc3\xa9\x01",
        b"\xc3",
        b"a\xc3",
        b"\xe2\x82",
        b"\xe2\x82\xac",
        b"\xed\xa0\x80",
        b"\xf0\x9f\x98\x80",
        b"\xc2\xa0",
        b"a'\xc3\xa9",
        b"\xe2\x80\x8b",
        b"a'\\",
        b"..",
        b"...",
    ]
)

_QUOTE_ALL = """
import sys
from uringsync.quote import quote
for line in sys.stdin.buffer.read().split(b"\\0"):
    if line:
        sys.stdout.write(quote(line) + "\\n")
"""


@pytest.mark.parametrize("lang", ["C.UTF-8", "C"])
def test_quoting_is_ls_shell_escape_always(tmp_path: Path, lang: str) -> None:
    env = dict(os.environ, LC_ALL=lang, PYTHONPATH=str(REPO_DIR))
    names = list(dict.fromkeys(NAMES))
    for n in names:
        (tmp_path / os.fsdecode(n)).touch()
    want = subprocess.run(
        ["ls", "-d", "-1", "--quoting-style=shell-escape-always", "--", *names],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        check=True,
    ).stdout.decode("utf-8", "surrogateescape")
    got = subprocess.run(
        [sys.executable, "-c", _QUOTE_ALL],
        input=b"\0".join(names),
        env=env,
        capture_output=True,
        check=True,
    ).stdout.decode("utf-8", "surrogateescape")
    # ls sorts its output: the lines are compared as sets of the same size
    assert sorted(got.splitlines()) == sorted(want.splitlines())
    assert len(got.splitlines()) == len(names)


def test_message_about_a_newline_name_is_one_line_as_cp(tmp_path: Path) -> None:
    """cp's message and ours, about the same unreadable name with a newline
    and a non-UTF-8 byte: the same single line."""
    name = "a\nb\udcff'c"
    (tmp_path / "src").mkdir()
    env = dict(os.environ, LC_ALL="C.UTF-8", PYTHONPATH=str(REPO_DIR))
    pc = subprocess.run(
        ["cp", os.fsencode(f"src/{name}"), "x"], cwd=tmp_path, env=env, capture_output=True
    )
    pu = subprocess.run(
        [sys.executable, "-m", "uringsync", "cp", os.fsencode(f"src/{name}"), "y"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
    )
    assert pc.returncode == pu.returncode == 1
    assert pu.stderr == pc.stderr.replace(b"cp: ", b"uringsync: ")
    assert pu.stderr.count(b"\n") == 1
