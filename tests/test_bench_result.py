"""Benchmark result documents: JSON schema round trip, CSV, comparison, plots."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from edgeseg.bench.compare import compare, comparison_table
from edgeseg.bench.result import SCHEMA_VERSION, BenchResult
from edgeseg.errors import InputError


def _result(seed: int, scale: float = 1.0) -> BenchResult:
    rng = np.random.default_rng(seed)
    infer = (rng.lognormal(np.log(0.010), 0.1, 200) * scale).tolist()
    pre = rng.lognormal(np.log(0.001), 0.1, 200).tolist()
    post = rng.lognormal(np.log(0.002), 0.1, 200).tolist()
    return BenchResult(
        artifact="m.onnx", model="fastseg", backend="onnxruntime", input_size=(256, 256), batch=1,
        samples={"pre": pre, "infer": infer, "post": post,
                 "end_to_end": (np.add(np.add(pre, infer), post)).tolist()},
        config={"warmup": 5, "iterations": 200}, memory={"peak_rss_mb": 300.0, "gpu_peak_mb": None},
    )


def test_json_round_trip_keeps_everything(tmp_path):
    res = _result(0)
    path = res.save_json(tmp_path / "r.json")
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["stages"]["infer"]["median"] == pytest.approx(np.median(res.samples["infer"]))
    back = BenchResult.load(path)
    assert back.to_dict() == res.to_dict()


def test_csv_has_one_row_per_stage_in_ms(tmp_path):
    res = _result(1)
    rows = list(csv.DictReader(res.save_csv(tmp_path / "r.csv").open()))
    assert [r["stage"] for r in rows] == ["pre", "infer", "post", "end_to_end"]
    infer = next(r for r in rows if r["stage"] == "infer")
    assert float(infer["median_ms"]) == pytest.approx(np.median(res.samples["infer"]) * 1e3, rel=1e-4)


@pytest.mark.parametrize("change,message", [
    ({"schema": "other"}, "schema"), ({"schema_version": 99}, "schema_version"), ({"samples": None}, "missing"),
])
def test_bad_documents_are_rejected(tmp_path, change, message):
    data = _result(2).to_dict()
    data.update(change)
    if change.get("samples", 1) is None:
        del data["samples"]
    with pytest.raises(InputError, match=message):
        BenchResult.from_dict(data)


def test_compare_same_configuration_is_not_significant():
    rows = compare(_result(3), _result(4))
    assert {r.stage for r in rows} == {"pre", "infer", "post", "end_to_end"}
    assert all(r.verdict == "no significant difference" for r in rows), comparison_table(_result(3), _result(4), rows)


def test_compare_detects_a_slower_model():
    rows = {r.stage: r for r in compare(_result(5), _result(6, scale=1.3))}
    assert rows["infer"].verdict == "B worse"
    assert rows["infer"].interval.low > 1.15
    assert rows["pre"].verdict == "no significant difference"


def test_plots_are_written(tmp_path):
    from edgeseg.bench.plots import plot_distribution, plot_stages, plot_sweep

    a, b = _result(7), _result(8, scale=2.0)
    b.input_size = (512, 512)
    for path in (plot_distribution(a, tmp_path / "d.png"), plot_stages([a, b], tmp_path / "s.png"),
                 plot_sweep([a, b], tmp_path / "w.png")):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
