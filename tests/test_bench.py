"""``uringsync bench`` end to end at a tiny size, and its generator.

The run times every tool on every workload (warm, one round, in a temporary
directory), and every copy it timed must be a correct copy, so the benchmark
cannot time a broken one.  It also writes the JSON and the PNG, and
``--plot-only`` redraws the PNG from the JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from uringsync import bench

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, dict[str, Any]]:
    """One tiny run, kept: (directory, exit code, the JSON as written)."""
    d = tmp_path_factory.mktemp("bench")
    opts = bench.Options(
        workloads=bench.WORKLOADS,
        entries=300,
        big_size=8 * bench.MiB,
        mixed_files=100,
        mixed_big=bench.MiB,
        rounds=1,
        cold=False,
        warm=True,
        jobs_sweep=True,
        workdir=d / "work",
        loop=False,
        keep=True,
        settle=0,
        verify="rsync",
        json_out=d / "out" / "bench.json",
        plot=d / "out" / "bench.png",
    )
    code, _ = bench.run(opts, say=lambda _msg: None)
    data = json.loads((d / "out" / "bench.json").read_text())
    return d, code, data


def _rsync_differences(src: str, copy: str, times: bool = True) -> bytes:
    """rsync -naHAXc's list of differences (without -t: times not compared)."""
    flags = "-naHAXc" if times else "-nrlpgoDHAXc"
    p = subprocess.run(
        ["rsync", flags, "--delete", "--itemize-changes", f"{src}/", f"{copy}/"],
        capture_output=True,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_every_tool_and_row_timed(tiny: tuple[Path, int, dict[str, Any]]) -> None:
    _, code, data = tiny
    # a tiny tree may miss the speed targets (exit 3), but no copy fails (exit 1)
    assert code in (0, bench.EXIT_MISSED), [r["stderr"] for r in data["runs"] if not r["ok"]]
    rows = {(r["workload"], r["cache"]): r for r in data["rows"]}
    assert set(rows) == {(w, "warm") for w in bench.WORKLOADS}
    for row in rows.values():
        for tool in bench.TOOLS:
            assert row["median"][tool] > 0, (row["workload"], tool)
            assert row["ratio_to_cp"][tool] > 0
            assert row["failures"][tool] == 0
        assert row["ratio_to_cp"]["cp"] == pytest.approx(1.0)
    timed = {(r["workload"], r["tool"]) for r in data["runs"]}
    assert {(w, t) for w in bench.WORKLOADS for t in bench.TOOLS} <= timed
    for r in data["runs"]:
        assert r["exit_code"] == 0 and r["exit_codes"] == [0] * len(r["exit_codes"]), r
        assert r["seconds"] > 0 and r["verified"] is True, r
        if r["tool"] != "uringsync" and not r["tool"].startswith("uringsync-"):
            assert r["peak_rss"] > 0
    tar = next(r for r in data["runs"] if r["tool"] == "tar")
    assert len(tar["exit_codes"]) == 2  # both ends of the pipe
    m = data["machine"]
    assert m["cores"] == os.cpu_count() and m["uname"] and m["filesystem"]["fstype"]
    assert data["workloads"]["tree"]["summary"]["entries"] == 300


def test_threads_backend_timed(tiny: tuple[Path, int, dict[str, Any]]) -> None:
    """uringsync-threads is uringsync cp -a --engine threads, in the same rounds,
    judged against its own targets."""
    _, _, data = tiny
    assert data["capabilities"]["engine"] is True
    runs = [r for r in data["runs"] if r["tool"] == bench.THREADS_TOOL]
    assert {r["workload"] for r in runs} == set(bench.WORKLOADS)
    for r in runs:
        assert "--engine threads" in r["command"], r["command"]
        assert r["result"]["engine"] == "threads"
    rows = {(r["workload"], r["cache"]): r for r in data["rows"]}
    tree = rows["tree", "warm"]
    assert tree["engines"][bench.THREADS_TOOL] == ["threads"]
    target = bench.RATIO_TARGETS[bench.THREADS_TOOL]["tree", "warm"]
    assert tree["targets"][bench.THREADS_TOOL] == target
    ratio = tree["ratio_to_cp"][bench.THREADS_TOOL]
    assert tree["ratios_ok"][bench.THREADS_TOOL] is (ratio <= target)
    assert data["targets"]["ratio_to_cp"][bench.THREADS_TOOL]["tree/warm"] == target


def _run(tool: str, seconds: float, ok: bool = True) -> bench.Run:
    return bench.Run(
        workload="tree", cache="cold", round=1, tool=tool, jobs=None, command="",
        seconds=seconds, sync_seconds=0, exit_code=0 if ok else 1, exit_codes=[0],
        peak_rss=None, peak_rss_source=None, maxrss_wait4=[], verified=None,
        verify_error=None, copy="", stderr="", result=None,
    )  # fmt: skip


def test_threads_target_in_the_verdict() -> None:
    us, thr = (bench.RATIO_TARGETS[t]["tree", "cold"] for t in ("uringsync", bench.THREADS_TOOL))
    runs = [_run("cp", 10), _run("uringsync", 10 * us), _run("rsync", 20), _run("tar", 12)]
    row = bench.summary_row("tree", "cold", runs)  # no threads runs: not judged
    assert bench.THREADS_TOOL not in row["ratios_ok"] and row["passed"]
    row = bench.summary_row("tree", "cold", [*runs, _run(bench.THREADS_TOOL, 10 * thr)])
    assert row["ratios_ok"] == {"uringsync": True, bench.THREADS_TOOL: True} and row["passed"]
    row = bench.summary_row("tree", "cold", [*runs, _run(bench.THREADS_TOOL, 10 * thr + 1)])
    assert row["ratios_ok"][bench.THREADS_TOOL] is False and not row["passed"]
    row = bench.summary_row("tree", "cold", [*runs, _run(bench.THREADS_TOOL, 1, ok=False)])
    assert row["ratios_ok"][bench.THREADS_TOOL] is False and not row["passed"]


def test_threads_only_where_cp_has_engine(tmp_path: Path) -> None:
    """An older uringsync (no --engine in cp --help) still benches, without the tool."""
    assert bench.THREADS_TOOL not in bench.session._tools_for("tree", 2, False, threads=False)
    assert bench.THREADS_TOOL in bench.session._tools_for("tree", 2, False, threads=True)
    caps = bench.Caps(json=True, jobs=True, engine=True)
    (cmd,), dst = bench.tool_commands(bench.THREADS_TOOL, tmp_path / "s", tmp_path / "d", caps)
    assert cmd[cmd.index("--engine") + 1] == "threads" and dst == tmp_path / "d"
    (cmd,), _ = bench.tool_commands("uringsync", tmp_path / "s", tmp_path / "d", caps)
    assert "--engine" not in cmd  # auto: io_uring where it can
    assert bench.probe_uringsync().engine


def test_jobs_sweep(tiny: tuple[Path, int, dict[str, Any]]) -> None:
    _, _, data = tiny
    if not data["capabilities"]["jobs"]:
        assert any("-j" in n for n in data["notes"])
        return
    assert [w["jobs"] for w in data["workers"]] == bench.jobs_list(os.cpu_count() or 1)
    for w in data["workers"]:
        assert w["files_per_s"] == pytest.approx(300 / w["median"])


def test_every_copy_is_correct(tiny: tuple[Path, int, dict[str, Any]]) -> None:
    """Checked here with rsync -naHAXc (contents, owners, modes, times, links,
    xattrs, ACLs) independently of the bench's own check."""
    _, _, data = tiny
    checked = set()
    for r in data["runs"]:
        src = data["workloads"][r["workload"]]["path"]
        assert os.path.isdir(r["copy"]), r["copy"]
        assert _rsync_differences(src, r["copy"]) == b"", (r["tool"], r["copy"])
        checked.add(r["tool"])
    assert {"uringsync", "cp", "rsync", "tar"} <= checked


def test_bench_catches_a_broken_copy(tiny: tuple[Path, int, dict[str, Any]]) -> None:
    _, _, data = tiny
    run = next(r for r in data["runs"] if r["tool"] == "cp" and r["workload"] == "tree")
    src = Path(data["workloads"]["tree"]["path"])
    expect = bench.Summary(**data["workloads"]["tree"]["summary"])
    copy = Path(run["copy"])
    assert bench.check_copy(src, copy, expect, "count") is None
    victim = next(p for p in sorted(copy.rglob("f*")) if p.is_file() and not p.is_symlink())
    size = victim.stat().st_size
    with open(victim, "ab") as f:
        f.write(b"x")
    assert "bytes" in (bench.check_copy(src, copy, expect, "count") or "")
    os.truncate(victim, size)  # same size, other mtime: rsync -c still sees it
    assert bench.check_copy(src, copy, expect, "rsync") is not None


def test_png_and_plot_only(tiny: tuple[Path, int, dict[str, Any]]) -> None:
    pytest.importorskip("matplotlib", reason="the test extra has matplotlib: bash setup.sh test")
    d, _, _ = tiny
    png = d / "out" / "bench.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    again = d / "again.png"
    p = subprocess.run(
        [sys.executable, "-m", "uringsync", "bench", "--plot-only", str(d / "out" / "bench.json"),
         "--plot", str(again)],
        capture_output=True,
        check=False,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert again.read_bytes()[:8] == PNG_MAGIC
    assert b"tree" in p.stdout  # the table, from the JSON
    default = d / "out" / "bench.png"
    default.unlink()
    assert bench.plot_only(d / "out" / "bench.json", None) == default
    assert default.read_bytes()[:8] == PNG_MAGIC


def test_plot_only_refuses_other_json(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    p = subprocess.run(
        [sys.executable, "-m", "uringsync", "bench", "--plot-only", str(bad)],
        capture_output=True,
        check=False,
    )
    assert p.returncode == 1
    assert b"not the JSON written by uringsync bench" in p.stderr


def test_without_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cold runs need root (skipped with a note); the loop file system too (an error)."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # the session and the workspace call it
    opts = bench.Options(workloads=("tree",), entries=10, workdir=tmp_path, warm=False)
    with pytest.raises(bench.BenchError, match="nothing to time"):
        bench.run(opts, say=lambda _msg: None)
    opts.warm = True
    with pytest.raises(bench.BenchError, match="--no-loop"):
        bench.run(opts, say=lambda _msg: None)


def test_parse_size() -> None:
    assert bench.parse_size("4G") == 4 << 30
    assert bench.parse_size("64MiB") == 64 << 20
    assert bench.parse_size("1.5k") == 1536
    assert bench.parse_size("4096") == 4096
    with pytest.raises(bench.BenchError):
        bench.parse_size("lots")


def test_generator_is_deterministic_and_as_estimated(tmp_path: Path) -> None:
    spec = bench.TreeSpec(entries=2000, seed=7)
    a, b = tmp_path / "a", tmp_path / "b"
    bench.generate(spec, a)
    bench.generate(spec, b)
    # same names, types, modes, links, xattrs and contents (made at other times)
    assert _rsync_differences(str(a), str(b), times=False) == b""
    got, est = bench.summarize(a), bench.estimate(spec)
    assert got.entries == est.entries == 2000
    data = {st.st_ino: st.st_size for st in (q.lstat() for q in a.rglob("*"))
            if stat.S_ISREG(st.st_mode)}  # fmt: skip
    assert sum(data.values()) == est.bytes  # hard links: the data once
    assert got.symlinks > 0 and got.linked > 0 and got.dirs > 50
    dirs = bench._plan_dirs(spec)
    assert max(d.depth for d in dirs) <= spec.max_depth
    assert all(5 <= d.cap <= 20 for d in dirs)
    assert bench.estimate(bench.TreeSpec(entries=2000, seed=8)) != est


def test_stamped_big_file_is_not_repetitive(tmp_path: Path) -> None:
    path = tmp_path / "big"
    size = 2 * bench.BLOCK_SIZE + 12345
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        bench.write_stamped(fd, size, 1, 1)
    finally:
        os.close(fd)
    st = path.stat()
    assert st.st_size == size and st.st_blocks * 512 >= size  # no holes
    with open(path, "rb") as f:
        first = f.read(bench.PAGE)
        f.seek(bench.BLOCK_SIZE)
        second = f.read(bench.PAGE)
    assert first != second and first[16:] == second[16:]  # only the stamp differs
    assert first.count(0) < bench.PAGE // 16


# -- the sync workloads


@pytest.fixture(scope="module")
def tiny_sync(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, dict[str, Any]]:
    """One tiny run of every sync workload (warm, one round), kept.  Where this
    uringsync has no sync yet, rsync stands in for it: the plumbing is the same."""
    d = tmp_path_factory.mktemp("bench-sync")
    code, data = _small_run(
        d,
        "sync",
        workloads=(*bench.SYNC_WORKLOADS, bench.SYNC_RSS, bench.VERIFY, bench.CP_VERIFY),
        entries=300,
        sync_rss_entries=200,
        cold=False,
        sync_stand_in=() if bench.probe_uringsync().sync else ("rsync",),
    )
    return d, code, data


def _small_run(d: Path, name: str, **kw: Any) -> tuple[int, dict[str, Any]]:
    """One round of a small bench run in ``d`` (kept, every copy checked
    with rsync): its exit code and its JSON (``d/out/NAME.json``)."""
    opts = bench.Options(
        rounds=1,
        workdir=d / "work",
        loop=False,
        keep=True,
        settle=0,
        verify="rsync",
        json_out=d / "out" / f"{name}.json",
        plot=d / "out" / f"{name}.png",
        **kw,
    )
    code, _ = bench.run(opts, say=lambda _msg: None)
    return code, json.loads((d / "out" / f"{name}.json").read_text())


def test_sync_rows_record_the_ratios(tiny_sync: tuple[Path, int, dict[str, Any]]) -> None:
    _, code, data = tiny_sync
    # a tiny tree may miss the speed targets (exit 3), but no copy fails (exit 1)
    assert code in (0, bench.EXIT_MISSED), [r["stderr"] for r in data["runs"] if not r["ok"]]
    assert data["rows"] == []  # no copy workload asked for
    rows = {(r["workload"], r["cache"]): r for r in data["sync_rows"]}
    every = (*bench.SYNC_WORKLOADS, bench.SYNC_RSS, bench.VERIFY, bench.CP_VERIFY)
    assert set(rows) == {(w, "warm") for w in every}
    for (name, cache), row in rows.items():
        assert row["tools"] == list(bench.sync_tools(name))
        med = row["median"]
        for tool in row["tools"]:
            assert med[tool] > 0 and row["failures"][tool] == 0, (name, tool)
            assert row["ratio_to_rsync"][tool] == pytest.approx(med[tool] / med["rsync"])
        target = bench.SYNC_TARGETS.get((name, cache))
        if target is None:
            assert row["target"] is None and row["ratio_ok"] is None
            continue
        base, limit = target
        assert row["target"] == {"baseline": base, "ratio": limit}
        assert data["targets"]["sync"][f"{name}/{cache}"] == row["target"]
        assert row["ratio"] == pytest.approx(med[bench.SYNC_TOOL] / med[base])
        assert row["ratio_ok"] is (row["ratio"] <= limit)
    first = rows["sync-first", "warm"]
    assert first["target"]["baseline"] == "uringsync"  # within 1.10 of uringsync cp -a
    assert first["ratio_to_cp"][bench.SYNC_TOOL] == pytest.approx(first["ratio"])
    rss = rows[bench.SYNC_RSS, "warm"]
    assert rss["rss_target"] == bench.RSS_TARGET and rss["rss_ok"] is None  # 200 entries
    assert rss["peak_rss"][bench.SYNC_TOOL] > 0
    assert data["workloads"]["sync-rss"]["summary"]["entries"] == 200


def test_sync_1pct_destination_differs_by_one_percent_each_way(
    tiny_sync: tuple[Path, int, dict[str, Any]],
) -> None:
    """The template each sync-1pct run starts from (a cp -a of it): 1% of the
    files longer, 1% missing, 1% extra; rsync -n sees exactly that."""
    _, _, data = tiny_sync
    files = data["workloads"]["tree"]["summary"]["files"]
    n = max(1, round(files * bench.PERTURB_FRACTION))
    prep = data["sync"]["sync-1pct"]["prepared"]
    assert prep["perturbation"] == {"changed": n, "missing": n, "extra": n}
    src = Path(data["workloads"]["tree"]["path"])
    got = bench.itemized(src, Path(prep["path"]))
    assert (got["changed"], got["added"], got["deleted"]) == (n, n, n)
    assert prep["itemized"] == got
    runs = [r for r in data["runs"] if r["workload"] == "sync-1pct"]
    assert {r["tool"] for r in runs} == set(bench.sync_tools("sync-1pct"))
    for r in runs:
        assert r["command"].split()[-3] == "--delete", r["command"]
        assert r["detail"]["prepare_seconds"] > 0  # its own copy of the template
        assert r["copy"] != prep["path"]
    unchanged = data["sync"]["sync-unchanged"]["prepared"]["itemized"]
    assert unchanged == {"changed": 0, "added": 0, "deleted": 0, "other": 0}


def test_every_sync_leaves_a_copy(tiny_sync: tuple[Path, int, dict[str, Any]]) -> None:
    """After each timed sync DST is SRC's copy (rsync -naHAXc lists nothing), and
    a sync with nothing to do replaced no file."""
    _, _, data = tiny_sync
    for r in data["runs"]:
        src = data["workloads"]["tree" if r["workload"] != bench.SYNC_RSS else "sync-rss"]["path"]
        assert _rsync_differences(src, r["copy"]) == b"", (r["workload"], r["tool"])
        if r["workload"] in ("sync-unchanged", bench.SYNC_RSS):
            assert r["detail"]["dst_changes"]["replaced"] == 0, r
        if r["workload"] == bench.VERIFY:  # a check writes nothing
            ch = r["detail"]["dst_changes"]
            assert (ch["replaced"], ch["touched"]) == (0, 0), r
        if r["workload"] == "sync-first":
            assert "dst_changes" not in r["detail"]


def test_perturb_is_deterministic(tmp_path: Path) -> None:
    spec = bench.TreeSpec(entries=400, seed=3)
    src = tmp_path / "src"
    bench.generate(spec, src)
    files = bench.summarize(src).files
    copies = []
    for name in ("a", "b"):
        subprocess.run(["cp", "-a", str(src), str(tmp_path / name)], check=True)
        copies.append(bench.perturb(tmp_path / name, files, seed=5, fraction=0.02))
    a, b = copies
    assert a == b and a.counts() == {
        k: round(files * 0.02) for k in ("changed", "missing", "extra")
    }
    for rel in a.changed:
        was, now = os.lstat(os.fsencode(src) + b"/" + rel), os.lstat(tmp_path / "a" / rel.decode())
        assert now.st_size > was.st_size and now.st_mtime_ns == was.st_mtime_ns
    assert not any(os.path.lexists(os.fsencode(tmp_path / "a") + b"/" + m) for m in a.missing)
    assert all(os.path.isfile(os.fsencode(tmp_path / "a") + b"/" + e) for e in a.extra)


def test_sync_row_verdict() -> None:
    def run(tool: str, seconds: float, ok: bool = True) -> bench.Run:
        r = _run(tool, seconds, ok)
        r.workload = "sync-unchanged"
        return r

    limit = bench.SYNC_TARGETS["sync-unchanged", "cold"][1]
    row = bench.sync_row(
        "sync-unchanged", "cold", [run("rsync", 10), run(bench.SYNC_TOOL, 10 * limit)]
    )
    assert row["ratio"] == pytest.approx(limit) and row["ratio_ok"] and row["passed"]
    row = bench.sync_row("sync-unchanged", "cold", [run("rsync", 10), run(bench.SYNC_TOOL, 3.5)])
    assert row["ratio_ok"] is False and not row["passed"]
    row = bench.sync_row(
        "sync-unchanged", "cold", [run("rsync", 10), run(bench.SYNC_TOOL, 1, ok=False)]
    )
    assert row["ratio_ok"] is False and row["failures"][bench.SYNC_TOOL] == 1
    row = bench.sync_row("sync-unchanged", "cold", [run("rsync", 10)])  # sync not timed
    assert row["ratio_ok"] is None and row["passed"]


def test_sync_workload_names_and_commands(tmp_path: Path) -> None:
    assert bench.split_workloads(["tree", "sync"]) == (["tree"], list(bench.SYNC_WORKLOADS))
    assert bench.split_workloads(["sync-rss-1m"]) == ([], ["sync-rss-1m"])
    with pytest.raises(bench.BenchError, match="unknown workload"):
        bench.split_workloads(["sync-nothing"])
    caps = bench.Caps(json=True, jobs=True, sync=True, sync_json=False)
    s, d = tmp_path / "s", tmp_path / "d"
    ((cmd,),) = [bench.sync_commands(bench.SYNC_TOOL, s, d, caps, delete=True)]
    assert cmd[-5:] == ["sync", "-aHAX", "--delete", os.fsencode(s) + b"/", os.fsencode(d) + b"/"]
    ((cmd,),) = [bench.sync_commands(bench.SYNC_TOOL, s, d, caps, stand_in=("rsync",))]
    assert cmd == ["rsync", "-aHAX", os.fsencode(s) + b"/", os.fsencode(d) + b"/"]
    ((cmd,),) = [bench.sync_commands("uringsync", s, d, caps)]
    assert cmd[-4:] == ["-a", "--json", os.fsencode(s), os.fsencode(d)]
    assert bench.split_workloads(["verify"]) == ([], [bench.VERIFY])
    slash = [os.fsencode(s) + b"/", os.fsencode(d) + b"/"]
    ((cmd,),) = [bench.sync_commands(bench.SYNC_TOOL, s, d, caps, check="verify")]
    assert cmd[-4:] == ["uringsync", "verify", *slash]
    ((cmd,),) = [bench.sync_commands("rsync", s, d, caps, check="verify")]
    assert cmd == ["rsync", "-naHAXc", "--delete", *slash]
    plain = [os.fsencode(s), os.fsencode(d)]
    ((cmd,),) = [bench.sync_commands(bench.SYNC_TOOL, s, d, caps, check="cp-verify")]
    assert cmd[-6:] == ["uringsync", "cp", "-a", "--verify", *plain]
    ((cmd,),) = [bench.sync_commands("rsync", s, d, caps, check="cp-verify")]
    assert cmd[:2] == ["sh", "-c"] and "rsync -naHAXc --delete" in cmd[2] and cmd[-2:] == plain


@pytest.mark.skipif(os.geteuid() != 0, reason="bigfile-fio runs cold: dropping caches needs root")
@pytest.mark.skipif(
    shutil.which("fio") is None or shutil.which("xxh128sum") is None,
    reason="fio and xxh128sum are the references (setup.sh installs them)",
)
def test_big_file_workloads(tmp_path: Path) -> None:
    """bigfile-fio (cold only) and hash (warm only) at a tiny size: each row
    timed and judged against its target; uringsync's copy checked, fio's
    file (no copy) not."""
    _code, data = _small_run(
        tmp_path, "big", workloads=(bench.BIG_FIO, bench.HASH), big_size=4 * bench.MiB
    )
    rows = {(r["workload"], r["cache"]): r for r in data["sync_rows"]}
    assert set(rows) == {(bench.BIG_FIO, "cold"), (bench.HASH, "warm")}
    for key, row in rows.items():
        assert row["failures"] == {bench.SYNC_TOOL: 0, "rsync": 0}, key
        assert row["ratio"] is not None and row["target"]["ratio"] == bench.SYNC_TARGETS[key][1]
    runs = {(r["workload"], r["tool"]): r for r in data["runs"]}
    assert all(r["ok"] for r in runs.values())
    assert runs[bench.BIG_FIO, bench.SYNC_TOOL]["verified"] is True  # rsync -naHAXc: a copy
    assert runs[bench.BIG_FIO, "rsync"]["verified"] is None  # fio's file: not a copy
    fio_file = Path(runs[bench.BIG_FIO, "rsync"]["copy"]) / "big.bin"
    assert fio_file.stat().st_size == 4 * bench.MiB  # fio wrote it whole
    assert "fio" in runs[bench.BIG_FIO, "rsync"]["command"]
    assert "-naHAXc" in runs[bench.HASH, bench.SYNC_TOOL]["command"]
    assert "xxh128sum" in runs[bench.HASH, "rsync"]["command"]


def test_exit_status_missed_target_and_failed_check() -> None:
    us = bench.RATIO_TARGETS["uringsync"]["tree", "cold"]
    good = [_run("cp", 10), _run("uringsync", 10 * us * 0.9), _run("rsync", 20)]
    data = {"rows": [bench.summary_row("tree", "cold", good)]}
    assert bench.session.exit_code(good, data) == 0
    slow = [_run("cp", 10), _run("uringsync", 10 * us * 1.1), _run("rsync", 20)]
    data = {"rows": [bench.summary_row("tree", "cold", slow)]}
    assert bench.session.exit_code(slow, data) == bench.EXIT_MISSED
    bad = [*good[:2], _run("rsync", 20)]
    bad[1].verified = False  # the copy failed its check
    data = {"rows": [bench.summary_row("tree", "cold", bad)]}
    assert bench.session.exit_code(bad, data) == bench.EXIT_FAILED


def test_tables_fit_100_columns(tiny: tuple[Path, int, dict[str, Any]]) -> None:
    _, code, data = tiny
    p = subprocess.run(
        [sys.executable, "-c", "import json,sys; from uringsync.bench import print_table; "
         "print_table(json.load(sys.stdin))"],
        input=json.dumps(data).encode(), capture_output=True, check=False,
        env={**os.environ, "COLUMNS": "100"},
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    text = p.stdout.decode()
    assert max(len(line) for line in text.splitlines()) <= 100, text
    assert "each tool's median time / cp -a's (lower is better)" in text
    assert "uringsync-threads" in text  # tool names whole
    assert "MB" not in text
    missed = any(not r["passed"] for r in data["rows"])
    assert code == (bench.EXIT_MISSED if missed else 0)
