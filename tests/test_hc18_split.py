"""HC18 validation split stratified by head size and grouped by patient; training on an explicit split, from weights."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from edgeseg.data import pair_folder
from edgeseg.data.folder import Sample
from edgeseg.data.hc18 import BANDS, band_of, hc18_split, split_stratified
from edgeseg.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def _samples(names):
    return [Sample(Path(n), (Path(n),)) for n in names]


def test_band_edges():
    assert [band_of(v) for v in (44.0, 149.99, 150.0, 219.9, 220.0, 300.0)] == \
        ["<150", "<150", "150-220", "150-220", ">220", ">220"]
    assert [b[0] for b in BANDS] == ["<150", "150-220", ">220"]
    with pytest.raises(InputError, match="hc_mm"):
        band_of(-1.0)


def test_every_stratum_gives_its_fraction_and_patients_stay_whole():
    # 20 small-head patients, 10 mid, 5 large; each has two scans, the second slightly larger.
    values = {}
    for i in range(35):
        hc = 100.0 if i < 20 else 180.0 if i < 30 else 250.0
        values[f"{i:03d}_HC.png"], values[f"{i:03d}_2HC.png"] = hc, hc + 1
    samples = _samples(sorted(values))
    train, val = split_stratified(samples, values, [150, 220], r"^(\d{3})_", val_fraction=0.2, seed=0)
    patients = Counter(values[s.name] // 1 for s in val if s.name.endswith("_HC.png"))
    assert patients == {100.0: 4, 180.0: 2, 250.0: 1}
    assert not {s.name[:3] for s in train} & {s.name[:3] for s in val}
    assert len(train) + len(val) == len(samples)
    again = split_stratified(samples, values, [150, 220], r"^(\d{3})_", val_fraction=0.2, seed=0)[1]
    other = split_stratified(samples, values, [150, 220], r"^(\d{3})_", val_fraction=0.2, seed=1)[1]
    assert [s.name for s in again] == [s.name for s in val] and [s.name for s in other] != [s.name for s in val]
    pool = {f"{i:03d}" for i in (0, 1, 2, 3, 20, 21, 34)}
    _, pooled = split_stratified(samples, values, [150, 220], r"^(\d{3})_", 0.2, 0, val_pool=pool)
    assert {s.name[:3] for s in pooled} <= pool and len(pooled) == 14
    with pytest.raises(InputError, match="val_pool"):
        split_stratified(samples, values, [150, 220], r"^(\d{3})_", 0.2, 0, val_pool={"000"})
    with pytest.raises(InputError, match="values"):
        split_stratified(samples + _samples(["999_HC.png"]), values, [150, 220], r"^(\d{3})_")


def test_real_hc18_split_covers_every_band_without_patient_leaks(hc18_dir):
    train, val = hc18_split(hc18_dir, val_fraction=0.2, seed=0)
    assert len(train) + len(val) == len(pair_folder(hc18_dir / "images", hc18_dir / "masks"))
    assert not {s.name[:3] for s in train} & {s.name[:3] for s in val}
    from edgeseg.apps.ultrasound import read_hc_csv

    ref = read_hc_csv(hc18_dir / "pixel_size_and_hc.csv")
    for label, *_ in BANDS:
        n_val = sum(band_of(ref[s.name].hc_mm) == label for s in val)
        n_all = n_val + sum(band_of(ref[s.name].hc_mm) == label for s in train)
        assert 0.12 < n_val / n_all < 0.3, label  # each band about 20 %, whole patients only


def test_committed_validation_list_is_patient_disjoint_from_the_shipped_models_training(hc18_dir):
    names = [line for line in (REPO / "benchmarks" / "results" / "hc18_val_files.txt").read_text().splitlines()
             if line and not line.startswith("#")]
    images = {p.name for p in (hc18_dir / "images").glob("*.png")}
    assert set(names) <= images
    patients = {n[:3] for n in names}
    assert {n for n in images if n[:3] in patients} == set(names)  # every scan of a validation patient
    sidecar = json.loads((REPO / "edgeseg" / "assets" / "hc18_fastseg.safetensors.json").read_text())
    config = sidecar["extra"]["train"]["config"]
    trained = {n[:3] for n in images} - {n[:3] for n in sidecar["extra"]["train"]["split"]["val_files"]}
    if config.get("val_files") is None:  # the first shipped model: 000-639 with its own random split
        trained -= {f"{i:03d}" for i in range(640, 723)}
    assert not patients & trained


def _toy(root: Path) -> tuple[Path, Path]:
    """Gray 48x64 images with a bright ellipse; patients p0..p3, two scans each."""
    cv2 = pytest.importorskip("cv2")
    import numpy as np

    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for i in range(8):
        mask = np.zeros((48, 64), np.uint8)
        cv2.ellipse(mask, (int(rng.integers(20, 44)), 24), (14, 9), 0.0, 0, 360, 255, -1)
        image = np.clip(rng.normal(40, 15, mask.shape) + (mask > 0) * 120, 0, 255).astype(np.uint8)
        cv2.imwrite(str(root / "images" / f"p{i // 2}_{i % 2}.png"), image)
        cv2.imwrite(str(root / "masks" / f"p{i // 2}_{i % 2}.png"), mask)
    return root / "images", root / "masks"


def test_training_on_an_explicit_validation_list_from_given_weights(tmp_path):
    torch = pytest.importorskip("torch")
    from edgeseg.models import load_checkpoint
    from edgeseg.train import TrainConfig, train

    images, masks = _toy(tmp_path)
    base = dict(images=str(images), masks=str(masks), model="fastseg", classes=["background", "blob"], size=(32, 64),
                model_kwargs={"width": 0.5, "head_channels": 16}, group_regex=r"^(p\d)_", epochs=1, batch_size=2,
                threads=1, progress=False, aug_scale=(0.6, 1.4))
    first = train(TrainConfig(**base, out=str(tmp_path / "a" / "m.safetensors"), val_files=["p3_0.png", "p3_1.png"]))
    _, art = load_checkpoint(first.best_path)
    assert art.extra["train"]["split"]["val_files"] == ["p3_0.png", "p3_1.png"]
    assert art.extra["train"]["config"]["aug_scale"] == [0.6, 1.4]
    tuned = train(TrainConfig(**{**base, "lr": 1e-9}, out=str(tmp_path / "b" / "m.safetensors"),
                              val_files=["p3_0.png", "p3_1.png"], init=str(first.best_path), mean=[0.9], std=[0.9]))
    model_a, _ = load_checkpoint(first.best_path)
    model_b, art_b = load_checkpoint(tuned.last_path)
    assert art_b.preprocess.mean == art.preprocess.mean  # the weights' normalisation, not a new one
    wa, wb = model_a.state_dict(), model_b.state_dict()
    assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=1e-4) for k in wa if "running" not in k and "num_batches" not in k)
    with pytest.raises(InputError, match="both sides"):
        train(TrainConfig(**base, out=str(tmp_path / "c" / "m.safetensors"), val_files=["p3_0.png"]))
    with pytest.raises(InputError, match="not among"):
        train(TrainConfig(**base, out=str(tmp_path / "c" / "m.safetensors"), val_files=["nope.png"]))
    with pytest.raises(InputError, match="init"):
        train(TrainConfig(**base, out=str(tmp_path / "c" / "m.safetensors"), init=str(first.best_path),
                          resume=str(first.last_path)))


def test_a_file_list_skips_blank_and_comment_lines_and_train_reads_it_the_same_way(tmp_path, capsys):
    from edgeseg.cli import main
    from edgeseg.data.folder import read_file_list

    listed = tmp_path / "val.txt"
    listed.write_text("# validation files\n\n  p3_0.png \np3_1.png\n", encoding="utf-8")
    assert read_file_list(listed) == ["p3_0.png", "p3_1.png"]
    images, masks = _toy(tmp_path)
    listed.write_text("# one name the folder lacks\nnope.png\n", encoding="utf-8")
    base = ["train", "--images", str(images), "--masks", str(masks), "--size", "32", "64", "--quiet",
            "--group-regex", r"^(p\d)_", "--out", str(tmp_path / "m.safetensors")]
    assert main([*base, "--val-files", str(listed)]) == 2
    err = capsys.readouterr().err
    assert "nope.png" in err and "folder lacks" not in err  # the comment line was not taken for a name
    assert main([*base, "--val-files", str(tmp_path / "missing.txt")]) == 2
    assert "--val-files: cannot read" in capsys.readouterr().err
