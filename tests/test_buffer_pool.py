"""Buffer-pool accounting under load: many files big enough to take extra
chunks while other slots keep finishing and starting (a slot must always find
its first buffer)."""

from __future__ import annotations

import os
from pathlib import Path

import uringsync
from tests.support.compare import sha256_file


def test_many_multi_chunk_files_share_the_pool(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rnd = os.urandom(1 << 20)
    # mixed sizes: small ones finish fast and restart slots while 1-4 MiB
    # ones hold several chunks each
    for i in range(400):
        size = (1 << 20) * (1 + i % 4) + i if i % 3 else 100 + i
        (src / f"f{i:03d}").write_bytes((rnd * 5)[:size])
    res = uringsync.copy([src], tmp_path / "dst", archive=True, queue_depth=64)
    assert res.exit_code == 0, res.errors
    assert res.files == 400
    for p in src.iterdir():
        q = tmp_path / "dst" / p.name
        assert q.stat().st_size == p.stat().st_size
        assert sha256_file(q) == sha256_file(p)
