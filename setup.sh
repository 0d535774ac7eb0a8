#!/usr/bin/env bash
# One set-up path for a fresh Debian 12 machine (root or sudo):
#   system packages (liburing-dev, libxxhash-dev, gcc and make to build;
#   clang-format for the C lint; xxhash (xxh128sum), rsync, acl, attr,
#   xfsprogs and btrfs-progs for the tests;
#   python3-seccomp, libseccomp's binding for /usr/bin/python3, with which
#   tests/support/sandbox.py runs commands under a seccomp filter; fuse3
#   and python3-pyfuse3, for the system python, for the fault disk of
#   tests/test_disk_faults.py; strace, which shows --fsync's order of flushes;
#   fio, the device's own limit in `uringsync bench --workloads bigfile-fio`),
#   the package itself, editable, with its test extra, and the cffi C extension
#   (built with -Werror: URINGSYNC_DEV=1, as every development and CI build).
# Then:  bash setup.sh demo   -> copy a built-in sample tree and check it
#        bash setup.sh test   -> run the whole test suite, then the engine and
#                                pool tests under ASan/UBSan (make check)
set -euo pipefail
cd "$(dirname "$0")"

need=()
for pkg in liburing-dev libxxhash-dev xxhash rsync acl attr gcc make clang-format xfsprogs btrfs-progs python3-seccomp fuse3 python3-pyfuse3 strace fio; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing ${need[*]} with apt-get"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
# C warnings are errors in development and CI builds (build_ffi.py), not for users
export URINGSYNC_DEV=1
echo "setup: pip install -e .[test] (builds the C extension)"
"$PY" -m pip install -qq --root-user-action=ignore --disable-pip-version-check -e ".[test]"
if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
"$PY" -c "import uringsync.engine" # fails loudly if the extension did not build

case "${1:-}" in
    demo) exec "$PY" -m uringsync demo ;;
    test) exec make check PYTHON="$PY" ;;
    "") ;;
    *) echo "usage: bash setup.sh [demo|test]" >&2; exit 1 ;;
esac
