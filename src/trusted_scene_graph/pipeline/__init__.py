"""From one synchronised camera frame to a scene graph: the code every entry point (node, eval, demo) runs."""

from trusted_scene_graph.pipeline.scene import PipelineError, ScenePipeline
from trusted_scene_graph.pipeline.sync import FrameSynchronizer

__all__ = ["FrameSynchronizer", "PipelineError", "ScenePipeline"]
