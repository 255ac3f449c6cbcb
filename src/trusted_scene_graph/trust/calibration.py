"""Post-hoc calibration of a classifier's raw score into ``P(correct)``.

A :class:`Calibrator` is learned once, on held-out edges whose correctness is known, and then applied to every
edge of every camera frame, so applying it is a few vectorised numpy operations and its state is a handful of plain
JSON numbers (no pickle: a calibrator file can be read, diffed and checked by hand).

Two methods, chosen by the number of calibration edges as in Niculescu-Mizil & Caruana, "Predicting Good
Probabilities With Supervised Learning" (ICML 2005): Platt scaling (two parameters, does not overfit small sets)
below :data:`PLATT_MAX_EDGES` edges, isotonic regression (any monotone distortion, but needs data) from there on.

Raw scores are either probabilities in [0, 1] (``score_kind="probability"``; Platt works on their logit) or
unbounded margins (``score_kind="margin"``; Platt works on the margin itself).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from trusted_scene_graph.arrays import check_finite, float_vector, label_vector
from trusted_scene_graph.trust import TrustError

#: Below this many calibration edges ``method="auto"`` fits Platt scaling, from here on isotonic regression.
PLATT_MAX_EDGES = 1000
#: Probabilities are clipped to ``[PLATT_CLIP, 1 - PLATT_CLIP]`` before the logit, so 0 and 1 map to finite values.
PLATT_CLIP = 1e-6

METHODS = ("platt", "isotonic")
SCORE_KINDS = ("probability", "margin")

_COMMON_KEYS = ("method", "score_kind", "calibration_edges")
_METHOD_KEYS = {"platt": ("slope", "intercept"), "isotonic": ("x_thresholds", "y_thresholds")}


# --- input validation (shared with trust.threshold) ---------------------------------------------------------------


def _scores(name: str, values: Any, *, unit_interval: bool) -> np.ndarray:
    """``values`` as a 1-D finite float64 array, also within [0, 1] when ``unit_interval``."""
    array = float_vector(name, values, TrustError)
    check_finite(name, array, TrustError, unit_interval=unit_interval)
    return array


def _check_keys(what: str, state: Mapping[Any, Any], expected: set[str]) -> None:
    """Raise naming the keys of the JSON object ``state`` (``what``: "threshold choice") missing from or not in
    ``expected``."""
    missing = sorted(expected - set(state))
    if missing:
        raise TrustError(f"{what} is missing key(s): {', '.join(missing)}")
    unknown = sorted(str(key) for key in set(state) - expected)
    if unknown:
        raise TrustError(f"{what} has unknown key(s): {', '.join(unknown)}")


def _paired(scores: np.ndarray, labels: np.ndarray, score_name: str) -> None:
    if scores.size != labels.size:
        raise TrustError(f"{score_name} and correct differ in length: {scores.size} vs {labels.size}")
    if scores.size == 0:
        raise TrustError(f"{score_name} and correct are empty: there is nothing to learn from")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- the calibrator -----------------------------------------------------------------------------------------------


class Calibrator:
    """A learned monotone map from a raw score to ``P(correct)``; apply it by calling it on an array of scores.

    Build one with :meth:`fit` (learn from labelled edges) or :meth:`from_json` (load a saved one); the constructor
    takes the learned parameters directly and validates them the same way. A calibrator is immutable, so there is
    no "unfitted" state to misuse.

    - ``method="platt"``: ``sigmoid(slope * f + intercept)`` with ``f = logit(clip(raw))`` for probabilities or
      ``f = raw`` for margins.
    - ``method="isotonic"``: linear interpolation through the step points of an isotonic regression
      (``x_thresholds`` strictly increasing, ``y_thresholds`` non-decreasing in [0, 1]), constant beyond the ends.
    """

    __slots__ = ("method", "score_kind", "calibration_edges", "slope", "intercept", "x_thresholds", "y_thresholds")

    def __init__(self, method: str, *, score_kind: str = "probability", calibration_edges: int,
                 slope: float | None = None, intercept: float | None = None,
                 x_thresholds: Any = None, y_thresholds: Any = None) -> None:
        if method not in METHODS:
            raise TrustError(f"unknown calibration method {method!r}; known: {', '.join(METHODS)}")
        if score_kind not in SCORE_KINDS:
            raise TrustError(f"unknown score_kind {score_kind!r}; known: {', '.join(SCORE_KINDS)}")
        if isinstance(calibration_edges, bool) or not isinstance(calibration_edges, int | np.integer) \
                or calibration_edges < 2:
            raise TrustError(f"calibration_edges must be an integer >= 2 (one edge of each class at least), "
                             f"got {calibration_edges!r}")
        self.method = method
        self.score_kind = score_kind
        self.calibration_edges = int(calibration_edges)
        self.slope: float | None = None
        self.intercept: float | None = None
        self.x_thresholds: np.ndarray | None = None
        self.y_thresholds: np.ndarray | None = None
        if method == "platt":
            for name, value in (("slope", slope), ("intercept", intercept)):
                if not _is_number(value) or not math.isfinite(value):
                    raise TrustError(f"Platt {name} must be a finite number, got {value!r}")
            if x_thresholds is not None or y_thresholds is not None:
                raise TrustError("a Platt calibrator takes slope and intercept, not x_thresholds/y_thresholds")
            self.slope, self.intercept = float(slope), float(intercept)
        else:
            if slope is not None or intercept is not None:
                raise TrustError("an isotonic calibrator takes x_thresholds/y_thresholds, not slope and intercept")
            self.x_thresholds, self.y_thresholds = self._check_steps(x_thresholds, y_thresholds)

    def _check_steps(self, x_thresholds: Any, y_thresholds: Any) -> tuple[np.ndarray, np.ndarray]:
        x = _scores("isotonic x_thresholds", x_thresholds, unit_interval=self.score_kind == "probability")
        y = _scores("isotonic y_thresholds", y_thresholds, unit_interval=True)
        if x.size != y.size:
            raise TrustError(f"isotonic x_thresholds and y_thresholds differ in length: {x.size} vs {y.size}")
        if x.size == 0:
            raise TrustError("isotonic x_thresholds and y_thresholds are empty")
        # np.interp needs increasing x; a falling y would make trust fall as the raw score rises.
        for name, array, steps_ok in (("x_thresholds", x, np.diff(x) > 0.0), ("y_thresholds", y, np.diff(y) >= 0.0)):
            if not steps_ok.all():
                bad = int(np.flatnonzero(~steps_ok)[0])
                kind = "strictly increasing" if name == "x_thresholds" else "non-decreasing"
                raise TrustError(f"isotonic {name} must be {kind}, got {array[bad]} then {array[bad + 1]} "
                                 f"at index {bad + 1}")
        # Own read-only copies: the caller's arrays stay writable and cannot change this calibrator later.
        x, y = x.copy(), y.copy()
        x.setflags(write=False)
        y.setflags(write=False)
        return x, y

    # --- learning -------------------------------------------------------------------------------------------------

    @classmethod
    def fit(cls, raw_scores: Any, correct: Any, method: str = "auto", *,
            score_kind: str = "probability") -> Calibrator:
        """Learn a calibrator from raw scores and whether each edge was correct.

        ``method``: "platt", "isotonic", or "auto" = Platt below :data:`PLATT_MAX_EDGES` edges, isotonic from there
        on. Raises :class:`TrustError` for empty or mismatched input, non-finite scores, probabilities outside
        [0, 1], labels other than booleans or 0/1, and when ``correct`` holds one class only (then ``P(correct)``
        cannot be learned from it).
        """
        if method not in ("auto", *METHODS):
            raise TrustError(f"unknown calibration method {method!r}; known: auto, {', '.join(METHODS)}")
        if score_kind not in SCORE_KINDS:
            raise TrustError(f"unknown score_kind {score_kind!r}; known: {', '.join(SCORE_KINDS)}")
        scores = _scores("raw_scores", raw_scores, unit_interval=score_kind == "probability")
        labels = label_vector("correct", correct, TrustError)
        _paired(scores, labels, "raw_scores")
        n_correct = int(labels.sum())
        n_wrong = labels.size - n_correct
        if n_correct == 0 or n_wrong == 0:
            raise TrustError(f"calibration is undefined with one class only: got {n_correct} correct and "
                             f"{n_wrong} wrong edges")
        if method == "auto":
            method = "platt" if scores.size < PLATT_MAX_EDGES else "isotonic"
        if method == "platt":
            slope, intercept = _fit_platt(_platt_feature(scores, score_kind), labels)
            return cls("platt", score_kind=score_kind, calibration_edges=scores.size,
                       slope=slope, intercept=intercept)
        from sklearn.isotonic import IsotonicRegression

        model = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0, increasing=True)
        model.fit(scores, labels.astype(np.float64))
        return cls("isotonic", score_kind=score_kind, calibration_edges=scores.size,
                   x_thresholds=model.X_thresholds_, y_thresholds=model.y_thresholds_)

    # --- applying -------------------------------------------------------------------------------------------------

    def __call__(self, raw: Any) -> np.ndarray:
        """``P(correct)`` for each raw score, an array of the same shape with values in [0, 1]."""
        try:
            values = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise TrustError(f"raw scores must be numbers, got {type(raw).__name__}: {error}") from None
        check_finite("raw scores", values, TrustError, unit_interval=self.score_kind == "probability")
        if self.method == "platt":
            z = self.slope * _platt_feature(values, self.score_kind) + self.intercept
            # sigmoid(z) = (1 + tanh(z / 2)) / 2: one transcendental per value and no overflow for any z.
            return 0.5 * (1.0 + np.tanh(0.5 * z))
        return np.interp(values, self.x_thresholds, self.y_thresholds)

    # --- JSON -----------------------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The calibrator as plain JSON types (str, int, float, lists of float)."""
        state: dict[str, Any] = {"method": self.method, "score_kind": self.score_kind,
                                 "calibration_edges": self.calibration_edges}
        if self.method == "platt":
            state.update(slope=self.slope, intercept=self.intercept)
        else:
            state.update(x_thresholds=self.x_thresholds.tolist(), y_thresholds=self.y_thresholds.tolist())
        return state

    @classmethod
    def from_json(cls, state: Any) -> Calibrator:
        """Rebuild a calibrator from :meth:`to_json` output, rejecting anything that could not have come from it.

        Unknown or missing keys, an unknown method or score kind, non-numeric or non-finite numbers, and isotonic
        step points of different lengths, out of order or outside [0, 1] raise :class:`TrustError` naming them.
        """
        if not isinstance(state, Mapping):
            raise TrustError(f"a calibrator must be a JSON object, got {type(state).__name__}")
        method = state.get("method")
        if method not in METHODS:
            raise TrustError(f"unknown calibration method {method!r}; known: {', '.join(METHODS)}")
        _check_keys(f"{method} calibrator", state, set(_COMMON_KEYS) | set(_METHOD_KEYS[method]))
        if method == "platt":
            for key in _METHOD_KEYS["platt"]:
                if not _is_number(state[key]):
                    raise TrustError(f"Platt {key} must be a number, got {state[key]!r}")
            return cls("platt", score_kind=state["score_kind"], calibration_edges=state["calibration_edges"],
                       slope=state["slope"], intercept=state["intercept"])
        for key in _METHOD_KEYS["isotonic"]:
            values = state[key]
            if not isinstance(values, list):
                raise TrustError(f"isotonic {key} must be a list of numbers, got {type(values).__name__}")
            # np.asarray would quietly turn "0.5" into 0.5; a saved calibrator never holds strings.
            bad = next((index for index, value in enumerate(values) if not _is_number(value)), None)
            if bad is not None:
                raise TrustError(f"isotonic {key} must hold numbers, got {values[bad]!r} at index {bad}")
        return cls("isotonic", score_kind=state["score_kind"], calibration_edges=state["calibration_edges"],
                   x_thresholds=state["x_thresholds"], y_thresholds=state["y_thresholds"])

    def __repr__(self) -> str:
        if self.method == "platt":
            detail = f"slope={self.slope:.4g}, intercept={self.intercept:.4g}"
        else:
            detail = f"{self.x_thresholds.size} step points"
        return f"Calibrator({self.method}, {self.score_kind}, {detail}, calibration_edges={self.calibration_edges})"


