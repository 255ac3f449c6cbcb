"""Dense reward from the scene graph: configured (subject, object) pairs, their distance, shaping and validity.

Pure Python (no rclpy): the node publishes :class:`RewardSample` s as ``DenseReward`` messages, ``tsg label`` writes
them into bags and datasets, and the query service answers with the same side resolution (:mod:`.sides`).
"""

from trusted_scene_graph.errors import TsgError


class RewardError(TsgError):
    """A reward pair, shaping or pose that cannot be used as given."""


from trusted_scene_graph.reward.pairs import RewardPair, pairs_from_config, parse_pair  # noqa: E402
from trusted_scene_graph.reward.shaping import SHAPINGS, shape_reward  # noqa: E402
from trusted_scene_graph.reward.sides import Endpoint, PoseHistory, SideResolver  # noqa: E402
from trusted_scene_graph.reward.tracker import RewardSample, RewardTracker  # noqa: E402

__all__ = ["SHAPINGS", "Endpoint", "PoseHistory", "RewardError", "RewardPair", "RewardSample", "RewardTracker",
           "SideResolver", "pairs_from_config", "parse_pair", "shape_reward"]
