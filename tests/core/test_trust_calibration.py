"""Specification of trust calibration: raw score -> P(correct), learned by Platt scaling or isotonic regression."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from trusted_scene_graph.errors import TsgError
from trusted_scene_graph.evaluation.metrics import expected_calibration_error
from trusted_scene_graph.trust import TrustError
from trusted_scene_graph.trust.calibration import PLATT_MAX_EDGES, Calibrator


def logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def miscalibrated_edges(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw probabilities p whose true P(correct) is sigmoid(2 logit(p) - 0.5): overconfident and biased low."""
    raw = rng.uniform(0.01, 0.99, n)
    truth = 1.0 / (1.0 + np.exp(-(2.0 * logit(raw) - 0.5)))
    return raw, rng.random(n) < truth


@pytest.fixture
def held_out() -> tuple[np.ndarray, np.ndarray]:
    return miscalibrated_edges(np.random.default_rng(1), 20_000)


def test_the_error_class_derives_from_the_package_root() -> None:
    assert issubclass(TrustError, TsgError)


def test_platt_scaling_recovers_a_logistic_miscalibration_from_800_edges(held_out) -> None:
    raw, correct = miscalibrated_edges(np.random.default_rng(0), 800)
    calibrator = Calibrator.fit(raw, correct)  # "auto": fewer than 1000 edges -> Platt
    assert calibrator.method == "platt"
    assert calibrator.slope == pytest.approx(2.0, abs=0.4)
    assert calibrator.intercept == pytest.approx(-0.5, abs=0.4)
    test_raw, test_correct = held_out
    assert expected_calibration_error(test_raw, test_correct) > 0.08  # the raw scores really are miscalibrated
    assert expected_calibration_error(calibrator(test_raw), test_correct) <= 0.03


def test_isotonic_regression_is_chosen_from_1000_edges_on_and_calibrates_as_well(held_out) -> None:
    raw, correct = miscalibrated_edges(np.random.default_rng(2), 5000)
    calibrator = Calibrator.fit(raw, correct)
    assert calibrator.method == "isotonic"
    test_raw, test_correct = held_out
    assert expected_calibration_error(calibrator(test_raw), test_correct) <= 0.03


def test_auto_switches_from_platt_to_isotonic_at_platt_max_edges() -> None:
    raw, correct = miscalibrated_edges(np.random.default_rng(3), PLATT_MAX_EDGES)
    assert PLATT_MAX_EDGES == 1000
    assert Calibrator.fit(raw[:-1], correct[:-1]).method == "platt"
    assert Calibrator.fit(raw, correct).method == "isotonic"
    assert Calibrator.fit(raw, correct, method="platt").method == "platt"
    assert Calibrator.fit(raw[:50], correct[:50], method="isotonic").method == "isotonic"


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibrated_trust_is_a_non_decreasing_map_into_0_1(method: str) -> None:
    raw, correct = miscalibrated_edges(np.random.default_rng(4), 2000)
    calibrator = Calibrator.fit(raw, correct, method=method)
    grid = np.linspace(0.0, 1.0, 10_001)  # includes 0 and 1, outside the fitted range of isotonic
    trust = calibrator(grid)
    assert trust.shape == grid.shape
    assert np.all(np.diff(trust) >= 0.0)
    assert trust.min() >= 0.0 and trust.max() <= 1.0


def test_isotonic_stores_only_the_step_points_and_interpolates_exactly_like_sklearn() -> None:
    from sklearn.isotonic import IsotonicRegression

    raw, correct = miscalibrated_edges(np.random.default_rng(5), 3000)
    reference = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, correct.astype(float))
    calibrator = Calibrator.fit(raw, correct, method="isotonic")
    probe = np.random.default_rng(6).uniform(0.0, 1.0, 5000)
    np.testing.assert_allclose(calibrator(probe), reference.predict(probe), rtol=0, atol=1e-12)
    assert calibrator.x_thresholds.size == reference.X_thresholds_.size < raw.size


