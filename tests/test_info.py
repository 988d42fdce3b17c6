"""`edgeseg info` answers fast: heavy pure-Python libraries are versioned from package metadata, not imported,
and report the same versions as importing them (--deep) does (issue 16 item 13)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edgeseg.info import METADATA_ONLY, collect

REPO = Path(__file__).resolve().parents[1]


def test_info_imports_no_heavy_library_and_matches_deep():
    code = ("import json, sys, time; from edgeseg.info import collect; t = time.perf_counter(); r = collect(); "
            "print(json.dumps({'s': time.perf_counter() - t, 'imported': [m for m in %r if m in sys.modules], "
            "'libraries': r['libraries']}))" % (METADATA_ONLY,))
    out = json.loads(subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                                    check=True).stdout)
    assert out["imported"] == []
    deep = collect(deep=True)
    assert deep["not_imported"] == []
    for module in METADATA_ONLY:
        fast, full = out["libraries"][module], deep["libraries"][module]
        assert fast["ok"] == full["ok"], module
        if full["ok"]:
            assert fast["detail"] == full["detail"], module