# --- Platt scaling ------------------------------------------------------------------------------------------------


def _platt_feature(values: np.ndarray, score_kind: str) -> np.ndarray:
    if score_kind == "margin":
        return values
    clipped = np.clip(values, PLATT_CLIP, 1.0 - PLATT_CLIP)
    return np.log(clipped) - np.log1p(-clipped)


def _fit_platt(feature: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of ``sigmoid(slope * feature + intercept)`` by maximum likelihood.

    The targets are Platt's (1999) smoothed labels ``(N+ + 1) / (N+ + 2)`` and ``1 / (N- + 2)``, as in
    scikit-learn's ``CalibratedClassifierCV(method="sigmoid")``: with hard 0/1 targets the likelihood of separable
    data has no maximum (the slope runs to infinity), and the smoothing is the Bayesian prior that prevents it.
    Two parameters and a convex loss, so scipy's L-BFGS-B with the analytic gradient is all that is needed.
    """
    from scipy.optimize import minimize

    n_correct = int(labels.sum())
    n_wrong = labels.size - n_correct
    targets = np.where(labels, (n_correct + 1.0) / (n_correct + 2.0), 1.0 / (n_wrong + 2.0))
    # Fitted on the standardised feature, then mapped back: on a margin in large units (1e4) the slope's gradient
    # dwarfs the intercept's and L-BFGS stopped with the intercept near 0, a fit that depended on the unit.
    centre = float(np.mean(feature))
    spread = float(np.std(feature)) or 1.0
    standard = (feature - centre) / spread

    def loss_and_gradient(params: np.ndarray) -> tuple[float, np.ndarray]:
        z = params[0] * standard + params[1]
        # Cross-entropy with soft targets t: softplus(z) - t * z, averaged so the tolerances do not scale with n.
        loss = float(np.mean(np.logaddexp(0.0, z) - targets * z))
        residual = 0.5 * (1.0 + np.tanh(0.5 * z)) - targets
        return loss, np.array([np.mean(residual * standard), np.mean(residual)])

    result = minimize(loss_and_gradient, x0=np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    slope, intercept = float(result.x[0]) / spread, float(result.x[1]) - float(result.x[0]) * centre / spread
    if not (result.success and math.isfinite(slope) and math.isfinite(intercept)):
        raise TrustError(f"Platt scaling did not converge on {labels.size} edges: {result.message} "
                         f"(slope {slope}, intercept {intercept})")
    return slope, intercept
