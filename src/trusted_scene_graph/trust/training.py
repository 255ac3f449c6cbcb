"""``tsg trust train`` and ``tsg trust report``: from labelled edge tables to a saved model, and a model's report.

Both read the ``edges.npz`` tables ``tsg eval`` writes (:mod:`~trusted_scene_graph.trust.dataset`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trusted_scene_graph.trust import TrustError
from trusted_scene_graph.trust.dataset import EDGES_FILE, EdgeTable, load_tables
from trusted_scene_graph.trust.model import METADATA_FILE, MODEL_FILE, TrustModel, data_hash, is_training_data


def train(data: Sequence[Path], out_dir: Path, *, command: str | None = None, **settings: Any) -> TrustModel:
    """Fit a :class:`TrustModel` (``settings`` are its keyword arguments) on the joined tables and save it.

    Besides what :meth:`TrustModel.fit` records, the metadata gets the tables (``training.data``: paths relative to
    the working directory when they lie under it) and, in ``provenance``, ``command`` (the training command line, as
    given) and ``tables``: per table its path, edge count, content hash (:func:`~.model.data_hash`: of the edges,
    whatever their order, not of the file's bytes) and, when a ``tsg eval`` report sits next to it, that
    evaluation's config path, the config file's SHA-256 as it is now (None when it cannot be read), overrides and
    git commit."""
    check_output_dir(out_dir, "trust model")
    _check_replaceable(Path(out_dir))
    tables = [EdgeTable.load(path) for path in data]
    table = EdgeTable.concatenate(tables)
    model = TrustModel(**settings).fit(table.features, table.correct, table.group)
    model.metadata_["training"]["data"] = [relative_path(path) for path in data]
    model.metadata_["provenance"]["command"] = command
    model.metadata_["provenance"]["tables"] = [
        {"path": relative_path(path), "edges": len(part), "sha256": data_hash(part.features, part.correct, part.group),
         "evaluation": _evaluation_provenance(Path(path))}
        for path, part in zip(data, tables, strict=True)]
    try:
        model.save(out_dir)
    except OSError as exc:
        raise TrustError(f"cannot write the trust model into {out_dir}: {exc}") from exc
    return model


def report(model_dir: Path, data: Sequence[Path], out_dir: Path) -> dict[str, Any]:
    """The model and both baselines on the joined tables (held-out data: not the training tables), written by
    :func:`~trusted_scene_graph.trust.report.write_trust_report`; returns its metrics.

    ``model_dir`` may be the keyword 'default' (the shipped model). The groups of the data (scenes: see
    :mod:`~trusted_scene_graph.trust.dataset`) are compared with the model's training groups; any overlap is stated
    at the top of ``report.md`` and in ``metrics.json``, since it makes the report an in-sample one."""
    from trusted_scene_graph.trust.model import DEFAULT_MODEL_DIR
    from trusted_scene_graph.trust.report import write_trust_report

    model_dir = DEFAULT_MODEL_DIR if str(model_dir) == "default" else model_dir
    check_output_dir(out_dir, "report")
    if (Path(out_dir) / EDGES_FILE).exists():
        # A tsg eval directory: the report's metrics.json, report.md and figures would replace the evaluation's.
        raise TrustError(f"--out {out_dir} holds a tsg eval's output ({EDGES_FILE}); its metrics.json, report.md and "
                         "figures would be overwritten: write the trust report into a directory of its own")
    model = TrustModel.load(model_dir)
    table = load_tables(data)
    if len(table) == 0:
        raise TrustError(f"the edge tables {[str(p) for p in data]} hold no facts")
    scorers = {"fused": model.trust(table.features), **model.baseline_probabilities(table.features)}
    if "vlm_confidence" not in scorers:  # no VLM answers in training: the baseline is the constant "no information"
        scorers["vlm_confidence"] = np.full(len(table), 0.5)
    training = model.metadata_.get("training", {})
    same_data = is_training_data(training, table.features, table.correct, table.group)
    groups = set(np.unique(table.group).tolist())
    shared = sorted(groups & set(training.get("groups_list", [])))
    notes = [f"Model: `{model_dir}` ({model.description}). Data: {', '.join(f'`{p}`' for p in data)}."]
    if shared:
        notes.append(f"**Warning: {len(shared)} of the {len(groups)} scenes of this data were in the model's training "
                     f"data** (e.g. `{shared[0]}`): these numbers are partly in-sample. Report on scenes the model "
                     "has not seen.")
    if model.warning:
        notes.append(f"**Warning: {model.warning}.**")
    extra = {"model": str(model_dir), "data": [str(p) for p in data], "groups": len(groups),
             "data_is_training_data": same_data, "groups_also_in_training": len(shared),
             "model_metrics_held_out": model.metadata_.get("metrics_held_out", {}), "model_warning": model.warning}
    try:
        return write_trust_report(out_dir, scorers, table.correct, target_precision=model.threshold_.target_precision,
                                  delta=model.threshold_.delta, model_threshold=model.threshold,
                                  feature_importance_gain=model.feature_importance("gain"), extra=extra, notes=notes)
    except OSError as exc:
        raise TrustError(f"cannot write the trust report into {out_dir}: {exc}") from exc


def relative_path(path: Path | str) -> str:
    """``path`` relative to the working directory when it lies under it (a model trained in a checkout names its
    tables the same on every machine), else absolute."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


def _evaluation_provenance(path: Path) -> dict[str, Any] | None:
    """What ``tsg eval`` recorded about the run that wrote the edge table at ``path`` (its ``metrics.json``, next to
    ``edges.npz``), with the SHA-256 of its config file; None when there is no readable report."""
    report_path = (path if path.is_dir() else path.parent) / "metrics.json"
    try:
        recorded = json.loads(report_path.read_text()).get("provenance")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    if not isinstance(recorded, dict):
        return None
    config = recorded.get("config")
    config_sha256 = None
    if isinstance(config, str):
        try:
            config_sha256 = hashlib.sha256(Path(config).read_bytes()).hexdigest()
        except OSError:
            config_sha256 = None
    return {"config": config, "config_sha256": config_sha256, "overrides": recorded.get("overrides"),
            "git_commit": recorded.get("git_commit"), "command": recorded.get("command")}


def _check_replaceable(out_dir: Path) -> None:
    """A trust model goes into a new or empty directory, or replaces the model in one (retraining), never among
    other files (a tsg eval output, say), which it would mix with or overwrite."""
    if not out_dir.is_dir():
        return
    others = sorted(p.name for p in out_dir.iterdir() if p.name not in (MODEL_FILE, METADATA_FILE)
                    and not p.name.startswith(".tmp-"))
    if others:
        raise TrustError(f"--out {out_dir} holds files that are not a trust model's ({', '.join(others[:3])}"
                         f"{', ...' if len(others) > 3 else ''}): give a new or empty directory, or a trust model's "
                         "directory to replace that model")


def check_output_dir(out_dir: Path, what: str) -> None:
    """Refuse an output directory that cannot be made before any work is done (a file, an unwritable parent)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise TrustError(f"--out {out_dir} is a file; the {what} is a directory")
    existing = next(parent for parent in (out_dir, *out_dir.parents) if parent.exists())
    if not existing.is_dir():
        raise TrustError(f"--out {out_dir}: {existing} is a file, so the {what} directory cannot be made below it")
    if not os.access(existing, os.W_OK):
        raise TrustError(f"--out {out_dir}: cannot write into {existing}")
