"""The trust model: XGBoost fuses the per-edge features, a post-hoc calibrator turns its output into P(correct), and
a Learn-then-Test threshold prunes with a precision guarantee.

:class:`TrustModel` follows scikit-learn's estimator habits: ``__init__`` stores settings, :meth:`~TrustModel.fit`
validates and learns, :meth:`~TrustModel.predict_proba` checks it is fitted. ``fit`` splits the edges *by group*
(an episode or an image: no scene is in two splits) into three disjoint parts:

1. ``fit``: the XGBoost classifier (``binary:logistic``; NaN features are XGBoost's missing values);
2. ``calibration``: the calibrator on the classifier's output (Platt below 1,000 edges, isotonic above;
   :mod:`~trusted_scene_graph.trust.calibration`), and the calibrators of the two baselines (geometric alignment
   only, VLM confidence only) that ``tsg trust report`` compares against;
3. ``threshold``: the pruning threshold for ``target_precision`` at risk ``delta``
   (:func:`~trusted_scene_graph.trust.threshold.choose_threshold`, with the scenes of this split as the unit of its
   test), and the held-out metrics stored with the model.

Saved as two JSON files in one directory, no pickle: ``model.json`` (XGBoost's own JSON format) and
``trust_model.json`` (feature schema version and names, an order-independent training-data hash, splits, settings,
calibrators, threshold, metrics, and the provenance: git commit, library versions, settings hash, command and a hash
per input table). :meth:`TrustModel.load` refuses files that are missing, corrupt, edited into something invalid, or
made for another feature schema.

:class:`MarginPriorTrust` is the uncalibrated geometric prior of earlier versions (logistic of margin / scale), kept
for comparison (``trust.model: prior``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from scipy.special import expit

from trusted_scene_graph.arrays import json_ready
from trusted_scene_graph.trust import TrustError
from trusted_scene_graph.trust.calibration import METHODS as CALIBRATION_METHODS
from trusted_scene_graph.trust.calibration import Calibrator
from trusted_scene_graph.trust.features import FEATURE_INDEX, FEATURE_NAMES, FEATURE_SCHEMA_VERSION
from trusted_scene_graph.trust.threshold import (
    DEFAULT_GRID,
    EDGE_LEVEL_FIELDS,
    PRUNE_ALL_THRESHOLD,
    THRESHOLD_METHODS,
    ThresholdChoice,
    choose_threshold,
    min_rejectable_count,
    unreliable_guarantee,
)

MODEL_FILE = "model.json"
METADATA_FILE = "trust_model.json"
METADATA_FORMAT = "trusted_scene_graph.trust_model"
# 2: the threshold's scene-level test fields, the order-independent data_sha256, and the provenance section.
METADATA_FORMAT_VERSION = 2
#: Format versions :meth:`TrustModel.load` reads: 1 (before version 2's additions) loads with an edge-level threshold
#: (:data:`~trusted_scene_graph.trust.threshold.EDGE_LEVEL_FIELDS`) and no provenance.
READABLE_FORMAT_VERSIONS = (1, 2)
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
# The geometric prior's threshold (the default of versions before the learned model); it guarantees nothing.
PRIOR_THRESHOLD = 0.6
BASELINES = ("geometry_alignment", "vlm_confidence")
_MIN_GROUPS = 3
# The constructor settings written to trust_model.json and read back by TrustModel.load (n_jobs is the machine's).
SAVED_SETTINGS = ("n_estimators", "max_depth", "learning_rate", "min_child_weight", "calibration",
                  "calibration_fraction", "threshold_fraction", "target_precision", "delta", "threshold_method",
                  "random_state")
_CONSTRUCTOR_SETTINGS = (*SAVED_SETTINGS, "n_jobs", "feature_names")
_FITTED_ATTRIBUTES = ("booster_", "calibrator_", "baseline_calibrators_", "threshold_", "metadata_",
                      "fitted_settings_")
#: The sections of trust_model.json that :meth:`TrustModel.load` keeps in ``metadata_``.
_METADATA_SECTIONS = ("training", "metrics_held_out", "provenance")
#: Libraries whose versions a trained model records: name -> module (the module's __version__, not the installed
#: distribution's: XGBoost's CPU-only wheel is the distribution xgboost-cpu).
_RECORDED_LIBRARIES = {"xgboost": "xgboost", "scikit-learn": "sklearn", "numpy": "numpy", "scipy": "scipy"}
CALIBRATION_SETTINGS = ("auto", *CALIBRATION_METHODS)


class EdgeTrustModel(Protocol):
    """What the pipeline needs from a trust model."""

    threshold: float
    description: str
    warning: str | None  # why its own threshold misleads (none feasible, or an unreliable guarantee), else None

    def trust(self, features: np.ndarray) -> np.ndarray: ...


def baseline_scores(features: np.ndarray, feature_names: Sequence[str] = FEATURE_NAMES) -> dict[str, np.ndarray]:
    """The two baselines' raw scores on a feature table, as probabilities for a calibrator.

    ``geometry_alignment``: ``expit(alignment_3d)`` (a monotone map of the normalised margin).
    ``vlm_confidence``: ``vlm_p_claim``; an edge without a VLM answer gets 0.5 (no information), so both baselines
    score the same edges as the fused model.
    """
    index = {name: k for k, name in enumerate(feature_names)}
    scores = {}
    if "alignment_3d" in index:
        alignment = features[:, index["alignment_3d"]].astype(np.float64)
        scores["geometry_alignment"] = expit(np.nan_to_num(alignment, nan=0.0))
    if "vlm_p_claim" in index:
        vlm = features[:, index["vlm_p_claim"]].astype(np.float64)
        scores["vlm_confidence"] = np.where(np.isnan(vlm), 0.5, vlm)
    return scores


def data_hash(features: np.ndarray, correct: np.ndarray, groups: np.ndarray) -> str:
    """SHA-256 of a table of edges (features, labels, groups) as a multiset of rows: the same edges in any order,
    joined from the same tables in any order, give the same hash. Stored so a model names the data it learnt.

    Each row is its float32 feature bytes, its label byte and the SHA-256 of its group's name (fixed width, so the
    longest group name of the table does not matter); the rows are sorted as bytes (never as floats: NaN has no
    order) and hashed with their count."""
    table = np.ascontiguousarray(features, dtype="<f4")
    labels = np.asarray(correct, dtype=np.bool_).reshape(-1, 1).view(np.uint8)
    names, inverse = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    name_digests = np.array([list(hashlib.sha256(name.encode()).digest()) for name in names.tolist()],
                            dtype=np.uint8).reshape(names.size, 32)
    rows = np.ascontiguousarray(np.hstack([table.view(np.uint8).reshape(table.shape[0], -1), labels,
                                           name_digests[inverse.reshape(-1)]]))
    ordered = np.sort(rows.view(np.dtype((np.void, rows.shape[1]))).ravel())
    digest = hashlib.sha256(f"edges {rows.shape[0]} row bytes {rows.shape[1]}\n".encode())
    digest.update(ordered.tobytes())
    return digest.hexdigest()


def training_provenance(settings: Mapping[str, Any]) -> dict[str, Any]:
    """What a model was trained with, as :meth:`TrustModel.fit` records it in the metadata's ``provenance``: the
    package version, its git commit and whether tracked files differ from it (None outside a git checkout: never an
    error), the Python and library versions, and the SHA-256 of the settings (the training configuration, as JSON with
    sorted keys). ``command`` and ``tables`` are None here; ``tsg trust train`` fills them in
    (:func:`~trusted_scene_graph.trust.training.train`)."""
    import importlib
    import platform

    import trusted_scene_graph
    from trusted_scene_graph.evaluation.report import git_commit

    commit, dirty = git_commit(Path(trusted_scene_graph.__file__).resolve().parent)
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name, module in _RECORDED_LIBRARIES.items():
        try:
            versions[name] = str(importlib.import_module(module).__version__)
        except ImportError:
            versions[name] = None
    settings_json = json.dumps(json_ready(dict(settings)), sort_keys=True)
    return {"package_version": trusted_scene_graph.__version__, "git_commit": commit, "git_dirty": dirty,
            "versions": versions, "settings_sha256": hashlib.sha256(settings_json.encode()).hexdigest(),
            "command": None, "tables": None}


def _legacy_data_hash(features: np.ndarray, correct: np.ndarray, groups: np.ndarray) -> str:
    """The order-dependent ``data_sha256`` of format version 1, to recognise the training data of such a model."""
    digest = hashlib.sha256()
    for array in (np.ascontiguousarray(features, dtype=np.float32), np.ascontiguousarray(correct, dtype=np.bool_),
                  np.ascontiguousarray(groups).astype(str)):
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def is_training_data(training: Mapping[str, Any], features: np.ndarray, correct: np.ndarray,
                     groups: np.ndarray) -> bool:
    """Whether these edges are exactly the ones a model with metadata section ``training`` learnt from (in any
    order; for a format version 1 model, in the same order)."""
    recorded = training.get("data_sha256")
    # The legacy hash only when the order-independent one differs: each hashes the whole table.
    return recorded is not None and (recorded == data_hash(features, correct, groups)
                                     or recorded == _legacy_data_hash(features, correct, groups))


def _check_not_infinite(table: np.ndarray, feature_names: Sequence[str]) -> None:
    """Features are finite or NaN (missing): XGBoost would take an infinity as an extreme value, not as missing."""
    if np.isinf(table).any():
        row, col = np.argwhere(np.isinf(table))[0]
        raise TrustError(f"feature {feature_names[col]!r} is infinite at edge {row}; features must be finite or NaN")


def _validated_table(features: Any, correct: Any, groups: Any, feature_names: Sequence[str]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    table = np.asarray(features, dtype=np.float32)
    if table.ndim != 2 or table.shape[1] != len(feature_names):
        raise TrustError(f"features must have shape (edges, {len(feature_names)}), got {table.shape}")
    if table.shape[0] == 0:
        raise TrustError("the training set is empty: no edges")
    _check_not_infinite(table, feature_names)
    if np.isnan(table).all():
        raise TrustError("every feature of every edge is NaN: nothing to learn from")
    labels = np.asarray(correct)
    if labels.shape != (table.shape[0],):
        raise TrustError(f"correct must hold one label per edge ({table.shape[0]}), got shape {labels.shape}")
    if labels.dtype != np.bool_:
        if not np.isin(labels, (0, 1)).all():
            raise TrustError("correct must hold booleans or 0/1")
        labels = labels.astype(bool)
    positives = int(labels.sum())
    if positives in (0, labels.size):
        raise TrustError(f"the training set has one class only ({positives} correct of {labels.size} edges); the "
                         "trust model needs both correct and wrong edges")
    group_array = np.asarray(groups)
    if group_array.shape != (table.shape[0],):
        raise TrustError(f"groups must hold one group (episode or image) per edge ({table.shape[0]}), got shape "
                         f"{group_array.shape}")
    return table, labels, group_array


def _is_integer(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    """A finite number (numpy's too), not a bool."""
    return (isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)
            and math.isfinite(value))


