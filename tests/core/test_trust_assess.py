"""The per-frame trust step: VLM questions on a budget, answers reused, VLM claims verified against geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trusted_scene_graph.config.schema import Config
from trusted_scene_graph.graph.model import ObjectNode
from trusted_scene_graph.relations.geometric import QUALITATIVE_PREDICATES, RelationSettings, relation_grid
from trusted_scene_graph.trust import TrustError
from trusted_scene_graph.trust.assess import SOURCE_VLM, EdgeTrust, canonical_claims, select_queries
from trusted_scene_graph.trust.features import FEATURE_INDEX
from trusted_scene_graph.trust.model import MarginPriorTrust
from trusted_scene_graph.vlm.base import VlmAnswer

ALONG_X = np.array([1.0, 0.0, 0.0])
IMAGE = np.zeros((48, 64, 3), np.uint8)


class CountingVlm:
    """Says every claim is false with probability 0.9 (so each geometry claim it is asked about is contested)."""

    def __init__(self) -> None:
        self.questions: list[tuple[str, str, str]] = []

    def judge_relation(self, image_rgb, subject, predicate, object_, *, image_id=None) -> VlmAnswer:
        self.questions.append((subject, predicate, object_))
        return VlmAnswer(answer=False, probability=0.9, nmlp=2.0)


def scene(offset_y_m: float = 0.01):
    """Two cubes almost side by side (a 1 cm margin: uncertain), with detection boxes."""
    objects = [ObjectNode(1, "cup", 0.9, (10, 10, 8, 8), np.array([1.0, offset_y_m, 0.05]), np.full(3, 0.1), 1.0),
               ObjectNode(2, "bowl", 0.8, (30, 10, 8, 8), np.array([1.0, 0.0, 0.05]), np.full(3, 0.1), 1.0)]
    grid = relation_grid([o.id for o in objects], np.array([o.centroid_m for o in objects]),
                         np.array([o.size_m for o in objects]), ALONG_X, RelationSettings())
    return grid, objects


def edge_trust(vlm=None, **overrides) -> EdgeTrust:
    config = Config().with_overrides({"trust.model": "prior", "trust.threshold": 0.5, **overrides})
    return EdgeTrust(config, model=MarginPriorTrust(0.02), vlm=vlm)


def test_select_queries_asks_the_most_uncertain_in_the_band_first_within_the_budget():
    trust = np.array([0.1, 0.45, 0.75, 0.52, 0.95, 0.3])
    chosen = select_queries(trust, np.ones(6, bool), (0.2, 0.8), 3)
    assert chosen.tolist() == [3, 1, 5]  # |t - 0.5| = 0.02, 0.05, 0.2; 0.75 is left out by the budget
    assert select_queries(trust, np.array([1, 0, 1, 1, 1, 1], bool), (0.2, 0.8), 10).tolist() == [3, 5, 2]
    assert select_queries(trust, np.ones(6, bool), (0.2, 0.8), 0).size == 0


def test_select_queries_refuses_a_bad_band_or_budget():
    with pytest.raises(TrustError, match=r"0 <= low <= high <= 1, got \[0.8, 0.2\]"):
        select_queries(np.zeros(1), np.ones(1, bool), (0.8, 0.2), 1)
    with pytest.raises(TrustError, match="budget must be >= 0 queries per frame, got -1"):
        select_queries(np.zeros(1), np.ones(1, bool), (0.2, 0.8), -1)


def test_an_edge_and_its_converse_are_one_fact_with_one_feature_row_and_one_trust():
    grid, objects = scene()
    edges = edge_trust().assess(grid, objects, 64, 48, IMAGE)
    named = {(int(s), QUALITATIVE_PREDICATES[p], int(o)): k
             for k, (s, p, o) in enumerate(zip(edges.subject, edges.predicate, edges.object, strict=True))}
    left, right = named[(0, "left_of", 1)], named[(1, "right_of", 0)]
    assert edges.canonical[left] == edges.canonical[right]
    assert edges.representative[left] and not edges.representative[right]
    assert edges.trust[left] == edges.trust[right]
    assert edges.canonical[named[(0, "near", 1)]] == edges.canonical[named[(1, "near", 0)]]
    assert len(edges.features) == int(edges.representative.sum()) < len(edges)


def test_without_a_vlm_only_geometry_claims_are_scored_and_vlm_features_are_nan():
    grid, objects = scene()
    edges = edge_trust().assess(grid, objects, 64, 48, IMAGE)
    assert len(edges) == len(grid.claims()[0])
    assert (edges.source == 0).all()
    assert np.isnan(edges.features[:, FEATURE_INDEX["vlm_p_claim"]]).all()
    assert edges.vlm_queries == 0


def test_the_vlm_is_asked_at_most_the_budget_and_answers_are_reused_next_frame():
    grid, objects = scene()
    vlm = CountingVlm()
    trust = edge_trust(vlm, **{"trust.vlm_queries_per_frame": 1, "trust.vlm_query_band": [0.0, 1.0]})
    first = trust.assess(grid, objects, 64, 48, IMAGE, image_id="1")
    assert first.vlm_queries == 1 and len(vlm.questions) == 1
    asked = vlm.questions[0]
    second = trust.assess(grid, objects, 64, 48, IMAGE, image_id="2")
    assert second.vlm_queries == 1 and vlm.questions[1] != asked  # the next most uncertain claim
    # The first answer is still attached to its claim in the second frame.
    subject_label, predicate, object_label = asked
    labels = [o.label for o in objects]
    row = next(k for k in range(len(second)) if second.source[k] == 0
               and labels[second.subject[k]] == subject_label and labels[second.object[k]] == object_label
               and QUALITATIVE_PREDICATES[second.predicate[k]] == predicate)
    assert second.features[second.canonical[row], FEATURE_INDEX["vlm_p_claim"]] == pytest.approx(0.1)


def test_a_rejected_claim_with_a_converse_becomes_a_vlm_edge_with_negative_alignment():
    grid, objects = scene()
    vlm = CountingVlm()
    edges = edge_trust(vlm, **{"trust.vlm_queries_per_frame": 50, "trust.vlm_query_band": [0.0, 1.0]}).assess(
        grid, objects, 64, 48, IMAGE)
    from_vlm = np.flatnonzero(edges.source == SOURCE_VLM)
    names = {(int(edges.subject[k]), QUALITATIVE_PREDICATES[edges.predicate[k]], int(edges.object[k]))
             for k in from_vlm}
    assert (0, "right_of", 1) in names  # the geometry says cup left_of bowl by 1 cm; the VLM says right_of
    assert ("bigger_than" not in {name for _, name, _ in names})  # no converse predicate: stays a contested claim
    for k in edges.canonical[from_vlm]:
        assert edges.features[k, FEATURE_INDEX["alignment_3d"]] <= 0
        assert edges.features[k, FEATURE_INDEX["vlm_p_claim"]] == pytest.approx(0.9)
        assert edges.features[k, FEATURE_INDEX["claim_from_vlm"]] == 1.0


def test_a_vlm_claim_is_published_both_ways_as_one_fact_like_a_geometry_claim():
    grid, objects = scene()
    edges = edge_trust(CountingVlm(), **{"trust.vlm_queries_per_frame": 50, "trust.vlm_query_band": [0.0, 1.0]}).assess(
        grid, objects, 64, 48, IMAGE)
    from_vlm = {(int(edges.subject[k]), QUALITATIVE_PREDICATES[edges.predicate[k]], int(edges.object[k])): k
                for k in np.flatnonzero(edges.source == SOURCE_VLM)}
    for claim, other_way in (((0, "right_of", 1), (1, "left_of", 0)), ((0, "far", 1), (1, "far", 0))):
        first, second = from_vlm[claim], from_vlm[other_way]
        assert edges.canonical[first] == edges.canonical[second] and edges.trust[first] == edges.trust[second]
        assert edges.representative[first] and not edges.representative[second]
    assert len(edges.features) == int(edges.representative.sum())


def test_a_near_or_far_answer_is_reused_whichever_order_the_detector_lists_the_two_objects_in():
    grid, objects = scene()
    vlm = CountingVlm()
    trust = edge_trust(vlm, **{"trust.vlm_queries_per_frame": 50, "trust.vlm_query_band": [0.0, 1.0],
                               "trust.vlm_answer_max_age_frames": 30})
    trust.assess(grid, objects, 64, 48, IMAGE)
    assert ("cup", "near", "bowl") in vlm.questions
    vlm.questions.clear()
    swapped = objects[::-1]  # a detector lists by score: two close scores swap from frame to frame
    swapped_grid = relation_grid([o.id for o in swapped], np.array([o.centroid_m for o in swapped]),
                                 np.array([o.size_m for o in swapped]), ALONG_X, RelationSettings())
    edges = trust.assess(swapped_grid, swapped, 64, 48, IMAGE)
    assert vlm.questions == [] and edges.vlm_queries == 0  # every fact was answered a frame ago
    near = next(k for k in range(len(edges)) if QUALITATIVE_PREDICATES[edges.predicate[k]] == "near"
                and edges.source[k] == 0)
    assert edges.features[edges.canonical[near], FEATURE_INDEX["vlm_p_claim"]] == pytest.approx(0.1)


def test_claims_outside_the_uncertain_band_are_not_asked():
    grid, objects = scene(offset_y_m=0.5)  # clear-cut margins: prior trust near 1 or the edge does not exist
    vlm = CountingVlm()
    edges = edge_trust(vlm, **{"trust.vlm_query_band": [0.2, 0.8]}).assess(grid, objects, 64, 48, IMAGE)
    asked = {(s, p, o) for s, p, o in vlm.questions}
    assert ("cup", "left_of", "bowl") not in asked
    assert edges.vlm_queries == len(vlm.questions)


def test_threshold_is_the_model_s_unless_the_config_sets_one():
    config = Config().with_overrides({"trust.model": "prior"})
    assert EdgeTrust(config, model=MarginPriorTrust(0.02, threshold=0.6)).threshold == 0.6
    assert EdgeTrust(config.with_overrides({"trust.threshold": 0.8}), model=MarginPriorTrust(0.02)).threshold == 0.8


def test_prototype_similarity_needs_an_image_encoder():
    config = Config().with_overrides({"trust.model": "prior", "trust.prototype_similarity": True})
    with pytest.raises(TrustError, match="needs an image encoder: set vlm.backend to 'contrastive'"):
        EdgeTrust(config, model=MarginPriorTrust(0.02), vlm=None)


class EmbeddingVlm(CountingVlm):
    def embed_images(self, images):
        # Colour-coded crops: the embedding is the mean colour, normalised.
        means = np.array([img.reshape(-1, 3).mean(axis=0) + 1e-3 for img in images])
        return means / np.linalg.norm(means, axis=1, keepdims=True)


def test_prototype_similarity_compares_a_crop_with_its_label_s_earlier_crops():
    grid, objects = scene()
    image = np.zeros((48, 64, 3), np.uint8)
    image[10:18, 10:18] = (255, 0, 0)
    image[10:18, 30:38] = (0, 0, 255)
    config = Config().with_overrides({"trust.model": "prior", "trust.prototype_similarity": True,
                                      "trust.vlm_queries_per_frame": 0})
    trust = EdgeTrust(config, model=MarginPriorTrust(0.02), vlm=EmbeddingVlm())
    first = trust.assess(grid, objects, 64, 48, image)
    assert math.isnan(first.features[0, FEATURE_INDEX["subject_prototype_similarity"]])
    second = trust.assess(grid, objects, 64, 48, image)
    assert second.features[0, FEATURE_INDEX["subject_prototype_similarity"]] == pytest.approx(1.0)


def test_reconfigure_changes_how_prototypes_learn_and_keeps_what_they_learnt():
    config = Config().with_overrides({"trust.model": "prior", "trust.prototype_similarity": True,
                                      "trust.vlm_queries_per_frame": 0})
    trust = EdgeTrust(config, model=MarginPriorTrust(0.02), vlm=EmbeddingVlm())
    trust.prototypes.prototypes["cube"] = np.array([1.0, 0.0, 0.0])
    trust.reconfigure(config.with_overrides({"trust.prototype_momentum": 0.5, "trust.prototype_min_score": 0.9}))
    assert (trust.prototypes.momentum, trust.prototypes.min_score) == (0.5, 0.9)
    assert list(trust.prototypes.prototypes) == ["cube"]


def test_a_new_sequence_asks_the_vlm_again_and_has_no_history_though_its_tracks_reuse_the_ids():
    # start_sequence renumbers tracks from 1: another scene's pair 1-2 must not take over this one's answers.
    grid, objects = scene()
    vlm = CountingVlm()
    trust = edge_trust(vlm, **{"trust.vlm_answer_max_age_frames": 100})
    trust.assess(grid, objects, 64, 48, IMAGE, image_id="1")
    asked = len(vlm.questions)
    assert asked > 0
    trust.assess(grid, objects, 64, 48, IMAGE, image_id="2")
    assert len(vlm.questions) == asked  # the same sequence: the answers are reused
    trust.start_sequence()
    fresh = trust.assess(grid, objects, 64, 48, IMAGE, image_id="3")
    assert len(vlm.questions) == 2 * asked
    assert np.isnan(fresh.features[:, FEATURE_INDEX["temporal_agreement"]]).all()  # the pairs' first frame again


def test_canonical_claims_number_each_fact_once_in_claim_order():
    rng = np.random.default_rng(3)
    centroids, sizes = rng.uniform(-1, 1, (6, 3)), rng.uniform(0.05, 0.3, (6, 3))
    grid = relation_grid(np.arange(6), centroids, sizes, ALONG_X, RelationSettings(near_m=0.5))
    subject, obj, predicate, row, representative = canonical_claims(grid.margins_m > 0)
    assert (np.array(grid.claims()) == np.array([subject, obj, predicate])).all()
    names = np.array(QUALITATIVE_PREDICATES)[predicate]
    assert set(names[representative]) <= {"left_of", "above", "in_front_of", "near", "far", "on_top_of",
                                          "bigger_than", "taller_than"}
    np.testing.assert_array_equal(row[representative], np.arange(representative.sum()))
    fact_of = {(int(s), str(p), int(o)): int(r) for s, p, o, r in zip(subject, names, obj, row, strict=True)}
    for (s, p, o), r in fact_of.items():
        converse = {"right_of": "left_of", "below": "above", "behind": "in_front_of", "near": "near",
                    "far": "far"}.get(p)
        if converse:
            assert fact_of[(o, converse, s)] == r


def test_a_claim_whose_converse_does_not_hold_represents_itself():
    holds = np.zeros((2, 2, len(QUALITATIVE_PREDICATES)), bool)
    holds[0, 1, QUALITATIVE_PREDICATES.index("right_of")] = True  # no (1, left_of, 0)
    holds[1, 0, QUALITATIVE_PREDICATES.index("near")] = True  # no (0, near, 1)
    _, _, _, row, representative = canonical_claims(holds)
    assert representative.all() and row.tolist() == [0, 1]


def test_recorded_answers_about_a_predicate_the_graph_does_not_have_are_refused_at_startup(tmp_path):
    from trusted_scene_graph.trust.assess import scene_graph_vlm
    from trusted_scene_graph.vlm.base import VlmError

    answers = tmp_path / "answers.jsonl"
    answers.write_text('{"image": "1", "subject": "cup", "predicate": "left_of", "object": "bowl", "answer": "yes", '
                       '"probability": 0.8}\n'
                       '{"image": "1", "subject": "cup", "predicate": "inside", "object": "bowl", "answer": "no", '
                       '"probability": 0.7}\n')
    config = Config().with_overrides({"vlm.backend": "recorded", "vlm.recorded_path": str(answers)})
    with pytest.raises(VlmError, match=r"answers\.jsonl:2: predicate 'inside' is not one of the allowed"):
        scene_graph_vlm(config)


def test_recorded_answers_feed_the_vlm_features_of_the_frame_they_name(tmp_path):
    from trusted_scene_graph.trust.assess import scene_graph_vlm

    answers = tmp_path / "answers.jsonl"
    answers.write_text('{"image": "42", "subject": "cup", "predicate": "left_of", "object": "bowl", "answer": "no", '
                       '"confidence": 0.8}\n')
    config = Config().with_overrides({"vlm.backend": "recorded", "vlm.recorded_path": str(answers),
                                      "trust.model": "prior", "trust.vlm_query_band": [0.0, 1.0],
                                      "trust.vlm_queries_per_frame": 1})
    grid, objects = scene()
    edges = EdgeTrust(config, model=MarginPriorTrust(0.02), vlm=scene_graph_vlm(config)).assess(
        grid, objects, 64, 48, IMAGE, image_id="42")
    left = next(k for k in range(len(edges)) if QUALITATIVE_PREDICATES[edges.predicate[k]] == "left_of"
                and edges.subject[k] == 0)
    assert edges.features[edges.canonical[left], FEATURE_INDEX["vlm_p_claim"]] == pytest.approx(0.2)


def test_a_pair_with_the_same_label_is_not_asked_about_and_gets_no_vlm_claims():
    grid, objects = scene()
    objects[1] = ObjectNode(2, " Cup", 0.8, (30, 10, 8, 8), np.array([1.0, 0.0, 0.05]), np.full(3, 0.1), 1.0)
    vlm = CountingVlm()
    edges = edge_trust(vlm, **{"trust.vlm_queries_per_frame": 50, "trust.vlm_query_band": [0.0, 1.0]}).assess(
        grid, objects, 64, 48, IMAGE)
    assert vlm.questions == [] and edges.vlm_queries == 0  # "The cup is left of the cup." names neither
    assert (edges.source == 0).all()
    assert np.isnan(edges.features[:, FEATURE_INDEX["vlm_p_claim"]]).all()


def _recorded_config(tmp_path, **overrides):
    answers = tmp_path / "answers.jsonl"
    answers.write_text('{"image": 41, "subject": "cup", "predicate": "left_of", "object": "bowl", "answer": "yes", '
                       '"probability": 0.6}\n'
                       '{"image": 42, "subject": "cup", "predicate": "left_of", "object": "bowl", "answer": "no", '
                       '"probability": 0.8}\n')
    return Config().with_overrides({"vlm.backend": "recorded", "vlm.recorded_path": str(answers),
                                    "trust.model": "prior", "trust.vlm_query_band": [0.0, 1.0],
                                    "trust.vlm_queries_per_frame": 1, **overrides})


def test_recorded_answers_get_no_sensitivity_check_they_do_not_look_at_the_pixels(tmp_path):
    from trusted_scene_graph.trust.assess import scene_graph_vlm

    config = _recorded_config(tmp_path, **{"trust.vlm_sensitivity": True})
    grid, objects = scene()
    trust = EdgeTrust(config, model=MarginPriorTrust(0.02), vlm=scene_graph_vlm(config))
    assert not trust.sensitivity
    assert "trust.vlm_sensitivity is on, but the 'recorded' VLM backend does not look at the pixels" in trust.warning
    edges = trust.assess(grid, objects, 64, 48, IMAGE, image_id="42")
    left = next(k for k in range(len(edges)) if QUALITATIVE_PREDICATES[edges.predicate[k]] == "left_of"
                and edges.subject[k] == 0 and edges.source[k] == 0)
    row = edges.canonical[left]
    assert edges.features[row, FEATURE_INDEX["vlm_p_claim"]] == pytest.approx(0.2)
    assert math.isnan(edges.features[row, FEATURE_INDEX["vlm_sensitivity"]])  # missing, not a meaningless 0
    assert EdgeTrust(_recorded_config(tmp_path), model=MarginPriorTrust(0.02),
                     vlm=scene_graph_vlm(config)).warning is None


def test_a_pixel_model_gets_the_sensitivity_check():
    class PixelVlm(CountingVlm):
        def judge_relation(self, image_rgb, subject, predicate, object_, *, image_id=None) -> VlmAnswer:
            super().judge_relation(image_rgb, subject, predicate, object_, image_id=image_id)
            return VlmAnswer(answer=False, probability=0.9 if (image_rgb == 0).all() else 0.6)

    grid, objects = scene()
    trust = edge_trust(PixelVlm(), **{"trust.vlm_sensitivity": True, "trust.vlm_query_band": [0.0, 1.0],
                                      "trust.vlm_queries_per_frame": 1})
    edges = trust.assess(grid, objects, 64, 48, IMAGE)
    sensitivity = edges.features[:, FEATURE_INDEX["vlm_sensitivity"]]
    # The asked claim (p_true 0.1, 0.4 on the noised image) and the VLM's own converse claim (negated).
    assert sorted(sensitivity[~np.isnan(sensitivity)].tolist()) == [pytest.approx(-0.3), pytest.approx(0.3)]


def test_a_model_that_gives_the_vlm_features_no_gain_warns_that_vlm_answers_will_not_move_trust():
    from trusted_scene_graph.trust.model import DEFAULT_MODEL_DIR, TrustModel

    config = Config().with_overrides({"trust.threshold": 0.5})
    shipped = TrustModel.load(DEFAULT_MODEL_DIR)
    warning = EdgeTrust(config, model=shipped, vlm=CountingVlm()).warning
    assert warning is not None and "was trained without VLM answers" in warning
    assert "Retrain with `tsg trust train` on data recorded with VLM answers" in warning
    assert EdgeTrust(config, model=shipped, vlm=None).warning is None  # no VLM: nothing to say

    class UsesVlm:
        threshold, warning, description = 0.5, None, "test model"

        def feature_importance(self, kind="gain"):
            return {"margin_m": 3.0, "vlm_p_claim": 0.5}

    assert EdgeTrust(config, model=UsesVlm(), vlm=CountingVlm()).warning is None


def test_a_crop_for_the_image_encoder_is_grown_to_the_backends_minimum_side_and_aspect_ratio():
    from trusted_scene_graph.perception.hf import MAX_IMAGE_ASPECT_RATIO, MIN_IMAGE_SIDE_PX
    from trusted_scene_graph.trust.assess import _crop

    image = np.arange(720 * 1280 * 3, dtype=np.uint32).reshape(720, 1280, 3).astype(np.uint8)
    strip = _crop(image, (0, 300, 1280, 1))  # a 1 px high strip across the image
    assert strip.shape == (128, 1280, 3) and strip.dtype == np.uint8
    tiny = _crop(image, (600, 300, 3, 2))
    assert tiny.shape == (MIN_IMAGE_SIDE_PX, MIN_IMAGE_SIDE_PX, 3)
    np.testing.assert_array_equal(tiny[7:9, 6:9], image[300:302, 600:603])  # grown about its centre
    assert _crop(image, (100, 200, 50, 40)).shape == (40, 50, 3)  # a usual box is its own pixels
    small_image = np.full((5, 300, 3), 7, np.uint8)  # smaller than the minimum: edge-padded
    padded = _crop(small_image, (0, 0, 300, 5))
    assert padded.shape == (30, 300, 3) and (padded == 7).all()
    for crop in (strip, tiny, padded):
        assert min(crop.shape[:2]) >= MIN_IMAGE_SIDE_PX
        assert max(crop.shape[:2]) <= MAX_IMAGE_ASPECT_RATIO * min(crop.shape[:2])


def test_temporal_agreement_looks_back_k_frames_whether_or_not_they_had_two_objects():
    # The window is the last K frames: a frame with one object (the other missed) takes its place in it, so a pair
    # seen once, K or more frames ago, has no earlier frame within the window.
    grid, objects = scene(offset_y_m=0.2)
    alone = relation_grid([objects[0].id], np.array([objects[0].centroid_m]), np.array([objects[0].size_m]), ALONG_X,
                          RelationSettings())
    column = FEATURE_INDEX["temporal_agreement"]
    for frames_alone, expected in ((2, 1.0), (3, None)):  # K = 3: the pair's frame is 3 frames back, then 4
        trust = edge_trust(**{"trust.temporal_window_frames": 3})
        trust.assess(grid, objects, 64, 48)
        for _ in range(frames_alone):
            trust.assess(alone, objects[:1], 64, 48)
        agreement = trust.assess(grid, objects, 64, 48).features[:, column]
        if expected is None:
            assert np.isnan(agreement).all()
        else:
            assert agreement.max() == expected
