"""Simulated scenes that produce camera frames with exact ground truth, for demos and end-to-end tests.

Importing this package is cheap and never imports rclpy, MuJoCo or Gymnasium: the simulator is loaded only when
a scene is constructed, so the pure-Python core (and its tests) run without the optional ``sim`` extra.
"""

from trusted_scene_graph.errors import TsgError


class SimError(TsgError):
    """The simulator cannot be built or used as asked (unknown task or camera, missing extra, closed scene)."""


# Imported after SimError is defined because fetch.py and fetch_policies.py import SimError from this package.
from trusted_scene_graph.sim.fetch import (  # noqa: E402
    DEFAULT_VIEW,
    TASK_LABELS,
    TASK_VIEWS,
    TASKS,
    CameraModel,
    FetchScene,
    FreeCameraView,
    GroundTruthObject,
    SimFrame,
)
from trusted_scene_graph.sim.fetch_policies import (  # noqa: E402
    ScriptedFetchPolicy,
    ScriptedPickAndPlacePolicy,
    ScriptedPushPolicy,
    ScriptedReachPolicy,
    ScriptedSlidePolicy,
)
from trusted_scene_graph.sim.tabletop import (  # noqa: E402
    COLOURS,
    SHAPES,
    TabletopFrame,
    TabletopObject,
    TabletopScene,
    TabletopSettings,
)

__all__ = [
    "COLOURS",
    "DEFAULT_VIEW",
    "TASK_LABELS",
    "TASK_VIEWS",
    "TASKS",
    "CameraModel",
    "FetchScene",
    "FreeCameraView",
    "GroundTruthObject",
    "ScriptedFetchPolicy",
    "ScriptedPickAndPlacePolicy",
    "ScriptedPushPolicy",
    "ScriptedReachPolicy",
    "ScriptedSlidePolicy",
    "SimError",
    "SHAPES",
    "SimFrame",
    "TabletopFrame",
    "TabletopObject",
    "TabletopScene",
    "TabletopSettings",
]
