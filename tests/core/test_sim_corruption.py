"""Tests for the 'sim' detector's optional corruption: each rate has the configured effect, and off means off.

The statistical checks run many frames with a fixed seed; tolerances are at least 3.5 standard deviations of the
estimate, so they pin the configured rates without depending on the seed.
"""

from __future__ import annotations

import numpy as np
import pytest

from trusted_scene_graph.config import Config
from trusted_scene_graph.geometry import Intrinsics
from trusted_scene_graph.perception import CameraFrame, Detection, PerceptionError
from trusted_scene_graph.perception.corruption import DetectionCorruption
from trusted_scene_graph.perception.detector import SimDetector, make_detector

HEIGHT, WIDTH = 60, 80
LABELS = ("cube", "gripper", "mug", "table")


def instance_image() -> np.ndarray:
    """Four labelled objects well inside the image (so jitter is never clipped) on background 0."""
    instances = np.zeros((HEIGHT, WIDTH), np.uint16)
    instances[10:25, 10:30] = 1
    instances[30:50, 15:35] = 2
    instances[12:28, 45:60] = 3
    instances[35:52, 45:70] = 4
    return instances


def frame(stamp_ns: int = 0, instances: np.ndarray | None = None) -> CameraFrame:
    return CameraFrame(
        stamp_ns=stamp_ns,
        rgb=np.zeros((HEIGHT, WIDTH, 3), np.uint8),
        depth_m=np.ones((HEIGHT, WIDTH), np.float32),
        intrinsics=Intrinsics(WIDTH, HEIGHT, 50.0, 50.0, (WIDTH - 1) / 2, (HEIGHT - 1) / 2),
        instances=instance_image() if instances is None else instances,
    )


def detector(**corruption: float) -> SimDetector:
    return SimDetector(dict(enumerate(LABELS, start=1)), min_pixels=5, corruption=DetectionCorruption(**corruption))


def exact_detections() -> list[Detection]:
    return detector().detect(frame())


def run(sim: SimDetector, frames: int) -> list[list[Detection]]:
    return [sim.detect(frame(stamp_ns=i)) for i in range(frames)]


def assert_same(a: list[Detection], b: list[Detection]) -> None:
    assert len(a) == len(b)
    for da, db in zip(a, b, strict=True):
        assert (da.label, da.score, da.box_xywh_px) == (db.label, db.score, db.box_xywh_px)
        assert (da.mask is None) == (db.mask is None)
        if da.mask is not None:
            assert np.array_equal(da.mask, db.mask)


def assert_inside_image(detection: Detection) -> None:
    x, y, w, h = detection.box_xywh_px
    assert w >= 1 and h >= 1 and x >= 0 and y >= 0 and x + w <= WIDTH and y + h <= HEIGHT, detection.box_xywh_px


# --- settings -----------------------------------------------------------------------------------------------------


def test_all_zero_settings_are_disabled_and_any_rate_enables_the_corruption() -> None:
    assert not DetectionCorruption().enabled
    assert not DetectionCorruption(seed=7).enabled, "a seed alone changes nothing"
    for name in ("box_jitter_px", "miss_rate", "false_positive_rate", "label_swap_rate", "score_noise"):
        assert DetectionCorruption(**{name: 0.1}).enabled, name


def test_the_settings_are_read_from_the_config() -> None:
    corruption = DetectionCorruption.from_config(Config({
        "detector.corruption.box_jitter_px": 2.5, "detector.corruption.miss_rate": 0.1,
        "detector.corruption.false_positive_rate": 0.5, "detector.corruption.label_swap_rate": 0.2,
        "detector.corruption.score_noise": 0.05, "detector.corruption.seed": 42,
    }))
    assert corruption == DetectionCorruption(2.5, 0.1, 0.5, 0.2, 0.05, 42)
    assert DetectionCorruption.from_config(Config()) == DetectionCorruption(), "the defaults disable it"


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"miss_rate": 1.5}, r"miss_rate=1.5 must be a probability"),
        ({"label_swap_rate": -0.1}, r"label_swap_rate=-0.1 must be a probability"),
        ({"box_jitter_px": -1.0}, r"box_jitter_px=-1.0 must be finite and >= 0"),
        ({"false_positive_rate": float("inf")}, r"false_positive_rate=inf must be finite"),
        ({"score_noise": float("nan")}, r"score_noise=nan must be finite"),
        ({"seed": -3}, r"seed=-3 must be >= 0"),
    ],
)
def test_invalid_settings_raise_a_perception_error_naming_the_value(settings: dict[str, float], match: str) -> None:
    with pytest.raises(PerceptionError, match=match):
        DetectionCorruption(**settings)


def test_an_empty_image_cannot_be_corrupted() -> None:
    with pytest.raises(PerceptionError, match="empty 80x0 image"):
        DetectionCorruption(miss_rate=0.5).apply([], 0, 80, LABELS, np.random.default_rng(0))


