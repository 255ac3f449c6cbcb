"""The ``tsg eval`` scorer's definitions (module docstring of :mod:`trusted_scene_graph.evaluation.bag_eval`) on a
hand-built frame whose every number is worked out here.

Camera: the default extrinsic, at the graph origin looking along +x (graph +y is image left, +z image up), 640 x 480
pixels, f = 500 px, principal point (320, 240): a point (x, y, z) projects to u = 320 - 500 y / x,
v = 240 - 500 z / x. The ground truth is in the graph frame (the camera pose in the truth frame is the extrinsic).

Ground truth, every centre at z = 0:

====  =====  ==================  =====================  ==========================================================
id    label  centre (m)          size (m)               in the image
====  =====  ==================  =====================  ==========================================================
1     cube   (1.0, 0.1, 0.0)     0.1 x 0.1 x 0.1        u 241..296 px: inside, evaluable
2     ball   (1.0, -0.1, 0.0)    0.105 cube             u 343..400 px: inside, evaluable
3     box    (1.0, -0.65, 0.0)   0.1 x 0.1 x 0.1        u up to 320 + 500 * 0.7 / 0.95 = 688 px > 639: cut, excluded
====  =====  ==================  =====================  ==========================================================

True qualitative edges between the evaluable objects (relations.near_m 0.15 m): cube left_of ball and ball right_of
cube (0.2 m apart sideways), cube near ball and ball near cube (surface gap 0.2 - 0.05 - 0.0525 = 0.0975 m),
ball bigger_than cube and ball taller_than cube (0.105 against 0.1 m): 6.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from trusted_scene_graph.config.schema import Config
from trusted_scene_graph.dataset import messages as bag_msgs
from trusted_scene_graph.evaluation import EvaluationError
from trusted_scene_graph.evaluation.bag_eval import _Columns, _Counts, _FrameScorer, _Samples, compute_metrics
from trusted_scene_graph.geometry.camera import Intrinsics
from trusted_scene_graph.geometry.transform import RigidTransform
from trusted_scene_graph.graph.model import ObjectNode, SceneGraph
from trusted_scene_graph.perception.detector import SimDetector
from trusted_scene_graph.pipeline.scene import ScenePipeline
from trusted_scene_graph.relations.geometric import relation_grid
from trusted_scene_graph.trust.features import FEATURE_NAMES

INTRINSICS = Intrinsics(640, 480, 500.0, 500.0, 320.0, 240.0)
CONFIG = Config({
    "extrinsic.source": "static", "extrinsic.translation_m": [0.0, 0.0, 0.0],
    "extrinsic.rotation_xyzw": [-0.5, 0.5, -0.5, 0.5],
    "relations.near_m": 0.15, "relations.margin_scale_m": 0.02, "relations.contact_tolerance_m": 0.02,
    "trust.threshold": 0.6, "detector.min_pixels": 30, "trust.model": "prior",
})
THRESHOLD = 0.6  # trust = logistic(margin / 0.02 m) >= 0.6: kept when the margin is at least 8.1 mm
CUBE_ID, BALL_ID, BOX_ID = 1, 2, 3
CUBE_INSTANCE, BALL_INSTANCE, BOX_INSTANCE = 2, 7, 3  # values of their pixels in the instance-id image


def ground_truth() -> object:
    objects = [
        bag_msgs.ground_truth_object(CUBE_ID, "cube", CUBE_INSTANCE, (1.0, 0.1, 0.0), (0, 0, 0, 1), (0.1, 0.1, 0.1)),
        bag_msgs.ground_truth_object(BALL_ID, "ball", BALL_INSTANCE, (1.0, -0.1, 0.0), (0, 0, 0, 1),
                                     (0.105, 0.105, 0.105)),
        bag_msgs.ground_truth_object(BOX_ID, "box", BOX_INSTANCE, (1.0, -0.65, 0.0), (0, 0, 0, 1), (0.1, 0.1, 0.1)),
    ]
    return bag_msgs.ground_truth(0, "base_link", "tabletop", 0, 0, objects)


def node(object_id: int, label: str, centre_m: tuple[float, float, float],
         size_m: tuple[float, float, float]) -> ObjectNode:
    return ObjectNode(object_id, label, 1.0, (0, 0, 1, 1), np.array(centre_m), np.array(size_m), 1.0)


CUBE = node(10, "cube", (1.0, 0.1, 0.0), (0.1, 0.1, 0.1))  # exactly the true cube
BOX = node(12, "box", (1.0, -0.6, 0.0), (0.1, 0.1, 0.1))  # the visible part of the cut box, 5 cm from its centre


class BoxDetector:
    """Stands in for a box detector without instance image (not 'sim'): min_pixels comes from the config."""

    needs_instances = False


def pipeline(detector: object | None = None) -> ScenePipeline:
    return ScenePipeline(CONFIG, detector=detector if detector is not None else SimDetector(
        {CUBE_INSTANCE: "cube", BALL_INSTANCE: "ball", BOX_INSTANCE: "box"}, min_pixels=30))


def graph_of(objects: Sequence[ObjectNode], scene: ScenePipeline) -> SceneGraph:
    """A graph of ``objects`` with its candidate edges, as the pipeline's relate and trust steps make them."""
    grid = relation_grid([o.id for o in objects], np.array([o.centroid_m for o in objects]),
                         np.array([o.size_m for o in objects]), scene.camera_forward_graph, scene.relation_settings,
                         scene.camera_up_graph)
    return SceneGraph(0, "base_link", tuple(objects),
                      candidates=scene.trust.assess(grid, objects, INTRINSICS.width, INTRINSICS.height))


