"""pytest-benchmark versions of ``uringsync bench``'s workloads, at small sizes.

Not part of the tests CI runs (those are in tests/).  Run it alone, on an
otherwise idle machine, not while the test suite runs:

    python -m pytest benchmarks/ -p no:cacheprovider

Each test times ROUNDS copies of one workload with one tool, each to a fresh
destination (made, and the cache dropped or the source read, in the untimed
set-up), with the generator, workspace and runners of ``uringsync.bench``.
Every copy is checked (names by type, bytes, hard links).  Performance is only
reported, never asserted: ``extra_info`` has the median seconds (perf_counter
around the processes, as ``uringsync bench`` measures), the ratio to cp -a's
median, the target for that ratio, and the peak RSS.

As root the copies go to a fresh loop-mounted ext4 and cold runs drop the page
cache; otherwise they go to a temporary directory and only warm runs are
timed.  Environment: URINGSYNC_BENCH_ENTRIES (tree, 5000), URINGSYNC_BENCH_BIG
(bigfile, 256M), URINGSYNC_BENCH_MIXED_FILES (1000), URINGSYNC_BENCH_MIXED_BIG
(largest of mixed's 8 big files, 32M), URINGSYNC_BENCH_ROUNDS (3),
URINGSYNC_BENCH_DIR (/var/tmp/uringsync-pytest-bench, root only).
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from uringsync import bench

ROOT = os.geteuid() == 0
ENTRIES = int(os.environ.get("URINGSYNC_BENCH_ENTRIES", "5000"))
BIG = bench.parse_size(os.environ.get("URINGSYNC_BENCH_BIG", "256M"))
MIXED_FILES = int(os.environ.get("URINGSYNC_BENCH_MIXED_FILES", "1000"))
MIXED_BIG = bench.parse_size(os.environ.get("URINGSYNC_BENCH_MIXED_BIG", "32M"))
ROUNDS = int(os.environ.get("URINGSYNC_BENCH_ROUNDS", "3"))
WORKDIR = Path(os.environ.get("URINGSYNC_BENCH_DIR", "/var/tmp/uringsync-pytest-bench"))
CACHES = ("cold", "warm") if ROOT else ("warm",)
TOOLS = ("cp", "uringsync", "rsync", "tar")  # cp first: the others' ratios are to its median
CASES = [(w, c, t) for w in bench.WORKLOADS for c in CACHES for t in TOOLS]


@pytest.fixture(scope="module")
def specs() -> dict[str, bench.Spec]:
    return bench.workload_specs(
        bench.WORKLOADS,
        entries=ENTRIES,
        big_size=BIG,
        mixed_files=MIXED_FILES,
        mixed_big=MIXED_BIG,
        seed=1,
    )


@pytest.fixture(scope="module")
def workspace(
    specs: dict[str, bench.Spec], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[bench.Workspace]:
    workdir = WORKDIR if ROOT else tmp_path_factory.mktemp("uringsync-bench")
    ws = bench.Workspace(workdir, loop=ROOT, keep=False, settle=2.0, say=print)
    ests = {name: bench.estimate(spec) for name, spec in specs.items()}
    # a test makes ROUNDS copies; a workload has len(TOOLS) * len(CACHES) tests
    plan = bench.space_plan(
        ests,
        {name: ROUNDS for name in specs},
        {name: len(TOOLS) * len(CACHES) for name in specs},
    )
    try:
        ws.setup(plan.image, plan.inodes)
        yield ws
    finally:
        ws.teardown()


@pytest.fixture(scope="module")
def sources(workspace: bench.Workspace, specs: dict[str, bench.Spec]) -> dict[str, bench.Source]:
    return {name: bench.ensure_source(workspace, name, spec) for name, spec in specs.items()}


@pytest.fixture(scope="module")
def caps() -> bench.Caps:
    return bench.probe_uringsync()


@pytest.fixture(scope="module")
def cp_medians() -> dict[tuple[str, str], float]:
    """Median seconds of cp -a per (workload, cache), filled by its tests."""
    return {}


@pytest.mark.parametrize(("workload", "cache", "tool"), CASES, ids=["-".join(c) for c in CASES])
def test_copy(
    benchmark: Any,
    workspace: bench.Workspace,
    sources: dict[str, bench.Source],
    caps: bench.Caps,
    cp_medians: dict[tuple[str, str], float],
    workload: str,
    cache: str,
    tool: str,
) -> None:
    src = sources[workload]
    est = bench.estimate(src.spec)
    workspace.make_room(*bench.copies_room(est, ROUNDS), f"{workload} {cache} {tool}")
    done: list[tuple[bench.Outcome, Path]] = []

    def setup() -> tuple[tuple[list[bench.Argv], Path], dict[str, Any]]:
        dst = workspace.destination(f"{workload}-{cache}-{tool}")
        cmds, copy = bench.tool_commands(tool, src.path, dst, caps)
        if tool == "tar":
            dst.mkdir()
        if cache == "warm":
            bench.warm_read(src.path)
        bench.prepare(cache)
        return (cmds, copy), {}

    def copy_once(cmds: list[bench.Argv], copy: Path) -> None:
        done.append((bench.execute(cmds), copy))

    benchmark.pedantic(copy_once, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=0)

    for out, copy in done:  # a broken copy must not pass as a fast one
        assert out.exit_code == 0, out.stderr.decode(errors="replace")
        assert bench.check_copy(src.path, copy, src.summary, "count") is None
    median = statistics.median(out.seconds for out, _ in done)
    if tool == "cp":
        cp_medians[(workload, cache)] = median
    cp = cp_medians.get((workload, cache))
    if tool == "uringsync":
        peaks = [bench.uringsync_peak_rss(out.stdout) for out, _ in done]
        peak = max((p for p in peaks if p is not None), default=None)
    else:
        peak = max(sum(out.maxrss) for out, _ in done)
    benchmark.extra_info.update(
        {
            "workload": workload,
            "cache": cache,
            "tool": tool,
            "command": bench.describe(bench.tool_commands(tool, src.path, Path("DST"), caps)[0]),
            "entries": src.summary.entries,
            "bytes": src.summary.bytes,
            "median_seconds": median,
            "ratio_to_cp": median / cp if cp else None,
            "target_ratio": bench.RATIO_TARGETS.get(tool, {}).get((workload, cache)),
            "peak_rss": peak,
        }
    )
