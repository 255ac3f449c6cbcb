"""Specification of the pruning threshold: binomial bounds, the Learn-then-Test choice and its guarantee."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from trusted_scene_graph.evaluation.metrics import coverage_at_precision
from trusted_scene_graph.trust import TrustError
from trusted_scene_graph.trust.threshold import (
    DEFAULT_GRID,
    PRUNE_ALL_THRESHOLD,
    ThresholdChoice,
    choose_threshold,
    clopper_pearson_lower,
    design_effect,
    min_rejectable_count,
    precision_p_value,
    start_count,
)

# --- binomial bounds ----------------------------------------------------------------------------------------------


def test_clopper_pearson_of_59_out_of_59_at_95_percent_is_the_rule_of_59() -> None:
    # The classic "59 successes in 59 trials show >= 95 % with 95 % confidence": the bound is 0.05 ** (1 / 59).
    assert clopper_pearson_lower(59, 59, 0.05) == pytest.approx(0.05 ** (1 / 59), rel=1e-12)
    assert clopper_pearson_lower(59, 59, 0.05) == pytest.approx(0.9505, abs=1e-4)


def test_clopper_pearson_is_the_lower_end_of_scipys_exact_two_sided_interval_at_twice_delta() -> None:
    for k, n in [(1, 1), (3, 10), (45, 50), (180, 200), (999, 1000)]:
        for delta in (0.01, 0.05, 0.1):
            exact = stats.binomtest(k, n).proportion_ci(confidence_level=1 - 2 * delta, method="exact").low
            assert clopper_pearson_lower(k, n, delta) == pytest.approx(exact, rel=1e-9)


def test_clopper_pearson_is_zero_without_a_success() -> None:
    assert clopper_pearson_lower(0, 0, 0.1) == 0.0
    assert clopper_pearson_lower(0, 100, 0.1) == 0.0


def test_the_p_value_is_scipys_exact_one_sided_binomial_test() -> None:
    for k, n in [(1, 1), (20, 22), (45, 50), (190, 200), (0, 5)]:
        for target in (0.5, 0.9, 0.95):
            expected = stats.binomtest(k, n, target, alternative="greater").pvalue
            assert precision_p_value(k, n, target) == pytest.approx(expected, rel=1e-9)
    assert precision_p_value(22, 22, 0.9) == pytest.approx(0.9**22)
    assert precision_p_value(0, 0, 0.9) == 1.0  # nothing kept: no evidence at all


def test_the_p_value_rejects_exactly_when_the_lower_bound_reaches_the_target() -> None:
    checked = 0
    for n in (1, 2, 5, 10, 21, 22, 30, 59, 80, 150):
        for k in range(n + 1):
            for target in (0.5, 0.8, 0.9, 0.95):
                for delta in (0.05, 0.1):
                    rejected = precision_p_value(k, n, target) <= delta
                    assert rejected == (clopper_pearson_lower(k, n, delta) >= target), (k, n, target, delta)
                    checked += rejected
    assert 100 < checked < 3000  # both outcomes occur many times over the grid


def test_min_rejectable_count_is_the_fewest_all_correct_edges_that_reject() -> None:
    assert min_rejectable_count(0.9, 0.1) == 22  # 0.9 ** 22 = 0.098 <= 0.1 < 0.9 ** 21 = 0.109
    assert min_rejectable_count(0.95, 0.05) == 59
    assert min_rejectable_count(0.5, 0.5) == 1
    for target in (0.6, 0.9, 0.99):
        for delta in (0.01, 0.1, 0.3):
            n = min_rejectable_count(target, delta)
            assert target**n <= delta and (n == 1 or target ** (n - 1) > delta)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: clopper_pearson_lower(5, 4, 0.1), "0 <= correct_count <= kept_count, got correct_count 5 and kept"),
    (lambda: clopper_pearson_lower(-1, 4, 0.1), "got correct_count -1"),
    (lambda: clopper_pearson_lower(2.0, 4, 0.1), "correct_count must be an integer, got 2.0"),
    (lambda: clopper_pearson_lower(True, 4, 0.1), "correct_count must be an integer, got True"),
    (lambda: clopper_pearson_lower(2, 4, 0.0), r"delta must be a number in \(0, 1\), got 0.0"),
    (lambda: clopper_pearson_lower(2, 4, float("nan")), r"delta must be a number in \(0, 1\), got nan"),
    (lambda: precision_p_value(2, 4, 1.0), r"target must be a number in \(0, 1\), got 1.0"),
    (lambda: precision_p_value(2, "4", 0.9), "kept_count must be an integer, got '4'"),
])
def test_bad_counts_and_levels_are_rejected_with_the_value_named(call, message: str) -> None:
    with pytest.raises(TrustError, match=message):
        call()


# --- choosing a threshold -----------------------------------------------------------------------------------------


def two_groups(top_correct: int, top_wrong: int, low_correct: int, low_wrong: int,
               top: float = 0.97, low: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    scores = np.repeat([top, low], [top_correct + top_wrong, low_correct + low_wrong])
    correct = np.repeat([True, False, True, False], [top_correct, top_wrong, low_correct, low_wrong])
    return scores, correct


def test_fixed_sequence_keeps_the_block_it_can_vouch_for() -> None:
    # 40 all-correct edges at trust 0.97 and 40 coin flips at 0.5, target 0.9 at delta 0.1: every grid threshold in
    # (0.5, 0.97] keeps the top 40 (p = 0.9 ** 40 = 0.015, rejected) and 0.5 keeps all 80 (precision 0.75, not).
    scores, correct = two_groups(40, 0, 20, 20)
    choice = choose_threshold(scores, correct, 0.9, 0.1, groups=None)
    assert DEFAULT_GRID[101] == pytest.approx(0.505)
    assert (choice.threshold, choice.target_precision, choice.delta, choice.method, choice.feasible) == (
        DEFAULT_GRID[101], 0.9, 0.1, "fixed_sequence", True)
    assert (choice.kept, choice.calibration_edges, choice.coverage, choice.precision) == (40, 80, 0.5, 1.0)
    assert choice.precision_lower_bound == pytest.approx(0.1 ** (1 / 40))


def test_a_block_too_small_to_start_the_sequence_is_not_vouched_for_on_its_own() -> None:
    # The cost of the start_count slack: 30 all-correct edges (rejectable alone, 0.9 ** 30 = 0.042) are fewer than
    # the 38 the sequence starts at when a lower threshold keeps that many; it starts below them, at 0.5, and stops.
    scores, correct = two_groups(30, 0, 15, 15)
    assert not choose_threshold(scores, correct, 0.9, 0.1, groups=None).feasible


def test_bonferroni_pays_for_the_whole_grid() -> None:
    # The same 30 all-correct edges give p = 0.042, far above 0.1 / 201: Bonferroni cannot vouch for them.
    scores, correct = two_groups(30, 0, 15, 15)
    choice = choose_threshold(scores, correct, 0.9, 0.1, groups=None, method="bonferroni")
    assert (choice.feasible, choice.threshold, choice.kept, choice.coverage) == (False, 1.0, 0, 0.0)
    assert (choice.precision, choice.precision_lower_bound) == (None, 0.0)
    # With ten times the edges it can, and it picks the lowest rejected threshold.
    scores, correct = two_groups(300, 0, 150, 150)
    choice = choose_threshold(scores, correct, 0.9, 0.1, groups=None, method="bonferroni")
    assert (choice.feasible, choice.threshold, choice.kept) == (True, float(DEFAULT_GRID[101]), 300)


def test_thresholds_keeping_too_few_edges_to_ever_reject_are_skipped_not_failed() -> None:
    # Grid thresholds above 0.97 keep nothing; without the skip the sequence would end at 1.0 before it began.
    # 22 all-correct edges can reject (0.9 ** 22 <= 0.1), 21 cannot (0.9 ** 21 > 0.1).
    for count, feasible in ((22, True), (21, False)):
        choice = choose_threshold(np.full(count, 0.97), np.ones(count, bool), 0.9, 0.1, groups=None)
        assert choice.feasible is feasible
        assert choice.threshold == (0.0 if feasible else 1.0)


def test_fixed_sequence_stops_at_the_first_threshold_it_cannot_reject() -> None:
    # 50 edges at 0.97 with 10 wrong (not rejectable) above 500 correct edges at 0.8: the sequence ends at the top
    # block, while Bonferroni, which tests every threshold on its own, keeps everything.
    scores = np.repeat([0.97, 0.8], [50, 500])
    correct = np.concatenate([np.arange(50) >= 10, np.ones(500, bool)])
    assert not choose_threshold(scores, correct, 0.9, 0.1, groups=None).feasible
    bonferroni = choose_threshold(scores, correct, 0.9, 0.1, groups=None, method="bonferroni")
    assert (bonferroni.feasible, bonferroni.threshold, bonferroni.kept) == (True, 0.0, 550)


def test_the_start_count_lets_an_observed_precision_halfway_to_one_pass() -> None:
    # 77 edges with 1 wrong (precision 0.987, past 0.975) reject "precision < 0.95" at 0.1; 76 with 1 wrong do not.
    assert start_count(0.95, 0.1) == 77 and start_count(0.9, 0.1) == 38
    assert precision_p_value(76, 77, 0.95) <= 0.1 < precision_p_value(75, 76, 0.95)
    assert min_rejectable_count(0.95, 0.1) == 45 < start_count(0.95, 0.1)


def test_one_wrong_edge_among_the_most_trusted_does_not_end_the_sequence_before_it_starts() -> None:
    # The most trusted 50 edges hold one wrong: started where 45 edges are kept (the bare minimum to reject with no
    # error), the sequence ended at once and the model pruned everything; started where 77 are, it goes on.
    scores = np.concatenate([np.linspace(0.999, 0.95, 50), np.linspace(0.94, 0.5, 950)])
    correct = np.ones(1000, bool)
    correct[10] = False  # among the 50 most trusted
    correct[100::33] = False  # 3 % wrong further down
    choice = choose_threshold(scores, correct, 0.95, 0.1, groups=None)
    assert choice.feasible and choice.kept >= start_count(0.95, 0.1)  # (infeasible when started at 45 kept)


def test_when_everything_is_wrong_no_threshold_is_feasible() -> None:
    scores = np.random.default_rng(0).uniform(0.0, 1.0, 500)
    scores[:3] = 1.0  # an isotonic calibrator gives 1.0 to many edges: without a guarantee, none of them is kept
    for method in ("fixed_sequence", "bonferroni"):
        choice = choose_threshold(scores, np.zeros(500, bool), 0.9, 0.1, groups=None, method=method)
        assert (choice.feasible, choice.threshold, choice.method) == (False, 1.0, method)
        assert (choice.kept, choice.coverage, choice.precision, choice.precision_lower_bound) == (0, 0.0, None, 0.0)
    assert PRUNE_ALL_THRESHOLD > 1.0  # what a model with this choice prunes at: above every trust


def test_a_given_grid_is_deduplicated_and_tested_from_high_to_low() -> None:
    scores, correct = two_groups(40, 0, 20, 20)
    choice = choose_threshold(scores, correct, 0.9, 0.1, groups=None, grid=[0.6, 0.2, 0.97, 0.6, 0.99])
    assert (choice.feasible, choice.threshold, choice.kept) == (True, 0.6, 40)


def test_the_threshold_keeps_no_more_than_the_empirical_best_and_its_numbers_are_consistent() -> None:
    rng = np.random.default_rng(3)
    scores = rng.beta(5.0, 1.0, 2000)
    correct = rng.random(2000) < scores
    empirical_coverage, _ = coverage_at_precision(scores, correct, 0.9)
    for method in ("fixed_sequence", "bonferroni"):
        choice = choose_threshold(scores, correct, 0.9, 0.1, groups=None, method=method)
        kept = scores >= choice.threshold
        assert choice.feasible and 0.4 < choice.coverage <= empirical_coverage
        assert (choice.kept, choice.coverage) == (kept.sum(), kept.mean())
        assert choice.precision == pytest.approx(correct[kept].mean())
        assert choice.precision >= choice.precision_lower_bound >= 0.9


# --- the guarantee --------------------------------------------------------------------------------------------------

SPLITS = 200
CALIBRATION_EDGES = 2000
TEST_EDGES = 20_000
TARGET = 0.9
DELTA = 0.1
SHAPE = (5.0, 1.0)  # trust ~ Beta(5, 1), correct ~ Bernoulli(trust): 83 % precision before pruning


def population_precision(threshold: float) -> float:
    """Exact precision of {trust >= t} under Beta(a, b): E[s | s >= t] = a / (a + b) * sf_{a+1,b}(t) / sf_{a,b}(t).

    1.0 at t = 1 (the infeasible threshold), where nothing is kept and so no wrong edge either.
    """
    a, b = SHAPE
    if threshold >= 1.0:
        return 1.0
    return a / (a + b) * stats.beta(a + 1.0, b).sf(threshold) / stats.beta(a, b).sf(threshold)


@pytest.fixture(scope="module")
def splits() -> dict[str, np.ndarray]:
    """For each of 200 calibration/test draws and each way of choosing: realised test precision and coverage."""
    rng = np.random.default_rng(2024)
    trust = rng.beta(*SHAPE, size=(SPLITS, CALIBRATION_EDGES + TEST_EDGES))
    correct = rng.random(trust.shape) < trust
    calibration = (trust[:, :CALIBRATION_EDGES], correct[:, :CALIBRATION_EDGES])
    test_trust, test_correct = trust[:, CALIBRATION_EDGES:], correct[:, CALIBRATION_EDGES:]
    # Edge-level (exact for these independent edges), and scene-level with the edges dealt into 100 scenes of 20:
    # with independent edges the design effect stays near 1, and the scene-level test must keep the guarantee too.
    # (Bonferroni's level delta / 201 needs at least 73 scenes: 0.9 ** 73 <= 0.1 / 201.)
    scenes = np.arange(CALIBRATION_EDGES) // 20
    thresholds = {
        f"{prefix}{method}": np.array([choose_threshold(s, c, TARGET, DELTA, groups=groups, method=method).threshold
                                       for s, c in zip(*calibration, strict=True)])
        for method in ("fixed_sequence", "bonferroni") for prefix, groups in (("", None), ("scene_", scenes))
    }
    # The naive choice: the empirically best threshold, with no allowance for calibration noise.
    thresholds["empirical"] = np.array([coverage_at_precision(s, c, TARGET)[1] for s, c in zip(*calibration,
                                                                                               strict=True)])
    results = {}
    for method, chosen in thresholds.items():
        kept = test_trust >= chosen[:, None]
        n_kept = kept.sum(axis=1)
        precision = np.where(n_kept > 0, (kept & test_correct).sum(axis=1) / np.maximum(n_kept, 1), 1.0)
        results[method] = np.stack([precision, n_kept / TEST_EDGES, chosen])
    return results


def allowed_misses() -> int:
    """Splits below target that a miss probability of exactly delta still produces 999 times in 1000."""
    return int(stats.binom.ppf(0.999, SPLITS, DELTA))


@pytest.mark.parametrize("method", ["fixed_sequence", "bonferroni", "scene_fixed_sequence", "scene_bonferroni"])
def test_the_kept_edges_reach_the_target_precision_in_at_least_1_minus_delta_of_the_splits(splits, method) -> None:
    precision, _, chosen = splits[method]
    met = precision >= TARGET
    exact = np.array([population_precision(t) >= TARGET for t in chosen])
    if method.endswith("bonferroni"):
        # Bonferroni tests at delta / 201 and so has room to spare: the statement holds literally.
        assert met.mean() >= 1 - DELTA and exact.mean() >= 1 - DELTA
    else:
        # Fixed-sequence testing spends delta almost exactly (the first false threshold it meets is barely false),
        # so over 200 splits the share meeting the target scatters around 1 - delta by +-2 %: over 3000 splits it
        # was 90.7 %. Asserting ">= 90 %" on 200 would pass or fail by the seed; the test instead asks that the
        # misses be no more than a miss probability of delta explains.
        assert (~met).sum() <= allowed_misses() and (~exact).sum() <= allowed_misses()


def test_the_guarantee_test_catches_a_threshold_chosen_without_correction(splits) -> None:
    precision, _, _ = splits["empirical"]
    assert (precision < TARGET).sum() > allowed_misses()  # about half the splits miss


def test_the_guaranteed_thresholds_still_keep_most_of_what_an_oracle_would(splits) -> None:
    # The oracle threshold (population precision exactly 0.9) keeps 75.3 % of the edges.
    fixed_sequence, bonferroni = splits["fixed_sequence"][1], splits["bonferroni"][1]
    assert fixed_sequence.mean() > 0.6 and bonferroni.mean() > 0.5
    assert fixed_sequence.mean() >= bonferroni.mean()
    # Counting scenes costs little when the edges of a scene are in fact independent.
    assert splits["scene_fixed_sequence"][1].mean() > 0.6 and splits["scene_bonferroni"][1].mean() > 0.5


# --- the guarantee when errors cluster by scene ---------------------------------------------------------------------

CLUSTER_DRAWS = 200
SCENES, FACTS, FRAMES = 53, 30, 10  # like the shipped model's threshold split: 53 scenes, ~16,000 edges
LOW = 0.85  # trust ~ Uniform(0.85, 1): the population precision of {trust >= t} is (max(t, 0.85) + 1) / 2


def clustered_draw(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Calibrated overall (P(correct | trust) = trust, averaged over scenes) but not within a scene: a scene's error
    probability is (1 - trust) * (1 +- 0.9), hard and easy scenes equally often, and each fact is seen in FRAMES
    frames with the same outcome."""
    trust = rng.uniform(LOW, 1.0, (SCENES, FACTS))
    hardness = rng.choice([-0.9, 0.9], size=(SCENES, 1))
    correct = rng.random((SCENES, FACTS)) >= (1.0 - trust) * (1.0 + hardness)
    scenes = np.repeat(np.arange(SCENES), FACTS)
    return (np.repeat(trust.ravel(), FRAMES), np.repeat(correct.ravel(), FRAMES), np.repeat(scenes, FRAMES))


