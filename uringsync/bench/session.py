"""One benchmark session: the options, the space it plans for, the machine it
describes, and the interleaved rounds (:func:`run`): every tool once per
round, in an order rotated per round, each to a fresh destination."""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from uringsync.bench.base import BenchError, GiB, KiB, MiB, Say, fmt_bytes, need, now, say_stderr
from uringsync.bench.gen import release_pools
from uringsync.bench.report import (
    EXIT_FAILED,
    EXIT_MISSED,
    RATIO_TARGETS,
    RSS_TARGET,
    RSS_TARGET_ENTRIES,
    SYNC_TARGETS,
    plot,
    progress_line,
    run_dict,
    summary_row,
    sync_row,
    worker_rows,
    write_json,
)
from uringsync.bench.sources import Source, ensure_source, warm_read
from uringsync.bench.spec import (
    WORKLOADS,
    BigFileSpec,
    Estimate,
    TreeSpec,
    estimate,
    spec_dict,
    workload_specs,
)
from uringsync.bench.syncwork import (
    ALL_SYNC,
    BIG_SOURCE,
    BIG_TOOLS,
    ONE_CACHE,
    SYNC_RSS,
    SYNC_RSS_SOURCE,
    SYNC_WORKLOADS,
    SyncPlan,
    new_dst_per_run,
    run_workload,
    sync_source,
    sync_tools,
)
from uringsync.bench.tools import (
    CACHES,
    SYNC_TOOL,
    THREADS_TOOL,
    TOOLS,
    Caps,
    Run,
    probe_uringsync,
    rss_method,
    run_one,
)
from uringsync.bench.workspace import HOST_RESERVE, Workspace, mount_of

SCHEMA_VERSION = 2  # of the JSON written (2: uringsync-threads, targets by tool)
# room for copies: their estimated size times COPY_SLACK, plus these
COPY_SLACK = 1.05
ROUND_SLACK_BYTES = 64 * MiB
ROUND_SLACK_INODES = 100
SMALL_FILES = 64 * KiB  # a workload under this per entry on average keeps every round's copies
# the loop image: the bytes planned times IMAGE_SLACK plus the file system's own
# overhead (inode tables, the journal of up to 1 GiB and the rest)
IMAGE_SLACK = 1.1
INODE_SLACK = 1.2  # inodes planned: this times those needed, plus INODE_EXTRA
INODE_EXTRA = 20_000
INODE_SIZE = 256  # ext4's default
FS_OVERHEAD = 2 * GiB
BYTES_PER_INODE = 64 * KiB  # with --image-size: inodes for this many bytes each (at least)
SWEEP_EVERY_J = 8  # the -j sweep tries every worker count up to this many CPUs
SWEEP_TOOL = "uringsync-j"  # + N: the tool name of uringsync -j N in the sweep


def copies_room(est: Estimate, copies: int) -> tuple[int, int]:
    """Bytes and inodes ``copies`` copies of a source of this estimate need, with slack."""
    return (
        int(copies * est.disk * COPY_SLACK) + ROUND_SLACK_BYTES,
        copies * (est.entries + 1) + ROUND_SLACK_INODES,
    )


@dataclass
class Options:
    workloads: tuple[str, ...] = WORKLOADS
    entries: int = 50_000
    big_size: int = 4 * GiB
    mixed_files: int = 5_000
    mixed_big: int = 512 * MiB
    rounds: int = 3
    cold: bool = True
    warm: bool = True
    jobs_sweep: bool = True
    workdir: Path = Path("/var/tmp/uringsync-bench")
    loop: bool = True
    image_size: int | None = None
    keep: bool = False
    settle: float = 10.0
    verify: str = "count"
    rss_entries: int = 0
    seed: int = 1
    json_out: Path | None = None
    plot: Path | None = None
    uringsync_args: tuple[str, ...] = ()  # more options for every uringsync cp run
    sync_rss_entries: int = RSS_TARGET_ENTRIES  # the sync-rss-1m workload's tree
    sync_stand_in: tuple[str, ...] = ()  # timed as uringsync sync (e.g. rsync) if set