def score(objects: list[ObjectNode], *, detector: object | None = None,
          instances: np.ndarray | None = None, truth: object | None = None) -> tuple[_Samples, dict]:
    """Score one frame of ``objects`` against ``truth`` (default :func:`ground_truth`); the samples and the metrics."""
    samples = _Samples()
    scene = pipeline(detector)
    truth = truth if truth is not None else ground_truth()
    _FrameScorer(CONFIG, samples, THRESHOLD).score(
        graph_of(objects, scene), truth, samples.episode_key(0, int(truth.episode)), None, scene,
        scene.camera_to_graph, RigidTransform.from_xyzw([0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]), INTRINSICS,
        instances=instances)
    counts = _Counts(evaluated=1)
    return samples, compute_metrics(samples, counts, CONFIG, {})


def test_edges_are_correct_when_their_predicate_holds_between_the_matched_true_boxes() -> None:
    # The ball is perceived 2 cm too far and 5 mm too short: (1.02, -0.1, 0.0), 0.105 x 0.105 x 0.1 m.
    ball = node(11, "ball", (1.02, -0.1, 0.0), (0.105, 0.105, 0.1))
    samples, metrics = score([CUBE, ball, BOX])
    # Candidate edges between cube and ball (margin; kept at margin >= 8.1 mm; correct if among the true edges):
    #   cube left_of ball        0.2 m                            kept  correct
    #   cube in_front_of ball    0.02 m (trust 0.73)              kept  wrong: the true centres are equally far
    #   cube near ball           0.15 - 0.0975 = 0.0525 m         kept  correct
    #   ball right_of cube       0.2 m                            kept  correct
    #   ball behind cube         0.02 m                           kept  wrong
    #   ball near cube           0.0525 m                         kept  correct
    #   ball bigger_than cube    sqrt(0.105 * 0.105) - 0.1 = 5 mm (trust 0.56)  not kept  correct
    # (ball taller_than cube is true but not perceived: both 0.1 m tall.)
    edges = sorted(zip(samples.edge_predicate, samples.edges["kept"], samples.edges["correct"], strict=True))
    assert edges == sorted([("left_of", True, True), ("in_front_of", True, False), ("near", True, True),
                            ("right_of", True, True), ("behind", True, False), ("near", True, True),
                            ("bigger_than", False, True)])
    relations = metrics["relations"]
    assert relations["candidates"] == 7 and relations["true_edges"] == 5 and relations["kept"] == 6
    assert relations["accuracy"] == pytest.approx(5 / 7)
    assert relations["precision_kept"] == pytest.approx(4 / 6)  # kept and correct / kept
    assert relations["recall_kept"] == pytest.approx(4 / 5)  # kept and correct / correct candidates
    assert relations["coverage"] == pytest.approx(6 / 7)
    # Against every true edge between evaluable objects, including the one never perceived (taller_than).
    assert relations["ground_truth_edges"] == 6
    assert relations["recall_ground_truth"] == pytest.approx(4 / 6)
    assert relations["by_predicate"]["near"] == {"candidates": 2, "accuracy": 1.0, "precision_kept": 1.0,
                                                 "recall_kept": 1.0, "coverage": 1.0}
    assert metrics["trust"]["edges"] == 7


