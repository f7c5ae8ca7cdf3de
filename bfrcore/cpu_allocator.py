"""Keep large freed memory blocks for reuse in CPU runs (glibc), instead of handing them back to the OS.

glibc serves every block above its mmap threshold (32 MiB at most) with a fresh ``mmap`` and unmaps it on free.
A full-resolution activation of a face model is such a block (64 channels x 512 x 512 float32 = 64 MiB), so each
layer's output is page-faulted and zeroed by the kernel again: ~27 ms per tensor on the 2-core machine, ~0.3 s of
a 3.2 s DMDNet forward. :func:`reuse_freed_memory` sets ``M_MMAP_MAX=0`` (large blocks come from the heap) and
``M_TRIM_THRESHOLD=2 GiB`` (freed heap memory stays in the process), which is what LD_PRELOADing jemalloc or
tcmalloc does for PyTorch CPU inference. Results are bit-identical; the price is that the process keeps its peak
heap until it exits (DMDNet paper model: peak RSS 1.77 GB instead of 1.67 GB).

``bench restore``, ``bench evaluate`` and ``bench train`` call it for CPU runs and record the returned description.
``CELEBREF_CPU_ALLOCATOR=default`` turns it off.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

ENV = "CELEBREF_CPU_ALLOCATOR"
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 2**31 - 1  # mallopt takes an int: 2 GiB

_state: str | None = None


def reuse_freed_memory() -> str:
    """Apply the glibc settings once per process; returns what the process runs with (for manifests):
    ``"glibc heap reuse (M_MMAP_MAX=0, M_TRIM_THRESHOLD=2GiB)"``, ``"partial (...)"`` or ``"default (<why>)"``."""
    global _state
    if _state is not None:
        return _state
    if os.environ.get(ENV, "").strip().lower() == "default":
        _state = f"default ({ENV}=default)"
    elif platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        _state = "default (not glibc)"
    else:
        try:
            libc = ctypes.CDLL("libc.so.6")
            refused = [name for name, param, value in (("M_MMAP_MAX", M_MMAP_MAX, 0),
                                                       ("M_TRIM_THRESHOLD", M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
                       if libc.mallopt(param, value) != 1]
        except (OSError, AttributeError) as e:
            _state = f"default ({type(e).__name__}: {e})"
        else:  # what was set stays set: the record says exactly which setting did not take
            _state = ("glibc heap reuse (M_MMAP_MAX=0, M_TRIM_THRESHOLD=2GiB)" if not refused
                      else f"partial (mallopt refused {', '.join(refused)})")
    log.debug("CPU allocator: %s", _state)
    return _state