def split_workloads(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """The copy workloads and the sync workloads named (``sync``: the three
    sync workloads of the default set, not sync-rss-1m); an unknown name is an error."""
    copy: list[str] = []
    sync: list[str] = []
    for n in names:
        for w in SYNC_WORKLOADS if n == "sync" else (n,):
            if w in WORKLOADS:
                copy.append(w)
            elif w in ALL_SYNC:
                sync.append(w)
            else:
                raise BenchError(
                    f"unknown workload {w!r}: choose from "
                    f"{', '.join((*WORKLOADS, *ALL_SYNC))} (sync: the first three sync ones)"
                )
    return list(dict.fromkeys(copy)), list(dict.fromkeys(sync))


def _rotate(seq: Sequence[str], k: int) -> list[str]:
    k %= max(1, len(seq))
    return [*seq[k:], *seq[:k]]


def jobs_list(cpus: int) -> list[int]:
    """Worker counts of the -j sweep: 1..cpus; above SWEEP_EVERY_J CPUs, powers of two and cpus."""
    if cpus <= SWEEP_EVERY_J:
        return list(range(1, cpus + 1))
    return sorted({cpus, *(1 << k for k in range(cpus.bit_length()) if 1 << k < cpus)})


def _tools_for(name: str, cpus: int, sweep: bool, threads: bool = True) -> list[str]:
    """The tools a round of workload ``name`` times (the tree: also the -j sweep);
    ``threads``: with uringsync-threads (this uringsync's cp has --engine)."""
    tools = [t for t in TOOLS if threads or t != THREADS_TOOL]
    if sweep and name == "tree":
        tools += [f"{SWEEP_TOOL}{j}" for j in jobs_list(cpus)]
    return tools


def _jobs_of(tool: str) -> int | None:
    return int(tool.removeprefix(SWEEP_TOOL)) if tool.startswith(SWEEP_TOOL) else None


def _first_line(argv: list[str]) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, check=False, text=True)
        return p.stdout.splitlines()[0] if p.stdout else ""
    except OSError:
        return ""


