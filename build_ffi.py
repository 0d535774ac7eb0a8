"""Build ``uringsync._uring``: the C engine in csrc/ over liburing.

The cdef is csrc/api.h itself, so the declarations cffi sees and the ones the
C compiler sees cannot drift apart.

    python build_ffi.py          # build the extension in place (uringsync/_uring.abi3.so)

pip and ``python -m build`` use ``ffibuilder`` through setup.py instead
(``make wheel`` for the wheel that needs no system liburing).

The extension uses CPython's limited API (cffi's default), so one build serves
Python 3.10 and later (``_uring.abi3.so``, wheels tagged ``cp310-abi3``).
liburing is linked statically where the compiler finds ``liburing.a``
(Debian's liburing-dev ships it), so the extension needs no ``liburing.so``
at run time.  The environment chooses:

``URINGSYNC_LIBURING``  ``auto`` (default): ``liburing.a`` if there is one,
    else ``-luring``; ``static``: ``liburing.a`` or fail (``make wheel``);
    ``shared``: ``-luring``.
``URINGSYNC_DEV``  ``1``: warnings are errors (``-Werror``), as in CI and the
    Makefile; the default when this file is run directly.  Builds from the
    sdist or a wheel for users leave it off: a newer compiler's new warning
    must not stop an install.
``URINGSYNC_SANITIZE``  ``1``: AddressSanitizer and UBSan (``make asan``).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
CSRC = HERE / "csrc"

# header: (library, its development package on Debian/Ubuntu, Fedora, Arch, Alpine)
NEEDED_HEADERS = {
    "liburing.h": ("liburing", ("liburing-dev", "liburing-devel", "liburing", "liburing-dev")),
    "xxhash.h": ("libxxhash", ("libxxhash-dev", "xxhash-devel", "xxhash", "xxhash-dev")),
}
INSTALLERS = (
    "Debian, Ubuntu: apt-get install",
    "Fedora: dnf install",
    "Arch: pacman -S",
    "Alpine: apk add",
)


class BuildDepsMissing(Exception):
    """What the build needs and does not find, as one message for the user."""


def compiler() -> list[str]:
    """The C compiler setuptools will use: $CC, else Python's own."""
    return shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")


def check_build_deps() -> None:
    """Fail before anything is compiled when the compiler or a header is missing.

    One preprocessor run per header (a few milliseconds each), so a user without
    liburing-dev gets one message naming the package instead of a gcc log."""
    cc = compiler()
    missing = []
    with tempfile.TemporaryDirectory() as tmp:
        for header in NEEDED_HEADERS:
            probe = Path(tmp) / "probe.c"
            probe.write_text(f"#include <{header}>\n")
            try:
                r = subprocess.run(
                    [*cc, "-E", str(probe), "-o", os.devnull],
                    capture_output=True,
                    text=True,
                    check=False,
                )
            except OSError as e:
                raise BuildDepsMissing(
                    f"uringsync: cannot build its C extension: no C compiler ({cc[0]}: "
                    f"{e.strerror}). Install gcc, or install the prebuilt wheel "
                    "(README: Install), which needs none."
                ) from None
            if r.returncode != 0:
                missing.append(header)
    if missing:
        libs = " and ".join(NEEDED_HEADERS[h][0] for h in missing)
        how = "\n".join(
            f"  {installer} " + " ".join(NEEDED_HEADERS[h][1][i] for h in missing)
            for i, installer in enumerate(INSTALLERS)
        )
        raise BuildDepsMissing(
            "uringsync: cannot build its C extension: "
            + ", ".join(f"<{h}>" for h in missing)
            + f" not found. Install the development files of {libs}, then build again:\n"
            + how
            + "\nor install the prebuilt wheel (README: Install), which needs neither."
        )


def static_archive(name: str) -> str | None:
    """The path of lib``name``.a where the compiler's linker would find it."""
    try:
        r = subprocess.run(
            [*compiler(), f"-print-file-name=lib{name}.a"],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    path = r.stdout.strip()
    return path if os.path.isabs(path) and os.path.isfile(path) else None


def _liburing() -> tuple[list[str], list[str], list[str]]:
    """(libraries, extra_objects, extra_link_args) for liburing."""
    how = os.environ.get("URINGSYNC_LIBURING", "auto")
    if how not in ("auto", "static", "shared"):
        sys.exit(f"URINGSYNC_LIBURING={how!r}: auto, static or shared")
    archive = static_archive("uring") if how != "shared" else None
    if archive:
        # its symbols stay inside the extension, not exported from it
        return [], [archive], ["-Wl,--exclude-libs,liburing.a"]
    if how == "static":
        sys.exit("URINGSYNC_LIBURING=static: the compiler finds no liburing.a (liburing-dev)")
    return ["uring"], [], []


DEV = os.environ.get("URINGSYNC_DEV", "1" if __name__ == "__main__" else "0") not in ("", "0")
CFLAGS = ["-O2", "-Wall", "-Wextra", "-std=gnu11", *(["-Werror"] if DEV else [])]
LDFLAGS: list[str] = []
if os.environ.get("URINGSYNC_SANITIZE"):
    SAN = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]
    CFLAGS += [*SAN, "-g"]
    LDFLAGS += SAN
URING_LIBS, URING_OBJECTS, URING_LDFLAGS = _liburing()

ffibuilder = FFI()
ffibuilder.cdef((CSRC / "api.h").read_text())
ffibuilder.set_source(
    "uringsync._uring",
    '#include "engine.h"',
    # relative: setuptools wants them so in an sdist; __main__ runs from HERE
    sources=[str(p.relative_to(HERE)) for p in sorted(CSRC.glob("*.c"))],
    include_dirs=[str(CSRC.relative_to(HERE))],
    # libxxhash stays shared: Debian's libxxhash.a lacks the x86 dispatch
    # (XXH3_*_dispatch) that csrc/xxh.h uses; auditwheel puts the .so in the wheel
    libraries=[*URING_LIBS, "xxhash"],
    extra_objects=URING_OBJECTS,
    extra_compile_args=CFLAGS,
    extra_link_args=[*LDFLAGS, *URING_LDFLAGS],
)

if __name__ == "__main__":
    os.chdir(HERE)
    try:
        check_build_deps()
    except BuildDepsMissing as e:
        sys.exit(str(e))
    ffibuilder.compile(tmpdir=".", target="_uring.abi3.so", verbose=False)
