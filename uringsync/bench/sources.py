"""The workloads' source trees: made once and kept under ``ROOT/src`` with a
marker of the spec they were made from; read whole before warm runs."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from uringsync.bench.base import BenchError, MiB, fmt_bytes, now, run_quiet
from uringsync.bench.gen import GENERATOR_VERSION, generate
from uringsync.bench.spec import Spec, estimate, spec_dict
from uringsync.bench.verify import Summary, summarize, walk
from uringsync.bench.workspace import Workspace

READ_BUFFER = 4 * MiB  # warm_read's reads


@dataclass
class Source:
    name: str
    path: Path
    spec: Spec
    summary: Summary


def ensure_source(ws: Workspace, name: str, spec: Spec) -> Source:
    """The workload's source tree: the cached one if its marker matches the
    spec, else made anew."""
    path = ws.root / "src" / name
    marker = ws.root / "src" / f"{name}.json"
    want = {"generator": GENERATOR_VERSION, "spec": spec_dict(spec)}
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        have = json.loads(marker.read_text())
        if {k: have[k] for k in want} == want and path.is_dir():
            ws.say(f"{name}: re-using {path} ({have['summary']['entries']} entries)")
            return Source(name, path, spec, Summary(**have["summary"]))
    if os.path.lexists(path) or marker.exists():
        marker.unlink(missing_ok=True)
        p = run_quiet(["rm", "-rf", "--one-file-system", str(path)])
        if p.returncode != 0:
            raise BenchError(f"cannot remove the stale {path}: {p.stderr.decode(errors='replace')}")
        os.sync()
        time.sleep(ws.settle)
    est = estimate(spec)
    ws.say(f"{name}: generating {est.entries} entries, {fmt_bytes(est.bytes)} in {path} ...")
    t = time.perf_counter()
    generate(spec, path)
    os.sync()
    summary = summarize(path)
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps({**want, "summary": asdict(summary), "made": now()}, indent=1))
    tmp.replace(marker)
    ws.say(f"{name}: made in {time.perf_counter() - t:.1f} s")
    return Source(name, path, spec, summary)


def warm_read(root: Path) -> None:
    """Untimed warm-up: stat every entry, read every file and symlink."""
    buf = bytearray(READ_BUFFER)
    for path, st in walk(root):
        if stat.S_ISLNK(st.st_mode):
            os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                while os.readv(fd, [buf]) > 0:
                    pass
            finally:
                os.close(fd)
