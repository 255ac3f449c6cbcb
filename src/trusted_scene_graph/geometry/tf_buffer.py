"""A minimal tf buffer over ``tf2_msgs/TFMessage`` contents, for offline evaluation and the node's ``tf`` extrinsic."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from trusted_scene_graph.errors import TsgError
from trusted_scene_graph.geometry.transform import RigidTransform
from trusted_scene_graph.pipeline.messages import stamp_to_ns


class TransformBuffer:
    """Transforms per child frame from tf messages, looked up as of a stamp and chained through the tree.

    Written by hand because tf2_ros is not installable here. It serves "latest transform at or before the stamp"
    lookups without interpolation, which is what offline evaluation and a camera extrinsic need: evaluation scores
    frames a little after reading them, so later transforms (a new episode's camera) are already buffered and the
    stamp matters. Messages are duck-typed (``tf2_msgs/msg/TFMessage`` from rclpy or rosbags).
    """

    def __init__(self) -> None:
        self._history: dict[str, list[tuple[int, str, RigidTransform]]] = defaultdict(list)

    def add(self, tf_message: Any) -> None:
        for stamped in tf_message.transforms:
            t, r = stamped.transform.translation, stamped.transform.rotation
            try:
                transform = RigidTransform.from_xyzw([t.x, t.y, t.z], [r.x, r.y, r.z, r.w])
            except TsgError:
                continue  # an invalid quaternion is not a usable transform; the frame falls back to the config
            history = self._history[stamped.child_frame_id.lstrip("/")]
            history.append((stamp_to_ns(stamped.header.stamp), stamped.header.frame_id.lstrip("/"), transform))
            history.sort(key=lambda entry: entry[0])

    def _at(self, child: str, stamp_ns: int) -> tuple[str, RigidTransform] | None:
        history = self._history.get(child)
        if not history:
            return None
        # The latest at or before the stamp; a transform stamped later than every earlier one still applies to a
        # frame before it only when nothing older exists (a tf_static published after the first image).
        before = [entry for entry in history if entry[0] <= stamp_ns]
        _, parent, transform = before[-1] if before else history[0]
        return parent, transform

    def _ancestors(self, frame: str, stamp_ns: int) -> dict[str, np.ndarray]:
        """Every frame above ``frame`` (and itself), each with the matrix mapping ``frame``'s points into it."""
        matrix = np.eye(4)
        chain = {frame: matrix}
        for _ in range(64):  # tf trees are shallow; the bound stops a cycle
            link = self._at(frame, stamp_ns)
            if link is None or link[0] in chain:
                break
            frame, transform = link
            matrix = transform.matrix @ matrix
            chain[frame] = matrix
        return chain

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int) -> RigidTransform | None:
        """``source -> target`` at ``stamp_ns`` (maps source points into the target frame), or None when the two
        frames are not connected. The path goes through their lowest common ancestor, as tf2's does."""
        source = self._ancestors(source_frame.lstrip("/"), stamp_ns)
        for frame, target_to_frame in self._ancestors(target_frame.lstrip("/"), stamp_ns).items():
            if frame in source:
                return RigidTransform.from_matrix(np.linalg.inv(target_to_frame) @ source[frame])
        return None

    def forget_before(self, stamp_ns: int) -> None:
        """Drop entries superseded before ``stamp_ns`` (keeping the latest one at or before it)."""
        for child, history in self._history.items():
            older = [k for k, entry in enumerate(history) if entry[0] <= stamp_ns]
            if len(older) > 1:
                self._history[child] = history[older[-1]:]
