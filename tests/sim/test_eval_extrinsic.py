"""``tsg eval`` places the camera as the node does: from the bag's tf with ``extrinsic.source: tf``, from the config
with ``static`` (counting and warning when the bag's tf disagrees), never by silently reconfiguring the pipeline."""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must be set before mujoco is first imported

from pathlib import Path

import pytest

pytest.importorskip("mujoco")

from trusted_scene_graph.dataset import BagReader  # noqa: E402
from trusted_scene_graph.evaluation import EvaluationError  # noqa: E402
from trusted_scene_graph.evaluation.bag_eval import check_evaluable, evaluate_bag  # noqa: E402
from trusted_scene_graph.geometry.transform import RigidTransform  # noqa: E402
from trusted_scene_graph.sim.record import OPTICAL_FRAME, RecordSettings, benchmark_config, record_sim_bag  # noqa: E402

pytestmark = pytest.mark.sim
FRAMES = 3


@pytest.fixture(scope="module")
def one_scene_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tabletop scene (one camera pose, far from the config's default) seen in three frames."""
    path = tmp_path_factory.mktemp("bags") / "tabletop"
    record_sim_bag(path, RecordSettings(scene="tabletop", episodes=1, frames_per_scene=FRAMES, seed=3, width=320,
                                        height=240), benchmark_config())
    return path


def _camera_pose(bag: Path) -> RigidTransform:
    with BagReader(bag) as reader:
        (message,) = list(reader.messages(["/tf_static"]))
    t, q = message.msg.transforms[0].transform.translation, message.msg.transforms[0].transform.rotation
    return RigidTransform.from_xyzw([t.x, t.y, t.z], [q.x, q.y, q.z, q.w])


def _evaluate(bag: Path, **overrides: object) -> tuple[dict, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = evaluate_bag(bag, benchmark_config().with_overrides(overrides)).metrics
    return metrics, [w for w in caught if issubclass(w.category, UserWarning)]


def test_with_tf_every_frame_takes_the_bags_camera_pose_and_nothing_is_warned(one_scene_bag: Path) -> None:
    metrics, warned = _evaluate(one_scene_bag)  # benchmark_config(): extrinsic.source 'tf'
    frames = metrics["frames"]
    assert (frames["evaluated"], frames["failed"], frames["extrinsic_differs_from_tf"]) == (FRAMES, 0, 0)
    assert frames["graph_frame_taken_as_truth_frame"] == 0
    assert metrics["detection"]["recall"] > 0.9 and metrics["detection"]["centroid_error_median_m"] < 0.02
    assert warned == []


def test_static_uses_the_config_pose_and_counts_and_warns_once_when_the_bags_tf_differs(one_scene_bag: Path) -> None:
    from_tf, _ = _evaluate(one_scene_bag)
    metrics, warned = _evaluate(one_scene_bag, **{"extrinsic.source": "static"})
    assert metrics["frames"]["evaluated"] == metrics["frames"]["extrinsic_differs_from_tf"] == FRAMES
    (warning,) = warned
    assert f"camera frame {OPTICAL_FRAME!r} in graph frame 'world'" in str(warning.message)
    assert "--set extrinsic.source=tf" in str(warning.message)
    # The graphs are the config's: the default camera looks along +x from the origin, the recorded one looks down at
    # the table, so directional relations ("above", "in front of") are judged along the wrong axes.
    assert metrics["relations"]["accuracy"] < from_tf["relations"]["accuracy"]


def test_static_with_the_bags_own_pose_gives_exactly_the_tf_result(one_scene_bag: Path) -> None:
    camera = _camera_pose(one_scene_bag)
    from_tf, _ = _evaluate(one_scene_bag)
    metrics, warned = _evaluate(one_scene_bag, **{"extrinsic.source": "static",
                                                  "extrinsic.translation_m": camera.translation_m.tolist(),
                                                  "extrinsic.rotation_xyzw": camera.rotation_xyzw})
    assert metrics["frames"]["extrinsic_differs_from_tf"] == 0 and warned == []
    for section in ("detection", "relations", "trust", "distance"):
        assert _numbers(metrics[section]) == pytest.approx(_numbers(from_tf[section]), nan_ok=True), section


def _numbers(tree: object, prefix: str = "") -> dict[str, float]:
    """The numbers of a nested metrics section, by dotted path (pytest.approx compares flat mappings only)."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in _numbers(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): float(tree)} if isinstance(tree, int | float) else {}


def test_with_tf_a_bag_without_the_camera_transform_fails_every_frame_with_the_reason(one_scene_bag: Path,
                                                                                    tmp_path: Path) -> None:
    from bag_edits import without_topic

    without_topic(one_scene_bag, tmp_path / "no_tf", "/tf_static")
    metrics, _ = _evaluate(tmp_path / "no_tf")
    frames = metrics["frames"]
    assert (frames["evaluated"], frames["failed"], frames["graph_frame_taken_as_truth_frame"]) == (0, FRAMES, 0)
    reason = (f"PipelineError: extrinsic.source 'tf': no transform from camera frame {OPTICAL_FRAME!r} to graph "
              f"frame 'world' at the image stamp in /tf_static or /tf: {OPTICAL_FRAME!r} and 'world' are not connected")
    assert frames["failure_reasons"] == {reason: FRAMES}
    with pytest.raises(EvaluationError, match="every frame failed: PipelineError: extrinsic.source 'tf': no "
                                              "transform from camera frame"):
        check_evaluable(metrics)