def test_a_probability_of_exactly_0_or_1_gets_a_finite_logit_under_platt() -> None:
    raw, correct = miscalibrated_edges(np.random.default_rng(7), 500)
    calibrator = Calibrator.fit(np.concatenate([raw, [0.0, 1.0]]), np.concatenate([correct, [False, True]]))
    trust = calibrator(np.array([0.0, 1.0]))
    assert np.all(np.isfinite(trust)) and 0.0 <= trust[0] < 0.01 and 0.99 < trust[1] <= 1.0


def test_margins_are_calibrated_without_a_logit() -> None:
    rng = np.random.default_rng(8)
    margin = rng.normal(0.0, 3.0, 800)  # e.g. a signed distance to a decision boundary
    correct = rng.random(800) < 1.0 / (1.0 + np.exp(-(0.5 * margin + 1.0)))
    calibrator = Calibrator.fit(margin, correct, score_kind="margin")
    assert (calibrator.slope, calibrator.intercept) == (pytest.approx(0.5, abs=0.15), pytest.approx(1.0, abs=0.3))
    assert calibrator(np.array([-50.0, 50.0])) == pytest.approx([0.0, 1.0], abs=1e-6)


def test_platt_fits_separable_data_with_a_finite_slope() -> None:
    # Platt's smoothed targets: with hard 0/1 labels the slope of separable data would run to infinity.
    raw = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    calibrator = Calibrator.fit(raw, [0, 0, 0, 1, 1, 1])
    assert np.isfinite(calibrator.slope) and calibrator.slope > 0.0
    assert calibrator(np.array([0.1]))[0] < 0.5 < calibrator(np.array([0.9]))[0]


def test_calibrating_2000_edges_takes_well_under_a_millisecond() -> None:
    raw, correct = miscalibrated_edges(np.random.default_rng(9), 5000)
    frame = np.random.default_rng(10).uniform(0.0, 1.0, 2000)
    for calibrator in (Calibrator.fit(raw, correct, method="platt"), Calibrator.fit(raw, correct, method="isotonic")):
        timings = []
        for _ in range(50):
            start = time.perf_counter()
            calibrator(frame)
            timings.append(time.perf_counter() - start)
        # ~50 us (Platt) and ~150 us (isotonic) here; the bound leaves room for a loaded CI machine.
        assert np.median(timings) < 2e-3


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_a_json_round_trip_gives_identical_outputs(method: str) -> None:
    raw, correct = miscalibrated_edges(np.random.default_rng(11), 3000)
    calibrator = Calibrator.fit(raw, correct, method=method)
    state = calibrator.to_json()
    restored = Calibrator.from_json(json.loads(json.dumps(state, allow_nan=False)))
    probe = np.linspace(0.0, 1.0, 2001)
    assert np.array_equal(restored(probe), calibrator(probe))
    assert restored.to_json() == state
    assert (restored.method, restored.score_kind, restored.calibration_edges) == (method, "probability", 3000)


def test_the_json_form_holds_only_plain_types() -> None:
    raw, correct = miscalibrated_edges(np.random.default_rng(12), 300)
    assert Calibrator.fit(raw, correct).to_json() == {
        "method": "platt", "score_kind": "probability", "calibration_edges": 300,
        "slope": pytest.approx(2.0, abs=0.8), "intercept": pytest.approx(-0.5, abs=0.8)}
    state = Calibrator.fit(raw, correct, method="isotonic").to_json()
    assert all(type(value) is float for value in state["x_thresholds"] + state["y_thresholds"])


ISOTONIC = {"method": "isotonic", "score_kind": "probability", "calibration_edges": 100,
            "x_thresholds": [0.1, 0.5, 0.9], "y_thresholds": [0.2, 0.6, 0.95]}
PLATT = {"method": "platt", "score_kind": "probability", "calibration_edges": 100, "slope": 1.5, "intercept": -0.2}


