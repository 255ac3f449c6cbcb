"""trusted_scene_graph: a trusted spatial scene graph from camera images, and 3D distances as a dense reward.

The package is split into a pure-Python core (this package's subpackages except ``ros``), which never imports
rclpy and is testable on numpy arrays, and thin ROS 2 nodes in :mod:`trusted_scene_graph.ros`.
"""

from trusted_scene_graph.errors import TsgError

__all__ = ["TsgError", "__version__"]
__version__ = "0.1.0"
