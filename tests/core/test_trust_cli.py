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


def test_report_on_scenes_the_model_was_trained_on_warns_on_stderr_and_atop_the_report(tables, tmp_path, capsys):
    model_dir = tmp_path / "model"
    main(["trust", "train", "--data", str(tables[0]), "--out", str(model_dir)])
    assert main(["trust", "report", str(model_dir), "--data", str(tables[0]), "--out", str(tmp_path / "r")]) == 0
    assert ("60 of the 60 scenes of this data were in the model's training data"
            in capsys.readouterr().err)
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["groups_also_in_training"] == 60 and metrics["data_is_training_data"] is True
    assert "**Warning: 60 of the 60 scenes of this data were in the model's training data**" in (
        tmp_path / "r" / "report.md").read_text()


def test_a_report_on_edges_of_one_class_says_auroc_is_undefined(tables, tmp_path, capsys):
    features, correct, group = synthetic_edges(20, 40, seed=12)
    keep = correct.astype(bool)
    all_correct = EdgeTable(features[keep], correct[keep], group[keep]).save(tmp_path / "correct.npz")
    assert main(["trust", "report", "default", "--data", str(all_correct), "--out", str(tmp_path / "r")]) == EXIT_OK
    printed = capsys.readouterr().out
    assert "fused AUROC n/a" in printed and "geometry_alignment AUROC n/a" in printed and "nan" not in printed


def test_a_report_into_a_reused_directory_leaves_no_figure_of_the_earlier_one(tables, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["trust", "report", "default", "--data", str(tables[1]), "--out", str(out)]) == EXIT_OK
    assert (out / "roc.png").is_file()
    features, correct, group = synthetic_edges(20, 40, seed=12)
    keep = correct.astype(bool)
    all_correct = EdgeTable(features[keep], correct[keep], group[keep]).save(tmp_path / "correct.npz")
    assert main(["trust", "report", "default", "--data", str(all_correct), "--out", str(out)]) == EXIT_OK
    assert not (out / "roc.png").exists()  # not drawn this time (one class), and the earlier one is gone
    assert "roc.png" in (out / "report.md").read_text()


def test_a_report_into_a_tsg_eval_directory_is_refused_before_it_overwrites_the_evaluation(tables, tmp_path, capsys):
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    EdgeTable.load(tables[1]).save(evaluation / "edges.npz")
    (evaluation / "metrics.json").write_text('{"from": "tsg eval"}')
    assert main(["trust", "report", "default", "--data", str(evaluation / "edges.npz"), "--out",
                 str(evaluation)]) == EXIT_USAGE
    assert "holds a tsg eval's output (edges.npz)" in capsys.readouterr().err
    assert (evaluation / "metrics.json").read_text() == '{"from": "tsg eval"}'


def test_the_shipped_model_is_reported_by_its_keyword(tables, tmp_path):
    assert main(["trust", "report", "default", "--data", str(tables[1]), "--out", str(tmp_path / "r")]) == EXIT_OK
    assert "default_model" in json.loads((tmp_path / "r" / "metrics.json").read_text())["model"]


def test_a_model_that_reaches_no_threshold_is_saved_with_a_warning_that_says_so(tmp_path, capsys):
    features, correct, group = synthetic_edges(12, 40, seed=13)
    path = EdgeTable(features, correct, group).save(tmp_path / "small.npz")
    out = tmp_path / "model"
    assert main(["trust", "train", "--data", str(path), "--out", str(out), "--target-precision", "0.999",
                 "--delta", "0.01"]) == EXIT_OK
    captured = capsys.readouterr()
    assert "no threshold reaches precision 0.999 at delta 0.01 ->" in captured.out
    assert "has no feasible threshold" in captured.err and "so it prunes every relation" in captured.err
    model = TrustModel.load(out)
    assert "no threshold reached precision >= 0.999" in model.description
    assert main(["trust", "report", str(out), "--data", str(path), "--out", str(tmp_path / "r")]) == EXIT_OK
    assert "tsg trust report: warning: trust model" in capsys.readouterr().err
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["model_warning"] == model.warning
    report = (tmp_path / "r" / "report.md").read_text()
    assert f"**Warning: {model.warning}.**" in report
    assert ("at the model threshold none (no feasible threshold: every fact is pruned) the fused trust keeps 0 "
            in report)
    # Trust is at most 1.0 (an isotonic calibrator gives exactly 1.0 to many edges): the model keeps none of them.
    assert model.threshold > 1.0 and not np.any(model.trust(features) >= model.threshold)


def test_a_model_goes_into_an_empty_directory_or_replaces_a_model_never_among_other_files(tables, tmp_path, capsys):
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    (evaluation / "metrics.json").write_text("{}")
    assert main(["trust", "train", "--data", str(tables[0]), "--out", str(evaluation)]) == EXIT_USAGE
    assert (f"--out {evaluation} holds files that are not a trust model's (metrics.json): give a new or empty "
            "directory, or a trust model's directory to replace that model") in capsys.readouterr().err
    model = tmp_path / "model"
    for _ in range(2):  # retraining into the same directory replaces the model
        assert main(["trust", "train", "--data", str(tables[0]), "--out", str(model)]) == EXIT_OK
    assert sorted(p.name for p in model.iterdir()) == ["model.json", "trust_model.json"]