def test_edges_touching_an_object_that_is_not_evaluable_are_excluded_and_counted() -> None:
    ball = node(11, "ball", (1.02, -0.1, 0.0), (0.105, 0.105, 0.1))
    _, metrics = score([CUBE, ball, BOX])
    # The perceived box is matched to the cut box (5 cm < the 0.2 m gate), which is not evaluable. Its edges:
    #   with the cube: cube left_of box, box right_of cube, cube far box, box far cube (equal x, z and size);
    #   with the ball: ball left_of box, box right_of ball, box in_front_of ball and ball behind box (x 1.0 against
    #   1.02), ball far box, box far ball, ball bigger_than box (same height: no taller_than).
    assert metrics["relations"]["excluded_not_evaluable"] == 4 + 7
    # Nor is it a false positive: it is neither matched to an evaluable object nor a detection of nothing.
    detection = metrics["detection"]
    assert (detection["perceived_objects"], detection["perceived_not_evaluable"], detection["false_positives"]) == \
        (3, 1, 0)


def test_distances_are_scored_between_matched_evaluable_objects_only() -> None:
    ball = node(11, "ball", (1.02, -0.1, 0.0), (0.105, 0.105, 0.1))
    samples, metrics = score([CUBE, ball, BOX])
    # One pair, cube-ball; pairs with the box (matched, not evaluable) are not scored. No end effector in the truth.
    assert metrics["distance"]["object_pairs"]["count"] == 1
    np.testing.assert_allclose(samples.pairs["perceived_m"], [math.hypot(0.02, 0.2)])
    np.testing.assert_allclose(samples.pairs["true_m"], [0.2])
    assert metrics["distance"]["ee_object"] == {"count": 0}


def test_recall_counts_evaluable_objects_and_precision_the_perceived_objects_that_are_scored() -> None:
    # The ball is perceived 0.25 m off (beyond the 0.2 m gate): a miss and a false positive. A mug is perceived where
    # the truth has none: a false positive. The box is not evaluable: neither.
    far_ball = node(11, "ball", (1.0, -0.35, 0.0), (0.105, 0.105, 0.105))
    mug = node(13, "mug", (1.5, 0.0, 0.2), (0.08, 0.08, 0.1))
    _, metrics = score([CUBE, far_ball, BOX, mug])
    detection = metrics["detection"]
    assert detection["ground_truth_objects"] == 2  # cube and ball; the cut box is not evaluable
    assert detection["matched"] == 1 and detection["recall"] == pytest.approx(1 / 2)
    assert detection["perceived_objects"] == 4 and detection["perceived_not_evaluable"] == 1
    assert detection["false_positives"] == 2
    assert detection["precision"] == pytest.approx(1 / 3)  # matched / (matched + false positives)
    by_label = detection["by_label"]
    assert set(by_label) == {"ball", "cube", "mug"}  # no row for the box: no evaluable box, no false positive
    assert (by_label["cube"]["ground_truth_objects"], by_label["cube"]["matched"], by_label["cube"]["recall"]) == \
        (1, 1, 1.0)
    assert (by_label["ball"]["recall"], by_label["ball"]["false_positives"]) == (0.0, 1)
    assert by_label["mug"]["ground_truth_objects"] == 0 and math.isnan(by_label["mug"]["recall"])
    assert by_label["mug"]["false_positives"] == 1


