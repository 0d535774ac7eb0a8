"""The results: medians and ratios per workload and cache against the
targets, the JSON, the tables on stdout and the PNG plot (matplotlib is
imported only to draw it, rich only to print)."""

from __future__ import annotations

import json
import math
import shutil
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

from uringsync.bench.base import BenchError, GiB, fmt_bytes
from uringsync.bench.tools import SYNC_TOOL, THREADS_TOOL, TOOLS, Run

# a tool's time / cp -a's must stay at or under these: uringsync's (issue #4);
# the threads backend's, for where io_uring is blocked
RATIO_TARGETS: dict[str, dict[tuple[str, str], float]] = {
    "uringsync": {
        ("tree", "cold"): 0.45,
        ("tree", "warm"): 0.85,
        ("bigfile", "cold"): 0.60,
        ("mixed", "cold"): 0.60,
    },
    THREADS_TOOL: {
        ("tree", "cold"): 0.60,
        ("tree", "warm"): 1.0,
        ("bigfile", "cold"): 1.0,
    },
}
# the sync workloads: uringsync sync's median / the named tool's must stay at
# or under these (rsync -aHAX's; on a first sync, uringsync cp -a's)
SYNC_TARGETS: dict[tuple[str, str], tuple[str, float]] = {
    ("sync-unchanged", "cold"): ("rsync", 0.30),
    ("sync-unchanged", "warm"): ("rsync", 0.50),
    ("sync-1pct", "cold"): ("rsync", 0.30),
    ("sync-first", "cold"): ("uringsync", 1.10),
    ("sync-first", "warm"): ("uringsync", 1.10),
    # uringsync verify / rsync -naHAXc --delete (the verify workload)
    ("verify", "cold"): ("rsync", 0.30),
    # uringsync cp -a --verify / (cp -a && rsync -naHAXc --delete)
    ("cp-verify", "cold"): ("rsync", 0.50),
    # uringsync cp -a && sync / fio read + write (the bigfile-fio workload)
    ("bigfile-fio", "cold"): ("rsync", 1.10),
    # uringsync sync -naHAXc / xxh128sum of both files: at least 80 % of its rate
    ("hash", "warm"): ("rsync", 1.25),
}
SYNC_TOOLS_ORDER = (SYNC_TOOL, "uringsync", "rsync")  # in the sync rows and tables
RSS_TARGET = 200 * 10**6  # bytes, summed over uringsync's processes ...
RSS_TARGET_ENTRIES = 1_000_000  # ... when copying a tree of this many entries
PROGRESS_STDERR = 300  # characters of a failed run's stderr in its progress line
TABLE_WIDTH = 100  # the tables' least width (wider on a wider terminal)
PLOT_DPI = 110
# uringsync bench's exit status: a copy failed or failed its verification
# (or the bench could not run); every copy good but a row missed its target
EXIT_FAILED = 1
EXIT_MISSED = 3


def summary_row(workload: str, cache: str, runs: list[Run]) -> dict[str, Any]:
    """The medians of one workload and cache, their ratios to cp -a's, and the verdicts."""
    sel = [r for r in runs if r.workload == workload and r.cache == cache]
    medians: dict[str, float | None] = {}
    failures: dict[str, int] = {}
    for tool in TOOLS:
        ok = [r.seconds for r in sel if r.tool == tool and r.ok]
        medians[tool] = statistics.median(ok) if ok else None
        failures[tool] = sum(1 for r in sel if r.tool == tool and not r.ok)
    cp = medians["cp"]
    ratios = {t: (m / cp if m is not None and cp else None) for t, m in medians.items()}
    rss = [r.peak_rss for r in sel if r.tool == "uringsync" and r.peak_rss is not None]
    targets = {
        t: tt[(workload, cache)] for t, tt in RATIO_TARGETS.items() if (workload, cache) in tt
    }
    ratios_ok: dict[str, bool] = {}
    for t, target in targets.items():
        ratio = ratios[t]
        if ratio is not None or failures[t]:  # a tool not timed here is not judged
            ratios_ok[t] = ratio is not None and ratio <= target
    us, rs = medians["uringsync"], medians["rsync"]
    rsync_ok = us is not None and rs is not None and rs > us
    # the engine each uringsync tool ran with (auto falls back to threads where io_uring is blocked)
    engines = {
        t: sorted(
            {r.result["engine"] for r in sel if r.tool == t and r.result and "engine" in r.result}
        )
        for t in ("uringsync", THREADS_TOOL)
    }
    return {
        "workload": workload,
        "cache": cache,
        "rounds": max((r.round for r in sel), default=0),
        "median": medians,
        "ratio_to_cp": ratios,
        "failures": failures,
        "uringsync_peak_rss": max(rss) if rss else None,
        "engines": engines,
        "target": targets.get("uringsync"),
        "ratio_ok": ratios_ok.get("uringsync"),
        "targets": targets,
        "ratios_ok": ratios_ok,
        "rsync_slower_ok": rsync_ok,
        "passed": all(ratios_ok.values()) and rsync_ok and not any(failures.values()),
    }


