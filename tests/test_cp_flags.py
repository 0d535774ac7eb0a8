"""``uringsync cp``'s command line against GNU cp's, on twin trees: the same
arguments run by cp in one copy of a scene and by uringsync in the other
give the same tree, the same exit status (0 or 1) and the same messages
(``cp:`` read as ``uringsync:``).  The parser's GNU getopt behaviour
(bundles, abbreviations, permutation, optional values), -P/-H/-L, -T, -t,
--parents, trailing slashes, --preserve/--no-preserve, --reflink without a
value, --strip-trailing-slashes, and cp's usage errors.  What happens to an
existing destination file (-n, -u, -f, -b, ...) is tests/test_cp_flags_dest.py."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.base import REPO_DIR

_SCENE_FILES = {
    "src/a/f": b"alpha\n",
    "src/a/b/g": b"beta" * 1000,
    "src/top": b"top\n",
    "f": b"file f\n",
    "g": b"file g\n",
    "other/keep": b"kept\n",
}


def make_scene(root: Path) -> None:
    """src/ with files, a symlink to a file and one to a directory; a symlink
    ``sl`` to src; a file f, g; an existing directory ``other``."""
    for rel, data in _SCENE_FILES.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    os.chmod(root / "src/a/f", 0o640)
    os.chmod(root / "src/a/b", 0o751)
    os.symlink("f", root / "src/a/lf")
    os.symlink("b", root / "src/a/lb")
    os.symlink("src", root / "sl")
    os.symlink("f", root / "lf")
    os.symlink("nowhere", root / "dangle")
    os.symlink("g", root / "lg")
    for k, p in enumerate(sorted(root.rglob("*"), reverse=True)):
        os.utime(
            p,
            ns=(1_600_000_000_000_000_000 + k, 1_500_000_000_000_000_000 + k * 7),
            follow_symlinks=False,
        )


def state(root: Path, times: bool) -> dict[str, tuple[object, ...]]:
    """What a copy decides, per path: type, permission bits, data or link
    target, and (``times``) non-directories' mtimes."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISLNK(st.st_mode):
                what: object = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                what = Path(p).read_bytes()
            else:
                what = None
            mtime = st.st_mtime_ns if times and not stat.S_ISDIR(st.st_mode) else None
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), what, mtime)
    return out


def _one_line(cp_err: str) -> str:
    """cp's argmatch error lists the valid words on lines of their own; ours
    folds them into the message's one line: "(valid: 'a', 'b'; 'c')"."""
    head, sep, rest = cp_err.partition("\nValid arguments are:\n")
    if not sep:
        return cp_err
    words, _, tail = rest.partition("\nTry ")
    groups = [w.removeprefix("  - ") for w in words.splitlines()]
    return f"{head} (valid: {'; '.join(groups)})\nTry {tail}"


def run_both(tmp_path: Path, *args: str, times: bool = False) -> tuple[str, str]:
    """Run ``cp ARGS`` and ``uringsync cp ARGS`` in twin scenes; assert the
    same trees and exit status; return both stderr texts (cp's with its name
    read as ours)."""
    a, u = tmp_path / "cp", tmp_path / "us"
    for root in (a, u):
        root.mkdir()
        make_scene(root)
    env = dict(os.environ, LC_ALL="C.UTF-8")
    pc = subprocess.run(["cp", *args], cwd=a, capture_output=True, env=env, check=False)
    pu = subprocess.run(
        [sys.executable, "-m", "uringsync", "cp", *args],
        cwd=u,
        capture_output=True,
        env=dict(env, PYTHONPATH=str(REPO_DIR)),
        check=False,
    )
    assert b"Traceback" not in pu.stderr, pu.stderr.decode()
    cp_err = (
        pc.stderr.decode()
        .replace("cp: ", "uringsync: ")
        .replace("Try 'cp --help'", "Try 'uringsync cp --help'")
    )
    cp_err = _one_line(cp_err)
    us_err = pu.stderr.decode()
    assert (pc.returncode == 0) == (pu.returncode == 0), (args, cp_err, us_err)
    assert state(a, times) == state(u, times), (args, cp_err, us_err)
    return cp_err, us_err


