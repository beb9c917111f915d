"""Keep a long-running server's memory flat: glibc allocator settings for PyTorch workloads.

Each explanation allocates and frees tensors of a few megabytes from several server threads. With
glibc's defaults, freed blocks of that size stay in per-thread arenas (and the dynamic mmap
threshold moves them off mmap after the first free), so the resident size climbs by hundreds of
megabytes under concurrent load although nothing leaks. Fixing the mmap threshold, capping the
arena and trimming the heap once the server falls quiet (:func:`release_free_memory`, called
by the explain lane a moment after its last request) returns it to the system.

- The mmap threshold is 32 MB: at 256 kB every activation tensor was a fresh mmap whose pages
  the kernel zeroes on first touch, which made an explanation ~60 % slower (291 ms against
  184 ms, EfficientNet-Lite0 at Q = 8, compiled); at 32 MB it runs as fast as with glibc's
  defaults.
- One arena: requests run in Gradio's worker threads, a different one from call to call; with
  one arena instead of two an explanation in such threads measured 0.30 against 0.33 s (with the
  256 MB trim threshold below; 40 photographs, 2 cores).
- Trimming at 256 MB of free memory at the top of the heap, not at 1 MB: at 1 MB each
  explanation gave its activations back to the system and took them again from fresh zeroed
  pages (~40,000 page faults, 160 MB, per explanation of a 500×375 photograph), which made it
  ~40 % slower (0.43 against 0.30 s in server threads on 2 cores, with the β curve's pass
  0.34 against 0.22 s). The heap is trimmed instead when the lane has been quiet for
  :data:`QUIET_TRIM_SECONDS`.

Measured with ``benchmarks/load_test.py`` (20 clients × 3 calls, second round): +31…+110 MB per
round with glibc's defaults, +9…+15 MB with a 1 MB trim threshold and two arenas; the figures
for these settings are in docs/benchmarks.md.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from clustercam import environment

# mallopt parameters (glibc <malloc.h>)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

SETTINGS = {
    "MALLOC_ARENA_MAX": (M_ARENA_MAX, 1),
    "MALLOC_MMAP_THRESHOLD_": (M_MMAP_THRESHOLD, 32 * 1024 * 1024),
    "MALLOC_TRIM_THRESHOLD_": (M_TRIM_THRESHOLD, 256 * 1024 * 1024),
}
#: Seconds the explain lane stays quiet before the heap is trimmed (not between a request's two
#: messages, nor between one visitor's requests in a busy class).
QUIET_TRIM_SECONDS: float = environment.read("CLUSTERCAM_APP_TRIM_AFTER")


def tune_allocator() -> dict[str, int]:
    """Apply :data:`SETTINGS` with ``mallopt`` (Linux/glibc only; a variable already set in the
    environment wins). Returns what was applied; an empty dict elsewhere."""
    if not sys.platform.startswith("linux"):
        return {}
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return {}
    applied = {}
    for variable, (parameter, value) in SETTINGS.items():
        if variable in os.environ:
            continue
        if mallopt(ctypes.c_int(parameter), ctypes.c_int(value)) == 1:
            applied[variable] = value
    return applied


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


_LIBC = _libc()


def release_free_memory() -> bool:
    """Give the pages malloc holds free back to the system (glibc's ``malloc_trim(0)``, which also
    releases free pages in the middle of the heap). Explanations of photographs of every size leave
    free holes of every size behind; without this the resident size creeps up with each new
    visitor's photograph although nothing leaks. Called when the explain lane falls idle (a few
    milliseconds). Returns whether memory was released."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is None:
        return False
    return bool(trim(ctypes.c_size_t(0)))