def machine_info(ws: Workspace) -> dict[str, Any]:
    u = os.uname()
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    ram = None
    with contextlib.suppress(ImportError, AttributeError):
        ram = int(importlib.import_module("psutil").virtual_memory().total)
    fs = mount_of(ws.root)
    host = mount_of(ws.workdir)
    disk: dict[str, Any] = {"device": host.source}
    dev = os.path.basename(host.source)
    for key, rel in (("rotational", "queue/rotational"), ("model", "device/model")):
        with contextlib.suppress(OSError):
            disk[key] = Path(f"/sys/class/block/{dev}/{rel}").read_text().strip()
    git = ""
    with contextlib.suppress(OSError):
        here = Path(__file__).resolve().parents[2]  # the repository, if run from one
        p = subprocess.run(
            ["git", "-C", str(here), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=False,
        )
        git = p.stdout.strip()
    return {
        "uname": " ".join([u.sysname, u.nodename, u.release, u.version, u.machine]),
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "ram_bytes": ram,
        "python": platform.python_version(),
        "filesystem": asdict(fs),
        "loop": {
            "image": str(ws.image),
            "image_size": ws.image_size,
            "device": ws.device,
            "direct_io": ws.dio,
            "host_filesystem": asdict(host),
        }
        if ws.loop
        else None,
        "host_disk": disk,
        "versions": {
            "uringsync_git": git,
            "cp": _first_line(["cp", "--version"]),
            "rsync": _first_line(["rsync", "--version"]),
            "tar": _first_line(["tar", "--version"]),
        },
    }


@dataclass(frozen=True)
class SpacePlan:
    image: int  # loop image bytes: room for every round of the small-file workloads
    image_min: int  # the least that works: sources and the largest round
    inodes: int
    need_bytes: int  # sources and the largest round, without file system overhead
    need_inodes: int


def space_plan(
    ests: dict[str, Estimate],
    copies: dict[str, int],
    rounds: dict[str, int],
    sources: dict[str, Estimate] | None = None,
) -> SpacePlan:
    """How big a file system the sources and their copies need.

    ``copies[name]``: copies of that source made in one round (between two
    chances to delete copies); ``rounds[name]``: how many rounds it has.  A workload
    of small files (under 64 KiB on average) gets room for all its rounds, so
    that its copies, thousands of files, need not be deleted between rounds;
    the others need room for one round.  ``sources``: the source trees, if
    not one per workload of ``ests`` (the sync workloads share the tree).
    """
    srcs = ests if sources is None else sources
    src_b = sum(e.disk for e in srcs.values())
    src_i = sum(e.entries + 1 for e in srcs.values())
    round_b, round_i, all_b, all_i = [0], [0], [0], [0]
    for name, e in ests.items():
        n = copies.get(name, 1)
        room_b, room_i = copies_room(e, n)
        round_b.append(room_b)
        round_i.append(room_i)
        if e.disk < SMALL_FILES * max(1, e.entries):
            all_b.append(round_b[-1] * rounds.get(name, 1))
            all_i.append(round_i[-1] * rounds.get(name, 1))
    inodes = int((src_i + max(*round_i, *all_i)) * INODE_SLACK) + INODE_EXTRA
    overhead = inodes * INODE_SIZE + FS_OVERHEAD
    return SpacePlan(
        image=int((src_b + max(*round_b, *all_b)) * IMAGE_SLACK) + overhead,
        image_min=int((src_b + max(round_b)) * IMAGE_SLACK) + overhead,
        inodes=inodes,
        need_bytes=src_b + max(round_b),
        need_inodes=src_i + max(round_i),
    )


def _default_json(workdir: Path) -> Path:
    here = Path("benchmarks")
    return here / "results" / "bench.json" if here.is_dir() else workdir / "bench.json"


def exit_code(runs: list[Run], data: dict[str, Any]) -> int:
    """EXIT_FAILED when a copy failed or failed its verification,
    EXIT_MISSED when every copy was good but a row missed its target (or the
    RSS check its limit), else 0."""
    rss = data.get("rss_check")
    if any(not r.ok for r in runs) or (rss is not None and not rss.get("ok")):
        return EXIT_FAILED
    rows = [*data.get("rows", []), *data.get("sync_rows", [])]
    if any(not row.get("passed", True) for row in rows) or (
        rss is not None and rss.get("passed") is False
    ):
        return EXIT_MISSED
    return 0


def run(opts: Options, say: Say = say_stderr) -> tuple[int, dict[str, Any]]:
    """The whole benchmark; returns (exit code, the results written to JSON)."""
    need("cp", "rsync", "tar")
    if opts.verify not in ("count", "rsync", "none"):
        raise BenchError(f"--verify must be count, rsync or none, not {opts.verify!r}")
    root_user = os.geteuid() == 0
    caches = [c for c, on in zip(CACHES, (opts.cold, opts.warm), strict=True) if on]
    notes: list[str] = []
    if "cold" in caches and not root_user:
        caches.remove("cold")
        notes.append("cold runs skipped: dropping the page cache needs root")
        say("warning: " + notes[-1])
    if not caches and opts.workloads and opts.workloads != (SYNC_RSS,):
        raise BenchError("nothing to time: both --no-cold and --no-warm (or cold without root)")
    cpus = os.cpu_count() or 1
    copy_names, sync_names = split_workloads(opts.workloads)
    specs = workload_specs(
        copy_names,
        entries=opts.entries,
        big_size=opts.big_size,
        mixed_files=opts.mixed_files,
        mixed_big=opts.mixed_big,
        seed=opts.seed,
    )
    if opts.rss_entries:
        specs["rss"] = TreeSpec(entries=opts.rss_entries, seed=opts.seed, profile="tiny")
    for name in sync_names:
        if sync_source(name) == SYNC_RSS_SOURCE:
            specs[SYNC_RSS_SOURCE] = TreeSpec(
                entries=opts.sync_rss_entries, seed=opts.seed, profile="tiny"
            )
        elif sync_source(name) == BIG_SOURCE:
            need(*BIG_TOOLS[name])
            if BIG_SOURCE not in specs:
                specs[BIG_SOURCE] = BigFileSpec(size=opts.big_size, seed=opts.seed)
        elif "tree" not in specs:
            specs["tree"] = TreeSpec(entries=opts.entries, seed=opts.seed)
    ests = {name: estimate(spec) for name, spec in specs.items()}
    copies = {name: len(_tools_for(name, cpus, opts.jobs_sweep)) for name in copy_names}
    nrounds = {name: opts.rounds * len(caches) for name in copy_names}
    wl_ests = {n: e for n, e in ests.items() if n != SYNC_RSS_SOURCE}
    for name in sync_names:  # their destinations, as copies of their source, ...
        src_name = sync_source(name)
        many = new_dst_per_run(name)
        n = len(sync_tools(name)) * opts.rounds * len(caches) if many else 1
        key = f"sync:{src_name}"  # ... all kept: room for every sync workload's at once
        wl_ests[key] = ests[src_name]
        if name in BIG_TOOLS:  # big files: room for one round's copies, deleted between
            copies[key] = max(copies.get(key, 1), len(sync_tools(name)) if many else 1)
            continue
        copies[key] = 1
        nrounds[key] = nrounds.get(key, 0) + n + (name == "sync-1pct")  # and the template
    plan = space_plan(wl_ests, copies, nrounds, sources=ests)
    image, inodes, min_b, min_i = plan.image, plan.inodes, plan.need_bytes, plan.need_inodes
    if opts.image_size is not None:
        image = opts.image_size
        inodes = max(min_i * 2, image // BYTES_PER_INODE)
    ws = Workspace(opts.workdir, loop=opts.loop, keep=opts.keep, settle=opts.settle, say=say)
    json_out = opts.json_out or _default_json(ws.workdir)
    plot_out = opts.plot or json_out.with_suffix(".png")
    if not opts.loop:
        ws.workdir.mkdir(parents=True, exist_ok=True)
        st = os.statvfs(ws.workdir)
        free_b, free_i = st.f_bavail * st.f_frsize, st.f_favail
        if free_b < min_b or (st.f_files and free_i < min_i):
            raise BenchError(
                f"not enough space in {ws.workdir}: the sources and one round of copies need "
                f"about {fmt_bytes(min_b)} and {min_i} inodes, {fmt_bytes(free_b)} and {free_i} "
                "are free; use another --workdir or smaller workloads"
            )
    elif opts.image_size is not None and image < plan.image_min:
        raise BenchError(
            f"--image-size {fmt_bytes(image)} is too small: the sources and one round of "
            f"copies need about {fmt_bytes(plan.image_min)}"
        )
    elif not os.path.exists(ws.image) and image > plan.image_min:
        ws.workdir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(ws.workdir).free - HOST_RESERVE
        if image > free:
            image = max(plan.image_min, free)
            notes.append(
                f"the loop image is {fmt_bytes(image)}, not {fmt_bytes(plan.image)} (free space): "
                "copies of the tree are deleted between rounds"
            )
            say("note: " + notes[-1])
    data: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "date": now(),
        "params": {
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
            "caches": caches,
            "cpus": cpus,
        },
        "tools": {
            "uringsync": f"{Path(sys.executable).name} -m uringsync cp -a "
            + "".join(f"{shlex.quote(a)} " for a in opts.uringsync_args)
            + "--json SRC DST",
            THREADS_TOOL: f"{Path(sys.executable).name} -m uringsync cp -a "
            + "".join(f"{shlex.quote(a)} " for a in opts.uringsync_args)
            + "--engine threads --json SRC DST",
            "cp": "cp -a SRC DST",
            "rsync": "rsync -aHAX SRC/ DST/",
            "tar": "tar --xattrs --acls -C PARENT -cf - NAME | tar --xattrs --acls -C DST -xpf -",
            SYNC_TOOL: (
                f"{' '.join(map(shlex.quote, opts.sync_stand_in))} -aHAX [--delete] SRC/ DST/"
                " (a stand-in for uringsync sync)"
                if opts.sync_stand_in
                else f"{Path(sys.executable).name} -m uringsync sync -aHAX [--json] [--delete] "
                "SRC/ DST/"
            ),
        },
        "targets": {
            "ratio_to_cp": {
                tool: {f"{w}/{c}": t for (w, c), t in targets.items()}
                for tool, targets in RATIO_TARGETS.items()
            },
            "rsync_slower_than_uringsync": True,
            "peak_rss_bytes": RSS_TARGET,
            "peak_rss_at_entries": RSS_TARGET_ENTRIES,
            "sync": {
                f"{w}/{c}": {"baseline": base, "ratio": t}
                for (w, c), (base, t) in SYNC_TARGETS.items()
            },
        },
        "notes": notes,
    }
    runs: list[Run] = []
    old_sigint = signal.signal(signal.SIGINT, signal.default_int_handler)  # clean up on Ctrl-C
    try:
        ws.setup(image, inodes)
        data["machine"] = machine_info(ws)
        caps = probe_uringsync()
        data["capabilities"] = asdict(caps)
        if not caps.json:
            notes.append("uringsync cp has no --json: its peak RSS is not reported")
        if opts.jobs_sweep and not caps.jobs:
            notes.append("uringsync cp has no -j/--jobs: files/s per worker count skipped")
        if not caps.engine:
            notes.append(
                f"uringsync cp has no --engine: {THREADS_TOOL} (the threads backend) not timed"
            )
        sweep = opts.jobs_sweep and caps.jobs
        sources = {name: ensure_source(ws, name, spec) for name, spec in specs.items()}
        release_pools()
        data["params"]["rss_method"] = rss_method()
        data["workloads"] = {
            n: {"spec": spec_dict(s.spec), "summary": asdict(s.summary), "path": str(s.path)}
            for n, s in sources.items()
        }
        data["rows"], data["workers"], data["rss_check"] = [], [], None
        data["sync_rows"], data["sync"] = [], {}
        for name in copy_names:
            src = sources[name]
            tools = _tools_for(name, cpus, sweep, caps.engine)
            est = ests[name]
            for cache in caches:
                for r in range(opts.rounds):
                    ws.make_room(*copies_room(est, len(tools)), f"{name} {cache} round {r + 1}")
                    if cache == "warm":
                        warm_read(src.path)
                    for tool in _rotate(tools, r):
                        run_ = run_one(
                            ws,
                            src,
                            tool,
                            cache,
                            caps,
                            round_no=r,
                            jobs=_jobs_of(tool),
                            verify=opts.verify,
                            extra=opts.uringsync_args,
                        )
                        runs.append(run_)
                        say(progress_line(run_))
                data["rows"].append(summary_row(name, cache, runs))
            if name == "tree":
                data["workers"] = worker_rows(runs, src.summary.entries)
            data["runs"] = [run_dict(r) for r in runs]
            data["events"] = ws.events
            write_json(data, json_out)
        if sync_names:
            _sync_workloads(ws, sync_names, sources, caches, caps, opts, runs, data, json_out, say)
            data["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        if "rss" in sources:
            data["rss_check"] = _rss_check(ws, sources["rss"], ests["rss"], caps, opts, say)
        data["runs"] = [run_dict(r) for r in runs]
        data["events"] = ws.events
        data["finished"] = now()
        write_json(data, json_out)
    finally:
        try:
            ws.teardown()
        finally:
            signal.signal(signal.SIGINT, old_sigint)
    say(f"results: {json_out}")
    try:
        plot(data, plot_out)
        say(f"plot: {plot_out}")
    except ImportError:
        say("matplotlib is not installed (pip install matplotlib): no plot")
    return exit_code(runs, data), data


def _sync_workloads(
    ws: Workspace,
    names: list[str],
    sources: dict[str, Source],
    caches: list[str],
    caps: Caps,
    opts: Options,
    runs: list[Run],
    data: dict[str, Any],
    json_out: Path,
    say: Say,
) -> None:
    """The sync workloads, one after the other, each in interleaved rounds;
    their rows go to ``data["sync_rows"]``, what was prepared to ``data["sync"]``."""
    stand_in = opts.sync_stand_in
    if not caps.sync and not stand_in:
        data["notes"].append(
            "this uringsync has no sync command: uringsync sync not timed "
            "(--sync-stand-in rsync runs the workloads with rsync in its place)"
        )
        say("note: " + data["notes"][-1])
    elif stand_in:
        data["notes"].append(
            f"uringsync sync is a stand-in here: {' '.join(stand_in)} -aHAX: its ratios "
            "measure nothing about uringsync"
        )
        say("note: " + data["notes"][-1])
    data["params"]["sync_has_json"] = caps.sync_json
    for name in names:
        src = sources[sync_source(name)]
        rss = name == SYNC_RSS
        one = ONE_CACHE.get(name)
        plan = SyncPlan(
            name=name,
            caches=caches if one is None else [one] if one in caches or rss else [],
            rounds=1 if rss else opts.rounds,
            verify=opts.verify,
            seed=opts.seed,
            stand_in=stand_in,
            room=copies_room(estimate(src.spec), 1),
        )
        wl_runs: list[Run] = []
        skip = (SYNC_TOOL,) if not caps.sync and not stand_in else ()
        info = run_workload(ws, src, plan, caps, wl_runs, say, skip=skip)
        runs.extend(wl_runs)
        data["sync"][name] = info
        for cache in plan.caches:
            data["sync_rows"].append(sync_row(name, cache, wl_runs, src.summary.entries))
        data["runs"] = [run_dict(r) for r in runs]
        data["events"] = ws.events
        write_json(data, json_out)


def _rss_check(
    ws: Workspace, src: Source, est: Estimate, caps: Caps, opts: Options, say: Say
) -> dict[str, Any]:
    room_b, _ = copies_room(est, 1)
    ws.make_room(room_b, est.entries + ROUND_SLACK_INODES, "the RSS check")
    say(f"rss: copying {src.summary.entries} entries once with uringsync ...")
    r = run_one(
        ws,
        src,
        "uringsync",
        "warm",
        caps,
        verify=opts.verify,
        label="rss-uringsync",
        extra=opts.uringsync_args,
    )
    say(progress_line(r))
    peak, how = r.peak_rss, "json: summed over all uringsync processes"
    if peak is None:
        peak = max(r.maxrss_wait4) if r.maxrss_wait4 else None
        how = "wait4: largest single process (uringsync cp has no --json)"
    at_target = src.summary.entries >= RSS_TARGET_ENTRIES
    return {
        "entries": src.summary.entries,
        "seconds": r.seconds,
        "entries_per_s": src.summary.entries / r.seconds if r.seconds else None,
        "peak_rss": peak,
        "peak_rss_source": how,
        "target": RSS_TARGET,
        "target_entries": RSS_TARGET_ENTRIES,
        "passed": (peak is not None and peak <= RSS_TARGET) if at_target else None,
        "ok": r.ok,
        "run": run_dict(r),
    }