# (arguments, whether times are kept) that succeed in both
SAME_TREE = [
    (["-r", "src", "d"], False),
    (["-rL", "src", "d"], False),
    (["-rP", "src", "d"], False),
    (["-r", "sl", "d"], False),
    (["-rH", "sl", "d"], False),
    (["-a", "sl/", "d"], True),
    (["-a", "--no-dereference", "-L", "src", "d"], True),  # the later -L wins
    (["-L", "-a", "src", "d"], True),  # the later -a (-P) wins
    (["lf", "d"], False),  # a file operand's symlink is followed without -r
    (["-P", "lf", "d"], False),
    (["-aTv", "src", "other"], True),  # bundled; -T merges into other
    (["src", "-a", "d"], True),  # options after operands
    (["--recur", "--preserve=time,mod", "src", "d"], True),  # abbreviations
    (["--preserve", "src/a/f", "d"], True),  # a bare --preserve
    (["-a", "--no-preserve=mode", "src", "d"], False),
    (["-p", "--no-preserve=timestamps", "f", "d"], False),
    (["-t", "other", "f", "g"], False),
    (["--target-directory=other", "-r", "src"], False),
    (["--parents", "-p", "src/a/f", "src/top", "other"], True),
    (["-r", "--parents", "src/a/b", "other"], False),
    (["-r", "src", "nodir/"], False),
    (["-r", "--strip-trailing-slashes", "src/", "d"], False),
    (["-r", "src/.", "d"], False),
    (["--", "f", "d"], False),
    # an existing DEST (tests/test_cp_flags_dest.py has the details)
    (["-n", "f", "g"], True),
    (["-u", "f", "g"], False),
    (["-bv", "f", "g"], False),
    (["--backup=t", "-S", ".bak", "f", "g"], False),
    (["--remove-destination", "f", "g"], False),
    (["-l", "f", "h"], False),
    (["-r", "-l", "src", "d"], False),
    (["--attributes-only", "-p", "f", "g"], True),
    (["f", "lg"], False),  # a symlink as DEST: written through, as cp does
    (["-a", "f", "lg"], True),
]


@pytest.mark.parametrize(("args", "times"), SAME_TREE, ids=[" ".join(a) for a, _ in SAME_TREE])
def test_same_tree_as_cp(tmp_path: Path, args: list[str], times: bool) -> None:
    cp_err, us_err = run_both(tmp_path, *args, times=times)
    assert cp_err == "" and us_err == ""


def test_bare_reflink_means_always(tmp_path: Path) -> None:
    """--reflink without a value is --reflink=always and does not take the
    next operand as its value.  On a file system that cannot clone (ext4,
    tmpfs) both fail with the same message; cp leaves an empty DEST, we
    leave none (a file not copied completely is not left looking complete)."""
    (tmp_path / "f").write_bytes(b"data")
    pc = subprocess.run(["cp", "--reflink", "f", "a"], cwd=tmp_path, capture_output=True)
    pu = subprocess.run(
        [sys.executable, "-m", "uringsync", "cp", "--reflink", "f", "u"],
        cwd=tmp_path,
        capture_output=True,
        check=False,
    )
    if pc.returncode == 0:  # btrfs, xfs: a clone
        assert pu.returncode == 0 and (tmp_path / "u").read_bytes() == b"data"
        return
    assert pu.returncode != 0
    assert pu.stderr.decode() == pc.stderr.decode().replace("cp: ", "uringsync: ").replace(
        "'a'", "'u'"
    )
    assert not (tmp_path / "u").exists()


# refused by both with the same message (usage errors and cp's path rules)
REFUSED = [
    ["-k", "f", "d"],
    ["--foo", "f", "d"],
    ["--force=1", "f", "d"],
    ["f", "--suffix"],
    ["-t"],
    ["--sparse=x", "f", "d"],
    ["--backup=n", "f", "d"],
    ["--re", "f", "d"],
    ["-l", "-s", "f", "d"],
    ["-n", "--backup", "f", "d"],
    ["--reflink=always", "--sparse=never", "f", "d"],
    ["-t", "other", "-T", "f", "g"],
    ["-T", "f", "g", "h"],
    ["-T", "f", "other"],
    ["-r", "-T", "src", "f"],
    ["-t", "nonexist", "f"],
    ["-t", "f", "g"],
    ["-t", "other"],
    ["f"],
    [],
    ["f", "g", "nonexist"],
    ["f", "g", "lf"],
    ["--parents", "f", "g"],
    ["f", "nodir/"],
    ["f", "g/"],
    ["f/", "d"],
    ["src", "d"],
    ["f", "f"],
    ["f", "dangle"],
    ["f", "lf"],
]


