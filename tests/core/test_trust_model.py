"""The fused trust model: it beats both baselines, is calibrated, keeps its precision promise, and refuses bad files.

The data is synthetic, with an error model in which whether a claim is correct depends on how clear-cut the
geometry is (normalised margin), on ambiguity (overlapping boxes) and on detection quality, while the VLM's
confidence is only weakly informative (as Imran & Lee measured for real VLMs).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit
from trust_data import synthetic_edges

from trusted_scene_graph.config import Config
from trusted_scene_graph.evaluation import metrics as m
from trusted_scene_graph.trust import TrustError
from trusted_scene_graph.trust.calibration import Calibrator
from trusted_scene_graph.trust.features import FEATURE_INDEX, FEATURE_NAMES, FEATURE_SCHEMA_VERSION
from trusted_scene_graph.trust.model import (
    METADATA_FILE,
    METADATA_FORMAT_VERSION,
    MODEL_FILE,
    MarginPriorTrust,
    TrustModel,
    grouped_split,
    load_trust_model,
)
from trusted_scene_graph.trust.threshold import choose_threshold

TARGET, DELTA = 0.9, 0.1


@pytest.fixture(scope="module")
def trained() -> TrustModel:
    features, correct, group = synthetic_edges(200, 100, seed=0)
    return TrustModel(target_precision=TARGET, delta=DELTA, n_estimators=80).fit(features, correct, group)


@pytest.fixture(scope="module")
def held_out() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return synthetic_edges(200, 100, seed=1)  # other scenes, never seen in training


def test_fused_model_beats_both_baselines_on_held_out_scenes(trained, held_out):
    features, correct, _ = held_out
    fused = m.auroc(trained.trust(features), correct)
    baselines = trained.baseline_probabilities(features)
    geometry = m.auroc(baselines["geometry_alignment"], correct)
    vlm = m.auroc(baselines["vlm_confidence"], correct)
    print(f"held-out AUROC: fused {fused:.3f}, geometry only {geometry:.3f}, VLM only {vlm:.3f}")  # pytest -s
    assert fused > geometry + 0.03
    assert fused > vlm + 0.1


def test_calibrated_trust_has_ece_at_most_0_03_on_held_out_scenes(trained, held_out):
    features, correct, _ = held_out
    ece = m.expected_calibration_error(trained.trust(features), correct, 15)
    print(f"held-out ECE {ece:.4f}")  # pytest -s
    assert ece <= 0.03


def test_threshold_keeps_target_precision_in_at_least_1_minus_delta_of_200_splits(trained, held_out):
    """Calibrate and choose the threshold on one half of held-out scenes, measure precision on the other half."""
    features, correct, group = held_out
    raw = trained.booster_.inplace_predict(features)
    rng = np.random.default_rng(7)
    scenes = np.unique(group)
    met, coverages = 0, []
    for _ in range(200):
        chosen = rng.permutation(scenes)
        calibration_scenes, threshold_scenes = chosen[:50], chosen[50:100]
        calibration = np.isin(group, calibration_scenes)
        threshold_part = np.isin(group, threshold_scenes)
        test = ~(calibration | threshold_part)
        calibrator = Calibrator.fit(raw[calibration], correct[calibration])
        choice = choose_threshold(calibrator(raw[threshold_part]), correct[threshold_part], TARGET, DELTA,
                                  groups=group[threshold_part])
        kept = calibrator(raw[test]) >= choice.threshold
        coverages.append(kept.mean())
        met += kept.sum() == 0 or correct[test][kept].mean() >= TARGET
    print(f"{met} of 200 splits met precision {TARGET}; mean coverage {np.mean(coverages):.3f}")  # pytest -s
    assert met >= (1 - DELTA) * 200
    assert np.mean(coverages) > 0.3  # the guarantee is not bought by keeping nothing


def test_fit_stores_the_threshold_and_held_out_metrics_it_chose(trained):
    assert trained.threshold_.target_precision == TARGET
    assert trained.threshold_.delta == DELTA
    assert 0.0 < trained.threshold < 1.0
    assert trained.metadata_["metrics_held_out"]["auroc"] > 0.8
    split = trained.metadata_["training"]["split_groups"]
    assert split["fit"] + split["calibration"] + split["threshold"] == 200


def test_grouped_split_never_puts_a_scene_in_two_parts():
    group = np.repeat(np.arange(30), 5)
    split = grouped_split(group, 0.2, 0.2, np.random.default_rng(0))
    parts = [set(group[mask]) for mask in (split.fit, split.calibration, split.threshold)]
    assert parts[0].isdisjoint(parts[1]) and parts[0].isdisjoint(parts[2]) and parts[1].isdisjoint(parts[2])
    assert len(parts[0] | parts[1] | parts[2]) == 30


def test_save_and_load_give_the_same_trust_from_json_files_only(trained, held_out, tmp_path):
    features = held_out[0][:500]
    trained.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [MODEL_FILE, METADATA_FILE]
    metadata = json.loads((tmp_path / "model" / METADATA_FILE).read_text())
    assert metadata["feature_schema_version"] == FEATURE_SCHEMA_VERSION
    assert len(metadata["training"]["data_sha256"]) == 64
    assert metadata["threshold"]["target_precision"] == TARGET
    loaded = TrustModel.load(tmp_path / "model")
    np.testing.assert_allclose(loaded.trust(features), trained.trust(features), rtol=1e-6)
    assert loaded.threshold == trained.threshold
    importance = loaded.feature_importance()
    assert importance == trained.feature_importance()
    assert max(importance["alignment_3d"], importance["margin_m"]) > 0  # collinear here: either may be split on
    assert importance["vlm_sensitivity"] == 0.0  # NaN throughout: never split on


@pytest.fixture()
def saved(trained, tmp_path):
    return trained.save(tmp_path / "model")


def test_a_save_that_fails_midway_leaves_the_previously_saved_model_loadable(saved, trained, held_out, monkeypatch):
    # A full disk while the metadata is written: neither file may have been replaced, or the model file of the new
    # save would sit beside the metadata of the old one, and load would refuse the pair.
    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        trained.save(saved)
    monkeypatch.undo()
    features = held_out[0][:50]
    np.testing.assert_allclose(TrustModel.load(saved).trust(features), trained.trust(features), rtol=1e-6)


def edit_metadata(directory, **changes):
    path = directory / METADATA_FILE
    metadata = json.loads(path.read_text())
    metadata.update(changes)
    path.write_text(json.dumps(metadata))


def test_loading_refuses_another_feature_schema_version(saved):
    edit_metadata(saved, feature_schema_version=FEATURE_SCHEMA_VERSION + 1)
    with pytest.raises(TrustError, match=rf"feature schema version {FEATURE_SCHEMA_VERSION + 1}.*retrain"):
        TrustModel.load(saved)


@pytest.mark.parametrize("format_version", [METADATA_FORMAT_VERSION + 1, 0, None, "1", True])
def test_loading_refuses_another_metadata_format_version(saved, format_version):
    edit_metadata(saved, format_version=format_version)
    with pytest.raises(TrustError, match=rf"{METADATA_FILE} has format version {format_version!r}, but this package "
                                         rf"reads format versions 1, {METADATA_FORMAT_VERSION}; retrain"):
        TrustModel.load(saved)


def test_loading_refuses_reordered_feature_names_naming_the_first_moved_one(saved):
    edit_metadata(saved, feature_names=list(reversed(FEATURE_NAMES)))
    with pytest.raises(TrustError, match=rf"expects features other .*\(reordered: {len(FEATURE_NAMES) - 1} names "
                                         rf"moved, position 0 holds '{FEATURE_NAMES[-1]}' instead of "
                                         rf"'{FEATURE_NAMES[0]}'; same schema version"):
        TrustModel.load(saved)


def test_loading_refuses_missing_and_unexpected_feature_names_naming_only_those(saved):
    edit_metadata(saved, feature_names=[*FEATURE_NAMES[:-1], "margin_px"])
    expected = rf"\(missing \['{FEATURE_NAMES[-1]}'\]; unexpected \['margin_px'\]; same"
    with pytest.raises(TrustError, match=expected) as error:
        TrustModel.load(saved)
    assert FEATURE_NAMES[0] not in str(error.value)  # the names that agree are not listed
    edit_metadata(saved, feature_names=[*FEATURE_NAMES, FEATURE_NAMES[0]])
    with pytest.raises(TrustError, match=rf"\(repeated \['{FEATURE_NAMES[0]}'\]; same"):
        TrustModel.load(saved)
    edit_metadata(saved, feature_names="margin_m")
    with pytest.raises(TrustError, match=r"\(its feature_names is not a list of names: 'margin_m'; same"):
        TrustModel.load(saved)


def test_loading_refuses_corrupt_files_naming_them(saved):
    (saved / METADATA_FILE).write_text("{ not json")
    with pytest.raises(TrustError, match=rf"{METADATA_FILE} is not readable JSON"):
        TrustModel.load(saved)


def test_loading_refuses_a_corrupt_xgboost_file(saved):
    (saved / MODEL_FILE).write_text('{"learner": truncated')
    with pytest.raises(TrustError, match=rf"{MODEL_FILE} is not the model .*{METADATA_FILE} was saved with \(its "
                                         r"SHA-256 differs\)"):
        TrustModel.load(saved)
    edit_metadata(saved, model_sha256=None)  # as in a model saved before the hash was recorded
    with pytest.raises(TrustError, match=rf"XGBoost cannot read .*{MODEL_FILE}"):
        TrustModel.load(saved)


def test_loading_refuses_metadata_of_something_else(saved):
    (saved / METADATA_FILE).write_text('{"format": "other"}')
    with pytest.raises(TrustError, match="is not a trust model's metadata"):
        TrustModel.load(saved)


def test_loading_refuses_a_missing_file(saved):
    (saved / MODEL_FILE).unlink()
    with pytest.raises(TrustError, match=rf"{MODEL_FILE} does not exist"):
        TrustModel.load(saved)


def test_loading_refuses_files_of_two_models(saved, tmp_path):
    small = synthetic_edges(10, 50, seed=3)
    narrow = TrustModel(feature_names=FEATURE_NAMES[:5])
    narrow.fit(small[0][:, :5], small[1], small[2]).booster_.save_model(str(saved / MODEL_FILE))  # another model's
    with pytest.raises(TrustError, match=r"\(its SHA-256 differs\): it is corrupt, or from another save; retrain "
                                         r"with tsg trust train$"):
        TrustModel.load(saved)
    edit_metadata(saved, model_sha256=None)  # without the recorded hash, the feature count still tells
    with pytest.raises(TrustError, match="takes 5 features"):
        TrustModel.load(saved)


def test_saving_over_a_model_leaves_no_temporary_file_and_loads_the_new_one(trained, saved, held_out):
    trained.save(saved)
    assert sorted(p.name for p in saved.iterdir()) == sorted([MODEL_FILE, METADATA_FILE])
    np.testing.assert_array_equal(TrustModel.load(saved).trust(held_out[0]), trained.trust(held_out[0]))


def test_load_trust_model_reads_the_keywords_and_a_model_directory(saved):
    assert isinstance(load_trust_model(Config({"trust.model": "prior"})), MarginPriorTrust)
    assert isinstance(load_trust_model(Config({"trust.model": "default"})), TrustModel)
    assert load_trust_model(Config({"trust.model": str(saved)})).source_ == str(saved)


@pytest.mark.parametrize("value", ["Default", "", "no/such/model"])
def test_load_trust_model_refuses_a_value_that_is_no_keyword_and_no_directory(value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths are read from the working directory
    with pytest.raises(TrustError, match=rf"^trust\.model '{value}' is not 'default', 'prior' or an existing model "
                                         r"directory$"):
        load_trust_model(Config({"trust.model": value}))


def test_load_trust_model_asks_for_the_directory_of_a_model_file(saved):
    with pytest.raises(TrustError, match=rf"trust\.model '.*{METADATA_FILE}' is a file: give the model directory "
                                         rf"that holds it \({re.escape(str(saved))};"):
        load_trust_model(Config({"trust.model": str(saved / METADATA_FILE)}))


def test_a_training_set_with_one_class_only_is_refused():
    features, correct, group = synthetic_edges(10, 20, seed=4)
    with pytest.raises(TrustError, match=r"one class only \(200 correct of 200 edges\)"):
        TrustModel().fit(features, np.ones_like(correct), group)


def test_nan_only_features_are_refused_but_nan_columns_are_allowed():
    features, correct, group = synthetic_edges(10, 20, seed=5)
    with pytest.raises(TrustError, match="every feature of every edge is NaN"):
        TrustModel().fit(np.full_like(features, np.nan), correct, group)
    model = TrustModel(n_estimators=5).fit(features, correct, group)  # several columns are NaN throughout
    assert "temporal_agreement" in model.metadata_["training"]["features_all_nan"]


def test_other_bad_training_input_is_refused_naming_it():
    features, correct, group = synthetic_edges(10, 20, seed=6)
    with pytest.raises(TrustError, match="at least 3 groups"):
        TrustModel().fit(features, correct, np.where(np.arange(group.size) % 2 == 0, "a", "b"))
    infinite = features.copy()
    infinite[3, FEATURE_INDEX["margin_m"]] = np.inf
    with pytest.raises(TrustError, match="feature 'margin_m' is infinite at edge 3"):
        TrustModel().fit(infinite, correct, group)
    with pytest.raises(TrustError, match=r"features must have shape \(edges, 23\)"):
        TrustModel().fit(features[:, :4], correct, group)
    with pytest.raises(TrustError, match="n_estimators must be a positive integer"):
        TrustModel(n_estimators=0).fit(features, correct, group)


def test_an_unfitted_model_says_so():
    with pytest.raises(TrustError, match="not fitted"):
        TrustModel().predict_proba(np.zeros((1, len(FEATURE_NAMES))))


def test_predict_proba_has_scikit_learn_columns(trained, held_out):
    proba = trained.predict_proba(held_out[0][:10])
    assert proba.shape == (10, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_margin_prior_is_the_logistic_of_the_margin():
    features = np.full((2, len(FEATURE_NAMES)), np.nan, np.float32)
    features[:, FEATURE_INDEX["margin_m"]] = [0.0, 0.02]
    np.testing.assert_allclose(MarginPriorTrust(0.02).trust(features), [0.5, expit(1.0)])


# --- settings are checked before learning, and a failed fit changes nothing --------------------------------------


@pytest.fixture(scope="module")
def small() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return synthetic_edges(12, 40, seed=8)


def fitted_state(model: TrustModel) -> tuple:
    return (model.booster_, model.calibrator_, model.baseline_calibrators_, model.threshold_, model.metadata_)


@pytest.mark.parametrize(("settings", "message"), [
    ({"delta": 1.5}, r"delta must be a number in \(0, 1\), got 1.5"),
    ({"target_precision": "0.9"}, r"target_precision must be a number in \(0, 1\), got '0.9'"),
    ({"calibration": "bogus"}, "calibration must be one of auto, platt, isotonic, got 'bogus'"),
    ({"threshold_method": "holm"}, "threshold_method must be one of fixed_sequence, bonferroni, got 'holm'"),
    ({"min_child_weight": -1}, "min_child_weight must be a number >= 0, got -1"),
    ({"n_estimators": 2.5}, "n_estimators must be a positive integer, got 2.5"),
    ({"max_depth": True}, "max_depth must be a positive integer, got True"),
    ({"learning_rate": float("nan")}, r"learning_rate must be a number in \(0, 1\], got nan"),
    ({"calibration_fraction": None}, r"calibration_fraction must be a number in \(0, 0.5\), got None"),
    ({"random_state": None}, r"random_state must be an integer in \[0, 2\*\*63\), got None"),
    ({"random_state": -1}, r"random_state must be an integer in \[0, 2\*\*63\), got -1"),
    ({"n_jobs": 0}, r"n_jobs must be a positive integer or -1 \(all cores\), got 0"),
])
def test_every_setting_is_checked_before_anything_is_learnt(small, settings, message, monkeypatch):
    import xgboost

    def no_training(*args, **kwargs):
        raise AssertionError("XGBoost trained before the settings were checked")

    monkeypatch.setattr(xgboost, "train", no_training)
    model = TrustModel(**settings)
    with pytest.raises(TrustError, match=message):
        model.fit(*small)
    assert model.booster_ is None and model.calibrator_ is None and model.threshold_ is None


def test_numpy_integers_are_valid_settings(small, tmp_path):
    model = TrustModel(n_estimators=np.int64(5), max_depth=np.int32(3), random_state=np.int64(4)).fit(*small)
    assert model.booster_.num_boosted_rounds() == 5
    loaded = TrustModel.load(model.save(tmp_path / "model"))
    assert (loaded.n_estimators, loaded.max_depth, loaded.random_state) == (5, 3, 4)


def test_a_refit_with_a_bad_setting_leaves_the_fitted_model_as_it_was(small):
    model = TrustModel(n_estimators=5).fit(*small)
    before = fitted_state(model)
    model.delta = 1.5
    with pytest.raises(TrustError, match=r"delta must be a number in \(0, 1\), got 1.5"):
        model.fit(*synthetic_edges(12, 40, seed=9))
    assert all(now is then for now, then in zip(fitted_state(model), before, strict=True))


def test_a_fit_failing_after_learning_replaces_nothing(small, monkeypatch):
    import trusted_scene_graph.trust.model as model_module

    model = TrustModel(n_estimators=5).fit(*small)
    before = fitted_state(model)

    def failing_threshold(*args, **kwargs):
        raise TrustError("no threshold today")

    monkeypatch.setattr(model_module, "choose_threshold", failing_threshold)
    with pytest.raises(TrustError, match="no threshold today"):
        model.fit(*synthetic_edges(12, 40, seed=9))
    assert all(now is then for now, then in zip(fitted_state(model), before, strict=True))


# --- loading edited or damaged files names the file -----------------------------------------------------------------


def edit_section(directory, section, **changes):
    path = directory / METADATA_FILE
    metadata = json.loads(path.read_text())
    metadata[section].update(changes)
    path.write_text(json.dumps(metadata))


@pytest.mark.parametrize(("section", "changes", "message"), [
    ("calibration", {"method": "beta"}, "unknown calibration method 'beta'"),
    ("threshold", {"precision_lower_bound": 0.5}, "threshold choice: feasible, but precision_lower_bound 0.5"),
    ("settings", {"n_estimators": "x"}, "n_estimators must be a positive integer, got 'x'"),
    ("settings", {"delta": 7}, r"delta must be a number in \(0, 1\), got 7"),
    ("baseline_calibration", {"bogus": {"method": "sigmoid"}}, r"baseline_calibration names \['bogus'\], not "
                                                                r"baselines"),
    ("training", {"groups_list": 5}, "training.groups_list must be a list of scene names, got 5"),
])
def test_loading_an_edited_section_names_the_file_and_the_problem(saved, section, changes, message):
    edit_section(saved, section, **changes)
    with pytest.raises(TrustError, match=rf"trust model metadata .*{METADATA_FILE} is malformed: {message}"):
        TrustModel.load(saved)


def test_loading_settings_that_are_no_json_object_names_the_file(saved):
    edit_metadata(saved, settings=[1, 2])
    with pytest.raises(TrustError, match=rf"{METADATA_FILE} is malformed: settings must be a JSON object, got list"):
        TrustModel.load(saved)


@pytest.mark.parametrize("section", ["baseline_calibration", "training", "metrics_held_out", "provenance"])
def test_loading_a_recorded_section_that_is_no_json_object_names_it(saved, section):
    # tsg trust report reads them: edited into a list, the report would crash or drop its baselines without a word.
    edit_metadata(saved, **{section: []})
    with pytest.raises(TrustError, match=rf"{METADATA_FILE} is malformed: {section} must be a JSON object, got list"):
        TrustModel.load(saved)


def test_loading_metadata_without_a_section_names_it(saved):
    metadata = json.loads((saved / METADATA_FILE).read_text())
    del metadata["calibration"]
    (saved / METADATA_FILE).write_text(json.dumps(metadata))
    with pytest.raises(TrustError, match=rf"{METADATA_FILE} is incomplete: it lacks 'calibration'"):
        TrustModel.load(saved)


def test_a_truncated_xgboost_file_is_called_corrupt(saved):
    (saved / MODEL_FILE).write_bytes((saved / MODEL_FILE).read_bytes()[:5000])
    with pytest.raises(TrustError, match=rf"{MODEL_FILE} is not the model .* \(its SHA-256 differs\): it is corrupt, "
                                         "or from another save"):
        TrustModel.load(saved)


def test_a_model_saved_in_format_version_1_still_loads_with_an_edge_level_threshold(saved, held_out):
    path = saved / METADATA_FILE
    metadata = json.loads(path.read_text())
    metadata["format_version"] = 1
    for key in ("test_unit", "calibration_groups", "kept_groups", "design_effect"):
        del metadata["threshold"][key]
    del metadata["provenance"]
    path.write_text(json.dumps(metadata))
    old = TrustModel.load(saved)
    assert (old.threshold_.test_unit, old.threshold_.kept_groups, old.threshold_.design_effect) == ("edge", None, 1.0)
    assert old.threshold == metadata["threshold"]["threshold"] and "provenance" not in old.metadata_
    assert old.trust(held_out[0][:5]).shape == (5,)


# --- what a trained model records ---------------------------------------------------------------------------------


def test_fit_records_the_scene_level_test_and_the_code_and_libraries_it_ran(trained, saved):
    choice = trained.threshold_
    assert choice.test_unit == "group" and choice.design_effect >= 1.0
    assert choice.calibration_groups == trained.metadata_["training"]["split_groups"]["threshold"]
    assert 2 <= choice.kept_groups <= choice.calibration_groups
    provenance = json.loads((saved / METADATA_FILE).read_text())["provenance"]
    assert set(provenance["versions"]) == {"python", "xgboost", "scikit-learn", "numpy", "scipy"}
    assert all(isinstance(version, str) for version in provenance["versions"].values())
    assert provenance["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", provenance["git_commit"])
    assert len(provenance["settings_sha256"]) == 64
    assert TrustModel.load(saved).metadata_["provenance"] == provenance


# --- when the threshold's guarantee is unreliable ------------------------------------------------------------------

UNRELIABLE = "the precision guarantee of its threshold is unreliable: the split the threshold was tested on has "


def test_a_threshold_tested_on_enough_scenes_of_even_size_brings_no_warning(trained, saved):
    assert (trained.threshold_.feasible, trained.threshold_.calibration_groups) == (True, 40)
    assert trained.metadata_["training"]["split_largest_group_edges"] == {"fit": 100, "calibration": 100,
                                                                          "threshold": 100}
    assert trained.warning is None and TrustModel.load(saved).warning is None


def test_a_threshold_tested_on_fewer_than_20_scenes_brings_a_warning(tmp_path):
    # 80 scenes put 16 in the threshold split: enough to pass a target of 0.8 (0.8 ** 11 <= 0.1), too few to trust.
    model = TrustModel(target_precision=0.8, n_estimators=20).fit(*synthetic_edges(80, 60, seed=20))
    assert (model.threshold_.feasible, model.threshold_.calibration_groups) == (True, 16)
    assert model.warning.startswith(f"trust model fitted in this process: {UNRELIABLE}only 16 scenes (fewer than "
                                    "20), too few or too uneven for a test that estimates how much scenes vary")
    assert "Retrain on more scenes of more even size" in model.warning
    saved = model.save(tmp_path / "model")
    assert TrustModel.load(saved).warning == model.warning.replace("fitted in this process", str(saved))


def test_a_threshold_tested_on_a_split_one_scene_dominates_brings_a_warning():
    # 100 scenes of 30 facts and one of 1,200; the seed puts the big one in the threshold split, beside 19 others.
    features, correct, group = (np.concatenate(parts) for parts in zip(synthetic_edges(100, 30, seed=21),
                                                                       synthetic_edges(1, 1200, seed=22),
                                                                       strict=True))
    seed = next(seed for seed in range(100)
                if grouped_split(group, 0.2, 0.2, np.random.default_rng(seed)).threshold[-1])
    model = TrustModel(target_precision=0.8, n_estimators=20, random_state=seed).fit(features, correct, group)
    choice = model.threshold_
    assert (choice.feasible, choice.calibration_groups, choice.calibration_edges) == (True, 20, 1770)
    assert (f"{UNRELIABLE}one scene holding 1200 of its 1770 edges (more than 50%), too few or too uneven"
            in model.warning)
    # A model saved before the largest scene was recorded warns on the scene count only, as does a corrupt record.
    for record in (None, "many"):
        model.metadata_["training"]["split_largest_group_edges"] = record
        assert model.warning is None


def test_an_infeasible_threshold_is_warned_about_as_such_naming_the_scenes_it_lacked(small):
    model = TrustModel(target_precision=0.95, n_estimators=5).fit(*small)  # 2 threshold scenes: nothing passes
    assert not model.threshold_.feasible
    assert model.warning == (
        "trust model fitted in this process has no feasible threshold (no threshold reached precision >= 0.95 with "
        "probability >= 0.9 when it was trained), so it prunes every relation: its threshold split had 2 scenes, and "
        "the scene-level test needs at least 45 for this target and delta. Retrain on more data, or set "
        "trust.threshold")
    model = TrustModel(target_precision=0.95, threshold_method="bonferroni", n_estimators=5).fit(*small)
    assert "the scene-level test needs at least 149 for this target and delta" in model.warning


def test_without_git_the_commit_is_null_and_training_goes_on(small, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable anywhere
    provenance = TrustModel(n_estimators=5).fit(*small).metadata_["provenance"]
    assert (provenance["git_commit"], provenance["git_dirty"]) == (None, None)


def test_the_data_hash_ignores_the_order_of_rows_but_not_their_content():
    from trusted_scene_graph.trust.model import data_hash

    features, correct, group = synthetic_edges(10, 30, seed=2)
    order = np.random.default_rng(0).permutation(correct.size)
    assert data_hash(features[order], correct[order], group[order]) == data_hash(features, correct, group)
    flipped = correct.copy()
    flipped[7] = ~flipped[7]
    assert data_hash(features, flipped, group) != data_hash(features, correct, group)
    renamed = np.where(group == group[0], "another-scene", group)
    assert data_hash(features, correct, renamed) != data_hash(features, correct, group)
    # A repeated row is more data, not the same.
    assert data_hash(features[[0, 0]], correct[[0, 0]], group[[0, 0]]) != data_hash(features[:1], correct[:1],
                                                                                       group[:1])


# --- prediction input and the scikit-learn estimator API ----------------------------------------------------------


def test_trust_refuses_infinite_features_as_fit_does(trained, held_out):
    features = held_out[0][:3].copy()
    features[1, FEATURE_INDEX["margin_m"]] = -np.inf
    with pytest.raises(TrustError, match="feature 'margin_m' is infinite at edge 1; features must be finite or NaN"):
        trained.trust(features)
    with pytest.raises(TrustError, match="feature 'margin_m' is infinite at edge 1"):
        trained.predict_proba(features)
    features[1, FEATURE_INDEX["margin_m"]] = np.nan  # missing is fine
    assert np.isfinite(trained.trust(features)).all()
    with pytest.raises(TrustError, match="features must be numbers"):
        trained.trust(np.full((1, len(FEATURE_NAMES)), "high", dtype=object))


def test_trust_model_is_a_scikit_learn_estimator(small):
    from sklearn.base import clone

    model = TrustModel(delta=0.05, n_estimators=5)
    assert model.get_params()["delta"] == 0.05 and set(model.get_params()) >= {"n_jobs", "feature_names"}
    copy = clone(model)
    assert copy is not model and copy.get_params() == model.get_params()
    assert model.set_params(delta=0.2) is model and model.delta == 0.2
    with pytest.raises(TrustError, match="TrustModel has no setting.* deltaa"):
        model.set_params(deltaa=0.2)
    fitted = clone(model).fit(*small)
    assert clone(fitted).booster_ is None and clone(fitted).get_params() == fitted.get_params()


def test_a_model_saved_after_set_params_records_the_settings_it_was_fitted_with(tmp_path: Path) -> None:
    features, correct, groups = synthetic_edges(250, 12, seed=3)
    model = TrustModel(target_precision=0.9, n_estimators=30).fit(features, correct, groups)
    model.set_params(target_precision=0.6, n_estimators=3)  # for the next fit; what was learnt stays
    loaded = TrustModel.load(model.save(tmp_path / "model"))
    assert (loaded.target_precision, loaded.n_estimators) == (0.9, 30)
    assert loaded.threshold_.target_precision == 0.9


def test_a_model_of_other_features_is_refused_by_save_not_written_then_refused_by_load(tmp_path: Path) -> None:
    features, correct, groups = synthetic_edges(250, 12, seed=3)
    names = tuple(f"f{k}" for k in range(features.shape[1]))
    model = TrustModel(n_estimators=5, feature_names=names).fit(features, correct, groups)
    with pytest.raises(TrustError, match="fitted on other features than the package computes"):
        model.save(tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_group_ids_of_mixed_types_are_refused_by_fit_naming_the_rule() -> None:
    features, correct, _ = synthetic_edges(60, 10, seed=0)
    groups = np.array([None if i % 7 == 0 else f"s{i // 10}" for i in range(len(correct))], dtype=object)
    with pytest.raises(TrustError, match=r"^groups must be ids of one type \(strings or integers\)"):
        TrustModel(n_estimators=5).fit(features, correct, groups)
