# Stub for the cffi extension built by build_ffi.py from csrc/api.h.
# cffi objects are dynamically typed; the typed surface is uringsync.engine.
from typing import Any

ffi: Any
lib: Any
