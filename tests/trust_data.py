"""Synthetic labelled edges for the trust-model tests (shared by test_trust_model and test_trust_cli).

Whether a claim is correct depends on how clear-cut the geometry is (normalised margin), on ambiguity (overlapping
boxes) and on detection quality, while the VLM's confidence is only weakly informative (as Imran & Lee measured for
real VLMs).
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from trusted_scene_graph.trust.features import FEATURE_INDEX, FEATURE_NAMES


def synthetic_edges(groups: int, edges_per_group: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, correct, group) of claims whose error depends on ambiguity (see the module docstring)."""
    rng = np.random.default_rng(seed)
    count = groups * edges_per_group
    table = np.full((count, len(FEATURE_NAMES)), np.nan, dtype=np.float32)
    alignment = rng.exponential(1.0, count)
    iou = rng.beta(0.7, 3.0, count)
    score = rng.uniform(0.3, 1.0, count)
    # The truth: clear margins help, overlapping boxes and weak detections hurt.
    correct = rng.random(count) < expit(2.5 * alignment - 7.0 * iou + 4.0 * (score - 0.6) + 0.5)
    vlm = expit(0.6 * np.where(correct, 1.0, -1.0) + rng.normal(0.0, 1.0, count))  # barely separates
    columns = {"predicate": rng.integers(0, 11, count), "claim_from_vlm": np.zeros(count),
               "margin_m": 0.05 * alignment, "alignment_3d": alignment, "iou_2d": iou, "subject_score": score,
               "object_score": rng.uniform(0.3, 1.0, count), "vlm_p_claim": vlm,
               "vlm_nmlp": rng.normal(3.0, 0.5, count)}
    for name, values in columns.items():
        table[:, FEATURE_INDEX[name]] = values
    group = np.repeat(np.array([f"scene-{seed}-{g}" for g in range(groups)]), edges_per_group)
    return table, correct, group
