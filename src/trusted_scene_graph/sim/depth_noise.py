"""Noise of a real RGB-D camera, applied to a simulator's exact z-depth (float32 metres, NaN = no return).

:func:`apply_depth_noise` does, in this order (all randomness from the caller's ``numpy.random.Generator``):

1. **range**: pixels whose true depth is outside ``[min_range_m, max_range_m]`` get no return (NaN), as do
   pixels that already had none (NaN, ±inf or ``<= 0``);
2. **edges**: a valid pixel whose depth differs from a valid 4-neighbour by more than ``edge_jump_m`` lies on a
   depth discontinuity (both sides are marked: stereo and structured light both lose or smear pixels there); the
   mark is grown by ``edge_width_px`` pixels (square neighbourhood) and each marked pixel is dropped with
   probability ``edge_dropout``;
3. **random dropout**: any remaining pixel is dropped with probability ``dropout_rate``;
4. **axial noise**: every remaining pixel gets Gaussian noise of standard deviation
   ``scale * (sigma_a_m + sigma_b_per_m * (z - sigma_z0_m)**2)`` at its true depth ``z``. A noisy value ``<= 0``
   (possible only with a huge ``scale``) becomes NaN: a depth camera never reports it.

The default model (and the ``none`` preset) changes nothing and draws no random numbers. Random draws cover the
whole image, so the noise at a pixel does not depend on which other pixels are valid.

Presets:

- ``kinect``: the axial model of Nguyen, Izadi & Lovell, "Modeling Kinect Sensor Noise for Improved 3D
  Reconstruction and Tracking" (3DIMPVT 2012), ``sigma(z) = 0.0012 + 0.0019 (z - 0.4)^2`` m for surfaces at 10-60°
  to the optical axis (also the Kinect model of ETH's RotorS simulator, ``depth_noise_model.cpp``), range 0.4-4 m
  (Kinect v1 near limit to default-mode far limit);
- ``realsense``: the stereo RMS-error law of Intel's D400 white paper (Grunnet-Jepsen, Sweetser & Woodfill,
  "Tuning depth cameras for best performance"): ``sigma(z) = z^2 * subpixel / (focal_px * baseline_m)``. For a D435
  at 848x480 (baseline 50 mm, 90° horizontal field of view, so ``focal_px = 424``) and a subpixel RMS of 0.08 px:
  ``b = 0.08 / (424 * 0.05) = 0.00377 1/m``, with ``a = z0 = 0``; range 0.11-10 m (D435 minimum depth at 848x480).

Edge and dropout settings of the presets are plausible, not measured: a one-pixel band at jumps over 3 cm, half of
it dropped, and 0.5% random holes.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from trusted_scene_graph.sim import SimError


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class DepthNoiseModel:
    """A depth camera's noise; see the module docstring for what each setting does. All zero means no change."""

    sigma_a_m: float = 0.0
    sigma_b_per_m: float = 0.0
    sigma_z0_m: float = 0.0
    scale: float = 1.0
    edge_jump_m: float = 0.03
    edge_dropout: float = 0.0
    edge_width_px: int = 0
    dropout_rate: float = 0.0
    min_range_m: float = 0.0
    max_range_m: float = math.inf

    def __post_init__(self) -> None:
        for name in ("sigma_a_m", "sigma_b_per_m", "sigma_z0_m", "scale", "min_range_m"):
            value = getattr(self, name)
            if not (_is_number(value) and math.isfinite(value) and value >= 0.0):
                raise SimError(f"depth noise {name} must be a finite number >= 0, got {value!r}")
        if not (_is_number(self.edge_jump_m) and math.isfinite(self.edge_jump_m) and self.edge_jump_m > 0.0):
            raise SimError(f"depth noise edge_jump_m must be a finite number > 0, got {self.edge_jump_m!r}")
        for name in ("edge_dropout", "dropout_rate"):
            value = getattr(self, name)
            if not (_is_number(value) and 0.0 <= value <= 1.0):
                raise SimError(f"depth noise {name} must be a probability in [0, 1], got {value!r}")
        if isinstance(self.edge_width_px, bool) or not isinstance(self.edge_width_px, int) or self.edge_width_px < 0:
            raise SimError(f"depth noise edge_width_px must be an integer >= 0, got {self.edge_width_px!r}")
        if not (_is_number(self.max_range_m) and self.max_range_m > self.min_range_m):
            raise SimError(f"depth noise max_range_m must exceed min_range_m ({self.min_range_m} m), "
                           f"got {self.max_range_m!r}")

    @property
    def is_identity(self) -> bool:
        """True when :func:`apply_depth_noise` returns the depth unchanged (NaN for no return)."""
        no_noise = self.scale == 0.0 or (self.sigma_a_m == 0.0 and self.sigma_b_per_m == 0.0)
        return (no_noise and self.edge_dropout == 0.0 and self.dropout_rate == 0.0
                and self.min_range_m == 0.0 and self.max_range_m == math.inf)

    def sigma_m(self, depth_m: np.ndarray | float) -> np.ndarray:
        """Standard deviation of the axial noise at true depth ``depth_m`` (metres)."""
        depth = np.asarray(depth_m, dtype=np.float64)
        return self.scale * (self.sigma_a_m + self.sigma_b_per_m * (depth - self.sigma_z0_m) ** 2)


