"""Recorded data in and out: rosbag2 bags (mcap and sqlite3) through ``rosbags``, without rclpy.

``rosbags`` reads and writes both storage formats in pure Python, so recording, offline evaluation and labelling
run anywhere, including machines without a ROS install.
"""

from trusted_scene_graph.errors import TsgError


class DatasetError(TsgError):
    """A bag or dataset cannot be read or written as asked (missing, corrupt, wrong layout, unknown type)."""


from trusted_scene_graph.dataset.bag import (  # noqa: E402  (bag.py imports DatasetError from here)
    BagMessage,
    BagReader,
    BagWriter,
    QosSpec,
)
from trusted_scene_graph.dataset.typestore import interface_dir, make_typestore  # noqa: E402

__all__ = ["BagMessage", "BagReader", "BagWriter", "DatasetError", "QosSpec", "interface_dir", "make_typestore"]