@pytest.fixture(scope="module")
def clustered_misses() -> dict[str, int]:
    """Draws (of CLUSTER_DRAWS) whose chosen threshold has population precision below the target, per test unit."""
    target = 0.95
    rng = np.random.default_rng(11)
    misses = {"scene": 0, "edge": 0}
    for _ in range(CLUSTER_DRAWS):
        trust, correct, scenes = clustered_draw(rng)
        for unit, groups in (("scene", scenes), ("edge", None)):
            choice = choose_threshold(trust, correct, target, DELTA, groups=groups)
            misses[unit] += choice.feasible and (max(choice.threshold, LOW) + 1.0) / 2.0 < target
    return misses


def test_with_errors_clustered_by_scene_the_scene_level_threshold_keeps_its_promise(clustered_misses) -> None:
    # Over 1,000 draws: 6.4 % missed (edge-level: 30.9 %).
    assert clustered_misses["scene"] <= int(stats.binom.ppf(0.999, CLUSTER_DRAWS, DELTA))


def test_with_errors_clustered_by_scene_counting_edges_breaks_the_promise(clustered_misses) -> None:
    # What the scene-level test fixes: edges counted as independent trials miss in about 30 % of the draws.
    assert clustered_misses["edge"] > int(stats.binom.ppf(0.999, CLUSTER_DRAWS, DELTA))


