"""Fixtures for the uringsync tests; the plain helpers live in tests/support/."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.system import Dirs
from tests.support.users import world_tmpdir


@pytest.fixture(autouse=True)
def _umask() -> Iterator[None]:
    """cp and uringsync must see the same umask (it matters for -r)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def tmp(tmp_path) -> bytes:  # type: ignore[no-untyped-def]
    """tmp_path as bytes."""
    return os.fsencode(tmp_path)


@pytest.fixture
def world() -> Iterator[bytes]:
    """A 0777 directory under /tmp that user nobody can use."""
    with world_tmpdir() as d:
        yield d


@pytest.fixture(params=["io_uring", "threads"])
def engine_name(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once per engine: every copy it makes, in this process
    (Ring, uringsync.copy) or in a child (the CLI), uses the engine named."""
    from uringsync import engine

    name: str = request.param
    monkeypatch.setenv(engine.ENGINE_ENV, name)
    with engine.Ring(queue_depth=1) as ring:
        assert ring.info().engine == name
    return name


@pytest.fixture
def dirs(tmp: bytes) -> Iterator[Dirs]:
    """src/ and dst/ in tmp, with open fds."""
    d = Dirs(tmp)
    try:
        yield d
    finally:
        d.close()
