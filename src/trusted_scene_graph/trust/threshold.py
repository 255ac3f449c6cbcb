"""The pruning threshold on calibrated trust, chosen with a precision guarantee (Learn-then-Test).

Angelopoulos, Bates, Candès, Jordan & Lei, "Learn then Test: Calibrating Predictive Algorithms to Achieve Risk
Control" (2021). Each candidate threshold ``t`` of a fixed grid is a null hypothesis "the precision of the edges
kept at ``t`` (trust ``>= t``) is below the target"; its p-value is an exact binomial tail, and a family-wise
error-rate procedure picks which nulls to reject. With probability ``>= 1 - delta`` over the draw of the
calibration edges, every rejected threshold has precision ``>= target`` at once, so the one keeping the most edges
may be chosen.

The unit of the test is the scene (the group of :func:`~trusted_scene_graph.trust.model.grouped_split`), not the
edge: edges of one scene share its objects, lighting and detector mistakes, and one fact is seen frame after frame,
so their errors cluster: the error count of a model's threshold split can vary many times more than a binomial count
would. Counting such edges as independent trials overstates the evidence, and a threshold chosen that way missed its
target in a quarter to a third of simulated draws instead of ``delta``. Each candidate's counts are therefore shrunk
by a cluster-robust design effect (that variance ratio; Kish's effective sample size, :func:`design_effect`) before
the exact binomial test. That makes the guarantee approximate: it assumes the scenes are independent draws from the
population the node will see, and uses an estimated variance; with many scenes it becomes the exact binomial
guarantee as the design effect goes to 1 (edges independent). It is a statement about that population of scenes, not
about any single frame. A trained model records its split's edges, scenes and design effect in the ``threshold``
metadata of its ``trust_model.json``; docs/benchmark.md reports the shipped model's.

A test that counts scenes cannot vouch for more scenes than it has seen: ``G`` flawless scenes are ``G``
observations (a flawless scene says little about the next one), so a threshold needs at least
:func:`min_rejectable_count` scenes keeping edges, 45 for a target of 0.95 at ``delta`` 0.1 (22 for 0.9; Bonferroni
over the 201 default candidates: 149), whatever their edge counts. Measured in simulations with precision exactly at
the target and ``delta`` 0.1, with enough scenes: scenes either flawless or bad wrongly passed in 4-7 % of draws,
scene precisions spread as a Beta distribution in 8-12 %; thresholds chosen in a clustered simulation with 53
scenes (``tests/core/test_trust_threshold.py``) missed in 4-6 %, and with one scene of 1,000 facts beside 52 of 30
in 5-6 % (11-14 % without the leverage correction of :func:`design_effect`). The guarantee is unreliable when the
scenes are few or one of them holds most of the edges: the between-scene variance is then estimated from a handful
of residuals, or one. With a scene of 5,000 edges beside 11 to 52 scenes of 50 (scene precision Beta-distributed),
a test at precision exactly the target still passed in 18-39 % of draws. A trained model therefore warns
(``TrustModel.warning``, :func:`unreliable_guarantee`) when its threshold's split has fewer than
:data:`RELIABLE_MIN_GROUPS` (20) scenes or one scene holds more than half its edges.

Why hand-written rather than MAPIE: MAPIE's risk control grew up around multi-label / set-valued predictions, and
its newer ``BinaryClassificationController`` wraps a ``predict_proba`` callable in an estimator workflow; for
arrays of trust scores the whole procedure is the binomial tail below plus a grid walk, some 40 lines of scipy,
and it keeps MAPIE out of the dependencies. MAPIE's fixed-sequence test also starts at a fixed grid position,
which at a high start threshold with few edges ends the sequence at once; the count-based start below avoids that.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from trusted_scene_graph.arrays import label_vector
from trusted_scene_graph.trust import TrustError
from trusted_scene_graph.trust.calibration import _check_keys, _paired, _scores

THRESHOLD_METHODS = ("fixed_sequence", "bonferroni")
#: What one observation of the test is: a group of edges (a scene; the default of a trained model) or an edge.
TEST_UNITS = ("group", "edge")
#: The fields :class:`ThresholdChoice` gained with the scene-level test, as an edge-level test fills them: what a
#: choice saved before them (trust model metadata format version 1) meant.
EDGE_LEVEL_FIELDS = {"test_unit": "edge", "calibration_groups": None, "kept_groups": None, "design_effect": 1.0}
#: Candidate thresholds when no grid is given: fixed before seeing any data, as LTT requires.
DEFAULT_GRID = np.round(np.linspace(0.0, 1.0, 201), 9)  # rounded: 0.825, not 0.8250000000000001, in the metadata
DEFAULT_GRID.setflags(write=False)
#: The threshold recorded when no candidate passes (see :func:`choose_threshold`): a JSON-safe placeholder.
INFEASIBLE_THRESHOLD = 1.0
#: What a model without a feasible threshold prunes at: above every trust (trust is at most 1.0, and an isotonic
#: calibrator gives exactly 1.0 to many edges), so it keeps no relation, as no threshold guarantees the target.
PRUNE_ALL_THRESHOLD = math.nextafter(1.0, math.inf)
#: A scene-level choice made on fewer scenes than this, or with one scene holding more than this share of the edges,
#: has an unreliable guarantee (see the module docstring and :func:`unreliable_guarantee`).
RELIABLE_MIN_GROUPS = 20
RELIABLE_MAX_GROUP_SHARE = 0.5


def threshold_text(threshold: Any, fmt: Callable[[Any], str]) -> str:
    """A pruning threshold as a report shows it: ``fmt(threshold)``, but in words for :data:`PRUNE_ALL_THRESHOLD`,
    whose number (1.000 at 3 decimals) would read as keeping the edges of trust 1.0 when it keeps none."""
    # Above 1: a model without a feasible threshold, which prunes every fact (trust is at most 1). NaN or None is
    # not above 1 and is left to fmt ("n/a").
    if isinstance(threshold, int | float) and threshold > 1.0:
        return "none (no feasible threshold: every fact is pruned)"
    return fmt(threshold)


# --- binomial bounds ----------------------------------------------------------------------------------------------


def _check_counts(correct_count: Any, kept_count: Any) -> tuple[int, int]:
    for name, value in (("correct_count", correct_count), ("kept_count", kept_count)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TrustError(f"{name} must be an integer, got {value!r}")
    if not 0 <= correct_count <= kept_count:
        raise TrustError(f"counts must satisfy 0 <= correct_count <= kept_count, got correct_count "
                         f"{correct_count} and kept_count {kept_count}")
    return int(correct_count), int(kept_count)


def _check_open_unit(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < 1.0:
        raise TrustError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


def clopper_pearson_lower(correct_count: int, kept_count: int, delta: float) -> float:
    """One-sided lower ``1 - delta`` confidence bound of a binomial proportion (Clopper & Pearson 1934).

    The ``delta`` quantile of Beta(k, n - k + 1) for ``k`` correct out of ``n`` kept; 0.0 when ``k = 0`` (the
    Beta is then degenerate at 0). For ``k = n`` it is ``delta ** (1 / n)``.
    """
    from scipy.stats import beta

    k, n = _check_counts(correct_count, kept_count)
    delta = _check_open_unit("delta", delta)
    if k == 0:
        return 0.0
    return float(beta.ppf(delta, k, n - k + 1))


def precision_p_value(correct_count: int, kept_count: int, target: float) -> float:
    """p-value of the null "precision < target" after ``k`` correct out of ``n`` kept: ``P(Binomial(n, target) >= k)``.

    Exact, and valid for any true precision below ``target`` (the tail only shrinks as the precision falls).
    1.0 when nothing is kept. Dual to :func:`clopper_pearson_lower`: ``p <= delta`` exactly when the lower bound at
    ``delta`` is ``>= target``.
    """
    k, n = _check_counts(correct_count, kept_count)
    target = _check_open_unit("target", target)
    return float(_p_values(np.array([k]), np.array([n]), target)[0])


def _p_values(correct: np.ndarray, kept: np.ndarray, target: float) -> np.ndarray:
    from scipy.stats import binom

    return np.where(kept > 0, binom.sf(correct - 1, kept, target), 1.0)


def min_rejectable_count(target: float, delta: float) -> int:
    """The fewest kept edges whose null "precision < target" can be rejected at ``delta``: smallest ``n`` with
    ``target ** n <= delta`` (the p-value when all ``n`` are correct), i.e. ``ceil(log(delta) / log(target))``."""
    target = _check_open_unit("target", target)
    delta = _check_open_unit("delta", delta)
    count = max(1, math.ceil(math.log(delta) / math.log(target)))
    # The logarithms can round across an integer; settle it on the power itself.
    while count > 1 and target ** (count - 1) <= delta:
        count -= 1
    while target**count > delta:
        count += 1
    return count


def start_count(target: float, delta: float) -> int:
    """The fewest kept edges at which a fixed sequence starts testing: the smallest ``n`` whose null "precision <
    target" is rejected at ``delta`` even with some errors, those of an observed precision halfway from the target to
    1 (``P(Binomial(n, target) >= ceil(n (1 + target) / 2)) <= delta``; 77 for 0.95 at 0.1). At the
    :func:`min_rejectable_count` a single wrong edge ends the sequence before it reaches any threshold worth having.
    Depends on the target and delta alone, never on a label."""
    target = _check_open_unit("target", target)
    delta = _check_open_unit("delta", delta)
    from scipy.stats import binom

    count = min_rejectable_count(target, delta)
    while binom.sf(math.ceil(count * (1.0 + target) / 2.0) - 1, count, target) > delta:
        count += 1
    return count


# --- scenes as the unit: the design effect ------------------------------------------------------------------------


def design_effect(kept_per_group: Any, correct_per_group: Any) -> float:
    """How much more the precision of kept edges varies between draws of groups (scenes) than if every edge were an
    independent trial: ``max(1, cluster-robust variance / binomial variance)``, at most the number of kept edges.

    ``kept_per_group`` and ``correct_per_group``: the kept and correct edge counts of each group (groups keeping
    nothing may be included; they do not count). With ``n = sum(n_g)``, ``p = sum(k_g) / n`` and ``G`` groups keeping
    an edge, the ratio estimator's cluster-robust (sandwich) variance is
    ``G / (G - 1) * sum((k_g - p n_g) ** 2 / (1 - h_g)) / n ** 2`` and the binomial one ``p (1 - p) / n``. Dividing
    both counts by their ratio gives Kish's effective sample size ``n / deff``.

    Two small-sample corrections, as the sandwich underestimates the variance with few groups: the usual CR1 factor
    ``G / (G - 1)``, and Bell & McCaffrey's CR2 leverage ``h_g = n_g / n`` (a group's share of the kept edges: the
    ratio estimator's leverage of that group). With groups of equal size CR2's ``1 / (1 - 1 / G)`` is CR1's factor
    again, so the two together give ``(G / (G - 1)) ** 2``: a deliberate margin, as the sandwich still runs low when
    scene precisions are skewed (simulated: 8-12 % wrong passes at ``delta`` 0.1). A dominant group pulls ``p``
    towards its own precision, so its residual understates its deviation, and ``1 / (1 - h_g)`` gives that back: in
    a clustered simulation with one scene of 1,000 facts beside 52 of 30 (39 % of the facts), thresholds chosen at
    target 0.9 missed it in 14 % of draws with CR1 alone and in 6 % with both (beside 21 of 30: 29 % and 6 %). A
    scene holding most of the edges is still one scene (see the module docstring).

    Edge cases, on the cautious side: precision 0 or 1 over the kept edges, or one group keeping edges, gives
    ``n / G``: each group is one observation, however many edges it has (there is no variance to measure, and
    flawless groups are no evidence that the next group is flawless: with five groups each flawless with
    probability 0.8, all five are in a third of the draws); nothing kept gives 1.0. A group of a single edge is an
    ordinary group, so a group per edge gives ``n / G = 1``.
    """
    kept = np.asarray(kept_per_group, dtype=np.float64)
    correct = np.asarray(correct_per_group, dtype=np.float64)
    if kept.shape != correct.shape or kept.ndim != 1:
        raise TrustError(f"kept and correct counts per group must be 1-D arrays of one shape, got {kept.shape} and "
                         f"{correct.shape}")
    if not (np.isfinite(kept).all() and np.isfinite(correct).all() and (0 <= correct).all()
            and (correct <= kept).all()):
        raise TrustError("counts per group must satisfy 0 <= correct <= kept")
    n = float(kept.sum())
    groups = int(np.count_nonzero(kept))
    if groups == 0:
        return 1.0
    p = float(correct.sum()) / n
    binomial = n * p * (1.0 - p)
    if groups == 1 or binomial <= 0.0:
        return n / groups
    leverage = kept / n  # below 1 for every group: at least two keep edges
    robust = groups / (groups - 1) * float(np.sum((correct - p * kept) ** 2 / (1.0 - leverage)))
    return float(min(max(1.0, robust / binomial), n))


def _effective_p_values(correct: np.ndarray, kept: np.ndarray, target: float) -> np.ndarray:
    """The binomial p-value ``P(Binomial(n, target) >= k)`` for real-valued effective counts: the regularised
    incomplete beta ``I_target(k, n - k + 1)``, which it equals for integers; 1.0 without a correct edge."""
    from scipy.stats import beta

    positive = correct > 0
    safe_correct = np.where(positive, correct, 1.0)
    return np.where(positive, beta.cdf(target, safe_correct, kept - safe_correct + 1.0), 1.0)


def _effective_lower_bound(correct: float, kept: float, delta: float, groups: int | None = None) -> float:
    """Clopper-Pearson's lower bound (:func:`clopper_pearson_lower`) for real-valued effective counts; with
    ``groups``, at most ``delta ** (1 / groups)``, the bound of that many flawless groups (dual to
    :func:`_scene_floor`)."""
    from scipy.stats import beta

    if correct <= 0:
        return 0.0
    bound = float(beta.ppf(delta, correct, kept - correct + 1.0))
    return bound if groups is None else min(bound, delta ** (1.0 / groups))


def _scene_floor(kept_groups: np.ndarray, target: float) -> np.ndarray:
    """The smallest p-value ``G`` groups can give: ``target ** G``, that of ``G`` flawless groups counted as one
    observation each. A population of scenes (of equal size) in which a share just above ``1 - target`` is entirely
    wrong, the rest as good as one likes, has precision below the target; yet all ``G`` drawn scenes miss the wrong
    ones with probability about ``target ** G``, and then look like anything the rest can look like. No test that
    counts scenes can promise more without assuming how scenes vary. Without this floor, ``G`` flawless groups would
    fail while the same groups with one wrong edge could pass (one error makes the design effect measurable, and
    near 1)."""
    return np.power(target, kept_groups.astype(np.float64))


# --- the choice ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdChoice:
    """A pruning threshold and what it achieved on the calibration edges.

    ``threshold``: keep edges with calibrated trust ``>= threshold``. ``feasible``: whether any candidate passed the
    test; when not, ``threshold`` is 1.0 (see :func:`choose_threshold`). ``kept``, ``coverage`` (= kept /
    ``calibration_edges``), ``precision`` (empirical, of the kept; None when nothing is kept) and
    ``precision_lower_bound`` (one-sided Clopper-Pearson at ``delta`` on the effective counts ``kept /
    design_effect``, ``kept * precision / design_effect``; with groups at most ``delta ** (1 / kept_groups)``, what
    that many flawless groups show) describe the threshold on the calibration edges.

    ``test_unit``: ``"group"`` when the test counted scenes (:func:`choose_threshold` with ``groups``; then
    ``calibration_groups`` is the number of scenes among the calibration edges, ``kept_groups`` how many of them keep
    an edge at the threshold, and ``design_effect`` the one at the threshold, see :func:`design_effect`), ``"edge"``
    when every edge counted as an independent trial (``groups=None``, and in models saved before the scene-level
    test: the two group counts are None and the design effect 1.0). Construction validates every field, so a
    ``from_json`` result is as trustworthy as a fresh one.
    """

    threshold: float
    target_precision: float
    delta: float
    method: str
    feasible: bool
    kept: int
    calibration_edges: int
    coverage: float
    precision: float | None
    precision_lower_bound: float
    test_unit: str
    calibration_groups: int | None
    kept_groups: int | None
    design_effect: float

    def __post_init__(self) -> None:
        for name in ("threshold", "coverage", "precision_lower_bound"):
            value = getattr(self, name)
            if not _is_real(value) or not 0.0 <= value <= 1.0:
                raise TrustError(f"threshold choice: {name} must be a number in [0, 1], got {value!r}")
        _check_open_unit("threshold choice: target_precision", self.target_precision)
        _check_open_unit("threshold choice: delta", self.delta)
        if self.method not in THRESHOLD_METHODS:
            raise TrustError(f"threshold choice: unknown method {self.method!r}; known: "
                             f"{', '.join(THRESHOLD_METHODS)}")
        if not isinstance(self.feasible, bool):
            raise TrustError(f"threshold choice: feasible must be true or false, got {self.feasible!r}")
        for name in ("kept", "calibration_edges"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise TrustError(f"threshold choice: {name} must be a non-negative integer, got {value!r}")
        if self.calibration_edges == 0 or self.kept > self.calibration_edges:
            raise TrustError(f"threshold choice: need 0 <= kept <= calibration_edges and calibration_edges > 0, "
                             f"got kept {self.kept} of {self.calibration_edges}")
        if not math.isclose(self.coverage, self.kept / self.calibration_edges, rel_tol=1e-9, abs_tol=1e-12):
            raise TrustError(f"threshold choice: coverage {self.coverage} is not kept / calibration_edges = "
                             f"{self.kept} / {self.calibration_edges}")
        if self.kept == 0:
            if self.precision is not None:
                raise TrustError(f"threshold choice: precision must be null when nothing is kept, "
                                 f"got {self.precision!r}")
        elif not _is_real(self.precision) or not 0.0 <= self.precision <= 1.0:
            raise TrustError(f"threshold choice: precision must be a number in [0, 1] when {self.kept} edges are "
                             f"kept, got {self.precision!r}")
        self._check_groups()
        # Rejecting at delta (or below, for Bonferroni) is the same as the lower bound at delta reaching the target;
        # the tolerance absorbs the two scipy routines disagreeing in the last bits at the boundary.
        if self.feasible and self.precision_lower_bound < self.target_precision - 1e-9:
            raise TrustError(f"threshold choice: feasible, but precision_lower_bound {self.precision_lower_bound} "
                             f"is below target_precision {self.target_precision}")

    def _check_groups(self) -> None:
        if self.test_unit not in TEST_UNITS:
            raise TrustError(f"threshold choice: unknown test_unit {self.test_unit!r}; known: {', '.join(TEST_UNITS)}")
        if self.test_unit == "edge":
            if (self.calibration_groups, self.kept_groups, self.design_effect) != (None, None, 1.0):
                raise TrustError(f"threshold choice: an edge-level test has no groups and design_effect 1.0, got "
                                 f"calibration_groups {self.calibration_groups!r}, kept_groups "
                                 f"{self.kept_groups!r}, design_effect {self.design_effect!r}")
            return
        for name in ("calibration_groups", "kept_groups"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise TrustError(f"threshold choice: {name} must be a non-negative integer, got {value!r}")
        if not 1 <= self.calibration_groups <= self.calibration_edges or self.kept_groups > self.calibration_groups:
            raise TrustError(f"threshold choice: need kept_groups <= calibration_groups <= calibration_edges and "
                             f"calibration_groups >= 1, got {self.kept_groups} of {self.calibration_groups} groups "
                             f"and {self.calibration_edges} edges")
        if (self.kept_groups == 0) != (self.kept == 0) or self.kept_groups > self.kept:
            raise TrustError(f"threshold choice: {self.kept_groups} kept groups cannot hold {self.kept} kept edges")
        if not _is_real(self.design_effect) or not 1.0 <= self.design_effect <= max(1.0, self.kept):
            raise TrustError(f"threshold choice: design_effect must be a number in [1, kept = {self.kept}], got "
                             f"{self.design_effect!r}")

    def to_json(self) -> dict[str, Any]:
        """The choice as plain JSON types; ``precision`` is null when nothing is kept."""
        state = asdict(self)
        for name in ("kept", "calibration_edges", "calibration_groups", "kept_groups"):
            if state[name] is not None:
                state[name] = int(state[name])
        return state

    @classmethod
    def from_json(cls, state: Any) -> ThresholdChoice:
        """Rebuild a choice from :meth:`to_json` output; missing, unknown or invalid fields raise TrustError."""
        if not isinstance(state, Mapping):
            raise TrustError(f"a threshold choice must be a JSON object, got {type(state).__name__}")
        expected = {field.name for field in fields(cls)}
        _check_keys("threshold choice", state, expected)
        return cls(**{name: state[name] for name in expected})


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def choose_threshold(probabilities: Any, correct: Any, target_precision: float, delta: float, *, groups: Any,
                     method: str = "fixed_sequence", grid: Any = None) -> ThresholdChoice:
    """The candidate threshold keeping the most edges whose precision is ``>= target_precision`` with probability
    ``>= 1 - delta`` (over the draw of the calibration scenes; approximately, see below).

    ``probabilities``: calibrated trust in [0, 1] of each calibration edge; ``correct``: whether it was correct;
    ``groups``: the scene (episode or image) of each edge, the unit of the test, or None to count every edge as an
    independent trial (exact, but only right when the edges really are independent, which the edges of one scene
    are not: see the module docstring). Candidates are ``grid`` (must be chosen without looking at these edges) or
    :data:`DEFAULT_GRID`. Null hypothesis for a candidate ``t``: the population precision of edges with trust
    ``>= t`` is below the target. Its p-value is the binomial tail ``P(Binomial(n, target) >= k)``
    (:func:`precision_p_value`) of the kept calibration edges, with ``n`` and ``k`` the kept and correct counts
    divided by the candidate's :func:`design_effect` over the groups (Kish's effective sample size; the tail of a
    non-integer count is the regularised incomplete beta). With groups the guarantee is approximate: it assumes
    independent scenes and estimates their variance from these edges (a few scenes, or one scene holding most of the
    edges, estimate it poorly: see the module docstring). Its p-value is never below ``target ** G`` for the ``G``
    groups keeping an edge, what ``G`` flawless groups give (their design effect is ``n / G``: each group one
    observation): no test that counts scenes can vouch for more scenes than it has seen.

    ``method="fixed_sequence"`` (the default, more coverage): candidates are tested from high to low at level
    ``delta`` and testing stops at the first that is not rejected; the lowest rejected one is chosen. A candidate
    keeping fewer than :func:`min_rejectable_count` edges (with groups: edges of fewer than that many groups; 45
    for a target of 0.95 at ``delta`` 0.1) is skipped first: whatever its labels, its p-value is at least
    ``target ** n`` with ``n`` its kept edges (with groups: its kept groups), above ``delta``, so testing it would
    only end the sequence before it began. So is one keeping fewer than :func:`start_count` edges (77), when a lower
    candidate keeps that many: at the bare minimum one wrong edge ends the sequence (in simulations with 2,000 facts
    over 200 scenes and a little label noise among the most trusted, more than half the draws found no threshold
    where Bonferroni found one). Why the skip keeps the guarantee:

    - Kept counts (of edges and of groups) fall as the threshold rises, so the skipped candidates are always a block
      at the top of the sequence: skipping "only at the top" and skipping "wherever the count is too small" are the
      same rule. It is implemented as "start at the highest candidate keeping at least that many edges" (groups).
    - The start depends only on how many scores (and groups) pass each candidate, never on a label (it removes
      hypotheses that could never be rejected, and, with the slack, some that only a near-flawless sample could).
      Given its kept count ``n``, a candidate's correct count is Binomial(n, precision) for independent edges, so
      each p-value stays exact (approximate with groups).
    - The start does couple to the counts above it: starting at ``t`` means "fewer than that many edges above the
      next higher candidate". When ``P(correct | trust)`` does not fall as trust rises (what a calibrated, monotone
      trust is meant to be), the candidates whose precision is below target form a block at the bottom, so a wrong
      rejection implies rejecting the first such candidate that is tested; and the conditioning can only mean fewer
      of the most reliable edges, which lowers the chance of that rejection. Each possible start ``s`` therefore
      contributes at most ``delta * P(start = s)`` and the family-wise error stays ``<= delta``. Without that
      monotonicity the skip is not proven valid; ``"bonferroni"`` needs no such assumption.

    ``method="bonferroni"``: every candidate is tested at ``delta / (number of distinct candidates)`` and the lowest
    rejected is chosen; valid whatever the order of the candidates or the shape of the precision curve. With groups
    that level needs :func:`min_rejectable_count` ``(target, delta / candidates)`` groups (149 for a target of 0.95
    at ``delta`` 0.1 over the 201 default candidates).

    When no candidate is rejected the result has ``feasible=False``, ``threshold=1.0`` (a placeholder: infinity is
    not JSON) and nothing kept: no threshold guarantees the target, so a model with this choice prunes every
    relation (:data:`PRUNE_ALL_THRESHOLD`), and the caller should warn. Otherwise the ``kept``/``coverage``/
    ``precision``/``kept_groups``/``design_effect`` fields describe the returned threshold on the calibration edges.

    Raises :class:`TrustError` for a target or delta outside (0, 1), probabilities that are not finite numbers in
    [0, 1], labels other than booleans or 0/1, groups that are not one id per edge, different lengths, no edges, an
    unknown method, or a grid that is empty or holds values outside [0, 1].
    """
    if method not in THRESHOLD_METHODS:
        raise TrustError(f"unknown threshold method {method!r}; known: {', '.join(THRESHOLD_METHODS)}")
    target = _check_open_unit("target_precision", target_precision)
    delta = _check_open_unit("delta", delta)
    scores = _scores("probabilities", probabilities, unit_interval=True)
    labels = label_vector("correct", correct, TrustError)
    _paired(scores, labels, "probabilities")
    group_index = None if groups is None else _group_index(groups, scores.size)
    candidates = DEFAULT_GRID if grid is None else _scores("grid", grid, unit_interval=True)
    if candidates.size == 0:
        raise TrustError("grid is empty: there is no threshold to choose from")
    candidates = np.unique(candidates)[::-1]  # distinct, high to low

    # Kept and correct counts at every candidate from one sort: kept at t = the scores >= t.
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    correct_from = np.concatenate([np.cumsum(labels[order][::-1])[::-1], [0]])  # correct among sorted[i:]
    first_kept = np.searchsorted(sorted_scores, candidates, side="left")
    kept = scores.size - first_kept
    kept_correct = correct_from[first_kept]
    if group_index is None:
        effects, kept_groups = np.ones(candidates.size), None
        p_values = _p_values(kept_correct, kept, target)
    else:
        effects, kept_groups = _design_effects(sorted_scores, labels[order], group_index[order], candidates)
        p_values = np.maximum(_effective_p_values(kept_correct / effects, kept / effects, target),
                              _scene_floor(kept_groups, target))

    chosen: int | None = None
    if method == "bonferroni":
        rejected = np.flatnonzero(p_values <= delta / candidates.size)
        if rejected.size:
            chosen = int(rejected[-1])  # the lowest rejected candidate keeps the most edges
    else:
        # Label-independent: even all correct, a candidate below these counts has a p-value above delta; and where
        # enough edges are kept, the sequence starts where a few wrong ones cannot end it at once (start_count).
        rejectable = (kept if kept_groups is None else kept_groups) >= min_rejectable_count(target, delta)
        with_slack = np.flatnonzero(rejectable & (kept >= start_count(target, delta)))
        testable = with_slack if with_slack.size else np.flatnonzero(rejectable)
        if testable.size:
            start = int(testable[0])
            not_rejected = np.flatnonzero(p_values[start:] > delta)
            stop = start + int(not_rejected[0]) if not_rejected.size else candidates.size
            if stop > start:
                chosen = stop - 1

    if chosen is None:
        # Not "the edges at 1.0": an isotonic calibrator puts many there, and none of them has a guarantee.
        threshold, n_kept, n_correct, n_groups, effect = INFEASIBLE_THRESHOLD, 0, 0, 0, 1.0
    else:
        threshold = float(candidates[chosen])
        n_kept, n_correct, effect = int(kept[chosen]), int(kept_correct[chosen]), float(effects[chosen])
        n_groups = 0 if kept_groups is None else int(kept_groups[chosen])
    return ThresholdChoice(
        threshold=threshold,
        target_precision=target,
        delta=delta,
        method=method,
        feasible=chosen is not None,
        kept=n_kept,
        calibration_edges=int(scores.size),
        coverage=n_kept / scores.size,
        precision=n_correct / n_kept if n_kept else None,
        precision_lower_bound=_effective_lower_bound(n_correct / effect, n_kept / effect, delta,
                                                     None if kept_groups is None else n_groups),
        **(EDGE_LEVEL_FIELDS if group_index is None else {
            "test_unit": "group", "calibration_groups": int(group_index.max()) + 1, "kept_groups": n_groups,
            "design_effect": effect}),
    )


def unreliable_guarantee(choice: ThresholdChoice, largest_group_edges: int | None = None) -> str | None:
    """Why a scene-level ``choice``'s guarantee is unreliable (a phrase to warn with), or None.

    Unreliable: its calibration edges come from fewer than :data:`RELIABLE_MIN_GROUPS` scenes, or
    ``largest_group_edges`` (the most calibration edges of one scene; None when not known, as for models saved
    before it was recorded) is more than :data:`RELIABLE_MAX_GROUP_SHARE` of them. An edge-level choice gets None:
    it has no scenes to count. Feasible or not, the caller decides what else to say."""
    if choice.test_unit != "group":
        return None
    reasons = []
    if choice.calibration_groups < RELIABLE_MIN_GROUPS:
        reasons.append(f"only {choice.calibration_groups} scenes (fewer than {RELIABLE_MIN_GROUPS})")
    if largest_group_edges is not None and largest_group_edges > RELIABLE_MAX_GROUP_SHARE * choice.calibration_edges:
        reasons.append(f"one scene holding {largest_group_edges} of its {choice.calibration_edges} edges (more than "
                       f"{RELIABLE_MAX_GROUP_SHARE:.0%})")
    if not reasons:
        return None
    return (f"the precision guarantee of its threshold is unreliable: the split the threshold was tested on has "
            f"{' and '.join(reasons)}, too few or too uneven for a test that estimates how much scenes vary from "
            f"those scenes alone, so precision may fall below {choice.target_precision:g} more often than delta = "
            f"{choice.delta:g} (see trusted_scene_graph.trust.threshold). Retrain on more scenes of more even size")


def _group_index(groups: Any, size: int) -> np.ndarray:
    """Each edge's group as an index 0..G-1 (ids of any one sortable type: strings, integers)."""
    ids = np.asarray(groups)
    if ids.shape != (size,):
        raise TrustError(f"groups must hold one group id per edge ({size}), got shape {ids.shape}")
    try:
        return np.unique(ids, return_inverse=True)[1].reshape(size)
    except TypeError as exc:  # ids of mixed types that cannot be sorted
        raise TrustError(f"groups must be ids of one type (strings or integers): {exc}") from None


def _design_effects(sorted_scores: np.ndarray, sorted_labels: np.ndarray, sorted_groups: np.ndarray,
                    candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`design_effect` and the number of groups keeping an edge at each candidate (high to low), from the
    per-group counts, updated as each lower candidate adds the edges between it and the one above."""
    group_count = int(sorted_groups.max()) + 1
    kept_per_group = np.zeros(group_count)
    correct_per_group = np.zeros(group_count)
    effects = np.ones(candidates.size)
    kept_groups = np.zeros(candidates.size, dtype=np.int64)
    end = sorted_scores.size  # the edges sorted[first:end] are kept at the candidate before
    for j, first in enumerate(np.searchsorted(sorted_scores, candidates, side="left")):
        added = slice(first, end)
        kept_per_group += np.bincount(sorted_groups[added], minlength=group_count)
        correct_per_group += np.bincount(sorted_groups[added], weights=sorted_labels[added], minlength=group_count)
        end = first
        effects[j] = design_effect(kept_per_group, correct_per_group)
        kept_groups[j] = np.count_nonzero(kept_per_group)
    return effects, kept_groups