DOMINANT_DRAWS = 400


@pytest.fixture(scope="module")
def dominant_scene_misses() -> int:
    """Draws (of DOMINANT_DRAWS) whose threshold misses target 0.9 when one scene holds two fifths of the facts:
    1,000 facts beside 52 scenes of 30, trust ~ Uniform(0.7, 1) (population precision (max(t, 0.7) + 1) / 2) and
    the error model of clustered_draw. One frame per fact: more frames scale the design effect and leave the
    effective counts, and so the choice, as they are."""
    low, target = 0.7, 0.9
    rng = np.random.default_rng(11)
    facts = np.array([1000] + [30] * 52)
    scenes = np.repeat(np.arange(facts.size), facts)
    misses = 0
    for _ in range(DOMINANT_DRAWS):
        trust = rng.uniform(low, 1.0, facts.sum())
        hardness = rng.choice([-0.9, 0.9], size=facts.size)[scenes]
        correct = rng.random(facts.sum()) >= (1.0 - trust) * (1.0 + hardness)
        choice = choose_threshold(trust, correct, target, DELTA, groups=scenes)
        misses += choice.feasible and (max(choice.threshold, low) + 1.0) / 2.0 < target
    return misses


def test_one_scene_holding_two_fifths_of_the_facts_does_not_break_the_promise(dominant_scene_misses) -> None:
    # 22 of 400 (5.5 %). The big scene's leverage (1 / (1 - h_g) on its residual) is what keeps it near delta: with
    # the CR1 factor alone 47 of the same 400 draws missed (11.8 %).
    print(f"{dominant_scene_misses} of {DOMINANT_DRAWS} draws missed the target")  # pytest -s
    assert dominant_scene_misses <= DELTA * DOMINANT_DRAWS


