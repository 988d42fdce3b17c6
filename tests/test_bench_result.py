"""Benchmark result documents: JSON schema round trip, CSV, comparison, plots."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from edgeseg.bench.compare import compare, comparison_table
from edgeseg.bench.result import SCHEMA_VERSION, BenchResult
from edgeseg.errors import InputError


def _result(seed: int, scale: float = 1.0, blocks: bool = False) -> BenchResult:
    rng = np.random.default_rng(seed)
    infer = (rng.lognormal(np.log(0.010), 0.1, 200) * scale).tolist()
    pre = rng.lognormal(np.log(0.001), 0.1, 200).tolist()
    post = rng.lognormal(np.log(0.002), 0.1, 200).tolist()
    return BenchResult(
        artifact="m.onnx", model="fastseg", backend="onnxruntime", input_size=(256, 256), batch=1,
        samples={"pre": pre, "infer": infer, "post": post,
                 "end_to_end": (np.add(np.add(pre, infer), post)).tolist()},
        config={"warmup": 5, "iterations": 200}, memory={"peak_rss_mb": 300.0, "gpu_peak_mb": None},
        blocks={k: [20] * 10 for k in ("pre", "infer", "post", "end_to_end")} if blocks else {},
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
    assert rows["infer"].test.low > 1.15
    assert rows["pre"].verdict == "no significant difference"


def test_plots_are_written(tmp_path):
    from edgeseg.bench.plots import plot_distribution, plot_stages, plot_sweep

    a, b = _result(7), _result(8, scale=2.0)
    b.input_size = (512, 512)
    for path in (plot_distribution(a, tmp_path / "d.png"), plot_stages([a, b], tmp_path / "s.png"),
                 plot_sweep([a, b], tmp_path / "w.png")):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_version_1_files_load_and_the_comparison_says_they_have_no_blocks(tmp_path):
    data = _result(9).to_dict()
    data["schema_version"] = 1
    del data["blocks"]
    old = BenchResult.from_dict(data)
    assert old.blocks == {} and old.block_sizes("infer") is None
    new = _result(10, blocks=True)
    rows = compare(old, new)
    text = comparison_table(old, new, rows)
    assert "A has no recorded blocks" in text and "B has no recorded blocks" not in text
    assert "separate runs" in text and "6.0 %" in text
    assert all(r.test.blocks_a == 10 and not r.test.paired for r in rows)


def test_blocks_round_trip_and_an_interleaved_pair_is_compared_pairwise(tmp_path):
    a, b = _result(11, blocks=True), _result(12, scale=1.08, blocks=True)
    for role, r in (("A", a), ("B", b)):
        r.config["interleave"] = {"id": "abc", "role": role, "order": "AB" * 10}
    a2 = BenchResult.load(a.save_json(tmp_path / "a.json"))
    b2 = BenchResult.load(b.save_json(tmp_path / "b.json"))
    assert a2.blocks == a.blocks
    rows = {r.stage: r for r in compare(a2, b2)}
    assert rows["infer"].test.paired and rows["infer"].verdict == "B worse"
    assert "interleaved run: 10 A/B block pairs" in comparison_table(a2, b2, list(rows.values()))
    assert not compare(a2, _result(13, blocks=True))[0].test.paired  # not the same run: Welch


def test_min_effect_turns_a_small_real_difference_into_within_noise():
    a, b = _result(14, blocks=True), _result(14, scale=1.03, blocks=True)  # same noise, 3 % slower infer
    rows = {r.stage: r for r in compare(a, b, min_effect=0.05)}
    assert rows["infer"].test.significant and rows["infer"].verdict == "within noise"
    assert {r.stage: r for r in compare(a, b, min_effect=0.01)}["infer"].verdict == "B worse"
    with pytest.raises(InputError, match="min-effect"):
        compare(a, b, min_effect=1.5)


def _saved(folder, name, created, scale, seed, commit):
    r = _result(seed, scale=scale, blocks=True)
    r.created, r.environment = created, {"edgeseg_revision": commit}
    return r.save_json(folder / name / "result.json")


def test_history_flags_only_changes_beyond_the_noise_floor(tmp_path):
    from edgeseg.bench.history import history_table, load_history, plot_history

    _saved(tmp_path, "1", "2026-12-01T10:00:00+00:00", 1.00, 20, "aaa1111")
    _saved(tmp_path, "3", "2026-12-01T12:00:00+00:00", 1.25, 22, "ccc3333")  # out of order on disk
    _saved(tmp_path, "2", "2026-12-01T11:00:00+00:00", 1.02, 21, "bbb2222")
    (tmp_path / "notes.json").write_text("[1, 2]")  # not a result: ignored
    points = load_history(tmp_path, "infer")
    assert [p.revision for p in points] == ["aaa1111", "bbb2222", "ccc3333"]
    assert [p.flag for p in points][0] == "" and points[1].flag != "REGRESSION"
    assert points[2].flag == "REGRESSION" and points[2].versus_previous.ratio == pytest.approx(1.25 / 1.02, rel=0.05)
    assert "REGRESSION" in history_table(points, "infer")
    png = plot_history(points, "infer", tmp_path / "h.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError, match="no result"):
        load_history(tmp_path, "crf")
