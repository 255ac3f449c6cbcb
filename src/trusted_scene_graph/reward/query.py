"""``/scene_graph/query_distance``: "how far is the gripper from the red cube", answered from the latest graph.

Nothing is recomputed: both sides are resolved in the graph the node last published (:class:`~.sides.SideResolver`,
so "gripper" is the end effector's kinematic pose when one is near the graph's stamp), and one distance is taken.
An answer that cannot be trusted is ``valid=False`` with NaN distance and a message saying why: no graph yet, a
stale graph (older than ``query.max_graph_age_s``: the camera or the pipeline stopped), an unknown name (the known
labels listed), an object the detector knows but this graph lacks, both names meaning one object, an unknown mode, a
distance that is not finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from trusted_scene_graph import reward
from trusted_scene_graph.graph.model import SceneGraph
from trusted_scene_graph.reward.sides import SideResolver, distance_m, pair_trust, same_thing

MODES = ("centroid", "surface")


@dataclass(frozen=True)
class DistanceAnswer:
    valid: bool
    distance_m: float
    trust: float
    subject_id: int = 0
    object_id: int = 0
    message: str = ""
    subject_source: str = ""  # "perception" or "kinematics"
    object_source: str = ""


def query_distance(graph: SceneGraph | None, subject: str, obj: str, mode: str = "centroid", *,
                   resolver: SideResolver | None = None, graph_age_s: float = 0.0,
                   max_graph_age_s: float = math.inf, frames_rejected_because: str = "") -> DistanceAnswer:
    """Answer "how far is ``subject`` from ``obj``" in metres from ``graph``, computed ``graph_age_s`` ago.
    ``frames_rejected_because``: why the frames after it gave no graph, when they did not (a stale graph then says
    so, instead of asking whether the camera still publishes)."""
    mode = mode.strip().lower() or "centroid"
    if mode not in MODES:
        return DistanceAnswer(False, math.nan, 0.0, message=f"unknown mode {mode!r}; expected one of {list(MODES)}")
    if graph is None:
        return DistanceAnswer(False, math.nan, 0.0, message="no scene graph has been computed yet")
    if graph_age_s > max_graph_age_s:
        return DistanceAnswer(False, math.nan, 0.0,
                              message=f"stale scene graph: the latest is {graph_age_s:.2f} s old (limit "
                                      f"query.max_graph_age_s {max_graph_age_s:g} s); "
                                      + (f"the frames since were rejected: {frames_rejected_because}"
                                         if frames_rejected_because else "are the camera topics still publishing?"))
    resolver = resolver if resolver is not None else SideResolver()
    try:
        a = resolver.resolve(graph, subject)
        b = resolver.resolve(graph, obj)
    except reward.RewardError as exc:
        return DistanceAnswer(False, math.nan, 0.0, message=str(exc))
    sources = {"subject_source": a.source, "object_source": b.source}
    if same_thing(a, b):
        return DistanceAnswer(False, math.nan, 0.0, a.id, b.id, **sources,
                              message=f"{subject!r} and {obj!r} both resolve to "
                                      f"{f'object #{a.id}' if a.id else f'the {a.label} frame'}")
    measured_m = distance_m(a, b, mode)
    if not math.isfinite(measured_m):  # positions at infinity (a broken camera_info), as the rewards refuse them
        return DistanceAnswer(False, math.nan, 0.0, a.id, b.id, **sources,
                              message=f"the distance between {subject!r} and {obj!r} is {measured_m} m, not finite")
    return DistanceAnswer(True, measured_m, pair_trust(a, b), a.id, b.id, **sources)