def test_hand_written_json_is_applied_as_written() -> None:
    assert Calibrator.from_json(ISOTONIC)(np.array([0.0, 0.3, 0.9, 1.0])) == pytest.approx([0.2, 0.4, 0.95, 0.95])
    assert Calibrator.from_json(PLATT)(np.array([0.5]))[0] == pytest.approx(1.0 / (1.0 + np.exp(0.2)))


@pytest.mark.parametrize(("state", "message"), [
    ([1, 2], "must be a JSON object, got list"),
    ({**PLATT, "method": "beta"}, "unknown calibration method 'beta'; known: platt, isotonic"),
    ({key: value for key, value in PLATT.items() if key != "slope"}, "missing key.*slope"),
    ({**PLATT, "temperature": 1.0}, "unknown key.*temperature"),
    ({**PLATT, "score_kind": "logit"}, "unknown score_kind 'logit'"),
    ({**PLATT, "slope": "1.5"}, "Platt slope must be a number, got '1.5'"),
    ({**PLATT, "intercept": float("inf")}, "Platt intercept must be a finite number, got inf"),
    ({**PLATT, "calibration_edges": True}, "calibration_edges must be an integer >= 2.*True"),
    ({**PLATT, "calibration_edges": 1}, "calibration_edges must be an integer >= 2.*got 1"),
    ({**ISOTONIC, "x_thresholds": [0.1, 0.5]}, "differ in length: 2 vs 3"),
    ({**ISOTONIC, "x_thresholds": [], "y_thresholds": []}, "are empty"),
    ({**ISOTONIC, "x_thresholds": [0.1, 0.9, 0.5]}, "x_thresholds must be strictly increasing, got 0.9 then 0.5"),
    ({**ISOTONIC, "x_thresholds": [0.1, 0.5, 0.5]}, "x_thresholds must be strictly increasing"),
    ({**ISOTONIC, "y_thresholds": [0.2, 0.7, 0.6]}, "y_thresholds must be non-decreasing, got 0.7 then 0.6"),
    ({**ISOTONIC, "y_thresholds": [0.2, float("nan"), 0.95]}, "y_thresholds must be finite, got nan at index 1"),
    ({**ISOTONIC, "y_thresholds": [0.2, 0.6, 1.5]}, r"y_thresholds must lie in \[0, 1\], got 1.5"),
    ({**ISOTONIC, "x_thresholds": [-2.0, 0.5, 0.9]}, r"x_thresholds must lie in \[0, 1\], got -2.0"),
    ({**ISOTONIC, "y_thresholds": [0.2, "0.6", 0.95]}, "y_thresholds must hold numbers, got '0.6' at index 1"),
    ({**ISOTONIC, "x_thresholds": "0.1 0.5 0.9"}, "x_thresholds must be a list of numbers, got str"),
])
def test_corrupt_json_is_rejected_with_the_problem_named(state, message: str) -> None:
    with pytest.raises(TrustError, match=message):
        Calibrator.from_json(state)


def test_isotonic_margins_may_lie_outside_0_1() -> None:
    calibrator = Calibrator.from_json({**ISOTONIC, "score_kind": "margin", "x_thresholds": [-3.0, 0.0, 4.0]})
    assert calibrator(np.array([-10.0, 2.0])) == pytest.approx([0.2, 0.775])


GOOD_RAW = [0.2, 0.4, 0.6, 0.8]
GOOD_CORRECT = [0, 1, 0, 1]