@pytest.mark.parametrize("args", REFUSED, ids=[" ".join(a) or "none" for a in REFUSED])
def test_refused_as_cp_refuses(tmp_path: Path, args: list[str]) -> None:
    cp_err, us_err = run_both(tmp_path, *args)
    assert cp_err, "cp accepted it"
    assert us_err == cp_err


def test_dangling_symlink_under_L(tmp_path: Path) -> None:
    """cp -L: a dangling symlink is an error, the rest is copied; cp exits
    1, uringsync 23 (some files failed: its convention for per-file errors)."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src/f").write_bytes(b"x")
    os.symlink("nowhere", tmp_path / "src/dangle")
    pc = subprocess.run(["cp", "-rL", "src", "a"], cwd=tmp_path, capture_output=True, check=False)
    pu = subprocess.run(
        [sys.executable, "-m", "uringsync", "cp", "-rL", "src", "u"],
        cwd=tmp_path,
        capture_output=True,
        check=False,
    )
    assert (pc.returncode, pu.returncode) == (1, 23)
    assert pu.stderr.decode() == pc.stderr.decode().replace("cp: ", "uringsync: ").replace(
        "'src", "'src"
    )
    assert sorted(os.listdir(tmp_path / "a")) == sorted(os.listdir(tmp_path / "u")) == ["f"]


def test_symlink_cycle_under_L(tmp_path: Path) -> None:
    """cp -L on a tree with a symlink back to an ancestor stops there with an error."""
    (tmp_path / "src/d").mkdir(parents=True)
    (tmp_path / "src/d/f").write_bytes(b"x")
    os.symlink("..", tmp_path / "src/d/up")
    pu = subprocess.run(
        [sys.executable, "-m", "uringsync", "cp", "-rL", "src", "u"],
        cwd=tmp_path,
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert pu.returncode == 23
    assert b"cannot copy cyclic symbolic link 'src/d/up'" in pu.stderr
    assert (tmp_path / "u/d/f").read_bytes() == b"x"


def test_interactive_needs_a_terminal(tmp_path: Path) -> None:
    """-i without a terminal on stdin is refused before anything is written
    (cp would read its answers from the pipe: a script meant -n or -f)."""
    (tmp_path / "f").write_bytes(b"new")
    (tmp_path / "g").write_bytes(b"old")
    pu = subprocess.run(
        [sys.executable, "-m", "uringsync", "cp", "-i", "f", "g"],
        cwd=tmp_path,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert pu.returncode == 1
    assert b"standard input is not a terminal" in pu.stderr
    assert (tmp_path / "g").read_bytes() == b"old"


def test_version_and_help() -> None:
    from uringsync._version import __version__

    pv = subprocess.run(
        [sys.executable, "-m", "uringsync", "cp", "--version"], capture_output=True, check=True
    )
    assert pv.stdout.decode() == f"uringsync {__version__}\n"
    ph = subprocess.run(
        [sys.executable, "-m", "uringsync", "cp", "--help"], capture_output=True, check=True
    )
    text = ph.stdout.decode()
    # every option cp 9 has is in our help, with cp's value names
    for shown in (
        "--backup[=CONTROL]",
        "-S, --suffix=SUFFIX",
        "-t, --target-directory=DIRECTORY",
        "--reflink[=WHEN]",
        "--preserve[=ATTR_LIST]",
        "--no-preserve=ATTR_LIST",
        "--sparse=WHEN",
        "-T, --no-target-directory",
        "Examples:",
    ):
        assert shown in text, shown
    assert max(len(line) for line in text.splitlines()) <= 80  # piped: 80 columns, wrapped
    assert "never written through" in text  # the one deliberate difference is said


def test_small_copy_forks_no_worker(tmp_path: Path) -> None:
    """Without -j, a copy whose bounded look at the sources finds little
    work runs in the calling process: no worker is forked (start-up); a
    bigger tree gets one worker per usable CPU."""
    from uringsync import api
    from uringsync.pool import usable_cpus

    small = tmp_path / "small"
    (small / "d").mkdir(parents=True)
    for k in range(20):
        (small / "d" / f"f{k}").write_bytes(b"x" * k)
    res = api.copy([small], tmp_path / "c1", archive=True)
    assert (res.exit_code, res.workers, res.files) == (0, 0, 20)
    big = tmp_path / "big"
    big.mkdir()
    for k in range(api.SMALL_ENTRIES):
        (big / f"f{k}").write_bytes(b"")
    res = api.copy([big], tmp_path / "c2", archive=True)
    assert res.exit_code == 0 and res.files == api.SMALL_ENTRIES
    assert res.workers == len(usable_cpus())


def _cp_on_a_terminal(cwd: Path, args: list[str], answers: bytes) -> tuple[int, bytes]:
    """Run ``uringsync cp ARGS`` with a terminal as stdin and stderr, type
    ``answers``; (exit status, what it printed there)."""
    import pty

    main_fd, sub_fd = pty.openpty()
    p = subprocess.Popen(
        [sys.executable, "-m", "uringsync", "cp", *args],
        cwd=cwd,
        stdin=sub_fd,
        stderr=sub_fd,
        stdout=subprocess.DEVNULL,
    )
    os.close(sub_fd)
    os.write(main_fd, answers)
    out = b""
    while True:
        try:
            chunk = os.read(main_fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(main_fd)
    return p.wait(timeout=60), out


def test_interactive_asks_on_a_terminal(tmp_path: Path) -> None:
    """-i on a terminal asks before each overwrite, as cp does: 'n' keeps
    the file, 'y' overwrites it; inside a directory too."""
    for name, data in (("src/a", b"new a"), ("src/b", b"new b"), ("f", b"new f")):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst/a").write_bytes(b"old a")
    (tmp_path / "dst/b").write_bytes(b"old b")
    (tmp_path / "g").write_bytes(b"old g")
    rc, out = _cp_on_a_terminal(tmp_path, ["-i", "f", "g"], b"n\n")
    assert rc == 0 and b"overwrite 'g'?" in out
    assert (tmp_path / "g").read_bytes() == b"old g"
    rc, out = _cp_on_a_terminal(tmp_path, ["-i", "f", "g"], b"y\n")
    assert rc == 0 and (tmp_path / "g").read_bytes() == b"new f"
    rc, out = _cp_on_a_terminal(tmp_path, ["-ri", "src/.", "dst"], b"y\nn\n")
    assert rc == 0, out
    assert out.count(b"overwrite") == 2
    # the first question was about one of a, b; the second about the other
    first = b"dst/a" if out.index(b"dst/a") < out.index(b"dst/b") else b"dst/b"
    other = b"dst/b" if first == b"dst/a" else b"dst/a"
    assert (tmp_path / os.fsdecode(first)).read_bytes().startswith(b"new")
    assert (tmp_path / os.fsdecode(other)).read_bytes().startswith(b"old")


def test_config_defaults_for_cp(tmp_path: Path) -> None:
    """[cp] in $XDG_CONFIG_HOME/uringsync/config.toml sets defaults; the
    command line wins; --no-config reads none; a bad key names file, line, key."""
    cfg = tmp_path / "cfg/uringsync/config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text('[cp]\npreserve = ["mode", "timestamps"]\n')
    (tmp_path / "f").write_bytes(b"x")
    os.utime(tmp_path / "f", ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "cfg"))

    def cp(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "uringsync", "cp", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            check=False,
        )

    assert cp("f", "a").returncode == 0
    assert (tmp_path / "a").stat().st_mtime_ns == 1_000_000_000_000_000_000
    assert cp("--no-preserve=timestamps", "f", "b").returncode == 0
    assert (tmp_path / "b").stat().st_mtime_ns != 1_000_000_000_000_000_000
    assert cp("--no-config", "f", "c").returncode == 0
    assert (tmp_path / "c").stat().st_mtime_ns != 1_000_000_000_000_000_000
    cfg.write_text("[cp]\n\njobz = 2\n")
    p = cp("f", "d")
    assert p.returncode == 1 and not (tmp_path / "d").exists()
    assert f"{cfg}:3".encode() in p.stderr and b"jobz" in p.stderr, p.stderr
