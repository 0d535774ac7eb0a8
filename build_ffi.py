"""Build ``uringsync._uring``: the C engine in csrc/ over liburing.

The cdef is csrc/api.h itself, so the declarations cffi sees and the ones the
C compiler sees cannot drift apart.

    python build_ffi.py          # build the extension in place (uringsync/_uring.abi3.so)

pip and ``python -m build`` use ``ffibuilder`` through setup.py instead.
``URINGSYNC_SANITIZE=1`` adds AddressSanitizer and UBSan (``make asan``).
"""

from __future__ import annotations

import os
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
CSRC = HERE / "csrc"

CFLAGS = ["-O2", "-Wall", "-Wextra", "-Werror", "-std=gnu11"]
LDFLAGS: list[str] = []
if os.environ.get("URINGSYNC_SANITIZE"):
    SAN = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]
    CFLAGS += [*SAN, "-g"]
    LDFLAGS += SAN

ffibuilder = FFI()
ffibuilder.cdef((CSRC / "api.h").read_text())
ffibuilder.set_source(
    "uringsync._uring",
    '#include "engine.h"',
    # relative: setuptools wants them so in an sdist; __main__ runs from HERE
    sources=[str(p.relative_to(HERE)) for p in sorted(CSRC.glob("*.c"))],
    include_dirs=[str(CSRC.relative_to(HERE))],
    libraries=["uring", "xxhash"],
    extra_compile_args=CFLAGS,
    extra_link_args=LDFLAGS,
)

if __name__ == "__main__":
    os.chdir(HERE)
    ffibuilder.compile(tmpdir=".", target="_uring.abi3.so", verbose=False)
