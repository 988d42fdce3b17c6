"""edgeseg keeps per-frame buffers mapped: after the tuning, allocating and freeing frame-size arrays costs
no page faults (glibc's defaults fault on every 4 KB page of them). The tuning is process-wide, so only the
CLI entry point and an explicit ``edgeseg.tune_process()`` apply it, never a library constructor."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PROGRAM = textwrap.dedent("""
    import resource, sys
    import numpy as np
    import edgeseg
    if sys.argv[1] == "tuned":
        print(edgeseg.tune_process())
    def frame():  # a few frame-size buffers alive together, then freed: one frame of a video pipeline
        buffers = [np.ones(size, np.uint8) for size in (5 << 20, 1 << 20, 3 << 20, 7 << 20)]
        return len(buffers)
    for _ in range(5):
        frame()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        frame()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50)
""")


def _faults_per_frame(mode: str, **env: str) -> tuple[list[str], float]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "EDGESEG_MALLOC"}
    out = subprocess.run([sys.executable, "-c", PROGRAM, mode], env={**environ, **env}, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    return out[:-1], float(out[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt thresholds are glibc's")
def test_tuned_thresholds_remove_per_frame_page_faults():
    (status,), tuned = _faults_per_frame("tuned")
    if status.startswith("skipped: not glibc"):
        pytest.skip(status)
    assert status == "tuned"
    _, default = _faults_per_frame("default")
    pages = (16 << 20) // 4096
    if default < 0.01 * pages:
        pytest.skip(f"glibc's default thresholds do not fault on this pattern here ({default} per frame)")
    assert tuned < 0.01 * pages, f"{tuned} page faults per frame after tuning ({default} with glibc's defaults)"


def test_user_choice_is_respected():
    (status,), _ = _faults_per_frame("tuned", EDGESEG_MALLOC="default")
    assert status == "skipped: EDGESEG_MALLOC=default"
    (status,), _ = _faults_per_frame("tuned", MALLOC_MMAP_THRESHOLD_="1048576")
    assert status.startswith("skipped: MALLOC_")


STATE = textwrap.dedent("""
    import sys
    from edgeseg import _malloc
    if sys.argv[1] == "segmenter":
        from edgeseg import Segmenter
        Segmenter("edgeseg/assets/hc18_fastseg.onnx", backend="onnxruntime")
    else:
        from edgeseg import cli
        cli.main([])  # no command: prints the help
    print(_malloc._state.get("result", "untouched"))
""")


def _malloc_state(mode: str) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "EDGESEG_MALLOC"}
    out = subprocess.run([sys.executable, "-c", STATE, mode], env=environ, capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1]).stdout.splitlines()
    return out[-1]


def test_a_segmenter_leaves_the_process_allocator_alone():
    pytest.importorskip("onnxruntime")
    assert _malloc_state("segmenter") == "untouched"


def test_the_cli_entry_point_tunes_the_process():
    assert _malloc_state("cli") != "untouched"
