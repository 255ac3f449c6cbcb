"""trusted_scene_graph: a trusted spatial scene graph from camera images, and 3D distances as a dense reward.

The package is split into a pure-Python core (this package's subpackages except ``ros``), which never imports
rclpy and is testable on numpy arrays, and thin ROS 2 nodes in :mod:`trusted_scene_graph.ros`.
"""

import os

from trusted_scene_graph.errors import TsgError

__all__ = ["TsgError", "__version__", "keep_hub_offline"]
__version__ = "0.1.0"


def keep_hub_offline() -> None:
    """Set ``HF_HUB_OFFLINE=1`` for this process unless its environment sets it: ``local_files_only`` alone still
    lets huggingface_hub contact huggingface.co (it does while building request headers), and a robot may have no
    network. Called first by the ``tsg`` commands and the node executable, before huggingface_hub is imported; a
    program that imports the package for itself decides on its own downloads. Here, not beside the model loaders,
    so that calling it imports nothing (``tsg --help`` stays light)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