# --- the design effect ----------------------------------------------------------------------------------------------


def test_the_design_effect_is_the_cluster_robust_over_the_binomial_variance() -> None:
    # Two scenes of 10 edges, 10 and 6 correct: p = 0.8, residuals k_g - p n_g = +2 and -2, each scene's leverage
    # h_g = 10 / 20, so the robust variance is 2 / 1 * (4 / 0.5 + 4 / 0.5) / 20 ** 2 = 0.08 and the binomial one
    # 0.8 * 0.2 / 20 = 0.008: a design effect of 10.
    assert design_effect([10, 10], [10, 6]) == pytest.approx(10.0)
    # The same 16 of 20 spread evenly: no excess variance, and the design effect never goes below 1.
    assert design_effect([10, 10], [8, 8]) == 1.0
    # Groups keeping nothing do not count; a group of one edge is an ordinary group.
    assert design_effect([10, 0, 10], [10, 0, 6]) == pytest.approx(10.0)
    # Independent edges, a group each: (G / (G - 1)) ** 2, CR1's factor and, with equal sizes, CR2's leverage.
    assert design_effect([1, 1, 1, 1], [1, 1, 1, 0]) == pytest.approx((4 / 3) ** 2)


def test_a_dominant_scene_weighs_by_its_leverage() -> None:
    # Scenes of 30 and 10 edges, 30 and 6 correct: p = 0.9, residuals +3 and -3, leverages 0.75 and 0.25. The big
    # scene pulled p towards itself, so its residual counts four times: 2 * (9 / 0.25 + 9 / 0.75) = 96 against the
    # binomial 40 * 0.9 * 0.1 = 3.6 (without the leverage: 2 * 18 / 3.6 = 10).
    assert design_effect([30, 10], [30, 6]) == pytest.approx(96 / 3.6)


