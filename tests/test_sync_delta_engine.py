"""The delta job (csrc/delta.c) on both engines: one job per file and a big
file split into ranges over two workers, --inplace and atomic; and what a
failed in-place delta leaves.  The file-system matrix (ext4, xfs, btrfs
loop images, clones, bytes written measured on the device) is
tests/test_delta.py's."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.support.compare import rsync_clean
from tests.support.system import mount_tmpfs, umount
from tests.support.trees import rand_bytes, write_file
from uringsync import syncapi
from uringsync.options import SyncOptions
from uringsync.walker import Tuning

MiB = 1 << 20
BLOCK = 64 << 10
SO = SyncOptions(perms=True, times=True, owner=True, group=True, symlinks=True, delta=True)
SPLIT = Tuning(split_min=MiB, range_size=MiB)


def _changed(old: bytes, rng: random.Random) -> bytes:
    """Single bytes and whole blocks changed, a run inserted (shifting the
    rest), and the size changed."""
    data = bytearray(old)
    for _ in range(5):
        data[rng.randrange(len(data))] ^= 0xFF
    off = rng.randrange(len(data) // BLOCK) * BLOCK
    data[off : off + BLOCK] = rng.randbytes(BLOCK)
    at = rng.randrange(len(data))
    data[at:at] = b"inserted"
    return bytes(data[: rng.randrange(len(data) // 2, len(data))] + rng.randbytes(3000))


def _sync(src: bytes, dst: bytes, so: SyncOptions, jobs: int) -> syncapi.Result:
    return syncapi.run_sync([src + b"/"], dst, so, None, jobs=jobs, _tuning=SPLIT)


@pytest.mark.parametrize("inplace", [False, True], ids=["atomic", "inplace"])
@pytest.mark.parametrize(("jobs", "size"), [(0, 300_000), (2, 5 * MiB)], ids=["job", "ranges"])
def test_delta_makes_the_source(
    tmp: bytes, engine_name: str, inplace: bool, jobs: int, size: int
) -> None:
    rng = random.Random(f"{inplace}{jobs}")
    src, dst = tmp + b"/src", tmp + b"/dst"
    os.mkdir(src)
    names = [b"a", b"b", b"empty", b"grows"]
    old = {n: rand_bytes(size, n) for n in names[:2]} | {b"empty": b"x" * 5000, b"grows": b""}
    for n, data in old.items():
        write_file(src + b"/" + n, data)
    assert _sync(src, dst, SO, jobs).exit_code == 0
    new = {b"a": _changed(old[b"a"], rng), b"b": old[b"b"][:-7], b"empty": b""}
    new[b"grows"] = rng.randbytes(size)
    for n, data in new.items():
        write_file(src + b"/" + n, data)
        os.utime(src + b"/" + n, ns=(0, 10**18))
    so = SyncOptions(**{**SO.__dict__, "inplace": inplace})
    res = _sync(src, dst, so, jobs)
    assert res.exit_code == 0, res.errors
    rsync_clean(src, dst)
    assert res.files == 4
    assert res.literal_bytes + res.matched_bytes == sum(len(d) for d in new.values())
    if inplace:  # ext4/tmpfs: the atomic delta copies whole (no clone of the old file)
        # b: only its last block differs (it was cut); a: a few blocks and the shift
        assert res.matched_bytes >= len(new[b"b"]) - BLOCK
    assert not [n for n in os.listdir(dst) if n.startswith(b".")]  # no temporary left


def test_failed_inplace_delta_is_not_taken_for_complete(tmp: bytes) -> None:
    """The file system fills while an in-place delta grows a file: the error
    names the file, the step and the reason; the file, part old and part
    new, gets mtime 0 so the next quick check copies it again; an atomic
    delta leaves the old version whole."""
    mnt = tmp + b"/mnt"
    os.mkdir(mnt)
    why = mount_tmpfs(mnt, size="4m")
    if why:
        pytest.skip(why)
    try:
        src, dst = tmp + b"/src", mnt + b"/dst"
        os.mkdir(src)
        write_file(src + b"/f", rand_bytes(MiB, "f"))
        assert _sync(src, dst, SO, 0).exit_code == 0
        old = Path(os.fsdecode(dst + b"/f")).read_bytes()
        write_file(src + b"/f", rand_bytes(6 * MiB, "g"))
        os.utime(src + b"/f", ns=(0, 10**18))
        for inplace in (False, True):
            so = SyncOptions(**{**SO.__dict__, "inplace": inplace})
            res = _sync(src, dst, so, 0)
            assert res.exit_code == 23
            (err,) = res.errors
            assert err.path == dst + b"/f"  # the user's name, not the temporary's
            assert err.op == "write" and "No space left on device" in err.message
            if not inplace:
                assert Path(os.fsdecode(dst + b"/f")).read_bytes() == old
                assert os.listdir(dst) == [b"f"]
        assert os.stat(dst + b"/f").st_mtime_ns == 0
    finally:
        umount(mnt)