def test_an_unmatched_detection_is_excused_only_as_the_visible_part_of_a_cut_object_of_its_label() -> None:
    # The cut box's true box grown by the 0.2 m gate spans y -0.9 .. -0.4 m. A 'box' perceived 22 cm from its centre
    # (beyond the gate: unmatched) lies in it: the visible part of the cut box, not scored. A 'box' on top of the
    # cube, 0.77 m away, is a hallucination, counted as one whatever else the image cuts, exactly like a 'mug' there.
    ball = node(11, "ball", (1.0, -0.1, 0.0), (0.105, 0.105, 0.105))
    visible_part = node(12, "box", (1.0, -0.43, 0.0), (0.1, 0.1, 0.1))
    detection = score([CUBE, ball, visible_part])[1]["detection"]
    assert (detection["perceived_not_evaluable"], detection["false_positives"], detection["precision"]) == (1, 0, 1.0)
    for label in ("box", "mug"):
        hallucinated = node(14, label, (1.0, 0.1, 0.12), (0.1, 0.1, 0.1))
        detection = score([CUBE, ball, BOX, hallucinated])[1]["detection"]
        assert (detection["perceived_not_evaluable"], detection["false_positives"]) == (1, 1), label
        assert detection["precision"] == pytest.approx(2 / 3)
        assert detection["by_label"][label]["false_positives"] == 1


TABLE_ID = 4


def ground_truth_on_a_table(*, ball_z_m: float = 0.0, table_visible_fraction: float = math.nan) -> object:
    """:func:`ground_truth` on a table: 2 x 2 m, 0.9 m tall, its top at z = -0.05 m, where the cube's bottom is (the
    ball's too at ``ball_z_m`` 0). Its near corners project to u = 320 -+ 500 * 1.0 / 0.5 px: cut, never evaluable."""
    table = bag_msgs.ground_truth_object(TABLE_ID, "table", 5, (1.5, 0.0, -0.5), (0, 0, 0, 1), (2.0, 2.0, 0.9),
                                         visible_fraction=table_visible_fraction)
    truth = ground_truth()
    objects = [o for o in truth.objects if o.label != "ball"]
    objects.append(bag_msgs.ground_truth_object(BALL_ID, "ball", BALL_INSTANCE, (1.0, -0.1, ball_z_m), (0, 0, 0, 1),
                                                (0.105, 0.105, 0.105)))
    return bag_msgs.ground_truth(0, "base_link", "tabletop", 0, 0, [*objects, table])


# The table as a camera sees its top: a thin slab in front of the objects (its centre 0.5 m from the true one, within
# the true box grown by the 0.2 m gate; too far to be matched).
TABLE_TOP = node(13, "table", (1.0, 0.0, -0.051), (0.9, 1.2, 0.002))


def test_on_top_of_a_table_is_scored_against_the_true_top_face_though_the_table_is_never_evaluable() -> None:
    # The ball is perceived resting on the table (its bottom at -0.0525 m, 1.5 mm into the slab), but truly floats
    # 0.2 m above it (held): its claim is wrong. Perceived edges with the table (prior trust):
    #   cube/ball on_top_of table                                          scored: cube correct, ball wrong
    #   cube left_of, above, near, taller_than table; ball right_of, above, near, taller_than table; table right_of,
    #   below, near, bigger_than cube; table left_of, below, near, bigger_than ball: 16, excluded (they depend on the
    #   whole table, of which the view holds only the top)
    ball = node(11, "ball", (1.0, -0.1, 0.0), (0.105, 0.105, 0.105))
    samples, metrics = score([CUBE, ball, TABLE_TOP], truth=ground_truth_on_a_table(ball_z_m=0.2))
    on_table = sorted(bool(correct) for predicate, correct in
                      zip(samples.edge_predicate, samples.edges["correct"], strict=True) if predicate == "on_top_of")
    assert on_table == [False, True]
    assert metrics["relations"]["excluded_not_evaluable"] == 16
    assert metrics["relations"]["by_predicate"]["on_top_of"] == {
        "candidates": 2, "accuracy": 0.5, "precision_kept": 0.5, "recall_kept": 1.0, "coverage": 1.0}
    # Recall counts the truth's on_top_of edges with a table in view: the cube on the table, and 8 edges between cube
    # and ball (left_of/right_of, near both ways, bigger_than, taller_than, above/below: the ball floats). With the
    # table hidden (visible fraction 0) it does not, and the perceived table's claims are not scored.
    assert metrics["relations"]["ground_truth_edges"] == 9
    hidden = score([CUBE, ball, TABLE_TOP], truth=ground_truth_on_a_table(ball_z_m=0.2, table_visible_fraction=0.0))
    assert hidden[1]["relations"]["ground_truth_edges"] == 8
    assert "on_top_of" not in hidden[1]["relations"]["by_predicate"]
    assert hidden[1]["relations"]["excluded_not_evaluable"] == 18