def test_a_scene_holding_a_quarter_of_the_edges_and_all_the_errors_is_not_averaged_away() -> None:
    # One scene of 200 edges at precision 0.73 beside 29 flawless scenes of 20: precision 0.931 over 780 edges,
    # target 0.8. Without the leverage the design effect is 34 and the test passes (p = 0.088); the big scene's
    # residual counts 1 / (1 - 200 / 780) times more with it, the design effect is 46 and the test fails (p = 0.15).
    sizes, kept_correct = [200] + [20] * 29, [146] + [20] * 29
    correct = np.concatenate([np.arange(size) < count for size, count in zip(sizes, kept_correct, strict=True)])
    groups = np.repeat(np.arange(30), sizes)
    choice = choose_threshold(np.full(780, 0.9), correct, 0.8, 0.1, groups=groups, grid=[0.5])
    assert not choice.feasible
    assert design_effect(sizes, kept_correct) == pytest.approx(45.8, abs=0.1)


def test_the_design_effect_in_its_degenerate_cases() -> None:
    assert design_effect([40], [38]) == 40.0  # one scene is one observation, however many edges it has
    # All correct (or all wrong): no variance to measure, and each scene is one observation, n / G.
    assert design_effect([40, 3], [40, 3]) == 21.5
    assert design_effect([100] * 5, [0] * 5) == 100.0
    assert design_effect([1] * 5, [1] * 5) == 1.0  # a scene per edge: the edges are the scenes
    assert design_effect([0, 0], [0, 0]) == 1.0  # nothing kept
    assert design_effect([30, 30], [30, 0]) <= 60.0  # never more than the kept edges: at least one observation
    with pytest.raises(TrustError, match="counts per group must satisfy 0 <= correct <= kept"):
        design_effect([3, 4], [4, 4])
    with pytest.raises(TrustError, match=r"1-D arrays of one shape, got \(2,\) and \(3,\)"):
        design_effect([3, 4], [1, 2, 3])