# Presets' edge/dropout settings (see the module docstring: plausible, not measured).
_EDGES = {"edge_jump_m": 0.03, "edge_dropout": 0.5, "edge_width_px": 1, "dropout_rate": 0.005}

DEPTH_NOISE_PRESETS: dict[str, DepthNoiseModel] = {
    "none": DepthNoiseModel(),
    "kinect": DepthNoiseModel(sigma_a_m=0.0012, sigma_b_per_m=0.0019, sigma_z0_m=0.4,
                              min_range_m=0.4, max_range_m=4.0, **_EDGES),
    "realsense": DepthNoiseModel(sigma_a_m=0.0, sigma_b_per_m=0.08 / (424.0 * 0.05), sigma_z0_m=0.0,
                                 min_range_m=0.11, max_range_m=10.0, **_EDGES),
}


def depth_noise_from_name(name: str) -> DepthNoiseModel:
    """The preset called ``name``; raises :class:`SimError` listing the presets for an unknown name."""
    try:
        return DEPTH_NOISE_PRESETS[name]
    except KeyError:
        raise SimError(f"unknown depth noise preset {name!r}; presets: {', '.join(sorted(DEPTH_NOISE_PRESETS))}") \
            from None


def _edge_mask(depth: np.ndarray, valid: np.ndarray, jump_m: float, width_px: int) -> np.ndarray:
    """Valid pixels next to a valid 4-neighbour more than ``jump_m`` away, grown by ``width_px`` pixels."""
    edge = np.zeros(depth.shape, dtype=bool)
    with np.errstate(invalid="ignore"):  # NaN neighbours compare False: a hole is not a jump
        vertical = np.abs(depth[1:, :] - depth[:-1, :]) > jump_m
        horizontal = np.abs(depth[:, 1:] - depth[:, :-1]) > jump_m
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    if width_px > 0 and edge.any():
        from scipy.ndimage import maximum_filter

        # A maximum filter over a square is a dilation by it, and about twice as fast as binary_dilation here.
        edge = maximum_filter(edge, size=2 * width_px + 1)
    return edge & valid


def apply_depth_noise(depth_m: np.ndarray, model: DepthNoiseModel, rng: np.random.Generator) -> np.ndarray:
    """A noisy copy (float32, NaN = no return) of the 2-D true depth ``depth_m``; the input is not modified.

    Deterministic for a generator in a given state. See the module docstring for the steps.
    """
    depth = np.asarray(depth_m)
    if depth.ndim != 2:
        raise SimError(f"depth image must be 2-D (height, width), got shape {depth.shape}")
    if not np.issubdtype(depth.dtype, np.floating):
        raise SimError(f"depth image must be floating-point metres, got dtype {depth.dtype}")
    noisy = np.array(depth, dtype=np.float32, copy=True)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(noisy) & (noisy > 0.0)
        valid &= (noisy >= model.min_range_m) & (noisy <= model.max_range_m)
    if model.is_identity:
        noisy[~valid] = np.nan
        return noisy
    true = np.where(valid, noisy, np.float32(np.nan))
    keep = valid.copy()
    if model.edge_dropout > 0.0:
        edge = _edge_mask(true, valid, model.edge_jump_m, model.edge_width_px)
        keep &= ~(edge & (rng.random(depth.shape, dtype=np.float32) < model.edge_dropout))
    if model.dropout_rate > 0.0:
        keep &= rng.random(depth.shape, dtype=np.float32) >= model.dropout_rate
    if model.scale > 0.0 and (model.sigma_a_m > 0.0 or model.sigma_b_per_m > 0.0):
        sigma = model.scale * (model.sigma_a_m + model.sigma_b_per_m * (true - np.float32(model.sigma_z0_m)) ** 2)
        noisy = true + sigma.astype(np.float32) * rng.standard_normal(depth.shape, dtype=np.float32)
    else:
        noisy = true
    with np.errstate(invalid="ignore"):
        keep &= noisy > 0.0
    noisy[~keep] = np.nan
    return noisy
