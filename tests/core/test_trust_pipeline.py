"""The trust step inside the pipeline with a real (tiny, random) contrastive VLM: questions, answers, prototypes."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("transformers")

from tiny_vlm import build_tiny_contrastive  # noqa: E402

from trusted_scene_graph.config import Config  # noqa: E402
from trusted_scene_graph.geometry import Intrinsics  # noqa: E402
from trusted_scene_graph.perception import CameraFrame  # noqa: E402
from trusted_scene_graph.pipeline import ScenePipeline  # noqa: E402
from trusted_scene_graph.trust.features import FEATURE_INDEX  # noqa: E402

INTRINSICS = Intrinsics(width=80, height=60, fx=100.0, fy=80.0, cx=40.0, cy=30.0)
CUBE_ID, TABLE_ID = 2, 3  # the default detector.sim_labels maps them to "cube" and "table"


def frame(stamp_ns: int) -> CameraFrame:
    ids = np.zeros((60, 80), np.uint16)
    ids[20:30, 10:20] = CUBE_ID
    ids[35:45, 50:70] = TABLE_ID
    depth = np.full((60, 80), 4.0, np.float32)
    depth[ids == CUBE_ID] = 1.5
    depth[ids == TABLE_ID] = 2.0
    rgb = np.zeros((60, 80, 3), np.uint8)
    rgb[ids == CUBE_ID] = (200, 30, 30)
    rgb[ids == TABLE_ID] = (120, 90, 60)
    return CameraFrame(stamp_ns, rgb, depth, INTRINSICS, ids)


@pytest.fixture(scope="module")
def contrastive_dir(tmp_path_factory):
    return build_tiny_contrastive(tmp_path_factory.mktemp("clip"), words=("cube", "table", "the", "is", "left",
                                                                          "right", "of", "above", "below", "in",
                                                                          "front", "behind", "near", "far", "from",
                                                                          "on", "top", "bigger", "taller", "than"))


def test_a_contrastive_vlm_answers_within_the_budget_and_its_answers_reach_the_features(contrastive_dir):
    config = Config().with_overrides({
        "vlm.backend": "contrastive", "vlm.model_path": str(contrastive_dir), "trust.vlm_query_band": [0.0, 1.0],
        "trust.vlm_queries_per_frame": 3, "trust.vlm_sensitivity": True, "trust.prototype_similarity": True})
    pipeline = ScenePipeline(config)
    first = pipeline.process(frame(1_000)).candidates
    assert first.vlm_queries == 3
    asked = ~np.isnan(first.features[:, FEATURE_INDEX["vlm_p_claim"]])
    assert asked.sum() >= 3  # the asked facts, plus any VLM claims they produced
    for name in ("vlm_margin", "vlm_sensitivity"):
        assert np.isfinite(first.features[asked, FEATURE_INDEX[name]]).all(), name
    assert np.isnan(first.features[:, FEATURE_INDEX["vlm_nmlp"]]).all()  # a contrastive model has no NMLP
    assert np.isnan(first.features[:, FEATURE_INDEX["subject_prototype_similarity"]]).all()  # no prototype yet

    second = pipeline.process(frame(2_000)).candidates
    assert second.vlm_queries <= 3
    similarity = second.features[:, FEATURE_INDEX["subject_prototype_similarity"]]
    assert np.isfinite(similarity).all() and (similarity > 0.99).all()  # the same crops as last frame
    assert (~np.isnan(second.features[:, FEATURE_INDEX["vlm_p_claim"]])).sum() > asked.sum() - 1
    assert all(0.0 <= t <= 1.0 and not math.isnan(t) for t in second.trust)