def test_with_a_scene_per_edge_the_scene_level_test_is_the_edge_level_one() -> None:
    scores, correct = two_groups(40, 0, 20, 20)
    edge = choose_threshold(scores, correct, 0.9, 0.1, groups=None)
    scene = choose_threshold(scores, correct, 0.9, 0.1, groups=np.arange(80))
    # The 40 kept edges are all correct, one per scene: design effect 1, and the same threshold and bound.
    assert edge.feasible and (scene.threshold, scene.kept, scene.design_effect) == (edge.threshold, edge.kept, 1.0)
    assert scene.precision_lower_bound == pytest.approx(edge.precision_lower_bound, rel=1e-12)
    assert (scene.test_unit, scene.calibration_groups, scene.kept_groups) == ("group", 80, 40)
    assert (edge.test_unit, edge.calibration_groups, edge.kept_groups, edge.design_effect) == ("edge", None, None, 1.0)


def test_flawless_scenes_count_as_scenes_not_as_edges() -> None:
    # 5 scenes of 100 edges, every one correct: edge by edge 0.95 ** 500 passes a 0.95 target at once, but with five
    # scenes each flawless with probability 0.8 (population precision 0.95 when the others are at 0.75) all five
    # are flawless in a third of the draws. Each scene is one observation: 0.95 ** 5 = 0.77 > 0.1.
    scores, correct, groups = np.full(500, 0.97), np.ones(500, bool), np.repeat(np.arange(5), 100)
    assert choose_threshold(scores, correct, 0.95, 0.1, groups=None).feasible
    for method in ("fixed_sequence", "bonferroni"):
        choice = choose_threshold(scores, correct, 0.95, 0.1, groups=groups, method=method)
        assert (choice.feasible, choice.kept, choice.precision_lower_bound) == (False, 0, 0.0)
    # min_rejectable_count(0.95, 0.1) = 45 flawless scenes are enough, whatever their size; 44 are not.
    for scenes, feasible in ((45, True), (44, False)):
        choice = choose_threshold(np.full(scenes * 3, 0.97), np.ones(scenes * 3, bool), 0.95, 0.1,
                                  groups=np.repeat(np.arange(scenes), 3))
        assert choice.feasible is feasible
    choice = choose_threshold(np.full(45 * 3, 0.97), np.ones(45 * 3, bool), 0.95, 0.1,
                              groups=np.repeat(np.arange(45), 3))
    assert (choice.design_effect, choice.kept_groups) == (3.0, 45)
    assert choice.precision_lower_bound == pytest.approx(0.1 ** (1 / 45))


def test_one_wrong_edge_does_not_make_few_scenes_more_convincing_than_flawless_ones() -> None:
    # The same 5 scenes of 100 with one wrong edge: the design effect is now measurable and near 1, which alone
    # would pass 499 of 500; but no scene-level test can vouch for 5 scenes: its p-value is at least 0.95 ** 5.
    scores, groups = np.full(500, 0.97), np.repeat(np.arange(5), 100)
    correct = np.arange(500) != 0
    assert design_effect([100] * 5, [99, 100, 100, 100, 100]) < 1.3
    for method in ("fixed_sequence", "bonferroni"):
        assert not choose_threshold(scores, correct, 0.95, 0.1, groups=groups, method=method).feasible
    # Bonferroni tests each of the 201 candidates at 0.1 / 201: that takes min_rejectable_count(0.95, 0.1 / 201)
    # = 149 scenes, and 148 flawless ones are not enough.
    assert min_rejectable_count(0.95, 0.1 / 201) == 149
    for scenes, feasible in ((149, True), (148, False)):
        choice = choose_threshold(np.full(scenes * 2, 0.97), np.ones(scenes * 2, bool), 0.95, 0.1,
                                  groups=np.repeat(np.arange(scenes), 2), method="bonferroni")
        assert choice.feasible is feasible