def test_an_output_directory_that_is_a_file_is_refused_before_training(tables, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["trust", "train", "--data", str(tables[0]), "--out", str(tmp_path / "file")]) == EXIT_USAGE
    assert "is a file; the trust model is a directory" in capsys.readouterr().err
    # Below a file too: refused before the training, not after it.
    assert main(["trust", "train", "--data", str(tables[0]), "--out", str(tmp_path / "file" / "model")]) == EXIT_USAGE
    assert f"{tmp_path / 'file'} is a file, so the trust model directory cannot be made below it" in (
        capsys.readouterr().err)


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
    assert f"{model_dir / MODEL_FILE} is not the model {model_dir / 'trust_model.json'} was saved with" in (
        capsys.readouterr().err)


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
    # Against the miniature detector the ratio goal is not applicable, neither met nor missed.
    assert result["goals"]["ratio_met"] is None and isinstance(result["goals"]["scaling_met"], bool)
    assert "(goal <= 0.0003 applies to the full detector only" in capsys.readouterr().out


def test_bench_trust_refuses_a_vlm_it_would_not_time(tmp_path, capsys):
    assert main(["bench", "trust", "--out", str(tmp_path / "t.json"), "--set", "vlm.backend=recorded",
                 "--detector-size", "tiny"]) == EXIT_USAGE
    assert "set vlm.backend=none" in capsys.readouterr().err


def test_the_readme_documents_every_trust_report_key(tables, tmp_path):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme[readme.index("`tsg trust report`'s `metrics.json`"):]
    assert main(["trust", "report", "default", "--data", str(tables[1]), "--out", str(tmp_path / "r")]) == EXIT_OK
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    for key, value in metrics.items():
        if key == "methods":
            names = {name for method in value.values() for name in method}
            missing = [name for name in names if f"`{name}`" not in table]
            assert not missing, missing
        elif key == "guarantee":
            assert all(f"`guarantee.{name}`" in table for name in value), key
        else:
            assert f"`{key}`" in table, key


def test_train_records_the_command_the_tables_and_their_hashes_with_relative_paths(tables, tmp_path, monkeypatch):
    from trusted_scene_graph.trust.model import data_hash

    monkeypatch.chdir(tables[0].parent)
    assert main(["trust", "train", "--data", tables[1].name, str(tables[0]), "--out", str(tmp_path / "m"),
                 "--seed", "3"]) == EXIT_OK
    metadata = json.loads((tmp_path / "m" / METADATA_FILE).read_text())
    names = [tables[1].name, tables[0].name]
    assert metadata["training"]["data"] == names  # relative to the working directory, whichever way given
    provenance = metadata["provenance"]
    assert provenance["command"].startswith(f"tsg trust train --data {' '.join(names)} --out {tmp_path / 'm'} ")
    assert provenance["command"].endswith(" --seed 3")
    for entry, path in zip(provenance["tables"], (tables[1], tables[0]), strict=True):
        table = EdgeTable.load(path)
        assert entry == {"path": path.name, "edges": len(table),
                         "sha256": data_hash(table.features, table.correct, table.group), "evaluation": None}
    assert metadata["format_version"] == 2 and metadata["threshold"]["test_unit"] == "group"


def test_the_training_data_is_recognised_in_another_order(tables, tmp_path):
    model_dir = tmp_path / "model"
    assert main(["trust", "train", "--data", str(tables[0]), str(tables[1]), "--out", str(model_dir)]) == EXIT_OK
    assert main(["trust", "report", str(model_dir), "--data", str(tables[1]), str(tables[0]),
                 "--out", str(tmp_path / "r")]) == EXIT_OK
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["data_is_training_data"] is True


def test_train_records_what_tsg_eval_recorded_about_a_table(tables, tmp_path):
    import hashlib
    import shutil

    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    shutil.copy(tables[0], evaluation / "edges.npz")
    config = tmp_path / "benchmark.yaml"
    config.write_text("trust: {model: prior}\n")
    (evaluation / "metrics.json").write_text(json.dumps({"provenance": {
        "config": str(config), "overrides": ["trust.model=prior"], "git_commit": "ab" * 20,
        "command": "tsg eval bag --out eval"}}))
    assert main(["trust", "train", "--data", str(evaluation), "--out", str(tmp_path / "m")]) == EXIT_OK
    recorded = json.loads((tmp_path / "m" / METADATA_FILE).read_text())["provenance"]["tables"][0]["evaluation"]
    assert recorded == {"config": str(config), "config_sha256": hashlib.sha256(config.read_bytes()).hexdigest(),
                        "overrides": ["trust.model=prior"], "git_commit": "ab" * 20,
                        "command": "tsg eval bag --out eval"}


def test_a_negative_seed_is_refused_by_its_option(tables, tmp_path, capsys):
    arguments = ["trust", "train", "--data", str(tables[0]), "--out", str(tmp_path / "m"), "--seed", "-3"]
    assert main(arguments) == EXIT_USAGE
    assert "tsg trust train: error: --seed -3: must be an integer in [0, 2**63)" in capsys.readouterr().err
