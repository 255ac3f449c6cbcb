"""``tsg trust train`` and ``tsg trust report``: from labelled edge tables to a saved model, and a model's report.

Both read the ``edges.npz`` tables ``tsg eval`` writes (:mod:`~trusted_scene_graph.trust.dataset`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trusted_scene_graph.trust import TrustError
from trusted_scene_graph.trust.dataset import load_tables
from trusted_scene_graph.trust.model import TrustModel


def train(data: Sequence[Path], out_dir: Path, **settings: Any) -> TrustModel:
    """Fit a :class:`TrustModel` (``settings`` are its keyword arguments) on the joined tables and save it."""
    table = load_tables(data)
    if out_dir.exists() and not out_dir.is_dir():
        raise TrustError(f"--out {out_dir} is a file; the trust model is a directory")
    model = TrustModel(**settings).fit(table.features, table.correct, table.group)
    model.metadata_["training"]["data"] = [str(path) for path in data]
    model.save(out_dir)
    return model


def report(model_dir: Path, data: Sequence[Path], out_dir: Path) -> dict[str, Any]:
    """The model and both baselines on the joined tables (held-out data: not the training tables), written by
    :func:`~trusted_scene_graph.trust.report.write_trust_report`; returns its metrics."""
    from trusted_scene_graph.trust.model import data_hash
    from trusted_scene_graph.trust.report import write_trust_report

    model = TrustModel.load(model_dir)
    table = load_tables(data)
    if len(table) == 0:
        raise TrustError(f"the edge tables {[str(p) for p in data]} hold no edges")
    scorers = {"fused": model.trust(table.features), **model.baseline_probabilities(table.features)}
    if "vlm_confidence" not in scorers:  # no VLM answers in training: the baseline is the constant "no information"
        scorers["vlm_confidence"] = np.full(len(table), 0.5)
    training = model.metadata_.get("training", {})
    same_data = training.get("data_sha256") == data_hash(table.features, table.correct, table.group)
    groups_seen = sorted(set(np.unique(table.group).tolist()) & set(training.get("groups_list", [])))
    extra = {"model": str(model_dir), "data": [str(p) for p in data], "groups": int(np.unique(table.group).size),
             "data_is_training_data": same_data, "groups_also_in_training": len(groups_seen),
             "model_metrics_held_out": model.metadata_.get("metrics_held_out", {})}
    return write_trust_report(out_dir, scorers, table.correct, target_precision=model.threshold_.target_precision,
                              delta=model.threshold_.delta, model_threshold=model.threshold,
                              feature_importance_gain=model.feature_importance("gain"), extra=extra)