def test_the_scene_level_bound_counts_effective_edges() -> None:
    # 600 edges at trust 0.99 in 30 scenes of 20 (28 flawless, then 5 and 8 correct) above 100 coin flips at 0.5 in
    # two more scenes. Precision 0.955 at 0.99; the errors sit in two scenes, so the 600 edges weigh as 600 / deff.
    sizes, kept_correct = [20] * 30, [20] * 28 + [5, 8]
    scores = np.repeat([0.99, 0.5], [600, 100])
    correct = np.concatenate([np.arange(20) < count for count in kept_correct] + [np.arange(100) < 50])
    groups = np.concatenate([np.repeat(np.arange(30), 20), 30 + np.arange(100) % 2])
    choice = choose_threshold(scores, correct, 0.8, 0.1, groups=groups)
    effect = design_effect(sizes, kept_correct)
    assert effect > 10.0
    assert (choice.feasible, choice.kept, choice.kept_groups, choice.calibration_groups) == (True, 600, 30, 32)
    assert choice.design_effect == pytest.approx(effect)
    k, n = 573 / effect, 600 / effect
    assert choice.precision_lower_bound == pytest.approx(stats.beta.ppf(0.1, k, n - k + 1), rel=1e-9)
    assert choice.precision_lower_bound < 0.1 ** (1 / 30)  # below the cap of 30 flawless scenes: not the cap
    assert choice.precision_lower_bound < clopper_pearson_lower(573, 600, 0.1) - 0.05  # edge by edge: 0.94
    # Edge by edge even the coin flips are kept (623 of 700 correct); their scenes add too much variance for that.
    assert choose_threshold(scores, correct, 0.8, 0.1, groups=None).kept == 700


def test_edges_of_a_single_scene_vouch_for_nothing() -> None:
    # 100 flawless edges, all from one scene: edge by edge they pass (0.9 ** 100 < 0.1), as one scene they cannot.
    scores, correct = np.full(100, 0.97), np.ones(100, bool)
    assert choose_threshold(scores, correct, 0.9, 0.1, groups=None).feasible
    for method in ("fixed_sequence", "bonferroni"):
        choice = choose_threshold(scores, correct, 0.9, 0.1, groups=np.zeros(100, int), method=method)
        assert (choice.feasible, choice.kept_groups, choice.calibration_groups) == (False, 0, 1)


def test_top_candidates_holding_too_few_scenes_are_skipped_not_failed() -> None:
    # The 30 edges above 0.98 come from scenes 0-2, one of them wrong: fewer than min_rejectable_count(0.9, 0.1) = 22
    # scenes, which no labels could make pass (0.9 ** 3 > 0.1), so the sequence starts below them, where scenes
    # 0-24 keep 330 edges (one wrong). Tested, the top candidates would have ended the sequence at once.
    scores = np.concatenate([np.full(30, 0.99), np.full(300, 0.9), np.full(100, 0.3)])
    correct = np.concatenate([np.arange(330) != 0, np.arange(100) < 30])
    groups = np.concatenate([np.arange(30) % 3, np.arange(300) % 25, 25 + np.arange(100) % 4])
    choice = choose_threshold(scores, correct, 0.9, 0.1, groups=groups)
    assert (choice.feasible, choice.kept, choice.kept_groups) == (True, 330, 25)
    with_top = choose_threshold(scores, correct, 0.9, 0.1, groups=groups, grid=[0.99])
    assert not with_top.feasible


# --- validation and JSON ------------------------------------------------------------------------------------------

GOOD = ([0.2, 0.9, 0.95], [0, 1, 1])


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    ((*GOOD, 1.0, 0.1), {}, r"target_precision must be a number in \(0, 1\), got 1.0"),
    ((*GOOD, 0.0, 0.1), {}, r"target_precision must be a number in \(0, 1\), got 0.0"),
    ((*GOOD, True, 0.1), {}, r"target_precision must be a number in \(0, 1\), got True"),
    ((*GOOD, 0.9, float("nan")), {}, r"delta must be a number in \(0, 1\), got nan"),
    ((*GOOD, 0.9, 1.5), {}, r"delta must be a number in \(0, 1\), got 1.5"),
    (([0.2, 1.1, 0.95], GOOD[1], 0.9, 0.1), {}, r"probabilities must lie in \[0, 1\], got 1.1 at index 1"),
    (([0.2, float("inf"), 0.95], GOOD[1], 0.9, 0.1), {}, "probabilities must be finite, got inf at index 1"),
    ((GOOD[0], [0, 2, 1], 0.9, 0.1), {}, "correct must hold booleans or 0/1, got 2.0 at index 1"),
    ((GOOD[0], [0, 1], 0.9, 0.1), {}, "differ in length: 3 vs 2"),
    (([], [], 0.9, 0.1), {}, "probabilities and correct are empty"),
    ((*GOOD, 0.9, 0.1), {"method": "holm"}, "unknown threshold method 'holm'; known: fixed_sequence, bonferroni"),
    ((*GOOD, 0.9, 0.1), {"grid": []}, "grid is empty"),
    ((*GOOD, 0.9, 0.1), {"grid": [0.5, 1.5]}, r"grid must lie in \[0, 1\], got 1.5 at index 1"),
    ((*GOOD, 0.9, 0.1), {"grid": [[0.5]]}, r"grid must be 1-D, got shape \(1, 1\)"),
    ((*GOOD, 0.9, 0.1), {"groups": ["a", "b"]}, r"groups must hold one group id per edge \(3\), got shape \(2,\)"),
    ((*GOOD, 0.9, 0.1), {"groups": np.array(["a", 1, "b"], dtype=object)}, "groups must be ids of one type"),
])
def test_bad_input_is_rejected_with_the_value_named(args, kwargs, message: str) -> None:
    with pytest.raises(TrustError, match=message):
        choose_threshold(*args, **{"groups": None, **kwargs})


