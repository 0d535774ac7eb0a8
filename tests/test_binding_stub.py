"""uringsync/_uring.pyi against the compiled module: what mypy.stubtest
would check, if it could introspect cffi.

The stub is parsed (ast): a class named UsFooBar describes ``struct
us_foo_bar`` and its annotated attributes must be exactly the struct's
fields; the annotated attributes of ``_Lib`` must be the module's integer
constants and its methods the module's functions, each with C's argument
count.  Both ways: a field, constant or function added to or removed from
csrc/api.h without the stub fails here, and so does a stub entry C lacks.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from uringsync import engine, steps
from uringsync.engine import ffi, lib

STUB = Path(engine.__file__).with_name("_uring.pyi")


def _classes() -> dict[str, ast.ClassDef]:
    tree = ast.parse(STUB.read_text())
    return {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}


def _attrs(cls: ast.ClassDef) -> list[str]:
    return [
        n.target.id
        for n in cls.body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
    ]


def _methods(cls: ast.ClassDef) -> dict[str, int]:
    """Name -> number of arguments, ``self`` not counted."""
    out = {}
    for n in cls.body:
        if isinstance(n, ast.FunctionDef):
            a = n.args
            out[n.name] = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) - 1
    return out


def _struct_name(cls_name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls_name).lower()


STRUCT_CLASSES = {c: _struct_name(c) for c in _classes() if re.fullmatch(r"Us[A-Z]\w*", c)}
C_STRUCTS = set(ffi.list_types()[1])


def _c_fields(struct: str) -> list[str] | None:
    """The fields of ``struct <struct>``; None when it is opaque."""
    try:
        ffi.sizeof(f"struct {struct}")
    except ffi.error:
        return None  # (asking an opaque struct for its fields aborts cffi)
    fields = ffi.typeof(f"struct {struct}").fields
    assert fields is not None
    return [name for name, _ in fields]


def test_every_c_struct_has_a_stub_class() -> None:
    assert set(STRUCT_CLASSES.values()) == C_STRUCTS


@pytest.mark.parametrize("cls_name", sorted(STRUCT_CLASSES))
def test_struct_fields_match(cls_name: str) -> None:
    struct = STRUCT_CLASSES[cls_name]
    assert struct in C_STRUCTS, f"{cls_name}: no struct {struct} in csrc/api.h"
    stub = _attrs(_classes()[cls_name])
    c = _c_fields(struct)
    if c is None:
        assert stub == [], f"struct {struct} is opaque: the stub may not list fields"
    else:
        assert stub == c, f"struct {struct}: stub {stub} != C {c}"


def _lib_c() -> tuple[set[str], dict[str, int]]:
    consts, funcs = set(), {}
    for name in dir(lib):
        value = getattr(lib, name)
        if isinstance(value, int):
            consts.add(name)
        else:
            funcs[name] = len(ffi.typeof(value).args)
    return consts, funcs


def test_lib_constants_match() -> None:
    consts, _ = _lib_c()
    stub = set(_attrs(_classes()["_Lib"]))
    assert stub - consts == set(), "in the stub, not in C"
    assert consts - stub == set(), "in C, not in the stub"


def test_lib_functions_match() -> None:
    _, funcs = _lib_c()
    stub = _methods(_classes()["_Lib"])
    assert set(stub) - set(funcs) == set(), "in the stub, not in C"
    assert set(funcs) - set(stub) == set(), "in C, not in the stub"
    wrong = {n: (stub[n], funcs[n]) for n in stub if stub[n] != funcs[n]}
    assert wrong == {}, "argument counts (stub, C) differ"


def test_stub_parser_sees_the_stub() -> None:
    """The checks above are not vacuous."""
    assert {"UsStat", "UsJob", "UsBatch", "UsScan", "UsEntry", "UsRingInfo"} <= set(STRUCT_CLASSES)
    assert _methods(_classes()["_Lib"])["us_run"] == 3
    assert "US_OP_STOPPED" in _attrs(_classes()["_Lib"])


def test_every_c_step_is_in_the_step_table() -> None:
    """uringsync/steps.py has one row per US_OP_* code, and no row names a
    code C lacks."""
    c_ops = {n for n in dir(lib) if n.startswith("US_OP_")}
    table = {s.c_name for s in steps.STEPS if s.c_name}
    assert table == c_ops
    assert len(engine.STEPS) == len(c_ops)  # distinct codes