# --- disabled and wiring ------------------------------------------------------------------------------------------


def test_disabled_corruption_leaves_the_sim_detector_output_bit_identical() -> None:
    plain = SimDetector(dict(enumerate(LABELS, start=1)), min_pixels=5)
    from_config = SimDetector.from_config(Config({"detector.sim_labels": [f"{i}:{label}" for i, label in
                                                                          enumerate(LABELS, start=1)],
                                                  "detector.min_pixels": 5, "detector.corruption.seed": 9}))
    assert not from_config.corruption.enabled
    for stamp_ns in range(3):
        reference = plain.detect(frame(stamp_ns))
        assert [d.label for d in reference] == list(LABELS) and all(d.score == 1.0 for d in reference)
        assert_same(from_config.detect(frame(stamp_ns)), reference)


def test_make_detector_builds_the_sim_detector_with_the_configured_corruption() -> None:
    config = Config({"detector.backend": "sim", "detector.sim_labels": ["1:cube", "2:gripper"],
                     "detector.min_pixels": 5, "detector.corruption.miss_rate": 1.0})
    sim = make_detector(config)
    assert isinstance(sim, SimDetector) and sim.corruption.miss_rate == 1.0
    assert sim.detect(frame()) == [], "every detection is missed"


def test_the_same_seed_replays_the_same_corruption_and_frames_differ() -> None:
    settings = {"box_jitter_px": 2.0, "miss_rate": 0.2, "false_positive_rate": 1.0, "label_swap_rate": 0.2,
                "score_noise": 0.05}
    first, again = run(detector(**settings, seed=3), 5), run(detector(**settings, seed=3), 5)
    for a, b in zip(first, again, strict=True):
        assert_same(a, b)
    other = run(detector(**settings, seed=4), 5)
    assert [[d.box_xywh_px for d in f] for f in other] != [[d.box_xywh_px for d in f] for f in first]
    assert [d.box_xywh_px for d in first[0]] != [d.box_xywh_px for d in first[1]], (
        "one generator across frames: consecutive frames are corrupted differently"
    )


def test_apply_does_not_modify_its_input() -> None:
    detections = exact_detections()
    masks = [d.mask.copy() for d in detections]
    DetectionCorruption(box_jitter_px=5.0, label_swap_rate=1.0).apply(detections, HEIGHT, WIDTH, LABELS,
                                                                      np.random.default_rng(0))
    assert [d.label for d in detections] == list(LABELS)
    assert all(np.array_equal(d.mask, m) for d, m in zip(detections, masks, strict=True))


# --- each rate's effect -------------------------------------------------------------------------------------------


def test_the_miss_rate_drops_that_fraction_of_detections() -> None:
    frames = run(detector(miss_rate=0.3, seed=1), 800)  # 3200 detections: sd of the fraction 0.008
    kept = sum(len(f) for f in frames) / (800 * len(LABELS))
    assert kept == pytest.approx(0.7, abs=0.03)
    for detections in frames:
        assert_same(detections, [d for d in exact_detections() if d.label in {x.label for x in detections}])


def test_the_label_swap_rate_relabels_that_fraction_with_other_known_labels() -> None:
    frames = run(detector(label_swap_rate=0.2, seed=2), 800)
    swapped, total, chosen = 0, 0, set()
    exact = exact_detections()
    for detections in frames:
        assert len(detections) == len(LABELS)
        for true, seen in zip(exact, detections, strict=True):
            assert seen.box_xywh_px == true.box_xywh_px and seen.label in LABELS
            total += 1
            if seen.label != true.label:
                swapped += 1
                chosen.add((true.label, seen.label))
    assert swapped / total == pytest.approx(0.2, abs=0.03)
    assert len(chosen) == len(LABELS) * (len(LABELS) - 1), "every other label is a possible replacement"


def test_false_positives_follow_a_poisson_count_with_random_boxes_labels_and_scores() -> None:
    frames = run(detector(false_positive_rate=1.5, seed=3), 2000)  # sd of the mean count 0.027
    counts = np.array([len(f) - len(LABELS) for f in frames])
    assert counts.mean() == pytest.approx(1.5, abs=0.12)
    assert counts.var() == pytest.approx(1.5, abs=0.25), "Poisson: variance equals the mean"
    spurious = [d for f in frames for d in f[len(LABELS):]]
    for detection in spurious:
        assert detection.mask is None and detection.label in LABELS and 0.3 <= detection.score <= 1.0
        assert_inside_image(detection)
    scores = np.array([d.score for d in spurious])
    assert scores.mean() == pytest.approx(0.65, abs=0.02)
    assert {d.label for d in spurious} == set(LABELS)
    assert len({d.box_xywh_px for d in spurious}) > 0.9 * len(spurious), "boxes are random"
    for detections in frames:
        assert_same(detections[: len(LABELS)], exact_detections())


