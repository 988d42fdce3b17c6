"""Write HC18's validation file list, stratified by head size (bands < 150, 150-220, > 220 mm), by patient.

The pool of validation patients is every patient the first shipped model (commit ca5b4cb, trained on
patients 000-639) never trained on: its own validation patients plus the late-pregnancy patients
640-722. So both that model and a retrained one are scored on patients neither has seen.

Run:  .venv/bin/python benchmarks/hc18_split.py     -> benchmarks/results/hc18_val_files.txt
Train with it:  edgeseg train ... --val-files benchmarks/results/hc18_val_files.txt
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgeseg.apps.ultrasound import read_hc_csv
from edgeseg.data.folder import group_of
from edgeseg.data.hc18 import GROUP_REGEX, band_of, hc18_split

V1_COMMIT = "ca5b4cb"
V1_SIDECAR = "edgeseg/assets/hc18_fastseg.safetensors.json"


def v1_unseen_patients() -> set[str]:
    """Patients the first shipped model did not train on: its validation patients and 640-722."""
    text = subprocess.run(["git", "show", f"{V1_COMMIT}:{V1_SIDECAR}"], cwd=REPO, check=True,
                          capture_output=True, text=True).stdout
    val_files = json.loads(text)["extra"]["train"]["split"]["val_files"]
    return {group_of(name, GROUP_REGEX) for name in val_files} | {f"{i:03d}" for i in range(640, 723)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "hc18"))
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "hc18_val_files.txt"))
    args = parser.parse_args(argv)
    train, val = hc18_split(args.data, args.val_fraction, args.seed, val_pool=v1_unseen_patients())
    reference = read_hc_csv(Path(args.data) / "pixel_size_and_hc.csv")
    for name, part in (("train", train), ("val", val)):
        bands = Counter(band_of(reference[s.name].hc_mm) for s in part)
        print(f"{name}: {len(part)} images, {len({group_of(s.name, GROUP_REGEX) for s in part})} patients, per band {dict(bands)}")
    header = (f"# HC18 validation files: stratified by head size, grouped by patient; "
              f"benchmarks/hc18_split.py --val-fraction {args.val_fraction} --seed {args.seed}\n")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(header + "".join(s.name + "\n" for s in val), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
