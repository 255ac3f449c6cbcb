"""The node list of a bringup, shared by ``tsg bringup`` and the ROS launch file (pure: no rclpy import).

Each node names the console script that runs it alone (what ``launch_ros`` starts) and the class the in-process
bringup instantiates, so both paths start the same code with the same parameters.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class NodeSpec:
    name: str
    executable: str  # console script in [project.scripts], installed to lib/trusted_scene_graph on ROS installs
    node_class: str  # "module:Class"

    def load_class(self) -> type:
        module, _, attribute = self.node_class.partition(":")
        return getattr(importlib.import_module(module), attribute)


NODES: tuple[NodeSpec, ...] = (
    NodeSpec("scene_graph", "scene_graph_node", "trusted_scene_graph.ros.scene_graph_node:SceneGraphNode"),
)

# Launch arguments that remap an input topic: argument name -> parameter holding the topic the node subscribes to.
TOPIC_ARGUMENTS: dict[str, str] = {
    "color_topic": "topics.color",
    "depth_topic": "topics.depth",
    "camera_info_topic": "topics.camera_info",
    "instances_topic": "topics.instances",
}
