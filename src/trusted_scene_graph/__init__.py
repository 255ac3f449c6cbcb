"""trusted_scene_graph: a trusted spatial scene graph from camera images, and 3D distances as a dense reward.

The package is split into a pure-Python core (this package's subpackages except ``ros``), which never imports
rclpy and is testable on numpy arrays, and thin ROS 2 nodes in :mod:`trusted_scene_graph.ros`.
"""

import os

# Models load from a directory or the local Hugging Face cache, never from the network: the product must start the
# same way on a robot without one. `local_files_only` alone does not keep huggingface_hub off the network (it still
# contacts huggingface.co while building request headers), so offline mode is set before it is first imported.
# HF_HUB_OFFLINE=0 in the environment lets a user's own code in the same process download.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from trusted_scene_graph.errors import TsgError  # noqa: E402 - after the environment it must not precede

__all__ = ["TsgError", "__version__"]
__version__ = "0.1.0"
