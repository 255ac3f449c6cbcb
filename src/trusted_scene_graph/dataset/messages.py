"""Type-store messages (``rosbags`` dataclasses) built from arrays, for writing bags without rclpy.

The field layout mirrors :mod:`trusted_scene_graph.ros.convert`, which builds the same messages for rclpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from trusted_scene_graph.dataset.typestore import make_typestore
from trusted_scene_graph.geometry.camera import Intrinsics, camera_info_distortion
from trusted_scene_graph.geometry.transform import RigidTransform
from trusted_scene_graph.image.decode import encode_image
from trusted_scene_graph.pipeline.messages import NS_PER_S

GROUND_TRUTH_TYPE = "trusted_scene_graph_msgs/msg/GroundTruth"
GROUND_TRUTH_OBJECT_TYPE = "trusted_scene_graph_msgs/msg/GroundTruthObject"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"


def _types() -> dict[str, Any]:
    return make_typestore().types


def time_msg(stamp_ns: int) -> Any:
    return _types()["builtin_interfaces/msg/Time"](sec=int(stamp_ns // NS_PER_S), nanosec=int(stamp_ns % NS_PER_S))


def header(stamp_ns: int, frame_id: str) -> Any:
    return _types()["std_msgs/msg/Header"](stamp=time_msg(stamp_ns), frame_id=frame_id)


def point(xyz: Sequence[float]) -> Any:
    x, y, z = (float(v) for v in xyz)
    return _types()["geometry_msgs/msg/Point"](x=x, y=y, z=z)


def vector3(xyz: Sequence[float]) -> Any:
    x, y, z = (float(v) for v in xyz)
    return _types()["geometry_msgs/msg/Vector3"](x=x, y=y, z=z)


def quaternion(xyzw: Sequence[float]) -> Any:
    x, y, z, w = (float(v) for v in xyzw)
    return _types()["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w)


def pose(position_m: Sequence[float], orientation_xyzw: Sequence[float] = (0.0, 0.0, 0.0, 1.0)) -> Any:
    return _types()["geometry_msgs/msg/Pose"](position=point(position_m), orientation=quaternion(orientation_xyzw))


def pose_stamped(stamp_ns: int, frame_id: str, position_m: Sequence[float],
                 orientation_xyzw: Sequence[float] = (0.0, 0.0, 0.0, 1.0)) -> Any:
    return _types()["geometry_msgs/msg/PoseStamped"](header=header(stamp_ns, frame_id),
                                                     pose=pose(position_m, orientation_xyzw))


def image(pixels: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Any:
    height, width, step, data = encode_image(pixels, encoding)
    return _types()["sensor_msgs/msg/Image"](header=header(stamp_ns, frame_id), height=height, width=width,
                                             encoding=encoding, is_bigendian=0, step=step,
                                             data=np.frombuffer(data, dtype=np.uint8))


def compressed_image(image_format: str, data: bytes, stamp_ns: int, frame_id: str) -> Any:
    """A ``sensor_msgs/CompressedImage`` of an encoded payload (:mod:`trusted_scene_graph.image.compressed`)."""
    return _types()[COMPRESSED_IMAGE_TYPE](header=header(stamp_ns, frame_id), format=image_format,
                                           data=np.frombuffer(data, dtype=np.uint8))


def camera_info(intrinsics: Intrinsics, stamp_ns: int, frame_id: str) -> Any:
    """The camera of raw images with ``intrinsics`` (an undistorted one is ``plumb_bob`` with zero coefficients),
    as ``convert.camera_info_msg``; ``P`` repeats ``K``."""
    types = _types()
    k = intrinsics.k
    distortion_model, d = camera_info_distortion(intrinsics)
    return types["sensor_msgs/msg/CameraInfo"](
        header=header(stamp_ns, frame_id), height=intrinsics.height, width=intrinsics.width,
        distortion_model=distortion_model, d=np.array(d, dtype=np.float64), k=np.array(k, dtype=np.float64),
        r=np.eye(3).ravel(), p=np.array([k[0], 0.0, k[2], 0.0, 0.0, k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0]),
        binning_x=0, binning_y=0,
        roi=types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def tf_message(stamp_ns: int, parent_frame: str, child_frame: str, child_to_parent: RigidTransform) -> Any:
    """A ``tf2_msgs/TFMessage`` with one transform (``child_to_parent`` maps child points into the parent)."""
    types = _types()
    transform = types["geometry_msgs/msg/Transform"](translation=vector3(child_to_parent.translation_m),
                                                     rotation=quaternion(child_to_parent.rotation_xyzw))
    stamped = types["geometry_msgs/msg/TransformStamped"](header=header(stamp_ns, parent_frame),
                                                          child_frame_id=child_frame, transform=transform)
    return types["tf2_msgs/msg/TFMessage"](transforms=[stamped])


def ground_truth_object(object_id: int, label: str, instance_id: int, centre_m: Sequence[float],
                        orientation_xyzw: Sequence[float], size_m: Sequence[float],
                        visible_fraction: float = math.nan) -> Any:
    return _types()[GROUND_TRUTH_OBJECT_TYPE](id=int(object_id), label=label, instance_id=int(instance_id),
                                              pose=pose(centre_m, orientation_xyzw), size=vector3(size_m),
                                              visible_fraction=float(visible_fraction))


def ground_truth(stamp_ns: int, frame_id: str, task: str, episode: int, step: int, objects: Sequence[Any],
                 gripper_m: Sequence[float] | None = None, goal_m: Sequence[float] | None = None,
                 goal_for: str = "", env_reward: float = math.nan, is_success: bool = False) -> Any:
    return _types()[GROUND_TRUTH_TYPE](
        header=header(stamp_ns, frame_id), task=task, episode=int(episode), step=int(step), objects=list(objects),
        has_gripper=gripper_m is not None, gripper_position=point(gripper_m if gripper_m is not None else (0, 0, 0)),
        has_goal=goal_m is not None, goal_position=point(goal_m if goal_m is not None else (0, 0, 0)),
        goal_for=goal_for, env_reward=float(env_reward), is_success=bool(is_success),
    )


DENSE_REWARD_TYPE = "trusted_scene_graph_msgs/msg/DenseReward"


def dense_reward(sample: Any, frame_id: str) -> Any:
    """A ``DenseReward`` from a :class:`~trusted_scene_graph.reward.RewardSample` (as ``ros.convert.reward_to_msg``)."""
    return _types()[DENSE_REWARD_TYPE](
        header=header(sample.stamp_ns, frame_id), pair=sample.pair, subject=sample.subject, object=sample.object,
        reward=float(sample.reward), distance_m=float(sample.distance_m), valid=bool(sample.valid),
        trust=float(sample.trust), held=bool(sample.held), age_s=float(sample.age_s),
        subject_id=int(sample.subject_id), object_id=int(sample.object_id), subject_source=sample.subject_source,
        object_source=sample.object_source, message=sample.message)
