"""Build ``uringsync._uring``: the C engine in csrc/ over liburing.

The cdef is csrc/api.h itself, so the declarations cffi sees and the ones the
C compiler sees cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
CSRC = HERE / "csrc"

ffibuilder = FFI()
ffibuilder.cdef((CSRC / "api.h").read_text())
ffibuilder.set_source(
    "uringsync._uring",
    '#include "engine.h"',
    sources=[str(p.relative_to(HERE)) for p in sorted(CSRC.glob("*.c"))],
    include_dirs=[str(CSRC.relative_to(HERE))],
    libraries=["uring"],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror", "-std=gnu11"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(HERE / "build"), verbose=True)