def sync_row(workload: str, cache: str, runs: list[Run], entries: int = 0) -> dict[str, Any]:
    """The medians of one sync workload and cache, their ratios to rsync's (and
    to uringsync cp -a's where it was timed), the target and the verdict;
    ``entries``: the source's, to judge peak RSS (sync-rss-1m)."""
    sel = [r for r in runs if r.workload == workload and r.cache == cache]
    tools = [t for t in SYNC_TOOLS_ORDER if any(r.tool == t for r in sel)]
    medians: dict[str, float | None] = {}
    failures: dict[str, int] = {}
    for tool in tools:
        ok = [r.seconds for r in sel if r.tool == tool and r.ok]
        medians[tool] = statistics.median(ok) if ok else None
        failures[tool] = sum(1 for r in sel if r.tool == tool and not r.ok)

    def ratios(base: str) -> dict[str, float | None]:
        b = medians.get(base)
        return {t: (m / b if m is not None and b else None) for t, m in medians.items()}

    target = SYNC_TARGETS.get((workload, cache))
    ratio = ratio_ok = None
    if target is not None:
        ratio = ratios(target[0]).get(SYNC_TOOL)
        if ratio is not None or failures.get(SYNC_TOOL):
            ratio_ok = ratio is not None and ratio <= target[1]
    peak: dict[str, int | None] = {}
    for tool in tools:
        vals = [r.peak_rss for r in sel if r.tool == tool and r.peak_rss is not None]
        peak[tool] = max(vals) if vals else None
    dst_changes: dict[str, dict[str, int]] = {}
    for tool in tools:
        chs = [
            r.detail["dst_changes"]
            for r in sel
            if r.tool == tool and r.detail and "dst_changes" in r.detail
        ]
        if chs:
            dst_changes[tool] = {
                k: max(c[k] for c in chs) for k in ("replaced", "touched", "dirs_touched")
            }
    rss_ok = None
    if workload == "sync-rss-1m" and entries >= RSS_TARGET_ENTRIES:
        us_peak = peak.get(SYNC_TOOL)
        rss_ok = us_peak is not None and us_peak <= RSS_TARGET
    loads = [r.detail["loadavg"][0] for r in sel if r.detail and "loadavg" in r.detail]
    return {
        "workload": workload,
        "cache": cache,
        "rounds": max((r.round for r in sel), default=0),
        "tools": tools,
        "median": medians,
        "failures": failures,
        "ratio_to_rsync": ratios("rsync") if "rsync" in tools else {},
        "ratio_to_cp": ratios("uringsync") if "uringsync" in tools else {},
        "target": {"baseline": target[0], "ratio": target[1]} if target else None,
        "ratio": ratio,
        "ratio_ok": ratio_ok,
        "peak_rss": peak,
        "peak_rss_source": next(
            (r.peak_rss_source for r in sel if r.tool == SYNC_TOOL and r.peak_rss_source), None
        ),
        "rss_target": RSS_TARGET if workload == "sync-rss-1m" else None,
        "rss_ok": rss_ok,
        "dst_changes": dst_changes,
        "loadavg_1min": [min(loads), max(loads)] if loads else None,
        "passed": ratio_ok is not False and rss_ok is not False and not any(failures.values()),
    }


