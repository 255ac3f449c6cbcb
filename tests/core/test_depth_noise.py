"""Specification of the simulated depth-camera noise: sigma(z), edges, dropout, range, identity, determinism.

Statistical checks use 480x640 = 307,200 pixels; a sample standard deviation of that many Gaussian draws is within
0.5% of the true one (4 standard errors), so the 2% tolerances pin the model, not the seed.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from trusted_scene_graph.sim import SimError
from trusted_scene_graph.sim.depth_noise import (
    DEPTH_NOISE_PRESETS,
    DepthNoiseModel,
    apply_depth_noise,
    depth_noise_from_name,
)

HEIGHT, WIDTH = 480, 640
KINECT = DEPTH_NOISE_PRESETS["kinect"]
NOISE_ONLY = dataclasses.replace(KINECT, edge_dropout=0.0, dropout_rate=0.0)  # just the axial noise
EDGES_ONLY = DepthNoiseModel(edge_dropout=1.0, edge_jump_m=0.03)  # no noise: every change is an edge drop


def flat(depth_m: float) -> np.ndarray:
    return np.full((HEIGHT, WIDTH), depth_m, np.float32)


def step(near_m: float = 1.0, far_m: float = 1.5, column: int = 40, width: int = 80) -> np.ndarray:
    """A 20-row image: ``near_m`` left of ``column``, ``far_m`` from it on."""
    depth = np.full((20, width), near_m, np.float32)
    depth[:, column:] = far_m
    return depth


def dropped_columns(noisy: np.ndarray) -> list[int]:
    return np.flatnonzero(np.isnan(noisy).any(axis=0)).tolist()


# --- axial noise --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth_m", [0.5, 1.0, 2.0, 3.5])
def test_kinect_noise_is_unbiased_with_the_standard_deviation_of_nguyen_et_al(depth_m: float) -> None:
    expected_sigma_m = 0.0012 + 0.0019 * (depth_m - 0.4) ** 2
    assert float(KINECT.sigma_m(depth_m)) == pytest.approx(expected_sigma_m)
    error = apply_depth_noise(flat(depth_m), NOISE_ONLY, np.random.default_rng(0)).astype(np.float64) - depth_m
    assert np.isfinite(error).all()
    assert np.std(error) == pytest.approx(expected_sigma_m, rel=0.02)
    assert abs(np.mean(error)) < 5 * expected_sigma_m / math.sqrt(error.size)


def test_noise_follows_the_true_depth_of_each_pixel_and_the_scale() -> None:
    depth = flat(1.0)
    depth[:, WIDTH // 2:] = 3.0
    model = dataclasses.replace(NOISE_ONLY, scale=2.0)
    error = apply_depth_noise(depth, model, np.random.default_rng(1)).astype(np.float64) - depth
    for side, depth_m in ((np.s_[:, :WIDTH // 2 - 1], 1.0), (np.s_[:, WIDTH // 2 + 1:], 3.0)):
        assert np.std(error[side]) == pytest.approx(2.0 * (0.0012 + 0.0019 * (depth_m - 0.4) ** 2), rel=0.03)


def test_realsense_noise_grows_with_the_square_of_depth() -> None:
    realsense = DEPTH_NOISE_PRESETS["realsense"]
    assert float(realsense.sigma_m(1.0)) == pytest.approx(0.08 / (424 * 0.05))  # ~3.8 mm at 1 m
    assert float(realsense.sigma_m(2.0)) == pytest.approx(4 * float(realsense.sigma_m(1.0)))
    noise_only = dataclasses.replace(realsense, edge_dropout=0.0, dropout_rate=0.0)
    error = apply_depth_noise(flat(2.0), noise_only, np.random.default_rng(2)).astype(np.float64) - 2.0
    assert np.std(error) == pytest.approx(float(realsense.sigma_m(2.0)), rel=0.02)


# --- edges and dropout --------------------------------------------------------------------------------------------


def test_both_sides_of_a_depth_step_are_dropped_and_nothing_else_changes() -> None:
    depth = step()
    noisy = apply_depth_noise(depth, EDGES_ONLY, np.random.default_rng(0))
    assert dropped_columns(noisy) == [39, 40]
    kept = ~np.isnan(noisy)
    np.testing.assert_array_equal(noisy[kept], depth[kept])


def test_the_edge_band_is_grown_by_edge_width_px() -> None:
    noisy = apply_depth_noise(step(), dataclasses.replace(EDGES_ONLY, edge_width_px=2), np.random.default_rng(0))
    assert dropped_columns(noisy) == [37, 38, 39, 40, 41, 42]


def test_jumps_below_edge_jump_m_and_holes_are_not_edges() -> None:
    ramp = np.tile(np.linspace(1.0, 1.79, 80, dtype=np.float32), (20, 1))  # 1 cm per pixel
    ramp[10, 20] = np.nan  # a hole (no return) is not a depth discontinuity
    noisy = apply_depth_noise(ramp, EDGES_ONLY, np.random.default_rng(0))
    assert np.isnan(noisy).sum() == 1 and np.isnan(noisy[10, 20])


def test_edge_pixels_are_dropped_with_probability_edge_dropout() -> None:
    depth = np.tile(step(width=WIDTH), (HEIGHT // 20, 1))
    depth[:, 200:] = 2.5  # a second step: 4 edge columns of 480 rows
    model = dataclasses.replace(EDGES_ONLY, edge_dropout=0.3)
    noisy = apply_depth_noise(depth, model, np.random.default_rng(0))
    edge_columns = [39, 40, 199, 200]
    fraction = np.isnan(noisy[:, edge_columns]).mean()
    assert fraction == pytest.approx(0.3, abs=4 * math.sqrt(0.3 * 0.7 / (HEIGHT * 4)))
    assert set(dropped_columns(noisy)) == set(edge_columns)


def test_random_dropout_removes_the_configured_fraction_anywhere() -> None:
    noisy = apply_depth_noise(flat(1.0), DepthNoiseModel(dropout_rate=0.05), np.random.default_rng(0))
    assert np.isnan(noisy).mean() == pytest.approx(0.05, abs=4 * math.sqrt(0.05 * 0.95 / (HEIGHT * WIDTH)))
    np.testing.assert_array_equal(noisy[~np.isnan(noisy)], 1.0)


# --- range and invalid input pixels -------------------------------------------------------------------------------


def test_pixels_outside_the_range_or_without_return_come_out_nan() -> None:
    depth = np.array([[0.3, 1.0, 5.0, np.nan, np.inf, 0.0, -1.0]], np.float32)
    noisy = apply_depth_noise(depth, NOISE_ONLY, np.random.default_rng(0))
    assert np.isnan(noisy[0, [0, 2, 3, 4, 5, 6]]).all(), "0.3 m and 5 m are outside Kinect's 0.4-4 m"
    assert noisy[0, 1] == pytest.approx(1.0, abs=0.01)


def test_the_none_preset_is_the_identity_and_draws_no_random_numbers() -> None:
    depth = np.random.default_rng(5).uniform(0.2, 6.0, (HEIGHT, WIDTH)).astype(np.float32)
    depth[100:120, 30:90] = np.nan
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    noisy = apply_depth_noise(depth, depth_noise_from_name("none"), rng)
    assert DEPTH_NOISE_PRESETS["none"].is_identity
    assert noisy.dtype == np.float32 and noisy is not depth
    np.testing.assert_array_equal(noisy, depth)  # NaN positions must match too
    assert rng.bit_generator.state == state


def test_a_seeded_generator_replays_exactly_and_the_input_is_untouched() -> None:
    depth = np.tile(step(width=WIDTH), (HEIGHT // 20, 1)).astype(np.float64)
    original = depth.copy()
    first = apply_depth_noise(depth, KINECT, np.random.default_rng(42))
    second = apply_depth_noise(depth, KINECT, np.random.default_rng(42))
    other = apply_depth_noise(depth, KINECT, np.random.default_rng(43))
    np.testing.assert_array_equal(first, second)
    assert first.dtype == np.float32
    assert not np.array_equal(first, other, equal_nan=True)
    np.testing.assert_array_equal(depth, original)


# --- validation ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("settings", "message"), [
    ({"sigma_a_m": -0.001}, "sigma_a_m must be a finite number >= 0, got -0.001"),
    ({"sigma_b_per_m": float("nan")}, "sigma_b_per_m must be a finite number >= 0, got nan"),
    ({"scale": True}, "scale must be a finite number >= 0, got True"),
    ({"edge_jump_m": 0.0}, "edge_jump_m must be a finite number > 0, got 0.0"),
    ({"edge_dropout": 1.5}, r"edge_dropout must be a probability in \[0, 1\], got 1.5"),
    ({"dropout_rate": -0.1}, r"dropout_rate must be a probability in \[0, 1\], got -0.1"),
    ({"edge_width_px": 1.5}, "edge_width_px must be an integer >= 0, got 1.5"),
    ({"edge_width_px": -1}, "edge_width_px must be an integer >= 0, got -1"),
    ({"min_range_m": 2.0, "max_range_m": 1.0}, r"max_range_m must exceed min_range_m \(2.0 m\), got 1.0"),
])
def test_invalid_settings_are_rejected_naming_the_value(settings: dict, message: str) -> None:
    with pytest.raises(SimError, match=message):
        DepthNoiseModel(**settings)


def test_an_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(SimError, match="unknown depth noise preset 'kinnect'; presets: kinect, none, realsense"):
        depth_noise_from_name("kinnect")


def test_the_depth_image_must_be_a_2d_float_image() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(SimError, match=r"must be 2-D \(height, width\), got shape \(2, 3, 1\)"):
        apply_depth_noise(np.ones((2, 3, 1), np.float32), KINECT, rng)
    with pytest.raises(SimError, match="must be floating-point metres, got dtype uint16"):
        apply_depth_noise(np.ones((2, 3), np.uint16), KINECT, rng)