def test_box_jitter_moves_each_edge_by_gaussian_noise_of_the_configured_sd() -> None:
    exact = exact_detections()
    frames = run(detector(box_jitter_px=3.0, seed=4), 300)  # 4800 edges: sd of the sd estimate 0.03 px
    offsets_px = []
    for detections in frames:
        for true, seen in zip(exact, detections, strict=True):
            (tx, ty, tw, th), (x, y, w, h) = true.box_xywh_px, seen.box_xywh_px
            offsets_px += [x - tx, y - ty, (x + w) - (tx + tw), (y + h) - (ty + th)]
    offsets_px = np.array(offsets_px, dtype=np.float64)
    assert offsets_px.mean() == pytest.approx(0.0, abs=0.2)
    # Rounding to whole pixels adds a variance of 1/12.
    assert offsets_px.std() == pytest.approx(np.sqrt(3.0**2 + 1.0 / 12.0), abs=0.15)


def test_jittered_boxes_stay_inside_the_image_and_at_least_one_pixel_and_masks_stay_inside_them() -> None:
    instances = np.zeros((HEIGHT, WIDTH), np.uint16)
    instances[0:3, 0:3] = 1  # corners and a one-pixel-thin object
    instances[HEIGHT - 4 :, WIDTH - 5 :] = 2
    instances[30, 10:40] = 3
    sim = SimDetector({1: "cube", 2: "mug", 3: "wire"}, min_pixels=1,
                      corruption=DetectionCorruption(box_jitter_px=40.0, seed=5))
    exact = SimDetector({1: "cube", 2: "mug", 3: "wire"}, min_pixels=1).detect(frame(instances=instances))
    dropped_masks = 0
    for _ in range(300):
        for true, seen in zip(exact, sim.detect(frame(instances=instances)), strict=True):
            assert_inside_image(seen)
            x, y, w, h = seen.box_xywh_px
            in_box = np.zeros((HEIGHT, WIDTH), bool)
            in_box[y : y + h, x : x + w] = True
            if seen.mask is None:
                dropped_masks += 1
                assert not (true.mask & in_box).any(), "the mask is dropped only when nothing of it is left"
            else:
                assert np.array_equal(seen.mask, true.mask & in_box), "the mask is the true mask inside the box"
    assert dropped_masks > 0


def test_score_noise_has_the_configured_sd_and_scores_stay_in_zero_to_one() -> None:
    corruption = DetectionCorruption(score_noise=0.1)
    rng = corruption.make_rng()
    half = [Detection("cube", 0.5, (10, 10, 5, 5))] * 20
    scores = np.array([d.score for _ in range(200) for d in corruption.apply(half, HEIGHT, WIDTH, LABELS, rng)])
    assert scores.mean() == pytest.approx(0.5, abs=0.01)
    assert scores.std() == pytest.approx(0.1, abs=0.006)  # 4000 scores: sd of the estimate 0.0011
    exact_scores = np.array([d.score for f in run(detector(score_noise=0.1, seed=6), 200) for d in f])
    assert (exact_scores <= 1.0).all() and (exact_scores >= 0.0).all()
    assert np.mean(exact_scores == 1.0) == pytest.approx(0.5, abs=0.05), "half the noise is clipped at 1"


def test_with_every_corruption_labels_stay_known_and_boxes_inside_the_image() -> None:
    sim = detector(box_jitter_px=15.0, miss_rate=0.3, false_positive_rate=2.0, label_swap_rate=0.5, score_noise=0.3,
                   seed=8)
    for detections in run(sim, 300):
        for detection in detections:
            assert detection.label in LABELS
            assert 0.0 <= detection.score <= 1.0
            assert_inside_image(detection)
            if detection.mask is not None:
                assert detection.mask.shape == (HEIGHT, WIDTH) and detection.mask.any()


def test_without_known_labels_nothing_is_swapped_or_invented() -> None:
    corruption = DetectionCorruption(label_swap_rate=1.0, false_positive_rate=5.0)
    detections = [Detection("cube", 1.0, (1, 1, 4, 4))]
    assert corruption.apply(detections, HEIGHT, WIDTH, [], np.random.default_rng(0)) == detections
    assert corruption.apply(detections, HEIGHT, WIDTH, ["cube"], np.random.default_rng(0))[0].label == "cube", (
        "a label cannot be swapped for itself"
    )


def test_a_restarted_detector_draws_the_corruption_a_new_detector_of_its_seed_draws() -> None:
    # A labelling worker restarts its pipeline per item: an item's detections must not depend on the items before it.
    sim = detector(miss_rate=0.5, box_jitter_px=2.0, seed=4)
    run(sim, 5)
    sim.restart()
    for restarted, fresh in zip(run(sim, 5), run(detector(miss_rate=0.5, box_jitter_px=2.0, seed=4), 5), strict=True):
        assert_same(restarted, fresh)
