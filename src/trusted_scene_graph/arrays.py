"""Validation of 1-D input arrays (scores, labels), shared by :mod:`trusted_scene_graph.evaluation.metrics` and
:mod:`trusted_scene_graph.trust`, and :func:`json_ready` for every metrics file (numpy only).

Each caller passes its own error class (``EvaluationError``, ``TrustError``): the checks and their messages are the
same, but a failure must be reported as the error of the subpackage that was called.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from trusted_scene_graph.errors import TsgError


def float_vector(name: str, values: Any, error: type[TsgError], *, expected: str = "numbers") -> np.ndarray:
    """``values`` as a 1-D float64 array; anything else raises ``error`` naming ``name`` (and, when the values are
    not numbers, saying they must be ``expected``)."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise error(f"{name} must be {expected}, got {type(values).__name__}: {exc}") from None
    if array.ndim != 1:
        raise error(f"{name} must be 1-D, got shape {array.shape}")
    return array


def check_finite(name: str, array: np.ndarray, error: type[TsgError], *, unit_interval: bool = False) -> None:
    """Raise ``error`` naming the first non-finite entry of ``array`` (any shape, counted flat), or with
    ``unit_interval`` the first outside [0, 1]."""
    # The fast path is one reduction: the trust step runs this on every camera frame.
    if not np.isfinite(array).all():
        flat = array.ravel()
        bad = int(np.flatnonzero(~np.isfinite(flat))[0])
        raise error(f"{name} must be finite, got {flat[bad]} at index {bad}")
    if unit_interval and array.size and (array.min() < 0.0 or array.max() > 1.0):
        flat = array.ravel()
        bad = int(np.flatnonzero((flat < 0.0) | (flat > 1.0))[0])
        raise error(f"{name} must lie in [0, 1], got {flat[bad]} at index {bad}")


def label_vector(name: str, values: Any, error: type[TsgError]) -> np.ndarray:
    """``values`` as a 1-D boolean array; only booleans or numbers that are exactly 0 or 1 are accepted."""
    raw = np.asarray(values)
    if raw.dtype == np.bool_:
        if raw.ndim != 1:
            raise error(f"{name} must be 1-D, got shape {raw.shape}")
        return raw
    array = float_vector(name, values, error, expected="booleans or 0/1")
    bad = np.flatnonzero((array != 0.0) & (array != 1.0))
    if bad.size:
        raise error(f"{name} must hold booleans or 0/1, got {array[bad[0]]} at index {bad[0]}")
    return array == 1.0


def json_ready(value: Any) -> Any:
    """``value`` for strict JSON: mappings with string keys, numpy arrays and tuples as lists, numpy scalars as Python
    numbers, NaN and infinities as None (JSON has no NaN; readers see ``null``)."""
    if isinstance(value, Mapping):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