@pytest.mark.parametrize(("raw", "correct", "kwargs", "message"), [
    ([], [], {}, "raw_scores and correct are empty"),
    (GOOD_RAW, [0, 1, 1], {}, "differ in length: 4 vs 3"),
    ([0.2, float("nan"), 0.6, 0.8], GOOD_CORRECT, {}, "raw_scores must be finite, got nan at index 1"),
    ([0.2, 0.4, float("inf"), 0.8], GOOD_CORRECT, {"score_kind": "margin"}, "must be finite, got inf at index 2"),
    ([0.2, 0.4, 1.2, 0.8], GOOD_CORRECT, {}, r"raw_scores must lie in \[0, 1\], got 1.2 at index 2"),
    ([[0.2, 0.4], [0.6, 0.8]], GOOD_CORRECT, {}, r"raw_scores must be 1-D, got shape \(2, 2\)"),
    (["a", "b", "c", "d"], GOOD_CORRECT, {}, "raw_scores must be numbers"),
    (GOOD_RAW, [0, 1, 0.5, 1], {}, "correct must hold booleans or 0/1, got 0.5 at index 2"),
    (GOOD_RAW, [1, 1, 1, 1], {}, "undefined with one class only: got 4 correct and 0 wrong edges"),
    (GOOD_RAW, [False] * 4, {}, "undefined with one class only: got 0 correct and 4 wrong edges"),
    (GOOD_RAW, GOOD_CORRECT, {"method": "beta"}, "unknown calibration method 'beta'; known: auto, platt, isotonic"),
    (GOOD_RAW, GOOD_CORRECT, {"score_kind": "odds"}, "unknown score_kind 'odds'; known: probability, margin"),
])
def test_bad_training_input_is_rejected_with_the_value_named(raw, correct, kwargs, message: str) -> None:
    with pytest.raises(TrustError, match=message):
        Calibrator.fit(raw, correct, **kwargs)


@pytest.mark.parametrize(("raw", "message"), [
    ([0.5, float("nan")], "raw scores must be finite, got nan at index 1"),
    ([0.5, -0.1], r"raw scores must lie in \[0, 1\], got -0.1 at index 1"),
    (["x"], "raw scores must be numbers"),
])
def test_bad_scores_at_run_time_are_rejected_with_the_value_named(raw, message: str) -> None:
    for calibrator in (Calibrator.from_json(PLATT), Calibrator.from_json(ISOTONIC)):
        with pytest.raises(TrustError, match=message):
            calibrator(raw)


def test_a_calibrator_owns_its_step_points() -> None:
    x, y = np.array([0.1, 0.9]), np.array([0.3, 0.7])
    calibrator = Calibrator("isotonic", calibration_edges=10, x_thresholds=x, y_thresholds=y)
    x[0] = 0.5  # the caller's array stays writable and changing it does not change the calibrator
    assert calibrator(np.array([0.1]))[0] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="read-only"):
        calibrator.y_thresholds[0] = 0.0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"slope": 1.0, "intercept": 0.0, "x_thresholds": [0.5], "y_thresholds": [0.5]}, "not x_thresholds"),
    ({"slope": 1.0}, "Platt intercept must be a finite number, got None"),
])
def test_the_constructor_checks_that_parameters_match_the_method(kwargs, message: str) -> None:
    with pytest.raises(TrustError, match=message):
        Calibrator("platt", calibration_edges=10, **kwargs)
    with pytest.raises(TrustError, match="not slope and intercept"):
        Calibrator("isotonic", calibration_edges=10, slope=1.0, x_thresholds=[0.5], y_thresholds=[0.5])


def test_a_platt_fit_on_margins_does_not_depend_on_their_unit() -> None:
    # On margins in large units L-BFGS stopped with the intercept near 0 (P(correct | margin 0) 0.50 instead of 0.38).
    rng = np.random.default_rng(0)
    margins_m = rng.normal(0.0, 0.5, 2000)
    correct = rng.random(2000) < 1.0 / (1.0 + np.exp(-(2.0 * margins_m - 0.5)))
    at_zero = [Calibrator.fit(margins_m * unit, correct, "platt", score_kind="margin")(np.array([0.0]))[0]
               for unit in (1.0, 1e2, 1e4)]
    assert at_zero == pytest.approx([at_zero[0]] * 3, abs=1e-6)
    assert at_zero[0] == pytest.approx(1.0 / (1.0 + np.exp(0.5)), abs=0.05)