def test_a_table_seen_in_two_pieces_counts_a_true_edge_once() -> None:
    # The table top seen left and right of something in front of it: two perceived tables, both in the true table's
    # box. Only the larger stands for it, so "cube on_top_of table" is scored once, not once per piece.
    left = node(13, "table", (1.0, 0.3, -0.051), (0.9, 0.6, 0.002))
    right = node(14, "table", (1.0, -0.19, -0.051), (0.9, 0.62, 0.002))  # both reach under the cube
    samples, metrics = score([CUBE, left, right], truth=ground_truth_on_a_table())
    on_table = [bool(c) for p, c in zip(samples.edge_predicate, samples.edges["correct"], strict=True)
                if p == "on_top_of"]
    assert on_table == [True]
    assert metrics["relations"]["true_edges"] <= metrics["relations"]["ground_truth_edges"]


def test_only_on_top_of_with_a_table_is_scored_and_only_with_objects_that_are_scored() -> None:
    # The cut box, perceived on the table too, is not evaluable: its claim on the table stays excluded with every
    # other edge that touches it.
    on_box = node(12, "box", (1.0, -0.6, 0.0), (0.1, 0.1, 0.1))
    samples, _ = score([CUBE, on_box, TABLE_TOP], truth=ground_truth_on_a_table())
    scored = sorted((predicate, bool(correct)) for predicate, correct in
                    zip(samples.edge_predicate, samples.edges["correct"], strict=True))
    assert scored == [("on_top_of", True)]  # the cube's


def instance_image() -> np.ndarray:
    """The cube covers 40 x 40 px, the ball 5 x 5 px (fewer than detector.min_pixels = 30), the box is cut."""
    instances = np.zeros((480, 640), dtype=np.uint16)
    instances[220:260, 250:290] = CUBE_INSTANCE
    instances[238:243, 370:375] = BALL_INSTANCE
    instances[215:265, 600:640] = BOX_INSTANCE
    return instances


def test_misses_are_explained_by_visible_pixels_and_labels_the_sim_detector_does_not_know() -> None:
    ball = node(11, "ball", (1.0, -0.1, 0.0), (0.105, 0.105, 0.105))
    without_ball = SimDetector({CUBE_INSTANCE: "cube", BOX_INSTANCE: "box"}, min_pixels=30)
    with pytest.warns(UserWarning, match=r"'ball' \(instance id 7, 1 evaluable object\).*config/benchmark.yaml.*"
                                         r"detector.sim_labels"):
        _, metrics = score([CUBE, ball, BOX], detector=without_ball, instances=instance_image())
    detection = metrics["detection"]
    # Counted over evaluable objects: the ball's 25 px are below min_pixels, the cut box's 2000 px are not scored.
    assert detection["min_pixels"] == 30 and detection["below_min_pixels"] == 1
    assert detection["by_label"]["ball"]["below_min_pixels"] == 1
    assert detection["pixels_from_projected_box"] == 0
    # Instance 7 is not in the detector's labels {2: cube, 3: box}: it could never report the ball.
    assert detection["not_in_sim_labels"] == {"ball": 1}