@pytest.mark.parametrize("method", ["fixed_sequence", "bonferroni"])
def test_a_choice_survives_a_json_round_trip(method: str) -> None:
    for scores, correct in (two_groups(300, 0, 150, 150), two_groups(3, 0, 0, 60)):  # feasible, then infeasible
        for groups in (None, np.arange(scores.size) % 5):
            choice = choose_threshold(scores, correct, 0.9, 0.1, groups=groups, method=method)
            state = json.loads(json.dumps(choice.to_json(), allow_nan=False))
            assert ThresholdChoice.from_json(state) == choice


CHOICE = {"threshold": 0.7, "target_precision": 0.9, "delta": 0.1, "method": "fixed_sequence", "feasible": True,
          "kept": 60, "calibration_edges": 100, "coverage": 0.6, "precision": 0.98, "precision_lower_bound": 0.93,
          "test_unit": "group", "calibration_groups": 20, "kept_groups": 12, "design_effect": 1.5}
EDGE_LEVEL = {"test_unit": "edge", "calibration_groups": None, "kept_groups": None, "design_effect": 1.0}


@pytest.mark.parametrize(("state", "message"), [
    ("0.7", "must be a JSON object, got str"),
    ({key: value for key, value in CHOICE.items() if key != "delta"}, "missing key.*delta"),
    ({**CHOICE, "grid": [0.5]}, "unknown key.*grid"),
    ({**CHOICE, "method": "holm"}, "unknown method 'holm'"),
    ({**CHOICE, "threshold": 1.2}, r"threshold must be a number in \[0, 1\], got 1.2"),
    ({**CHOICE, "threshold": "0.7"}, r"threshold must be a number in \[0, 1\], got '0.7'"),
    ({**CHOICE, "target_precision": 1.0}, r"target_precision must be a number in \(0, 1\)"),
    ({**CHOICE, "feasible": 1}, "feasible must be true or false, got 1"),
    ({**CHOICE, "kept": 60.0}, "kept must be a non-negative integer, got 60.0"),
    ({**CHOICE, "kept": 160, "coverage": 1.0}, "need 0 <= kept <= calibration_edges.*got kept 160 of 100"),
    ({**CHOICE, "coverage": 0.5}, r"coverage 0.5 is not kept / calibration_edges = 60 / 100"),
    ({**CHOICE, "precision": None}, "precision must be a number in \\[0, 1\\] when 60 edges are kept, got None"),
    ({**CHOICE, "kept": 0, "coverage": 0.0}, "precision must be null when nothing is kept, got 0.98"),
    ({**CHOICE, "precision_lower_bound": 0.85}, "feasible, but precision_lower_bound 0.85 is below target"),
    ({**CHOICE, "test_unit": "scene"}, "unknown test_unit 'scene'; known: group, edge"),
    ({**CHOICE, "kept_groups": 21}, "need kept_groups <= calibration_groups.*got 21 of 20 groups"),
    ({**CHOICE, "calibration_groups": 0, "kept_groups": 0}, "calibration_groups >= 1, got 0 of 0 groups"),
    ({**CHOICE, "kept_groups": 0}, "0 kept groups cannot hold 60 kept edges"),
    ({**CHOICE, "kept_groups": 1.0}, "kept_groups must be a non-negative integer, got 1.0"),
    ({**CHOICE, "design_effect": 0.5}, r"design_effect must be a number in \[1, kept = 60\], got 0.5"),
    ({**CHOICE, "design_effect": 61.0}, r"design_effect must be a number in \[1, kept = 60\], got 61.0"),
    ({**CHOICE, **EDGE_LEVEL, "design_effect": 2.0}, "an edge-level test has no groups and design_effect 1.0"),
    ({**CHOICE, **EDGE_LEVEL, "kept_groups": 3}, "an edge-level test has no groups and design_effect 1.0"),
])
def test_corrupt_json_is_rejected_with_the_problem_named(state, message: str) -> None:
    with pytest.raises(TrustError, match=message):
        ThresholdChoice.from_json(state)


def test_an_infeasible_choice_is_plain_json_with_a_null_precision() -> None:
    choice = choose_threshold([0.3, 0.4], [False, True], 0.9, 0.1, groups=None)
    assert choice.to_json() == {
        "threshold": 1.0, "target_precision": 0.9, "delta": 0.1, "method": "fixed_sequence", "feasible": False,
        "kept": 0, "calibration_edges": 2, "coverage": 0.0, "precision": None, "precision_lower_bound": 0.0,
        **EDGE_LEVEL}
    assert not math.isinf(choice.threshold)