@dataclass(frozen=True)
class _Split:
    fit: np.ndarray
    calibration: np.ndarray
    threshold: np.ndarray


def grouped_split(groups: np.ndarray, calibration_fraction: float, threshold_fraction: float,
                  rng: np.random.Generator) -> _Split:
    """Boolean masks of three disjoint parts; each group lands in exactly one, chosen by a permutation of groups."""
    try:
        unique, inverse = np.unique(groups, return_inverse=True)
    except TypeError as exc:  # ids of mixed types (None among strings) that cannot be sorted
        raise TrustError(f"groups must be ids of one type (strings or integers): {exc}") from None
    if unique.size < _MIN_GROUPS:
        raise TrustError(f"grouped splits need at least {_MIN_GROUPS} groups (episodes or images), got "
                         f"{unique.size}: {unique.tolist()[:5]}")
    order = rng.permutation(unique.size)
    n_calibration = max(1, round(calibration_fraction * unique.size))
    n_threshold = max(1, round(threshold_fraction * unique.size))
    if n_calibration + n_threshold >= unique.size:
        n_calibration = n_threshold = max(1, (unique.size - 1) // 2)
    part = np.zeros(unique.size, dtype=np.int8)  # 0 fit, 1 calibration, 2 threshold
    part[order[:n_calibration]] = 1
    part[order[n_calibration:n_calibration + n_threshold]] = 2
    edge_part = part[inverse]
    return _Split(edge_part == 0, edge_part == 1, edge_part == 2)


class TrustModel:
    """XGBoost + calibration + guaranteed threshold (see the module docstring). Settings are stored as given and
    checked by :meth:`fit` before any learning (and by :meth:`load`); :meth:`get_params` and :meth:`set_params`
    make the model a scikit-learn estimator for ``sklearn.base.clone``."""

    def __init__(self, *, n_estimators: int = 30, max_depth: int = 5, learning_rate: float = 0.15,
                 min_child_weight: float = 1.0, calibration: str = "auto", calibration_fraction: float = 0.2,
                 threshold_fraction: float = 0.2, target_precision: float = 0.95, delta: float = 0.1,
                 threshold_method: str = "fixed_sequence", random_state: int = 0, n_jobs: int = 2,
                 feature_names: Sequence[str] = FEATURE_NAMES) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.min_child_weight = min_child_weight
        self.calibration = calibration
        self.calibration_fraction = calibration_fraction
        self.threshold_fraction = threshold_fraction
        self.target_precision = target_precision
        self.delta = delta
        self.threshold_method = threshold_method
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.feature_names = tuple(feature_names)
        self.booster_: Any = None
        self.calibrator_: Calibrator | None = None
        self.baseline_calibrators_: dict[str, Calibrator] = {}
        self.threshold_: ThresholdChoice | None = None
        self.metadata_: dict[str, Any] = {}
        # The settings the fitted attributes were learnt with: what save() records, whatever set_params did since.
        self.fitted_settings_: dict[str, Any] = {}
        self.source_: str = "not fitted"

    # --- settings ---------------------------------------------------------------------------------------------

    def _settings(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SAVED_SETTINGS}

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's settings by name (scikit-learn's estimator API; ``deep`` changes nothing: no setting is
        an estimator)."""
        return {name: getattr(self, name) for name in _CONSTRUCTOR_SETTINGS}

    def set_params(self, **params: Any) -> TrustModel:
        """Change settings by name (scikit-learn's estimator API); an unknown name raises :class:`TrustError`. The
        values are checked by the next :meth:`fit`, and a fitted model keeps what it learnt until then."""
        unknown = sorted(set(params) - set(_CONSTRUCTOR_SETTINGS))
        if unknown:
            raise TrustError(f"TrustModel has no setting(s) {', '.join(unknown)}; known: "
                             f"{', '.join(_CONSTRUCTOR_SETTINGS)}")
        for name, value in params.items():
            setattr(self, name, tuple(value) if name == "feature_names" else value)
        return self

    def _check_settings(self) -> None:
        """Raise :class:`TrustError` naming the first setting that :meth:`fit` could not use."""
        for name in ("n_estimators", "max_depth"):
            value = getattr(self, name)
            if not _is_integer(value) or value < 1:
                raise TrustError(f"{name} must be a positive integer, got {value!r}")
        for name in ("calibration_fraction", "threshold_fraction"):
            value = getattr(self, name)
            if not _is_real(value) or not 0.0 < value < 0.5:
                raise TrustError(f"{name} must be a number in (0, 0.5), got {value!r}")
        if not _is_real(self.learning_rate) or not 0.0 < self.learning_rate <= 1.0:
            raise TrustError(f"learning_rate must be a number in (0, 1], got {self.learning_rate!r}")
        if not _is_real(self.min_child_weight) or self.min_child_weight < 0.0:
            raise TrustError(f"min_child_weight must be a number >= 0, got {self.min_child_weight!r}")
        for name in ("target_precision", "delta"):
            value = getattr(self, name)
            if not _is_real(value) or not 0.0 < value < 1.0:
                raise TrustError(f"{name} must be a number in (0, 1), got {value!r}")
        if self.calibration not in CALIBRATION_SETTINGS:
            raise TrustError(f"calibration must be one of {', '.join(CALIBRATION_SETTINGS)}, got "
                             f"{self.calibration!r}")
        if self.threshold_method not in THRESHOLD_METHODS:
            raise TrustError(f"threshold_method must be one of {', '.join(THRESHOLD_METHODS)}, got "
                             f"{self.threshold_method!r}")
        # XGBoost reads its seed as a signed 64-bit integer; numpy's generator wants it non-negative.
        if not _is_integer(self.random_state) or not 0 <= self.random_state < 2**63:
            raise TrustError(f"random_state must be an integer in [0, 2**63), got {self.random_state!r}")
        if not _is_integer(self.n_jobs) or not (self.n_jobs >= 1 or self.n_jobs == -1):
            raise TrustError(f"n_jobs must be a positive integer or -1 (all cores), got {self.n_jobs!r}")
        if not all(isinstance(name, str) for name in self.feature_names) or not self.feature_names:
            raise TrustError(f"feature_names must be a non-empty sequence of names, got {self.feature_names!r}")

    # --- learning ---------------------------------------------------------------------------------------------

    def fit(self, features: Any, correct: Any, groups: Any) -> TrustModel:
        """Learn from E edges: ``features`` (E, F) in :attr:`feature_names` order, ``correct`` (E,), ``groups`` (E,)
        (episode or image ids: the splits never share one, and the threshold's test counts them, not edges).

        Every setting and the input are checked before anything is learnt, and the fitted attributes are replaced
        only when all of fitting succeeded: a fit that raises leaves the model as it was."""
        import xgboost as xgb

        self._check_settings()
        table, labels, group_array = _validated_table(features, correct, groups, self.feature_names)
        rng = np.random.default_rng(int(self.random_state))
        split = grouped_split(group_array, self.calibration_fraction, self.threshold_fraction, rng)
        for name, mask in (("fit", split.fit), ("calibration", split.calibration), ("threshold", split.threshold)):
            positives = int(labels[mask].sum())
            if positives in (0, int(mask.sum())):
                raise TrustError(f"the {name} split has one class only ({positives} correct of {int(mask.sum())} "
                                 "edges); add more episodes or images with both correct and wrong edges")
        learnt = TrustModel(**self.get_params())  # learns here; self changes only once everything has succeeded
        params = {"objective": "binary:logistic", "eval_metric": "logloss", "tree_method": "hist",
                  "max_depth": int(self.max_depth), "eta": float(self.learning_rate),
                  "min_child_weight": float(self.min_child_weight), "nthread": int(self.n_jobs),
                  "seed": int(self.random_state)}
        learnt.booster_ = xgb.train(params, xgb.DMatrix(table[split.fit], label=labels[split.fit], missing=np.nan),
                                    num_boost_round=int(self.n_estimators))
        raw_calibration = learnt._raw(table[split.calibration])
        learnt.calibrator_ = Calibrator.fit(raw_calibration, labels[split.calibration], method=self.calibration)
        baselines_calibration = baseline_scores(table[split.calibration], self.feature_names)
        for name, scores in baselines_calibration.items():
            if np.ptp(scores) > 0:  # a constant baseline (no VLM answers at all) has nothing to calibrate
                learnt.baseline_calibrators_[name] = Calibrator.fit(scores, labels[split.calibration],
                                                                    method=self.calibration)
        held_out = learnt._calibrated(table[split.threshold])
        learnt.threshold_ = choose_threshold(held_out, labels[split.threshold], self.target_precision, self.delta,
                                             groups=group_array[split.threshold], method=self.threshold_method)
        # Edges per scene of each split, counted once for both split_* entries below.
        split_group_edges = {name: np.unique(group_array[mask], return_counts=True)[1] for name, mask in
                             (("fit", split.fit), ("calibration", split.calibration), ("threshold", split.threshold))}
        learnt.metadata_ = {
            "training": {
                "data_sha256": data_hash(table, labels, group_array),
                "edges": int(labels.size), "correct": int(labels.sum()),
                "groups": int(np.unique(group_array).size),
                "groups_list": sorted(np.unique(group_array).astype(str).tolist()),
                "split_edges": {"fit": int(split.fit.sum()), "calibration": int(split.calibration.sum()),
                                "threshold": int(split.threshold.sum())},
                "split_groups": {name: int(counts.size) for name, counts in split_group_edges.items()},
                # The threshold's guarantee is unreliable when one scene holds most of its split (see warning).
                "split_largest_group_edges": {name: int(counts.max()) for name, counts in split_group_edges.items()},
                "features_all_nan": [name for k, name in enumerate(self.feature_names)
                                     if np.isnan(table[:, k]).all()],
            },
            "metrics_held_out": learnt._held_out_metrics(table[split.threshold], labels[split.threshold]),
            "provenance": training_provenance(learnt._settings()),
        }
        learnt.fitted_settings_ = learnt._settings()
        for name in _FITTED_ATTRIBUTES:
            setattr(self, name, getattr(learnt, name))
        self.source_ = "fitted in this process"
        return self

    def _held_out_metrics(self, table: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
        from trusted_scene_graph.evaluation import metrics as m

        fused = self.trust(table)
        result: dict[str, Any] = {"edges": int(labels.size), "correct": int(labels.sum()),
                                  "auroc": m.auroc(fused, labels), "ece": m.expected_calibration_error(fused, labels)}
        for name, scores in self.baseline_probabilities(table).items():
            result[f"auroc_{name}"] = m.auroc(scores, labels)
        return json_ready(result)

    # --- prediction -------------------------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if self.booster_ is None or self.calibrator_ is None or self.threshold_ is None:
            raise TrustError("this TrustModel is not fitted: call fit() or TrustModel.load(directory) first")

    def _raw(self, features: np.ndarray) -> np.ndarray:
        return self.booster_.inplace_predict(np.ascontiguousarray(features, dtype=np.float32), missing=np.nan)

    def _checked_features(self, features: Any) -> np.ndarray:
        try:
            table = np.asarray(features, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise TrustError(f"features must be numbers: {exc}") from None
        if table.ndim != 2 or table.shape[1] != len(self.feature_names):
            raise TrustError(f"features must have shape (edges, {len(self.feature_names)}), got {table.shape}")
        _check_not_infinite(table, self.feature_names)  # what fit refuses; also a float64 beyond float32's range
        return table

    def trust(self, features: Any) -> np.ndarray:
        """Calibrated P(correct) of each edge (E,), the fast path the pipeline calls every frame."""
        self._check_fitted()
        return self._calibrated(self._checked_features(features))

    def _calibrated(self, table: np.ndarray) -> np.ndarray:
        if table.shape[0] == 0:
            return np.zeros(0)
        return np.asarray(self.calibrator_(self._raw(table)), dtype=np.float64)

    def predict_proba(self, features: Any) -> np.ndarray:
        """(E, 2): P(wrong), P(correct), as scikit-learn classifiers return it."""
        p = self.trust(features)
        return np.stack([1.0 - p, p], axis=1)

    def baseline_probabilities(self, features: Any) -> dict[str, np.ndarray]:
        """The calibrated baselines on the same edges (a baseline without a calibrator, because it was constant in
        training, is left out)."""
        self._check_fitted()
        table = self._checked_features(features)
        raw = baseline_scores(table, self.feature_names)
        return {name: np.asarray(calibrator(raw[name]), dtype=np.float64)
                for name, calibrator in self.baseline_calibrators_.items()}

    @property
    def threshold(self) -> float:
        """The pruning threshold chosen for the target precision (see :class:`ThresholdChoice`); without a feasible
        one, :data:`~trusted_scene_graph.trust.threshold.PRUNE_ALL_THRESHOLD`, above every trust."""
        self._check_fitted()
        return float(self.threshold_.threshold) if self.threshold_.feasible else PRUNE_ALL_THRESHOLD

    @property
    def description(self) -> str:
        self._check_fitted()
        choice = self.threshold_
        if not choice.feasible:
            return (f"learned trust model ({self.source_}; no threshold reached precision >= "
                    f"{choice.target_precision:g} with probability >= {1 - choice.delta:g} on its held-out split: "
                    "it prunes every relation unless trust.threshold is set)")
        return (f"learned trust model ({self.source_}; threshold {self.threshold:.3f} for precision >= "
                f"{choice.target_precision:g} with probability >= {1 - choice.delta:g})")

    @property
    def warning(self) -> str | None:
        """Why pruning at this model's own threshold is not what its user expects (None: nothing to say): no threshold
        was feasible, or its guarantee is unreliable because the threshold split had fewer than 20 scenes or one
        scene held more than half its edges (:func:`~trusted_scene_graph.trust.threshold.unreliable_guarantee`).
        ``tsg trust train`` prints it, ``tsg trust report`` and ``tsg eval`` record it, the node logs it."""
        self._check_fitted()
        if self.threshold_.feasible:
            # Recorded since the reliability check; absent (not a warning) in models saved before it.
            largest = self.metadata_.get("training")
            for key in ("split_largest_group_edges", "threshold"):
                largest = largest.get(key) if isinstance(largest, Mapping) else None
            reason = unreliable_guarantee(self.threshold_, largest if _is_integer(largest) else None)
            return None if reason is None else f"trust model {self.source_}: {reason}"
        choice = self.threshold_
        # fit tests the default grid; Bonferroni tests each of its candidates at delta / their number.
        level = choice.delta / (DEFAULT_GRID.size if choice.method == "bonferroni" else 1)
        needed = min_rejectable_count(choice.target_precision, level)
        too_few = (f": its threshold split had {choice.calibration_groups} scenes, and the scene-level test needs at "
                   f"least {needed} for this target and delta" if choice.test_unit == "group"
                   and choice.calibration_groups < needed else "")
        return (f"trust model {self.source_} has no feasible threshold (no threshold reached precision >= "
                f"{choice.target_precision:g} with probability >= {1 - choice.delta:g} when it was trained), so it "
                f"prunes every relation{too_few}. Retrain on more data, or set trust.threshold")

    def feature_importance(self, kind: str = "gain") -> dict[str, float]:
        """XGBoost's importance per feature name (0 for features no tree splits on)."""
        self._check_fitted()
        scores = self.booster_.get_score(importance_type=kind)
        return {name: float(scores.get(f"f{k}", scores.get(name, 0.0))) for k, name in enumerate(self.feature_names)}

    # --- files ------------------------------------------------------------------------------------------------

    def save(self, directory: Path | str) -> Path:
        """Write ``model.json`` and ``trust_model.json`` into ``directory`` (created); returns the directory.

        Each file is written under a temporary name and renamed into place, the metadata last, and the metadata
        records ``model.json``'s SHA-256: a save cut short between the two renames leaves a pair :meth:`load`
        refuses, when the previous model recorded its SHA-256 too (models saved before it was recorded do not)."""
        import xgboost as xgb

        self._check_fitted()
        if self.feature_names != FEATURE_NAMES:
            # load() takes the features this package computes: a model of other features would be written, then
            # refused as edited metadata.
            raise TrustError(f"this TrustModel was fitted on other features than the package computes "
                             f"({_feature_name_difference(list(self.feature_names), FEATURE_NAMES)}); only a model of "
                             "FEATURE_NAMES can be saved as a trust model")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        model_tmp = directory / f".tmp-{MODEL_FILE}"  # ends in .json: XGBoost picks its format by the extension
        self.booster_.save_model(str(model_tmp))
        metadata = {
            "format": METADATA_FORMAT, "format_version": METADATA_FORMAT_VERSION,
            "feature_schema_version": FEATURE_SCHEMA_VERSION, "feature_names": list(self.feature_names),
            "xgboost_version": xgb.__version__, "settings": self.fitted_settings_ or self._settings(),
            "calibration": self.calibrator_.to_json(),
            "baseline_calibration": {name: c.to_json() for name, c in self.baseline_calibrators_.items()},
            "threshold": self.threshold_.to_json(),
            "feature_importance_gain": self.feature_importance("gain"),
            **self.metadata_,
            "model_sha256": hashlib.sha256(model_tmp.read_bytes()).hexdigest(),
        }
        # Both files are written whole before either is renamed into place, so a failed write (a full disk) leaves
        # the previously saved pair as it was; '.tmp-' files are the model's own (training ignores them).
        metadata_tmp = directory / f".tmp-{METADATA_FILE}"
        metadata_tmp.write_text(json.dumps(json_ready(metadata), indent=2) + "\n")
        model_tmp.replace(directory / MODEL_FILE)
        metadata_tmp.replace(directory / METADATA_FILE)
        return directory

    @classmethod
    def load(cls, directory: Path | str) -> TrustModel:
        """Read a model written by :meth:`save`; missing, corrupt or mismatched files raise :class:`TrustError`."""
        import xgboost as xgb

        directory = Path(directory)
        metadata_path, model_path = directory / METADATA_FILE, directory / MODEL_FILE
        for path in (metadata_path, model_path):
            if not path.is_file():
                raise TrustError(f"trust model file {path} does not exist; a trust model directory holds "
                                 f"{METADATA_FILE} and {MODEL_FILE} (written by tsg trust train)")
        try:
            metadata = json.loads(metadata_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TrustError(f"trust model metadata {metadata_path} is not readable JSON: {exc}") from exc
        if not isinstance(metadata, dict) or metadata.get("format") != METADATA_FORMAT:
            raise TrustError(f"{metadata_path} is not a trust model's metadata (no \"format\": "
                             f"\"{METADATA_FORMAT}\")")
        format_version = metadata.get("format_version")
        if isinstance(format_version, bool) or format_version not in READABLE_FORMAT_VERSIONS:
            raise TrustError(f"trust model metadata {metadata_path} has format version {format_version!r}, but this "
                             f"package reads format versions {', '.join(map(str, READABLE_FORMAT_VERSIONS))}; "
                             "retrain the model with tsg trust train (or load it with the package version that "
                             "wrote it)")
        version = metadata.get("feature_schema_version")
        if version != FEATURE_SCHEMA_VERSION:
            raise TrustError(f"trust model {directory} was trained on feature schema version {version!r}, but this "
                             f"package computes version {FEATURE_SCHEMA_VERSION}; retrain it with tsg trust train")
        names = metadata.get("feature_names")
        if names != list(FEATURE_NAMES):
            raise TrustError(f"trust model {directory} expects features other than the ones this package computes "
                             f"({_feature_name_difference(names, FEATURE_NAMES)}; same schema version: the "
                             "metadata was edited); retrain it with tsg trust train")
        try:
            settings = metadata["settings"]
            if not isinstance(settings, Mapping):
                raise TrustError(f"settings must be a JSON object, got {type(settings).__name__}")
            model = cls(**{name: settings[name] for name in SAVED_SETTINGS if name in settings})
            model._check_settings()
            model.fitted_settings_ = model._settings()
            model.calibrator_ = Calibrator.from_json(metadata["calibration"])
            model.baseline_calibrators_ = {name: Calibrator.from_json(value)
                                           for name, value in _baseline_section(metadata).items()}
            _check_sections(metadata)
            threshold = metadata["threshold"]
            if format_version == 1 and isinstance(threshold, Mapping):  # saved before the scene-level test
                threshold = {**EDGE_LEVEL_FIELDS, **threshold}
            model.threshold_ = ThresholdChoice.from_json(threshold)
        except KeyError as exc:
            raise TrustError(f"trust model metadata {metadata_path} is incomplete: it lacks {exc}") from exc
        except (TrustError, TypeError, ValueError) as exc:
            raise TrustError(f"trust model metadata {metadata_path} is malformed: {exc}") from exc
        recorded_sha256 = metadata.get("model_sha256")  # absent in models saved before it was recorded
        if recorded_sha256 is not None and hashlib.sha256(model_path.read_bytes()).hexdigest() != recorded_sha256:
            raise TrustError(f"{model_path} is not the model {metadata_path} was saved with (its SHA-256 differs): "
                             "it is corrupt, or from another save; retrain with tsg trust train")
        booster = xgb.Booster()
        try:
            booster.load_model(str(model_path))
        except xgb.core.XGBoostError as exc:
            raise TrustError(f"XGBoost cannot read {model_path}: {str(exc).splitlines()[0]}") from exc
        if booster.num_features() != len(FEATURE_NAMES):
            raise TrustError(f"{model_path} takes {booster.num_features()} features, its metadata names "
                             f"{len(FEATURE_NAMES)}; the two files are not from the same model")
        booster.set_param({"nthread": model.n_jobs})
        model.booster_ = booster
        model.metadata_ = {key: metadata[key] for key in _METADATA_SECTIONS if key in metadata}
        model.source_ = str(directory)
        return model


def _baseline_section(metadata: Mapping[str, Any]) -> Mapping[str, Any]:
    """The metadata's baseline calibrators (absent in old models; a baseline constant in training has none)."""
    section = metadata.get("baseline_calibration", {})
    if not isinstance(section, Mapping):
        raise TrustError(f"baseline_calibration must be a JSON object, got {type(section).__name__}")
    if unknown := sorted(set(section) - set(BASELINES)):
        raise TrustError(f"baseline_calibration names {unknown}, not baselines (they are {list(BASELINES)})")
    return section


def _check_sections(metadata: Mapping[str, Any]) -> None:
    """What ``tsg trust report`` and the warning read of the sections saved for the record (each optional: absent
    in models saved before it was recorded) has the type they were saved with."""
    for name in _METADATA_SECTIONS:
        if name in metadata and not isinstance(metadata[name], Mapping):
            raise TrustError(f"{name} must be a JSON object, got {type(metadata[name]).__name__}")
    training = metadata.get("training", {})
    groups = training.get("groups_list", [])
    if not (isinstance(groups, list) and all(isinstance(group, str) for group in groups)):
        raise TrustError(f"training.groups_list must be a list of scene names, got {groups!r}")
    if not isinstance(training.get("data_sha256", ""), str):
        raise TrustError(f"training.data_sha256 must be a string, got {training['data_sha256']!r}")


class MarginPriorTrust:
    """The uncalibrated geometric prior ``expit(margin_m / scale_m)`` (``trust.model: prior``)."""

    def __init__(self, margin_scale_m: float, threshold: float = PRIOR_THRESHOLD) -> None:
        if not margin_scale_m > 0:
            raise TrustError(f"the prior's margin scale must be > 0 m, got {margin_scale_m!r}")
        self.margin_scale_m = margin_scale_m
        self.threshold = threshold
        self.description = f"geometric margin prior (uncalibrated, threshold {threshold:g})"
        self.warning = None

    def trust(self, features: np.ndarray) -> np.ndarray:
        return expit(np.asarray(features[:, FEATURE_INDEX["margin_m"]], dtype=np.float64) / self.margin_scale_m)


def load_trust_model(config: Mapping[str, Any]) -> EdgeTrustModel:
    """The model ``trust.model`` names: 'default' (shipped, sim-trained), 'prior', or a model directory."""
    name = str(config["trust.model"]).strip()
    if name == "prior":
        return MarginPriorTrust(config["relations.margin_scale_m"])
    if name == "default":
        return TrustModel.load(DEFAULT_MODEL_DIR)
    directory = Path(name).expanduser()
    if directory.is_file():
        raise TrustError(f"trust.model {name!r} is a file: give the model directory that holds it "
                         f"({directory.parent}; tsg trust train writes {METADATA_FILE} and {MODEL_FILE} there)")
    # An empty value would be Path('.'), the working directory: refuse it with the misspelt keywords.
    if not name or not directory.is_dir():
        raise TrustError(f"trust.model {name!r} is not 'default', 'prior' or an existing model directory")
    return TrustModel.load(directory)


def _feature_name_difference(names: Any, expected: Sequence[str]) -> str:
    """How a model's feature names differ from ``expected``, short enough for an error message."""
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        return f"its feature_names is not a list of names: {names!r}"
    missing = [name for name in expected if name not in names]
    unexpected = [name for name in names if name not in expected]
    repeated = sorted({name for name in names if names.count(name) > 1})
    parts = [f"{label} {found}" for label, found in
             (("missing", missing), ("unexpected", unexpected), ("repeated", repeated)) if found]
    if not parts:  # the same names in another order
        moved = [i for i, (name, want) in enumerate(zip(names, expected, strict=True)) if name != want]
        parts.append(f"reordered: {len(moved)} names moved, position {moved[0]} holds {names[moved[0]]!r} "
                     f"instead of {expected[moved[0]]!r}")
    return "; ".join(parts)
