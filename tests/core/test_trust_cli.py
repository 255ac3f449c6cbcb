"""`tsg trust train`, `tsg trust report` and `tsg bench trust`, called as functions returning exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from trust_data import synthetic_edges

from trusted_scene_graph.cli import EXIT_OK, EXIT_USAGE, main
from trusted_scene_graph.trust.dataset import EdgeTable
from trusted_scene_graph.trust.model import METADATA_FILE, MODEL_FILE, TrustModel


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """Two edge tables of other scenes (training, held out), as tsg eval writes them."""
    root = tmp_path_factory.mktemp("edges")
    paths = []
    for name, seed in (("train", 10), ("held_out", 11)):
        features, correct, group = synthetic_edges(60, 80, seed)
        paths.append(EdgeTable(features, correct, group).save(root / f"{name}.npz"))
    return paths


def test_train_writes_a_model_directory_that_loads(tables, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["trust", "train", "--data", str(tables[0]), "--out", str(out), "--target-precision", "0.9",
                 "--delta", "0.1"]) == EXIT_OK
    assert sorted(p.name for p in out.iterdir()) == [MODEL_FILE, METADATA_FILE]
    model = TrustModel.load(out)
    assert model.threshold_.target_precision == 0.9 and model.threshold_.delta == 0.1
    assert model.metadata_["training"]["data"] == [str(tables[0])]
    printed = capsys.readouterr().out
    assert "held out" in printed and "threshold" in printed


def test_report_compares_the_model_with_both_baselines_on_held_out_edges(tables, tmp_path, capsys):
    model_dir = tmp_path / "model"
    assert main(["trust", "train", "--data", str(tables[0]), "--out", str(model_dir)]) == EXIT_OK
    out = tmp_path / "report"
    assert main(["trust", "report", str(model_dir), "--data", str(tables[1]), "--out", str(out)]) == EXIT_OK
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["methods"]) == {"fused", "geometry_alignment", "vlm_confidence"}
    fused = metrics["methods"]["fused"]["auroc"]
    assert fused > metrics["methods"]["geometry_alignment"]["auroc"]
    assert fused > metrics["methods"]["vlm_confidence"]["auroc"]
    assert metrics["data_is_training_data"] is False
    for figure in ("roc.png", "risk_coverage.png", "reliability.png", "feature_importance.png",
                   "coverage_at_precision.png"):
        assert (out / figure).stat().st_size > 0, figure
    assert "fused AUROC" in capsys.readouterr().out


def test_report_on_the_training_edges_warns(tables, tmp_path, capsys):
    model_dir = tmp_path / "model"
    main(["trust", "train", "--data", str(tables[0]), "--out", str(model_dir)])
    assert main(["trust", "report", str(model_dir), "--data", str(tables[0]), "--out", str(tmp_path / "r")]) == 0
    assert "these are the model's training edges" in capsys.readouterr().err


def test_training_on_one_class_is_a_usage_error_naming_it(tmp_path, capsys):
    features, correct, group = synthetic_edges(10, 20, seed=12)
    path = EdgeTable(features, np.ones_like(correct), group).save(tmp_path / "one_class.npz")
    assert main(["trust", "train", "--data", str(path), "--out", str(tmp_path / "m")]) == EXIT_USAGE
    assert "tsg trust train: error: the training set has one class only" in capsys.readouterr().err


def test_a_corrupt_model_is_a_usage_error_naming_the_file(tables, tmp_path, capsys):
    model_dir = tmp_path / "model"
    main(["trust", "train", "--data", str(tables[0]), "--out", str(model_dir)])
    (model_dir / MODEL_FILE).write_text("garbage")
    assert main(["trust", "report", str(model_dir), "--data", str(tables[1]), "--out", str(tmp_path / "r")]) == 2
    assert f"XGBoost cannot read {model_dir / MODEL_FILE}" in capsys.readouterr().err


def test_bench_trust_writes_the_ratio_and_scaling_measured_side_by_side(tmp_path, capsys):
    out = tmp_path / "trust.json"
    assert main(["bench", "trust", "--out", str(out), "--repeats", "3", "--detector-size", "tiny"]) == EXIT_OK
    result = json.loads(out.read_text())
    for key in ("trust_ms", "trust_ms_50", "detector_forward_ms"):
        assert result[key] > 0, key
    assert result["ratio"] == pytest.approx(result["trust_ms"] / result["detector_forward_ms"])
    assert result["scaling"] == pytest.approx(result["trust_ms_50"] / result["trust_ms"])
    assert result["stages_ms_50"]["candidate_edges"] > 6 * result["stages_ms_20"]["candidate_edges"]
    assert "learned trust model" in result["trust_model"]
    assert "ratio" in capsys.readouterr().out


def test_bench_trust_refuses_a_vlm_it_would_not_time(tmp_path, capsys):
    assert main(["bench", "trust", "--out", str(tmp_path / "t.json"), "--set", "vlm.backend=recorded",
                 "--detector-size", "tiny"]) == EXIT_USAGE
    assert "set vlm.backend=none" in capsys.readouterr().err
