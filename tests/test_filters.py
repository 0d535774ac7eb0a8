"""uringsync.filters: rsync's include/exclude rules, checked case by case and against rsync."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uringsync.filters import FilterError, Rules, parse_filter, rules_from_args

Items = Sequence[tuple[str, str | bytes]]


def excl(rules: Items, path: bytes, is_dir: bool = False) -> bool:
    return rules_from_args(rules).excluded(path, is_dir)


# ---------------------------------------------------------------- matching

# (rules, path, is_dir, excluded?)
CASES: list[tuple[list[tuple[str, str | bytes]], bytes, bool, bool]] = [
    # no slash: the last name only, at any depth
    ([("exclude", "foo")], b"foo", False, True),
    ([("exclude", "foo")], b"a/b/foo", False, True),
    ([("exclude", "foo")], b"a/foo/b", False, False),
    ([("exclude", "foo")], b"foobar", False, False),
    ([("exclude", "*.o")], b"src/x.o", False, True),
    ([("exclude", "*.o")], b"src/x.c", False, False),
    # a leading slash anchors at the transfer root
    ([("exclude", "/foo")], b"foo", False, True),
    ([("exclude", "/foo")], b"a/foo", False, False),
    ([("exclude", "/a/*")], b"a/x", False, True),
    ([("exclude", "/a/*")], b"b/a/x", False, False),
    # a trailing slash: directories only
    ([("exclude", "foo/")], b"a/foo", True, True),
    ([("exclude", "foo/")], b"a/foo", False, False),
    ([("exclude", "/foo/")], b"foo", True, True),
    # an infix slash, unanchored: exactly the last n+1 names
    ([("exclude", "foo/bar")], b"foo/bar", False, True),
    ([("exclude", "foo/bar")], b"x/y/foo/bar", False, True),
    ([("exclude", "foo/bar")], b"xfoo/bar", False, False),
    ([("exclude", "foo/bar")], b"foo/bar/baz", False, False),
    ([("exclude", "foo/*/bar")], b"x/foo/y/bar", False, True),
    ([("exclude", "foo/*/bar")], b"foo/y/z/bar", False, False),
    ([("exclude", "a/b")], b"b", False, False),  # fewer names than the pattern
    # * stops at slashes, ** does not
    ([("exclude", "/a/*")], b"a/x/y", False, False),
    ([("exclude", "/a/**")], b"a/x/y", False, True),
    ([("exclude", "/a/**")], b"a", True, False),
    ([("exclude", "/foo/**/bar")], b"foo/bar", False, False),
    ([("exclude", "/foo/**/bar")], b"foo/x/bar", False, True),
    ([("exclude", "/foo/**/bar")], b"foo/x/y/bar", False, True),
    # infix/trailing **, unanchored: may start after any slash
    ([("exclude", "a/**")], b"x/a/y", False, True),
    ([("exclude", "a/**")], b"x/ba/y", False, False),
    ([("exclude", "foo**")], b"x/foo/z", False, True),
    ([("exclude", "foo**")], b"x/yfoo", False, False),
    # a leading ** matches from the root too (subject is "/" + path)
    ([("exclude", "**/foo")], b"foo", False, True),
    ([("exclude", "**/foo")], b"a/b/foo", False, True),
    ([("exclude", "**/foo")], b"a/xfoo", False, False),
    ([("exclude", "**foo")], b"a/xfoo", False, True),
    ([("exclude", "**")], b"anything/at/all", False, True),
    # dir/*** is the directory and everything below
    ([("exclude", "a/***")], b"a", True, True),
    ([("exclude", "a/***")], b"a", False, False),
    ([("exclude", "a/***")], b"a/b/c", False, True),
    ([("exclude", "a/***")], b"x/a/b", False, True),
    ([("exclude", "/a/***")], b"x/a/b", False, False),
    # ? is one byte, never a slash
    ([("exclude", "?")], b"x", False, True),
    ([("exclude", "?")], b"xy", False, False),
    ([("exclude", "a?b")], b"a/b", False, False),
    ([("exclude", "/a?b")], b"a/b", False, False),
    ([("exclude", "?")], b"\xff", False, True),
    ([("exclude", "caf?")], "café".encode(), False, False),  # é is two bytes
    ([("exclude", "caf??")], "café".encode(), False, True),
    # classes
    ([("exclude", "[a-c]")], b"b", False, True),
    ([("exclude", "[a-c]")], b"d", False, False),
    ([("exclude", "[!a-c]")], b"d", False, True),
    ([("exclude", "[^a-c]")], b"b", False, False),
    ([("exclude", "[]x]")], b"]", False, True),
    ([("exclude", "[!]x]")], b"]", False, False),
    ([("exclude", "[a-]")], b"-", False, True),
    ([("exclude", "[[:alpha:]]")], b"Q", False, True),
    ([("exclude", "[[:alpha:]]")], b"1", False, False),
    ([("exclude", "[[:digit:][:upper:]]x")], b"7x", False, True),
    ([("exclude", "[[:bogus:]]")], b"b", False, False),  # malformed: matches nothing
    ([("exclude", "x[ab")], b"x[ab", False, False),  # unterminated: matches nothing
    ([("exclude", "/a[/]b")], b"a/b", False, False),  # a class never matches /
    ([("exclude", "/a[!x]b")], b"a/b", False, False),
    ([("exclude", "[\xff]")], b"\xff", False, False),  # a str is UTF-8: bytes C3 BF
    ([("exclude", b"[\xfe-\xff]")], b"\xff", False, True),
    # escapes: only in patterns with a wildcard
    ([("exclude", "a\\*")], b"a*", False, True),
    ([("exclude", "a\\*")], b"ab", False, False),
    ([("exclude", "foo\\bar")], b"foo\\bar", False, True),
    ([("exclude", "foo\\bar*")], b"foo\\bar", False, False),
    ([("exclude", "foo\\bar*")], b"foobar", False, True),
    ([("exclude", "foo\\\\bar*")], b"foo\\bar", False, True),
    ([("exclude", "x*\\")], b"xy\\", False, False),  # a lone trailing backslash
    # bytes that are not UTF-8
    ([("exclude", b"\xff\xfe")], b"d/\xff\xfe", False, True),
    ([("exclude", b"*\xfe")], b"d/\xff\xfe", False, True),
    ([("exclude", b"*.c")], b"d/\xff.c", False, True),
    ([("exclude", os.fsdecode(b"\xff*"))], b"\xff.c", False, True),
    # names with a newline
    ([("exclude", "*")], b"a\nb", False, True),
    ([("exclude", "/**")], b"a\nb/c", False, True),
    # first match wins; nothing matched is included
    ([("include", "*.c"), ("exclude", "*")], b"x.c", False, False),
    ([("exclude", "*"), ("include", "*.c")], b"x.c", False, True),
    ([("include", "*/"), ("exclude", "*")], b"d", True, False),
    ([("include", "*/"), ("exclude", "*")], b"d/f", False, True),
    ([("exclude", "x")], b"y", False, False),
    ([], b"y", False, False),
    # old-style prefixes on --exclude/--include
    ([("exclude", "+ foo"), ("exclude", "*")], b"foo", False, False),
    ([("include", "- foo")], b"foo", False, True),
    ([("exclude", "-foo")], b"-foo", False, True),
    ([("exclude", "!foo")], b"!foo", False, True),
    ([("exclude", "")], b"x", False, False),
    # --filter
    ([("filter", "- foo")], b"foo", False, True),
    ([("filter", "-_foo")], b"foo", False, True),
    ([("filter", "exclude foo")], b"foo", False, True),
    ([("filter", "exclude_foo")], b"foo", False, True),
    ([("filter", "+ foo"), ("filter", "- *")], b"foo", False, False),
    ([("filter", "include_foo"), ("filter", "- *")], b"foo", False, False),
    ([("filter", "-  foo")], b" foo", False, True),  # extra spaces are the pattern's
    ([("filter", "-  foo")], b"foo", False, False),
    ([("filter", "- foo ")], b"foo", False, False),  # so is a trailing one
]


@pytest.mark.parametrize(("rules", "path", "is_dir", "want"), CASES)
def test_match(rules: Items, path: bytes, is_dir: bool, want: bool) -> None:
    assert excl(rules, path, is_dir) is want


def test_rules_from_pairs() -> None:
    r = Rules([("include", b"*.c"), ("exclude", "*")])
    assert len(r) == 2 and r
    assert not r.excluded(b"a.c", False)
    assert r.excluded(b"a.h", False)
    assert r.first_match(b"a.c", False) is r.rules[0]
    assert not Rules()
    with pytest.raises(FilterError):
        Rules([("protect", "x")])


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "rule",
    [
        "P foo",
        "protect foo",
        "R foo",
        "risk foo",
        "H foo",
        "hide foo",
        "S foo",
        "show foo",
        ". rules.txt",
        "merge rules.txt",
        ": .rsync-filter",
        "dir-merge .rsync-filter",
        "!",
        "clear",
        "-/ /etc/passwd",
        "-! */",
        "+s foo",
        "-, foo",
        "-C",
        "x foo",
        "excludefoo",
    ],
)
def test_filter_refused(rule: str) -> None:
    with pytest.raises(FilterError, match="unsupported filter rule") as e:
        rules_from_args([("filter", rule)])
    assert repr(rule) in str(e.value)


@pytest.mark.parametrize("rule", ["-", "+", "- ", "+_", "exclude", "include "])
def test_filter_without_pattern(rule: str) -> None:
    """rsync: "unexpected end of filter rule"."""
    with pytest.raises(FilterError, match="no pattern"):
        parse_filter(rule)


def test_filter_empty_is_nothing() -> None:
    assert parse_filter("") is None
    assert not rules_from_args([("filter", ""), ("exclude", ""), ("include", "")])


def test_old_style_clear_refused(tmp_path: Path) -> None:
    with pytest.raises(FilterError, match="clear"):
        rules_from_args([("exclude", "!")])
    f = tmp_path / "ex"
    f.write_bytes(b"foo\n!\n")
    with pytest.raises(FilterError, match="clear"):
        rules_from_args([("exclude-from", str(f))])
    with pytest.raises(FilterError, match="nothing after"):
        rules_from_args([("exclude", "- ")])


def test_unknown_option() -> None:
    with pytest.raises(FilterError, match="unknown filter option"):
        rules_from_args([("files-from", "x")])


def test_from_file_missing(tmp_path: Path) -> None:
    with pytest.raises(FilterError, match="cannot read"):
        rules_from_args([("exclude-from", str(tmp_path / "nope"))])


def test_filter_error_is_value_error() -> None:
    assert issubclass(FilterError, ValueError)


# ---------------------------------------------------------------- -from files


def test_from_files(tmp_path: Path) -> None:
    ex = tmp_path / "ex"
    ex.write_bytes(b"# comment\n; comment\n\n*.o\r+ keep.o\n- *.tmp\n")
    inc = tmp_path / "inc"
    inc.write_bytes(b"*.c\n- *.h\n")
    r = rules_from_args([("include-from", str(inc)), ("exclude-from", os.fsencode(ex))])
    assert [(x.include, x.pattern) for x in r.rules] == [
        (True, b"*.c"),
        (False, b"*.h"),
        (False, b"*.o"),
        (True, b"keep.o"),
        (False, b"*.tmp"),
    ]
    assert r.excluded(b"x.o", False)
    assert not r.excluded(b"x.c", False)


def test_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"*.o\n\xff\n"))
    monkeypatch.setattr(sys, "stdin", stdin)
    r = rules_from_args([("exclude-from", "-")])
    assert [x.pattern for x in r.rules] == [b"*.o", b"\xff"]


# ---------------------------------------------------------------- rsync, the oracle

needs_rsync = pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")

DIRS = [
    b"a",
    b"a/b",
    b"a/foo",
    b"b",
    b"deep",
    b"deep/a",
    b"deep/a/b",
    b"deep/a/b/c",
    b"empty",
    "café".encode(),
    b"foo",
    b"foo/foo",
]
FILES = [
    b"a/b/c",
    b"a/b/foo",
    b"a/foo/bar",
    b"a/foo/x.c",
    b"b/a",
    b"b/x.c",
    b"deep/a/b/c/d",
    b"deep/a/b/c/foo",
    b"deep/x.c",
    "café/b".encode(),
    b"foo/foo/bar",
    b"foo/a",
    b"bar",
    b"c",
    b"x.c",
    b"foo.c",
    b"sp ace",
    b"st*r",
    b"[ab]",
    b"back\\sl",
    b"\xff\xfe",
    b".hid",
    b"-dash",
    b"nl\nx",
]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    src = os.fsencode(tmp_path_factory.mktemp("filters")) + b"/src"
    for d in DIRS:
        os.makedirs(src + b"/" + d, exist_ok=True)
    for f in FILES:
        with open(src + b"/" + f, "wb") as fh:
            fh.write(b"x")
    return src


def to_argv(items: Items) -> list[bytes]:
    return [b"--" + k.encode() + b"=" + os.fsencode(v) for k, v in items]


def rsync_set(src: bytes, items: Items) -> set[bytes]:
    """The paths rsync -a copies from src/ into an empty directory with these rules."""
    dst = os.fsencode(tempfile.mkdtemp(prefix="filters-dst-"))
    try:
        r = subprocess.run(
            [b"rsync", b"-a", *to_argv(items), src + b"/", dst + b"/"],
            capture_output=True,
            check=False,
        )
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        return walk_all(dst)
    finally:
        shutil.rmtree(dst)


def walk_all(root: bytes) -> set[bytes]:
    out: set[bytes] = set()
    for top, dirs, files in os.walk(root):
        rel = top[len(root) + 1 :]
        for n in dirs + files:
            out.add(rel + b"/" + n if rel else n)
    return out


def ours_set(src: bytes, rules: Rules) -> set[bytes]:
    """What the rules keep, walking top-down and not descending into excluded dirs."""
    out: set[bytes] = set()

    def walk(rel: bytes) -> None:
        with os.scandir(src + b"/" + rel if rel else src) as it:
            for e in it:
                path = rel + b"/" + e.name if rel else e.name
                is_dir = e.is_dir(follow_symlinks=False)
                if rules.excluded(path, is_dir):
                    continue
                out.add(path)
                if is_dir:
                    walk(path)

    walk(b"")
    return out


def check_oracle(src: bytes, items: Items) -> None:
    want = rsync_set(src, items)
    got = ours_set(src, rules_from_args(items))
    assert got == want, (
        f"rules {items!r}\n only rsync: {sorted(want - got)}\n only ours: {sorted(got - want)}"
    )


ORACLE_CASES: list[list[tuple[str, str | bytes]]] = [
    [("exclude", "foo")],
    [("exclude", "/foo")],
    [("exclude", "foo/")],
    [("exclude", "a/b")],
    [("exclude", "a/*")],
    [("exclude", "a/**")],
    [("exclude", "**/a")],
    [("exclude", "**a")],
    [("exclude", "a/***")],
    [("exclude", "/deep/**/c")],
    [("include", "*/"), ("include", "*.c"), ("exclude", "*")],
    [("include", "/a/"), ("include", "/a/foo/"), ("include", "/a/foo/x.c"), ("exclude", "*")],
    [("include", "a/b/c"), ("exclude", "*")],  # a/ excluded first: a/b/c never seen
    [("exclude", "st\\*r")],
    [("exclude", "\\[ab]")],
    [("exclude", "[ab]")],
    [("exclude", "back\\sl")],
    [("exclude", b"\xff*")],
    [("exclude", "caf?")],
    [("exclude", "caf??")],
    [("exclude", "[[:alpha:]]")],
    [("exclude", "[!a-c]")],
    [("exclude", "nl?x")],
    [("exclude", "- foo"), ("include", "+ b"), ("exclude", "*")],
    [("filter", "- x.c"), ("filter", "+_a"), ("filter", "exclude b")],
    [("exclude", "a/b/")],
    [("exclude", "/a[/]b")],
    [("exclude", "foo\\")],
]


@needs_rsync
@pytest.mark.parametrize("items", ORACLE_CASES)
def test_same_as_rsync(tree: bytes, items: Items) -> None:
    check_oracle(tree, items)


@needs_rsync
def test_same_as_rsync_from_file(tree: bytes, tmp_path: Path) -> None:
    f = tmp_path / "rules"
    f.write_bytes(b"# c\n; c\n+ */\n\n+ *.c\r*\n")
    check_oracle(tree, [("exclude", "deep/"), ("exclude-from", os.fsencode(f))])


SEGMENTS = [
    "a",
    "b",
    "c",
    "foo",
    "bar",
    "deep",
    "x.c",
    "*",
    "**",
    "?",
    "[a-c]",
    "[!a]",
    "*.c",
    "f*",
    "?o*",
    "[[:alpha:]]",
    "st\\*r",
    "caf*",
    "*\xff*",  # fsencode: the byte 0xff
]


@st.composite
def patterns(draw: st.DrawFn) -> bytes:
    segs = draw(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=3))
    # glue two segments together now and then ("foo*", "**bar")
    if len(segs) > 1 and draw(st.booleans()):
        segs[0:2] = [segs[0] + segs[1]]
    pat = "/".join(segs)
    if draw(st.booleans()):
        pat = "/" + pat
    tail = draw(st.sampled_from(["", "", "/", "/***"]))
    return os.fsencode(pat.replace("\xff", "\udcff") + tail)


rule_lists = st.lists(
    st.tuples(st.sampled_from(["exclude", "include", "filter"]), patterns()),
    min_size=1,
    max_size=4,
)


def as_items(raw: list[tuple[str, bytes]]) -> list[tuple[str, str | bytes]]:
    out: list[tuple[str, str | bytes]] = []
    for i, (kind, pat) in enumerate(raw):
        # filter rules alternate between exclude and include
        out.append((kind, (b"- " if i % 2 else b"+ ") + pat) if kind == "filter" else (kind, pat))
    return out


@needs_rsync
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=rule_lists, catch_all=st.booleans())
def test_generated_rules_same_as_rsync(
    tree: bytes, raw: list[tuple[str, bytes]], catch_all: bool
) -> None:
    items = as_items(raw)
    if catch_all:  # so that the includes matter
        items.append(("exclude", "*"))
    check_oracle(tree, items)