def worker_rows(runs: list[Run], entries: int) -> list[dict[str, Any]]:
    """The -j sweep on the tree: median seconds and entries/s per cache and worker count."""
    out = []
    keys = sorted({(r.cache, r.jobs) for r in runs if r.jobs is not None}, key=str)
    for cache, jobs in keys:
        ok = [r.seconds for r in runs if r.cache == cache and r.jobs == jobs and r.ok]
        med = statistics.median(ok) if ok else None
        out.append(
            {
                "workload": "tree",
                "cache": cache,
                "jobs": jobs,
                "median": med,
                "entries": entries,
                "files_per_s": entries / med if med else None,
                "failures": sum(
                    1 for r in runs if r.cache == cache and r.jobs == jobs and not r.ok
                ),
            }
        )
    return out


def run_dict(r: Run) -> dict[str, Any]:
    """A run as written to the JSON."""
    d = asdict(r)
    d["ok"] = r.ok
    return d


def progress_line(r: Run) -> str:
    """One line per timed run, as the bench goes."""
    rss = f" rss {fmt_bytes(r.peak_rss)}" if r.peak_rss is not None else ""
    why = r.verify_error or r.stderr[-PROGRESS_STDERR:]
    state = "ok" if r.ok else f"FAILED (exit {r.exit_code}) {why}"
    return f"{r.workload:8} {r.cache:4} r{r.round} {r.tool:17} {r.seconds:8.3f} s{rss}  {state}"


