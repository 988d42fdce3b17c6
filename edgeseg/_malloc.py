"""Keep per-frame buffers in the heap instead of fresh mmap pages (glibc).

A video pipeline allocates and frees the same frame-size arrays every frame (the model input, probabilities,
labels, the rendered image). With glibc's default thresholds, blocks of a few hundred KB and up are often
served by ``mmap`` and returned by ``munmap`` (or trimmed from the heap top), so every frame pays a page
fault per 4 KB it touches: on a 720x528 selfie frame that was 0.4 ms of preprocessing and 1.3 ms of background
blur, more than the model's own margin over LiteRT. Pinning the thresholds to what glibc's dynamic threshold
converges to for large blocks (mmap above 32 MB, trim above twice that) keeps those pages mapped and reused.

Process-wide, so a library constructor never applies it: the ``edgeseg`` CLI does at start-up, library users
call ``edgeseg.tune_process()``. Skipped when the user already chose: ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` set, another
allocator preloaded (jemalloc, tcmalloc, mimalloc), or ``EDGESEG_MALLOC=default``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger("edgeseg")

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest dynamic value (DEFAULT_MMAP_THRESHOLD_MAX, 64-bit)
TRIM_THRESHOLD_BYTES = 64 << 20  # twice the mmap threshold, glibc's own ratio

_state: dict[str, str] = {}


def keep_frame_buffers_mapped() -> str:
    """Apply the thresholds once per process; returns what happened ("tuned" or why it was skipped)."""
    if not _state:
        _state["result"] = _apply()
        log.debug("malloc thresholds: %s", _state["result"])
    return _state["result"]


def _apply() -> str:
    if os.environ.get("EDGESEG_MALLOC", "").lower() in ("default", "off", "0"):
        return "skipped: EDGESEG_MALLOC=default"
    if any(os.environ.get(name) for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return "skipped: MALLOC_*_THRESHOLD_ set in the environment"
    preload = os.environ.get("LD_PRELOAD", "")
    if any(name in preload for name in ("jemalloc", "tcmalloc", "mimalloc")):
        return f"skipped: another allocator preloaded ({preload})"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "skipped: not glibc"
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError as exc:
        return f"skipped: {exc}"
    if libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) != 1 or libc.mallopt(M_TRIM_THRESHOLD,
                                                                                 TRIM_THRESHOLD_BYTES) != 1:
        return "skipped: mallopt refused the thresholds"
    return "tuned"