def test_without_an_instance_image_the_visible_size_is_the_projected_box_area() -> None:
    # The cube's box spans u from 320 - 500 * 0.15 / 0.95 to 320 - 500 * 0.05 / 1.05 (its near face is 0.95 m away,
    # its far face 1.05 m) and v over 500 * 0.1 / 0.95 px: 55.1 x 52.6 = 2902 px. The ball's: 57.9 x 55.4 = 3209 px.
    cube_px = 500 * (0.15 / 0.95 - 0.05 / 1.05) * 500 * 0.1 / 0.95
    assert 2900 < cube_px < 2905
    ball = node(11, "ball", (1.0, -0.1, 0.0), (0.105, 0.105, 0.105))
    config = CONFIG.with_overrides({"detector.min_pixels": 3000})
    samples = _Samples()
    scene = ScenePipeline(config, detector=BoxDetector())
    _FrameScorer(config, samples, THRESHOLD).score(
        graph_of((CUBE, ball, BOX), scene), ground_truth(), 0, None, scene, scene.camera_to_graph,
        RigidTransform.from_xyzw([0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]), INTRINSICS)
    detection = compute_metrics(samples, _Counts(evaluated=1), config, {})["detection"]
    assert detection["below_min_pixels"] == 1 and detection["by_label"]["cube"]["below_min_pixels"] == 1
    assert detection["pixels_from_projected_box"] == 2
    assert detection["not_in_sim_labels"] == {}  # not the 'sim' detector: no label check


def test_edges_are_stored_in_a_few_bytes_each_plus_their_float32_feature_row() -> None:
    ball = node(11, "ball", (1.02, -0.1, 0.0), (0.105, 0.105, 0.1))
    samples, _ = score([CUBE, ball, BOX])
    columns = [samples.edges[name] for name in ("trust", "correct", "kept", "predicate", "source", "episode",
                                                "representative")]
    assert all(isinstance(column, np.ndarray) and column.size == 7 for column in columns)
    # float64 trust, three booleans, uint8 predicate and source codes, the int64 episode (the training group)
    assert sum(column.itemsize for column in columns) <= 21
    features = np.concatenate(samples.edge_features)  # one row per fact: an edge and its converse share one
    assert features.shape == (int(samples.edges["representative"].sum()), len(FEATURE_NAMES))
    assert features.dtype == np.float32 and features.shape[0] < 7


def test_columns_join_the_frames_arrays_and_reject_ragged_rows() -> None:
    columns = _Columns(value=np.float64, flag=np.bool_)
    columns.append(value=[1.0, 2.0], flag=[True, False])
    columns.append(value=[], flag=[])
    columns.append(value=[3.0], flag=[True])
    np.testing.assert_array_equal(columns["value"], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(columns["flag"], [True, False, True])
    assert len(columns) == 3
    with pytest.raises(EvaluationError, match=r"columns differ in length: \{'value': 2, 'flag': 1\}"):
        columns.append(value=[1.0, 2.0], flag=[True])
    with pytest.raises(EvaluationError, match=r"columns \['value'\] given, expected \['flag', 'value'\]"):
        columns.append(value=[1.0])


def test_end_effector_series_are_grouped_by_episode_and_label_in_frame_order() -> None:
    samples = _Samples()
    for episode, labels, distances_m in ((1, ["puck", "cube"], [0.5, 0.4]), (0, ["puck"], [0.3]),
                                         (1, ["puck", "cube"], [0.2, 0.1])):
        samples.ee.append(perceived_m=distances_m, true_m=distances_m, episode=[episode] * len(labels),
                          label=[samples.ee_label_code(label) for label in labels])
    series = samples.ee_series()
    assert list(series) == [(0, "puck"), (1, "cube"), (1, "puck")]  # sorted by episode, then label name
    np.testing.assert_array_equal(series[(1, "puck")], [[0.5, 0.5], [0.2, 0.2]])
    np.testing.assert_array_equal(series[(1, "cube")], [[0.4, 0.4], [0.1, 0.1]])


def test_a_scene_fingerprint_names_the_ground_truth_not_where_it_was_read() -> None:
    from trusted_scene_graph.evaluation.bag_eval import scene_fingerprint

    centres, sizes = np.array([[1.0, 0.0, 0.1], [1.2, 0.3, 0.1]]), np.full((2, 3), 0.1)
    same = scene_fingerprint("tabletop", ["red cube", "blue box"], centres, sizes)
    assert same == scene_fingerprint("tabletop", ["red cube", "blue box"], centres + 1e-7, sizes)  # below 0.1 mm
    assert len(same) == 8
    assert same != scene_fingerprint("tabletop", ["red cube", "blue box"], centres + [0.01, 0.0, 0.0], sizes)
    assert same != scene_fingerprint("tabletop", ["blue box", "red cube"], centres, sizes)
    assert same != scene_fingerprint("FetchPush", ["red cube", "blue box"], centres, sizes)
