"""``uringsync bench``: uringsync cp -a against cp -a, rsync -aHAX and a tar pipe;
uringsync sync -aHAX against rsync -aHAX (the ``sync-*`` workloads).

docs/benchmarks.md explains the method; in short:

- Workloads: ``tree`` (tens of thousands of entries, realistic sizes),
  ``bigfile`` (one big file) and ``mixed`` (small files and 8 big ones), made
  by a seeded generator and kept between runs (a marker file next to each
  source records the parameters it was made with).
- By default everything happens on a fresh ext4 in a loop image under the
  work directory, because deleting many files on the root file system slows
  later file creation for every tool.
- Every timed run writes to a new destination; nothing is deleted between
  timed runs.  Copies are deleted only when the next round would not fit, and
  then the file system is given time to settle before timing goes on.
- Cold runs follow ``sync`` and ``drop_caches``; warm runs follow an untimed
  read of the whole source (once per round) and a ``sync``.
- Each round runs every tool once, in an order rotated per round; the medians
  over the rounds are reported, with the ratios to ``cp -a``.

The package, by role (imports go down this list, never up):

- ``command``: the ``cli`` entry ``uringsync bench`` calls;
- ``session``: options, space planning, machine facts, the rounds (``run``);
- ``syncwork``: the sync workloads (``uringsync sync -aHAX`` against
  ``rsync -aHAX``): their destinations, prepared outside the timing, and runs;
- ``report``: medians, ratios and verdicts, JSON, tables, plot;
- ``tools``: the tools' commands, running and measuring one copy;
- ``sources``: the source trees, made once and kept, and warm reads;
- ``workspace``: the loop-mounted ext4, mounts, dropping caches;
- ``gen``: writing trees and big files; ``spec``: their specs and estimates;
- ``verify``: summaries and copy checks; ``base``: units, errors, helpers.

The generator, the workspace and the runners are also used by the
pytest-benchmark suite in ``benchmarks/``.  Every name is re-exported here,
so ``from uringsync import bench; bench.X`` works for all of them.
"""

from __future__ import annotations

from uringsync.bench.base import PAGE, BenchError, GiB, KiB, MiB, Say, TiB, fmt_bytes, parse_size
from uringsync.bench.command import cli
from uringsync.bench.gen import BLOCK_SIZE, GENERATOR_VERSION, generate, write_stamped
from uringsync.bench.report import (
    EXIT_FAILED,
    EXIT_MISSED,
    RATIO_TARGETS,
    RSS_TARGET,
    RSS_TARGET_ENTRIES,
    SYNC_TARGETS,
    TOOL_LABELS,
    plot,
    plot_only,
    print_table,
    summary_row,
    sync_row,
    write_json,
)
from uringsync.bench.session import (
    SCHEMA_VERSION,
    Options,
    SpacePlan,
    copies_room,
    jobs_list,
    machine_info,
    run,
    space_plan,
    split_workloads,
)
from uringsync.bench.sources import Source, ensure_source, warm_read
from uringsync.bench.spec import (
    MIXED_BIG_FRACTIONS,
    POOL_SIZE,
    WORKLOADS,
    BigFileSpec,
    Estimate,
    Spec,
    TreeSpec,
    _plan_dirs,
    estimate,
    spec_dict,
    workload_specs,
)
from uringsync.bench.syncwork import (
    ALL_SYNC,
    BIG_FIO,
    CP_VERIFY,
    HASH,
    PERTURB_FRACTION,
    SYNC_RSS,
    SYNC_WORKLOADS,
    VERIFY,
    Perturbation,
    SyncPlan,
    changes,
    itemized,
    perturb,
    snapshot,
    sync_tools,
)
from uringsync.bench.tools import (
    CACHES,
    SYNC_TOOL,
    THREADS_TOOL,
    TOOLS,
    Argv,
    Caps,
    Outcome,
    Run,
    describe,
    execute,
    gnu_time,
    prepare,
    probe_uringsync,
    rss_method,
    run_one,
    sync_commands,
    tool_commands,
    uringsync_peak_rss,
    uringsync_result,
)
from uringsync.bench.verify import Summary, check_copy, summarize, walk
from uringsync.bench.workspace import Mount, Workspace, drop_caches, mount_of

__all__ = [
    "ALL_SYNC",
    "BIG_FIO",
    "BLOCK_SIZE",
    "CACHES",
    "CP_VERIFY",
    "EXIT_FAILED",
    "EXIT_MISSED",
    "GENERATOR_VERSION",
    "HASH",
    "MIXED_BIG_FRACTIONS",
    "PAGE",
    "PERTURB_FRACTION",
    "POOL_SIZE",
    "RATIO_TARGETS",
    "RSS_TARGET",
    "RSS_TARGET_ENTRIES",
    "SCHEMA_VERSION",
    "SYNC_RSS",
    "SYNC_TARGETS",
    "SYNC_TOOL",
    "SYNC_WORKLOADS",
    "THREADS_TOOL",
    "TOOLS",
    "TOOL_LABELS",
    "VERIFY",
    "WORKLOADS",
    "Argv",
    "BenchError",
    "BigFileSpec",
    "Caps",
    "Estimate",
    "GiB",
    "KiB",
    "MiB",
    "Mount",
    "Options",
    "Outcome",
    "Perturbation",
    "Run",
    "Say",
    "Source",
    "SpacePlan",
    "Spec",
    "Summary",
    "SyncPlan",
    "TiB",
    "TreeSpec",
    "Workspace",
    "_plan_dirs",
    "changes",
    "check_copy",
    "cli",
    "copies_room",
    "describe",
    "drop_caches",
    "ensure_source",
    "estimate",
    "execute",
    "fmt_bytes",
    "generate",
    "gnu_time",
    "itemized",
    "jobs_list",
    "machine_info",
    "mount_of",
    "parse_size",
    "perturb",
    "plot",
    "plot_only",
    "prepare",
    "print_table",
    "probe_uringsync",
    "rss_method",
    "run",
    "run_one",
    "snapshot",
    "space_plan",
    "spec_dict",
    "split_workloads",
    "summarize",
    "summary_row",
    "sync_commands",
    "sync_row",
    "sync_tools",
    "tool_commands",
    "uringsync_peak_rss",
    "uringsync_result",
    "walk",
    "warm_read",
    "workload_specs",
    "write_json",
    "write_stamped",
]
