"""Conversions between ROS messages and the core's arrays and data classes.

Pure functions of message fields, usable without ``rclpy.init`` (tested that way).
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Vector3
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest
from std_msgs.msg import Header
from trusted_scene_graph_msgs.msg import DenseReward, SceneObject, SpatialRelation
from trusted_scene_graph_msgs.msg import SceneGraph as SceneGraphMsg
from trusted_scene_graph_msgs.srv import QueryDistance
from visualization_msgs.msg import Marker, MarkerArray

from trusted_scene_graph.geometry.camera import Intrinsics, camera_info_distortion
from trusted_scene_graph.graph.model import SceneGraph
from trusted_scene_graph.image.decode import encode_image
from trusted_scene_graph.pipeline.health import FrameStats, health

# Message decoding is shared with offline evaluation (rosbags messages have the same fields); re-exported here.
from trusted_scene_graph.pipeline.messages import (  # noqa: F401
    NS_PER_S,
    depth_m_from_msg,
    frame_from_msgs,
    instances_from_msg,
    intrinsics_from_msg,
    rgb_from_msg,
    stamp_to_ns,
)
from trusted_scene_graph.reward.query import DistanceAnswer
from trusted_scene_graph.reward.tracker import RewardSample


def ns_to_stamp(stamp_ns: int) -> Time:
    return Time(sec=stamp_ns // NS_PER_S, nanosec=stamp_ns % NS_PER_S)


def image_msg(pixels: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Image:
    height, width, step, data = encode_image(pixels, encoding)
    return Image(header=Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id), height=height, width=width,
                 encoding=encoding, is_bigendian=0, step=step, data=data)


def compressed_image_msg(image_format: str, data: bytes, stamp_ns: int, frame_id: str) -> CompressedImage:
    """A ``CompressedImage`` of a payload encoded by :mod:`trusted_scene_graph.image.compressed`."""
    return CompressedImage(header=Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id), format=image_format,
                           data=data)


def camera_info_msg(intrinsics: Intrinsics, stamp_ns: int, frame_id: str) -> CameraInfo:
    k = intrinsics.k
    distortion_model, d = camera_info_distortion(intrinsics)
    return CameraInfo(
        header=Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id),
        width=intrinsics.width, height=intrinsics.height, distortion_model=distortion_model, d=list(d), k=k,
        r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        p=[k[0], 0.0, k[2], 0.0, 0.0, k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0],
    )


def graph_to_msg(graph: SceneGraph) -> SceneGraphMsg:
    objects = [
        SceneObject(
            id=obj.id, label=obj.label, score=float(obj.score),
            box=RegionOfInterest(x_offset=obj.box_xywh_px[0], y_offset=obj.box_xywh_px[1],
                                 width=obj.box_xywh_px[2], height=obj.box_xywh_px[3]),
            centroid=Point(x=float(obj.centroid_m[0]), y=float(obj.centroid_m[1]), z=float(obj.centroid_m[2])),
            size=Vector3(x=float(obj.size_m[0]), y=float(obj.size_m[1]), z=float(obj.size_m[2])),
            depth_valid_fraction=float(obj.depth_valid_fraction), track_age=obj.track_age,
        )
        for obj in graph.objects
    ]
    relations = [
        SpatialRelation(subject_id=rel.subject_id, predicate=rel.predicate, object_id=rel.object_id,
                        value_m=float(rel.value_m), margin_m=float(rel.margin_m), trust=float(rel.trust),
                        source=rel.source)
        for rel in graph.relations
    ]
    return SceneGraphMsg(header=Header(stamp=ns_to_stamp(graph.stamp_ns), frame_id=graph.frame_id),
                         objects=objects, relations=relations, trust_threshold=float(graph.trust_threshold),
                         num_pruned=graph.num_pruned)


def fill_distance_response(answer: DistanceAnswer, graph: SceneGraph | None, response: QueryDistance.Response,
                           graph_age_s: float = math.nan) -> QueryDistance.Response:
    """The service response for ``answer`` from ``graph``, computed ``graph_age_s`` ago (NaN without a graph)."""
    response.valid = answer.valid
    response.distance_m = float(answer.distance_m) if answer.valid else math.nan
    response.trust = float(answer.trust)
    response.subject_id = answer.subject_id
    response.object_id = answer.object_id
    response.subject_source = answer.subject_source
    response.object_source = answer.object_source
    response.message = answer.message
    response.graph_stamp = ns_to_stamp(graph.stamp_ns) if graph is not None else Time()
    response.graph_age_s = float(graph_age_s) if graph is not None else math.nan
    return response


def reward_to_msg(sample: RewardSample, frame_id: str) -> DenseReward:
    """One pair's reward for one graph (stamped with the graph's stamp, in the graph frame ``frame_id``)."""
    return DenseReward(header=Header(stamp=ns_to_stamp(sample.stamp_ns), frame_id=frame_id), pair=sample.pair,
                       subject=sample.subject, object=sample.object, reward=float(sample.reward),
                       distance_m=float(sample.distance_m), valid=sample.valid, trust=float(sample.trust),
                       held=sample.held, age_s=float(sample.age_s), subject_id=sample.subject_id,
                       object_id=sample.object_id, subject_source=sample.subject_source,
                       object_source=sample.object_source, message=sample.message)


#: A ``/diagnostics`` value is read by a person in rqt_robot_monitor: a longer reason is cut here.
MAX_DIAGNOSTIC_MESSAGE_CHARS = 200


def reward_details(pair_names: list[str], last_samples: dict[str, RewardSample]) -> dict[str, str]:
    """The reward's ``/diagnostics`` entries: the pairs, and per pair whether its last sample was valid and why not
    (``reward <pair>``: ``valid``, ``held: <why>``, ``not valid: <why>`` or ``no frame yet``)."""
    details = {"reward_pairs": ", ".join(pair_names) or "none"}
    for name in pair_names:
        sample = last_samples.get(name)
        if sample is None:
            text = "no frame yet"
        elif sample.held:
            text = sample.message  # "held 0.100 s: <why>"
        else:
            text = "valid" if sample.valid else f"not valid: {sample.message}"
        if len(text) > MAX_DIAGNOSTIC_MESSAGE_CHARS:
            text = text[:MAX_DIAGNOSTIC_MESSAGE_CHARS - 3] + "..."
        details[f"reward {name}"] = text
    return details


def duration_msg(seconds: float) -> Duration:
    """A ``builtin_interfaces/Duration`` of ``seconds`` (>= 0), rounded to the nanosecond."""
    total_ns = round(seconds * NS_PER_S)
    return Duration(sec=total_ns // NS_PER_S, nanosec=total_ns % NS_PER_S)


def clear_markers(frame_id: str, stamp_ns: int = 0) -> MarkerArray:
    """A lone DELETEALL: what the node publishes when it stops showing graphs (deactivated, ``markers.enabled``
    switched off), so RViz, and a late RViz through the transient-local topic, drops the last boxes."""
    return MarkerArray(markers=[Marker(header=Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id),
                                       action=Marker.DELETEALL)])


def markers_from_graph(graph: SceneGraph, lifetime_s: float) -> MarkerArray:
    """One translucent box and one text label per object; the first marker clears the previous frame's.

    Boxes and labels expire ``lifetime_s`` after RViz receives them (the node passes ``query.max_graph_age_s``, the
    age at which it calls its graph stale): when frames stop (a stalled camera, frames the pipeline rejects) no
    replacement comes to clear them, and they would otherwise stay up forever."""
    header = Header(stamp=ns_to_stamp(graph.stamp_ns), frame_id=graph.frame_id)
    lifetime = duration_msg(lifetime_s)
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    for obj in graph.objects:
        hue = (obj.id * 0.618034) % 1.0  # golden-ratio hues keep neighbouring ids apart
        r, g, b = colorsys.hsv_to_rgb(hue, 0.8, 0.95)
        box = Marker(header=header, ns="objects", id=obj.id, type=Marker.CUBE, action=Marker.ADD, lifetime=lifetime)
        box.pose.position = Point(x=float(obj.centroid_m[0]), y=float(obj.centroid_m[1]), z=float(obj.centroid_m[2]))
        box.pose.orientation.w = 1.0
        box.scale = Vector3(x=max(float(obj.size_m[0]), 1e-3), y=max(float(obj.size_m[1]), 1e-3),
                            z=max(float(obj.size_m[2]), 1e-3))
        box.color.r, box.color.g, box.color.b, box.color.a = r, g, b, 0.5
        text = Marker(header=header, ns="labels", id=obj.id, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                      lifetime=lifetime)
        text.pose.position = Point(x=box.pose.position.x, y=box.pose.position.y,
                                   z=box.pose.position.z + box.scale.z / 2 + 0.03)
        text.pose.orientation.w = 1.0
        text.scale.z = 0.04
        text.color.r = text.color.g = text.color.b = text.color.a = 1.0
        text.text = f"#{obj.id} {obj.label}"
        markers += [box, text]
    return MarkerArray(markers=markers)


def graph_from_msg(msg: SceneGraphMsg) -> SceneGraph:
    """The inverse of :func:`graph_to_msg` (for clients, reports and tests)."""
    from trusted_scene_graph.graph.model import ObjectNode, Relation

    objects = tuple(
        ObjectNode(o.id, o.label, o.score, (o.box.x_offset, o.box.y_offset, o.box.width, o.box.height),
                   np.array([o.centroid.x, o.centroid.y, o.centroid.z]), np.array([o.size.x, o.size.y, o.size.z]),
                   o.depth_valid_fraction, o.track_age)
        for o in msg.objects
    )
    relations = tuple(Relation(r.subject_id, r.predicate, r.object_id, r.value_m, r.margin_m, r.trust, r.source)
                      for r in msg.relations)
    return SceneGraph(stamp_to_ns(msg.header.stamp), msg.header.frame_id, objects, relations, msg.trust_threshold,
                      msg.num_pruned)


def diagnostics_msg(node_name: str, stats: FrameStats, stamp_ns: int, details: dict[str, str] | None = None,
                    now_s: float | None = None, max_frame_age_s: float = math.inf) -> DiagnosticArray:
    """The node's frame counters as one ``/diagnostics`` status (for rqt_robot_monitor, diagnostic_aggregator);
    ``now_s`` (steady clock) and ``max_frame_age_s``: see :func:`~trusted_scene_graph.pipeline.health.health`."""
    level, message, values = health(stats, details, now_s, max_frame_age_s)
    status = DiagnosticStatus(level=bytes([level]), name=f"trusted_scene_graph: {node_name}", message=message,
                              hardware_id="", values=[KeyValue(key=k, value=v) for k, v in values.items()])
    return DiagnosticArray(header=Header(stamp=ns_to_stamp(stamp_ns)), status=[status])
