"""The C extension (build_ffi.py) and, after it, the man page and shell
completions generated from the CLI's own help (build_share.py).

The metadata is in pyproject.toml.  ``make wheel`` builds the wheel users
install (liburing inside, cp310-abi3, repaired to a manylinux tag).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

from setuptools import Command, setup
from setuptools.command.build import build
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import build_ffi  # noqa: E402  (beside this file, in the sdist too)

# where build_share.py's files are installed, relative to the prefix
# (the venv, ~/.local or /usr/local), beside their copies in uringsync/share/
SHARE_FILES = {
    "share/man/man1": "man/man1/uringsync.1",
    "share/bash-completion/completions": "bash-completion/completions/uringsync",
    "share/zsh/site-functions": "zsh/site-functions/_uringsync",
}


class build_ext_checked(build_ext):
    """Stops before compiling, with one message, when liburing's or
    libxxhash's headers (or the compiler) are missing."""

    def run(self) -> None:
        try:
            build_ffi.check_build_deps()
        except build_ffi.BuildDepsMissing as e:
            raise SystemExit(f"\n{e}\n") from None
        super().run()


class build_share(Command):
    """uringsync.1 and the bash and zsh completions, from the built package's
    own command tree, into uringsync/share/ and the prefix's share/."""

    description = "generate the man page and shell completions from the CLI's help"
    user_options: ClassVar[list[tuple[str, str | None, str]]] = []

    def initialize_options(self) -> None:
        self.build_lib: str | None = None
        self.editable_mode = False

    def finalize_options(self) -> None:
        self.set_undefined_options("build_py", ("build_lib", "build_lib"))

    def run(self) -> None:
        if self.editable_mode:  # pip install -e: `make share` makes them in place
            return
        assert self.build_lib is not None
        out = Path(self.build_lib) / "uringsync" / "share"
        # in a child: the CLI imports the extension just built in build_lib
        subprocess.run(
            [sys.executable, str(HERE / "build_share.py"), "--lib", self.build_lib, str(out)],
            check=True,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        data_files = self.distribution.data_files
        assert isinstance(data_files, list)
        for prefix_dir, name in SHARE_FILES.items():
            data_files.append((prefix_dir, [str(out / name)]))

    def get_outputs(self) -> list[str]:
        return []


build.sub_commands.append(("build_share", None))

setup(
    cffi_modules=["build_ffi.py:ffibuilder"],
    cmdclass={"build_ext": build_ext_checked, "build_share": build_share},
    data_files=[],  # build_share adds its files
    # one wheel for CPython 3.10 and later: the extension uses the limited API
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