def write_json(data: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


TOOL_LABELS = {
    SYNC_TOOL: "uringsync sync -aHAX",
    "uringsync": "uringsync cp -a",
    THREADS_TOOL: "uringsync cp -a --engine threads",
    "cp": "cp -a",
    "rsync": "rsync -aHAX",
    "tar": "tar | tar",
}


SHORT = {"uringsync": "us", THREADS_TOOL: "threads"}  # in column heads


def _tools_in(rows: list[dict[str, Any]]) -> list[str]:
    """The tools of TOOLS in these rows (JSON from before a tool was added lacks it)."""
    return [t for t in TOOLS if any(t in r["median"] for r in rows)]


def _targets(row: dict[str, Any]) -> dict[str, float]:
    """A row's ratio targets by tool (JSON from before there were several: uringsync's)."""
    if "targets" in row:
        return dict(row["targets"])
    return {"uringsync": row["target"]} if row.get("target") is not None else {}


def _verdicts(row: dict[str, Any]) -> str:
    oks = row.get("ratios_ok", {"uringsync": row.get("ratio_ok")})
    out = []
    for tool, target in _targets(row).items():
        ok = oks.get(tool)
        verdict = "not timed" if ok is None else "ok" if ok else "MISSED"
        out.append(f"{tool} <= {target:.2f} {verdict}")
    return "; ".join(out) or "-"


def _secs(row: dict[str, Any], tool: str) -> str:
    m, f = row["median"].get(tool), row["failures"].get(tool, 0)
    if m is None:
        return f"FAILED ({f})" if f else "-"
    return f"{m:.3f}" + (f" ({f} failed)" if f else "")


def print_table(data: dict[str, Any]) -> None:
    """The results as tables on stdout."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(TABLE_WIDTH, shutil.get_terminal_size().columns))
    if data.get("rows"):
        _print_copy_tables(console, data["rows"])
    if data.get("workers"):
        w = Table(title="uringsync on the tree by worker count (-j)")
        for col in ("cache", "-j", "median s", "entries/s"):
            w.add_column(col, justify="right")
        for row in data["workers"]:
            med, fps = row["median"], row["files_per_s"]
            w.add_row(
                row["cache"],
                str(row["jobs"]),
                f"{med:.3f}" if med else "FAILED",
                f"{fps:,.0f}" if fps else "-",
            )
        console.print(w)
    if data.get("sync_rows"):
        _print_sync_table(console, data["sync_rows"])
    rss = data.get("rss_check")
    if rss:
        peak = rss["peak_rss"]
        verdict = {True: "pass", False: "FAIL", None: "not judged below that size"}
        console.print(
            f"RSS check: {rss['entries']:,} entries in {rss['seconds']:.1f} s, peak RSS "
            f"{fmt_bytes(peak) if peak is not None else 'n/a'} ({rss['peak_rss_source']}); "
            f"target <= {fmt_bytes(RSS_TARGET)} at {RSS_TARGET_ENTRIES:,} entries: "
            f"{verdict[rss['passed']]}" + ("" if rss["ok"] else "; [red]the copy FAILED[/]")
        )
    for note in data.get("notes", []):
        console.print(f"note: {note}")


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def _sync_secs(row: dict[str, Any], tool: str) -> str:
    med, fail = row["median"], row["failures"]
    if tool not in med:
        return "-"
    m, f = med[tool], fail.get(tool, 0)
    if m is None:
        return f"FAILED ({f})"
    return f"{m:.3f}" + (f" ({f} failed)" if f else "")


def _result(row: dict[str, Any]) -> str:
    return "[green]pass[/]" if row["passed"] else "[red]FAIL[/]"


def _print_copy_tables(console: Any, rows: list[dict[str, Any]]) -> None:
    """The copy workloads, in two tables that fit 100 columns: the median
    seconds, then each tool's time over cp -a's with the targets."""
    from rich.table import Table

    tools = _tools_in(rows)
    t = Table(title="copy workloads: median seconds (lower is faster)")
    for col in ("workload", "cache", *(f"{tool} s" for tool in tools), "uringsync peak RSS"):
        t.add_column(
            col, justify="left" if col in ("workload", "cache") else "right", overflow="fold"
        )
    for row in rows:
        rss = row["uringsync_peak_rss"]
        t.add_row(
            row["workload"],
            row["cache"],
            *(_secs(row, tool) for tool in tools),
            fmt_bytes(rss) if rss is not None else "n/a",
        )
    console.print(t)
    others = [tool for tool in tools if tool != "cp"]
    r = Table(title="copy workloads: each tool's median time / cp -a's (lower is better)")
    for col in ("workload", "cache"):
        r.add_column(col, justify="left")
    r.add_column("tool", justify="left", no_wrap=True, min_width=max(map(len, others), default=4))
    r.add_column("tool/cp time ratio", justify="right")
    r.add_column("target (ratio)", justify="right")
    r.add_column("verdict", justify="left")
    r.add_column("row result", justify="left")
    for row in rows:
        ratios, targets = row["ratio_to_cp"], _targets(row)
        oks = row.get("ratios_ok", {"uringsync": row.get("ratio_ok")})
        for k, tool in enumerate(others):
            verdict = "-"
            if tool in targets:
                ok = oks.get(tool)
                verdict = "not timed" if ok is None else "met" if ok else "MISSED"
            elif tool == "rsync":
                verdict = "slower than us: " + ("yes" if row["rsync_slower_ok"] else "NO")
            r.add_row(
                row["workload"] if k == 0 else "",
                row["cache"] if k == 0 else "",
                tool,
                _fmt(ratios.get(tool)),
                f"<= {targets[tool]:.2f}" if tool in targets else "-",
                verdict,
                _result(row) if k == 0 else "",
                end_section=k == len(others) - 1,
            )
    console.print(r)


def _print_sync_table(console: Any, rows: list[dict[str, Any]]) -> None:
    """The sync workloads, in two tables that fit 100 columns."""
    from rich.table import Table

    names = {SYNC_TOOL: "uringsync sync", "uringsync": "uringsync cp", "rsync": "rsync"}
    t = Table(title="sync workloads: median seconds (lower is faster)")
    cols = [
        "workload",
        "cache",
        *(f"{names[x]} s" for x in SYNC_TOOLS_ORDER),
        "sync peak RSS",
        "dst replaced/touched",
    ]
    for col in cols:
        t.add_column(
            col, justify="left" if col in ("workload", "cache") else "right", overflow="fold"
        )
    for row in rows:
        ch = row["dst_changes"].get(SYNC_TOOL)
        peak = row["peak_rss"].get(SYNC_TOOL)
        t.add_row(
            row["workload"],
            row["cache"],
            *(_sync_secs(row, x) for x in SYNC_TOOLS_ORDER),
            fmt_bytes(peak) if peak is not None else "n/a",
            f"{ch['replaced']}/{ch['touched']}" if ch else "-",
        )
    console.print(t)
    r = Table(title="sync workloads: time ratios (lower is better; < 1 is faster)")
    cols = [
        "workload",
        "cache",
        "sync/rsync time ratio",
        "cp/rsync time ratio",
        "sync/cp time ratio",
        "target",
        "result",
    ]
    for col in cols:
        left = col in ("workload", "cache", "target", "result")
        r.add_column(col, justify="left" if left else "right", overflow="fold")
    for row in rows:
        tgt = row["target"]
        verdict = "-"
        if tgt:
            ok = row["ratio_ok"]
            base = "rsync" if tgt["baseline"] == "rsync" else "cp"
            verdict = f"sync/{base} <= {tgt['ratio']:.2f} " + (
                "not timed" if ok is None else "ok" if ok else "MISSED"
            )
        if row.get("rss_target"):
            ok = row["rss_ok"]
            rss = f"RSS <= {fmt_bytes(row['rss_target'])} " + (
                "not judged below 1,000,000" if ok is None else "ok" if ok else "MISSED"
            )
            verdict = rss if verdict == "-" else f"{verdict}; {rss}"
        r.add_row(
            row["workload"],
            row["cache"],
            _fmt(row["ratio_to_rsync"].get(SYNC_TOOL)),
            _fmt(row["ratio_to_rsync"].get("uringsync")),
            _fmt(row["ratio_to_cp"].get(SYNC_TOOL)),
            verdict,
            _result(row),
        )
    console.print(r)


def _plot_sync(ratio_ax: Any, secs_ax: Any, rows: list[dict[str, Any]]) -> None:
    """The sync rows: each tool's ratio to rsync (the targets drawn on that
    scale) and the median seconds."""
    colors = {SYNC_TOOL: "tab:purple", "uringsync": "tab:green", "rsync": "tab:orange"}
    tools = [t for t in SYNC_TOOLS_ORDER if any(t in r["median"] for r in rows)]
    xs = list(range(len(rows)))
    width = 0.8 / max(1, len(tools))
    for i, tool in enumerate(tools):
        pos = [x + (i - (len(tools) - 1) / 2) * width for x in xs]
        ratio = [v if (v := r["ratio_to_rsync"].get(tool)) is not None else math.nan for r in rows]
        secs = [v if (v := r["median"].get(tool)) is not None else math.nan for r in rows]
        bars = ratio_ax.bar(pos, ratio, width, label=TOOL_LABELS[tool], color=colors[tool])
        if tool == SYNC_TOOL:
            ratio_ax.bar_label(bars, fmt="%.2f", fontsize=8)
        secs_ax.bar(pos, secs, width, label=TOOL_LABELS[tool], color=colors[tool])
    labelled = False
    for x, r in zip(xs, rows, strict=True):
        tgt = r["target"]
        if not tgt:
            continue
        scale = 1.0
        if tgt["baseline"] != "rsync":  # on rsync's scale: times the baseline's ratio to rsync
            scale = r["ratio_to_rsync"].get(tgt["baseline"]) or math.nan
        ratio_ax.hlines(
            tgt["ratio"] * scale,
            x - 0.45,
            x + 0.45,
            colors="red",
            label=None if labelled else "target for uringsync sync",
        )
        labelled = True
    labels = [f"{r['workload']}\n{r['cache']}" for r in rows]
    ratio_ax.axhline(1.0, color="black", linewidth=0.8, linestyle=":")
    ratio_ax.set_ylabel("median time / rsync -aHAX's")
    ratio_ax.set_xticks(xs, labels)
    ratio_ax.legend(fontsize=8, ncols=4, loc="upper left")
    vals = [v for r in rows for v in r["ratio_to_rsync"].values() if v is not None]
    ratio_ax.set_ylim(0, max(1.5, *vals) * 1.15)
    secs_ax.set_ylabel("median seconds (sync workloads)")
    secs_ax.set_yscale("log")
    secs_ax.set_xticks(xs, labels)
    secs_ax.legend(fontsize=8, ncols=3, loc="upper left")


def plot(data: dict[str, Any], path: Path) -> None:
    """A PNG of the results: ratios to cp -a with the targets, median seconds,
    and files/s by worker count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = data.get("rows", [])
    workers = data.get("workers", [])
    sync_rows = data.get("sync_rows", [])
    panels = max(1, (2 + bool(workers) if rows else 0) + (2 if sync_rows else 0))
    wide = max(len(rows), len(sync_rows))
    fig, axes = plt.subplots(
        panels, 1, figsize=(max(8.0, 1.7 * wide + 3), 4.0 * panels), squeeze=False
    )
    ax_list = [a for (a,) in axes]
    labels = [f"{r['workload']}\n{r['cache']}" for r in rows]
    xs = list(range(len(rows)))
    tools = _tools_in(rows)
    width = 0.8 / max(1, len(tools))
    colors = {
        "uringsync": "tab:green",
        THREADS_TOOL: "tab:olive",
        "cp": "tab:gray",
        "rsync": "tab:orange",
        "tar": "tab:blue",
    }
    marks = {"uringsync": "-", THREADS_TOOL: "--"}  # the targets' lines
    if rows:
        ratio_ax, secs_ax = ax_list[0], ax_list[1]
        for i, tool in enumerate(tools):
            pos = [x + (i - (len(tools) - 1) / 2) * width for x in xs]
            ratio = [
                r["ratio_to_cp"].get(tool) if r["ratio_to_cp"].get(tool) is not None else math.nan
                for r in rows
            ]
            secs = [
                r["median"].get(tool) if r["median"].get(tool) is not None else math.nan
                for r in rows
            ]
            bars = ratio_ax.bar(pos, ratio, width, label=TOOL_LABELS[tool], color=colors[tool])
            if tool in marks:
                ratio_ax.bar_label(bars, fmt="%.2f", fontsize=8)
            secs_ax.bar(pos, secs, width, label=TOOL_LABELS[tool], color=colors[tool])
            for x, r in zip(pos, rows, strict=True):
                if r["median"].get(tool) is None and r["failures"].get(tool):
                    ratio_ax.text(
                        x,
                        0.02,
                        "failed",
                        rotation=90,
                        color="red",
                        fontsize=8,
                        ha="center",
                        va="bottom",
                    )
        labelled: set[str] = set()
        for x, r in zip(xs, rows, strict=True):
            for tool, target in _targets(r).items():
                ratio_ax.hlines(
                    target,
                    x - 0.45,
                    x + 0.45,
                    colors="red" if tool == "uringsync" else "darkred",
                    linestyles=marks.get(tool, ":"),
                    label=None if tool in labelled else f"target for {TOOL_LABELS[tool]}",
                )
                labelled.add(tool)
        ratio_ax.axhline(1.0, color="black", linewidth=0.8, linestyle=":")
        ratio_ax.set_ylabel("median time / cp -a's (lower is faster)")
        ratio_ax.set_xticks(xs, labels)
        ratio_ax.legend(fontsize=8, ncols=5, loc="upper left")
        ratio_ax.set_ylim(
            0,
            max(2.0, *(v for r in rows for v in r["ratio_to_cp"].values() if v is not None)) * 1.15,
        )
        secs_ax.set_ylabel("median seconds")
        secs_ax.set_yscale("log")
        secs_ax.set_xticks(xs, labels)
        secs_ax.legend(fontsize=8, ncols=4, loc="upper left")
        if workers:
            w_ax = ax_list[2]
            for cache in sorted({w["cache"] for w in workers}):
                pts = [
                    (w["jobs"], w["files_per_s"])
                    for w in workers
                    if w["cache"] == cache and w["files_per_s"]
                ]
                if pts:
                    w_ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=cache)
            w_ax.set_xlabel("uringsync -j (worker processes)")
            w_ax.set_ylabel("entries/s (tree)")
            w_ax.set_xticks(sorted({w["jobs"] for w in workers}))
            w_ax.set_ylim(bottom=0)
            w_ax.legend(fontsize=8)
    if sync_rows:
        _plot_sync(ax_list[-2], ax_list[-1], sync_rows)
    if not rows and not sync_rows:
        ax_list[0].axis("off")
        ax_list[0].text(0.5, 0.5, "no timed workloads in this run", ha="center", va="center")
    m = data.get("machine", {})
    ram = m.get("ram_bytes")
    fs = (m.get("filesystem") or {}).get("fstype", "?")
    fig.suptitle(
        f"uringsync bench {data.get('date', '')[:10]}: {m.get('cpu_model', '?')}, "
        f"{m.get('cores', '?')} cores, {ram / GiB if ram else 0:.0f} GiB RAM, {fs}"
        + (" on a loop image" if m.get("loop") else ""),
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=PLOT_DPI)
    plt.close(fig)


def plot_only(json_path: Path, plot_path: Path | None) -> Path:
    try:
        data = json.loads(json_path.read_text())
    except (OSError, ValueError) as e:
        raise BenchError(f"cannot read the results {json_path}: {e}") from None
    if not isinstance(data, dict) or ("rows" not in data and "sync_rows" not in data):
        raise BenchError(f"{json_path} is not the JSON written by uringsync bench")
    out = plot_path or json_path.with_suffix(".png")
    plot(data, out)
    return out
