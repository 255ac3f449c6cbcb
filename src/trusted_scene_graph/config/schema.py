"""The parameter schema: every setting's type, default, unit, range and description, defined once.

The same :data:`SCHEMA` declares ROS parameters (with descriptors) in the nodes, fills the launch file's
parameters and validates the CLI's config files, in the style of ``generate_parameter_library``.

Config files use the ROS 2 parameter-file layout so that ``ros2 launch`` can pass them unchanged::

    /**:
      ros__parameters:
        sync:
          tolerance_s: 0.01

Nested keys are flattened with dots (``sync.tolerance_s``), exactly as ROS 2 does.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trusted_scene_graph.errors import TsgError


class ConfigError(TsgError):
    """A configuration value or file is invalid."""


# The value types a parameter can have; they map one to one onto ROS 2 parameter types.
BOOL, INT, FLOAT, STRING, STRING_ARRAY, FLOAT_ARRAY = "bool", "int", "float", "string", "string[]", "float[]"


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its name, type, default, unit and the values it accepts."""

    name: str
    type: str
    default: Any
    description: str
    unit: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    length: int | None = None
    read_only: bool = False

    @property
    def full_description(self) -> str:
        """Description with its unit, as shown by ``ros2 param describe``."""
        return f"{self.description} [{self.unit}]" if self.unit else self.description

    def validate(self, value: Any) -> Any:
        """Return ``value`` converted to this parameter's type, or raise :class:`ConfigError` saying why not."""
        value = self._coerce(value)
        items = value if isinstance(value, list) else [value]
        if self.length is not None and isinstance(value, list) and len(value) != self.length:
            raise ConfigError(f"{self.name}: expected {self.length} values, got {len(value)}: {value!r}")
        for item in items:
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"{self.name}: {item!r} is not a finite number")
            if self.min is not None and item < self.min:
                raise ConfigError(f"{self.name}: {item!r} is below the minimum {self.min}{self._unit_suffix()}")
            if self.max is not None and item > self.max:
                raise ConfigError(f"{self.name}: {item!r} is above the maximum {self.max}{self._unit_suffix()}")
            if self.choices and item not in self.choices:
                raise ConfigError(f"{self.name}: {item!r} is not one of {list(self.choices)}")
        return value

    def _unit_suffix(self) -> str:
        return f" {self.unit}" if self.unit else ""

    def _coerce(self, value: Any) -> Any:
        if self.type == BOOL:
            if isinstance(value, bool):
                return value
        elif self.type == INT:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif self.type == FLOAT:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return self._float(value)
        elif self.type == STRING:
            if isinstance(value, str):
                return value
        elif self.type == STRING_ARRAY:
            if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                return list(value)
        elif self.type == FLOAT_ARRAY:
            if isinstance(value, (list, tuple)) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
            ):
                return [self._float(v) for v in value]
        hint = ""
        if self.type in (FLOAT_ARRAY, STRING_ARRAY) and isinstance(value, str):
            if self.name == "reward.pairs":
                # A pair's own settings follow it after commas (gripper:cube,shaping=exp): the items are the pairs.
                hint = f"; write a list in brackets, each pair quoted: [{value.strip('[]')!r}]"
            else:
                # A list given as a bare string (--set extrinsic.translation_m=1,2,3) reads as one string: the same
                # items in brackets are the list.
                items = [item.strip() for item in value.strip("[]").split(",") if item.strip()]
                hint = f"; write a list in brackets: [{', '.join(items)}]"
        raise ConfigError(f"{self.name}: expected {self.type}, got {type(value).__name__} {value!r}{hint}")

    def _float(self, value: int | float) -> float:
        try:
            return float(value)
        except OverflowError:  # an integer of hundreds of digits
            raise ConfigError(f"{self.name}: {value} is too large for a float (a 64-bit double: at most about "
                              "1.8e308)") from None


def _specs(*specs: ParamSpec) -> dict[str, ParamSpec]:
    return {spec.name: spec for spec in specs}


SCHEMA: dict[str, ParamSpec] = _specs(
    # Lifecycle.
    ParamSpec("autostart", BOOL, True,
              "Drive the managed node to 'active' at startup (false: wait for a lifecycle manager)", read_only=True),
    # Frames.
    ParamSpec("graph_frame", STRING, "world",
              "Gravity-aligned frame the graph is expressed in (REP-103: x forward, y left, z up)", read_only=True),
    ParamSpec("extrinsic.translation_m", FLOAT_ARRAY, [0.0, 0.0, 0.0],
              "Position of the camera optical frame's origin in the graph frame", unit="m", length=3),
    ParamSpec("extrinsic.rotation_xyzw", FLOAT_ARRAY, [-0.5, 0.5, -0.5, 0.5],
              "Rotation from the camera optical frame (x right, y down, z forward) to the graph frame, "
              "as a unit quaternion x, y, z, w", length=4, min=-1.0, max=1.0),
    ParamSpec("extrinsic.source", STRING, "static",
              "Where the camera-to-graph transform comes from: 'static' (the two parameters above), "
              "'plane_fit' (RANSAC fit of the dominant support plane in the depth image; z up from its normal) or "
              "'tf' (per frame, the tf lookup graph_frame <- camera_info's frame_id at the image stamp, from "
              "/tf_static and /tf; a frame without that transform is rejected)",
              choices=("static", "plane_fit", "tf"), read_only=True),
    ParamSpec("extrinsic.tf_max_age_s", FLOAT, 0.5,
              "'tf': a /tf transform older than this at the image stamp is stale and the frame is rejected (a dead "
              "tf publisher must not freeze the camera pose); /tf_static transforms never go stale",
              unit="s", min=0.001, max=3600.0, read_only=True),
    ParamSpec("extrinsic.plane_fit.inlier_distance_m", FLOAT, 0.01,
              "'plane_fit': largest point-to-plane distance of a plane inlier", unit="m", min=1e-4, max=1.0),
    ParamSpec("extrinsic.plane_fit.iterations", INT, 200, "'plane_fit': RANSAC hypotheses per fit",
              min=10, max=100_000),
    ParamSpec("extrinsic.plane_fit.min_inlier_fraction", FLOAT, 0.2,
              "'plane_fit': a plane supported by a smaller fraction of the valid depth pixels is rejected",
              min=0.01, max=1.0),
    ParamSpec("extrinsic.plane_fit.refit_frames", INT, 0,
              "'plane_fit': refit every this many frames (0: fit once, then keep it, for a static camera)",
              unit="frames", min=0, max=1_000_000),
    # Topics and QoS.
    ParamSpec("topics.color", STRING, "/camera/color/image_raw", "Colour image topic", read_only=True),
    ParamSpec("topics.color_transport", STRING, "raw",
              "'raw' subscribes to sensor_msgs/Image on topics.color; 'compressed' to sensor_msgs/CompressedImage "
              "(JPEG or PNG) on topics.color + '/compressed', as image_transport publishes it",
              choices=("raw", "compressed"), read_only=True),
    ParamSpec("topics.depth", STRING, "/camera/depth/image_raw",
              "Depth image topic, registered to the colour image (16UC1 mm or 32FC1 m)", read_only=True),
    ParamSpec("topics.depth_transport", STRING, "raw",
              "'raw' subscribes to sensor_msgs/Image on topics.depth; 'compressedDepth' to sensor_msgs/CompressedImage "
              "(PNG) on topics.depth + '/compressedDepth', as image_transport publishes it",
              choices=("raw", "compressedDepth"), read_only=True),
    ParamSpec("topics.camera_info", STRING, "/camera/color/camera_info", "Colour camera intrinsics topic",
              read_only=True),
    ParamSpec("topics.rectified", BOOL, False,
              "The colour (and registered depth) images are rectified (image_proc's image_rect, image_rect_color): "
              "their intrinsics are camera_info's P and its distortion does not apply. False: raw images "
              "(image_raw), lifted through camera_info's K and distortion D (plumb_bob, rational_polynomial or "
              "equidistant)", read_only=True),
    ParamSpec("topics.instances", STRING, "/camera/instances/image_raw",
              "Instance-id image (16UC1, 0 = background) used by the 'sim' detector only", read_only=True),
    ParamSpec("topics.ee_pose", STRING, "/ee_pose",
              "geometry_msgs/PoseStamped of the end effector's grasp point in the graph frame, from the robot's "
              "kinematics (used for end-effector distances and rewards)", read_only=True),
    ParamSpec("topics.goal_pose", STRING, "/goal_pose",
              "geometry_msgs/PoseStamped of the task's goal position in the graph frame (the 'goal' side of reward "
              "pairs and distance queries)", read_only=True),
    ParamSpec("qos.sensor_reliability", STRING, "best_effort",
              "Reliability of the camera subscriptions (best_effort is SensorDataQoS)",
              choices=("best_effort", "reliable"), read_only=True),
    ParamSpec("qos.sensor_depth", INT, 5, "History depth of the camera subscriptions", unit="messages",
              min=1, max=100, read_only=True),
    # Synchronisation.
    ParamSpec("sync.tolerance_s", FLOAT, 0.01,
              "Largest stamp difference between colour, depth, camera_info (and instances) of one frame",
              unit="s", min=0.0, max=1.0),
    ParamSpec("sync.buffer_size", INT, 10, "Messages kept per input topic while waiting for a match",
              unit="messages", min=1, max=1000, read_only=True),
    # Detector.
    ParamSpec("detector.backend", STRING, "sim",
              "Object detector backend: 'grounding_dino' (open vocabulary, transformers) or 'sim' (simulator masks)",
              choices=("sim", "grounding_dino"), read_only=True),
    ParamSpec("detector.sim_labels", STRING_ARRAY, ["1:gripper", "2:cube", "3:table"],
              "'sim' detector: instance id to label, as 'id:label'", read_only=True),
    ParamSpec("detector.sim_masks", BOOL, True,
              "'sim' detector: give each detection its instance mask (false: boxes only, as a box detector such as "
              "GroundingDINO gives)", read_only=True),
    ParamSpec("detector.corruption.box_jitter_px", FLOAT, 0.0,
              "'sim' detector: standard deviation of the noise added to each box edge", unit="px",
              min=0.0, max=1000.0),
    ParamSpec("detector.corruption.miss_rate", FLOAT, 0.0, "'sim' detector: probability of dropping a detection",
              min=0.0, max=1.0),
    ParamSpec("detector.corruption.false_positive_rate", FLOAT, 0.0,
              "'sim' detector: expected number of spurious boxes (random place, random known label) per frame",
              min=0.0, max=100.0),
    ParamSpec("detector.corruption.label_swap_rate", FLOAT, 0.0,
              "'sim' detector: probability of replacing a detection's label with another known label",
              min=0.0, max=1.0),
    ParamSpec("detector.corruption.score_noise", FLOAT, 0.0,
              "'sim' detector: standard deviation of the noise added to the score (clipped to [0, 1])",
              min=0.0, max=1.0),
    ParamSpec("detector.corruption.seed", INT, 0, "'sim' detector: seed of the corruption's random generator",
              min=0, max=2**31 - 1, read_only=True),
    ParamSpec("detector.model_path", STRING, "",
              "'grounding_dino': local model directory, or a Hugging Face model id already in the local cache "
              "(never downloaded at run time)", read_only=True),
    ParamSpec("detector.vocabulary", STRING_ARRAY, ["gripper", "cube", "table"],
              "'grounding_dino': the phrases to detect, one object class each", read_only=True),
    ParamSpec("detector.label_map", STRING_ARRAY, [],
              "'grounding_dino': 'phrase:label' entries renaming a phrase's detections (default: the phrase)",
              read_only=True),
    ParamSpec("detector.box_threshold", FLOAT, 0.35,
              "'grounding_dino': smallest box confidence kept", min=0.0, max=1.0),
    ParamSpec("detector.text_threshold", FLOAT, 0.25,
              "'grounding_dino': smallest phrase-token confidence for a box to take that phrase", min=0.0, max=1.0),
    ParamSpec("detector.nms_iou", FLOAT, 0.5,
              "Boxes overlapping a higher-scoring box by more than this IoU are dropped, across phrases",
              min=0.0, max=1.0),
    ParamSpec("detector.device", STRING, "cpu", "Device the detector model runs on", choices=("cpu", "cuda"),
              read_only=True),
    ParamSpec("detector.half_precision", BOOL, False, "Run the detector in float16 (cuda only)", read_only=True),
    ParamSpec("detector.min_pixels", INT, 30, "Smallest object, in pixels, that is reported", unit="px",
              min=1, max=10_000_000),
    # Depth and lifting.
    ParamSpec("depth.backend", STRING, "sensor",
              "'sensor': the registered depth topic; 'monocular': metric depth estimated from the colour image "
              "(transformers depth model, for RGB-only cameras; no depth topic is subscribed)",
              choices=("sensor", "monocular"), read_only=True),
    ParamSpec("depth.model_path", STRING, "",
              "'monocular': local model directory, or a Hugging Face model id already in the local cache "
              "(a metric model such as Depth Anything V2 Metric)", read_only=True),
    ParamSpec("depth.device", STRING, "cpu", "Device the monocular depth model runs on", choices=("cpu", "cuda"),
              read_only=True),
    ParamSpec("depth.min_m", FLOAT, 0.05, "Depth values below this are treated as invalid", unit="m",
              min=0.0, max=100.0),
    ParamSpec("depth.max_m", FLOAT, 10.0, "Depth values above this are treated as invalid", unit="m",
              min=0.01, max=1000.0),
    ParamSpec("lifting.box_percentile", FLOAT, 2.0,
              "An object's 3D box spans these percentiles of its points (p, 100 - p), rejecting stray pixels",
              unit="%", min=0.0, max=49.0),
    ParamSpec("lifting.max_gap_m", FLOAT, 0.01,
              "Beyond its percentile box, an object's box keeps growing over points at most this far from the next "
              "one (a sparse but continuous side); a point past a larger gap is a stray pixel (0: percentiles only)",
              unit="m", min=0.0, max=1.0),
    ParamSpec("lifting.outlier_mad_k", FLOAT, 4.0,
              "Points whose depth is more than k median absolute deviations (as a standard deviation, at least 5 mm) "
              "from the object's median depth are outliers, unless they continue that band through continuous "
              "depths (gaps up to 10 % of the object's size across the view, at most that size beyond): a receding "
              "side is kept, a stray blob behind is not (see lifting.mask_interior_px for mask bleed)",
              min=0.5, max=100.0),
    ParamSpec("lifting.mask_interior_px", INT, 0,
              "Guard against mask bleed: only points more than this many pixels inside the mask's border extend "
              "the depth band, rim points count only within it (plus a few pixels of the object's depth slope), so "
              "a mask bleeding up to this much onto the surface around an object does not deepen its box; it costs "
              "small objects part of their receding sides (0: off, for exact masks such as the 'sim' detector's; 2 "
              "for a segmenter whose masks spill over by a pixel or two)", unit="px", min=0, max=4),
    ParamSpec("lifting.points_per_object", INT, 768,
              "Depth pixels used per object, sampled stratified with a fixed jitter over its valid pixels (every "
              "pixel of a smaller object); bounds the cost of big objects and lets all objects be lifted in one "
              "batch", unit="px", min=16, max=100_000),
    ParamSpec("lifting.amodal_completion", BOOL, True,
              "Complete the side of a round object (sphere, can) the camera cannot see (back, underside) by point "
              "symmetry about the centre of the circle its widths trace on the camera's side; boxes are not "
              "enlarged"),
    ParamSpec("lifting.box_silhouette", BOOL, True,
              "For a detection without a mask (a box detector such as GroundingDINO), take the object's pixels in "
              "its box from depth: those standing above the lowest level around it (by more than the depth noise), "
              "within the box's size of the central half's depth, in the depth-continuous region reaching the most "
              "box edges (then with most of the central half), less the boxes of other detections nested in it "
              "(objects on a table; with nothing else standing, it is the surface they stand on); with nothing "
              "standing in the central half, all that "
              "stands near the box's depth (an open gripper's fingers); when nothing stands out, the central half"),
    ParamSpec("lifting.min_valid_fraction", FLOAT, 0.05,
              "Objects with a smaller fraction of valid depth pixels are dropped", min=0.0, max=1.0),
    # Tracking.
    ParamSpec("tracking.gate_m", FLOAT, 0.3, "Largest 3D jump that still continues a track", unit="m",
              min=0.0, max=100.0),
    ParamSpec("tracking.max_missed_frames", INT, 5, "Frames a track survives without a detection",
              unit="frames", min=0, max=10_000),
    ParamSpec("tracking.smoothing", FLOAT, 1.0,
              "Weight of the new measurement in a track's exponentially smoothed position (1: no smoothing)",
              min=0.01, max=1.0),
    # Relations and trust.
    # Positive minimums: at 0 the margins of near (near_m - surface) and on_top_of (tolerance - |gap|) can never be
    # > 0, so those predicates would silently never hold.
    ParamSpec("relations.near_m", FLOAT, 0.15, "Surface distance below which two objects are 'near'", unit="m",
              min=1e-4, max=100.0),
    ParamSpec("relations.contact_tolerance_m", FLOAT, 0.02,
              "'on_top_of': largest gap between the subject's bottom and the object's top", unit="m",
              min=1e-4, max=1.0),
    ParamSpec("relations.margin_scale_m", FLOAT, 0.02,
              "Margin at which the geometric prior gives trust 0.73 (logistic of margin / scale)", unit="m",
              min=1e-6, max=10.0),
    ParamSpec("trust.model", STRING, "default",
              "Trust model: 'default' (shipped, trained on simulated bags by scripts/train_trust.sh), 'prior' "
              "(uncalibrated logistic of margin / relations.margin_scale_m) or a directory written by tsg trust train",
              read_only=True),
    ParamSpec("trust.threshold", FLOAT, -1.0,
              "Relations with a lower trust are pruned from the graph; negative: the trust model's threshold, "
              "chosen for its target precision with a guarantee ('prior': 0.6)", min=-1.0, max=1.0),
    ParamSpec("trust.target_precision", FLOAT, 0.95,
              "Precision the kept edges should reach; evaluation reports the coverage at which trust achieves it",
              min=0.0, max=1.0),
    ParamSpec("trust.temporal_window_frames", INT, 10,
              "Frames of a track pair's history behind the temporal_agreement feature", unit="frames", min=1,
              max=1000, read_only=True),
    ParamSpec("trust.vlm_queries_per_frame", INT, 8,
              "Most VLM questions per frame; the others reuse their last answer", min=0, max=100_000),
    ParamSpec("trust.vlm_answer_max_age_frames", INT, 30,
              "A claim's VLM answer is reused for this many frames before the claim may be asked again",
              unit="frames", min=1, max=1_000_000),
    ParamSpec("trust.vlm_query_band", FLOAT_ARRAY, [0.2, 0.8],
              "Only claims whose current trust is in [low, high] are asked about, most uncertain first", length=2,
              min=0.0, max=1.0),
    ParamSpec("trust.vlm_sensitivity", BOOL, False,
              "Ask every question again on a noised image (vlm_sensitivity feature; doubles the VLM calls)"),
    ParamSpec("trust.vlm_sensitivity_noise", FLOAT, 8.0,
              "Standard deviation of the Gaussian pixel noise of the sensitivity check", unit="8-bit levels",
              min=0.0, max=255.0),
    ParamSpec("trust.prototype_similarity", BOOL, False,
              "Compare each crop's embedding with its label's prototype (needs vlm.backend 'contrastive')",
              read_only=True),
    ParamSpec("trust.prototype_min_score", FLOAT, 0.5,
              "Detections with at least this score update their label's prototype", min=0.0, max=1.0),
    ParamSpec("trust.prototype_momentum", FLOAT, 0.9,
              "Weight of the old prototype when a crop updates it", min=0.0, max=0.999),
    # Vision-language model (claims verified against geometry).
    ParamSpec("vlm.backend", STRING, "none",
              "'none': geometry only; 'generative': a transformers image-text-to-text model answers yes/no "
              "questions; 'contrastive': a CLIP/SigLIP model scores each relation claim against its converse; "
              "'recorded': answers read from vlm.recorded_path (JSONL)",
              choices=("none", "generative", "contrastive", "recorded"), read_only=True),
    ParamSpec("vlm.model_path", STRING, "",
              "'generative', 'contrastive': local model directory, or a Hugging Face model id already in the "
              "local cache (never downloaded at run time)", read_only=True),
    ParamSpec("vlm.recorded_path", STRING, "", "'recorded': JSONL file of cached VLM answers", read_only=True),
    ParamSpec("vlm.device", STRING, "cpu", "Device the VLM runs on", choices=("cpu", "cuda"), read_only=True),
    # Dense reward and distance queries.
    ParamSpec("reward.pairs", STRING_ARRAY, ["gripper:cube"],
              "Rewards published on /scene_graph/reward, one per pair per frame: 'SUBJECT:OBJECT' (a label, an id "
              "'#3', an end-effector name or 'goal'), optionally followed by ',setting=value' overriding the reward.* "
              "settings below for that pair, e.g. 'gripper:red cube,shaping=exp,shaping_scale_m=0.05'"),
    ParamSpec("reward.distance_mode", STRING, "centroid",
              "'centroid': distance between the two centres; 'surface': between the closest points of the 3D boxes",
              choices=("centroid", "surface")),
    ParamSpec("reward.shaping", STRING, "negative",
              "Distance d to reward: 'negative' -d; 'exp' exp(-d/scale); 'tanh' 1 - tanh(d/scale); 'progress' "
              "1 - d/max(d0, scale) with d0 the episode's first valid distance",
              choices=("negative", "exp", "tanh", "progress")),
    ParamSpec("reward.shaping_scale_m", FLOAT, 0.1,
              "Scale of the 'exp' and 'tanh' shapings and the floor of 'progress'", unit="m", min=1e-4, max=100.0),
    ParamSpec("reward.min_trust", FLOAT, 0.3,
              "A reward whose distance trust (weaker detection score times weaker valid-depth fraction; kinematics "
              "counts as 1) is lower is not valid", min=0.0, max=1.0),
    ParamSpec("reward.min_depth_valid_fraction", FLOAT, 0.3,
              "A reward is not valid when a perceived side has a smaller fraction of its pixels with valid depth",
              min=0.0, max=1.0),
    ParamSpec("reward.smoothing_frames", INT, 1,
              "The reward is shaped from the median of the valid distances among the pair's last this many frames (a "
              "frame without one takes its place in the window; 1: no smoothing)",
              unit="frames", min=1, max=1000),
    ParamSpec("reward.hold_last_valid_s", FLOAT, 0.0,
              "A frame whose distance is not valid repeats the last valid reward (marked held) while that is at "
              "most this old; after that the reward is not valid (0: never hold)", unit="s", min=0.0, max=3600.0),
    ParamSpec("reward.ee_names", STRING_ARRAY, ["gripper", "ee", "end_effector"],
              "Names meaning the end effector: its kinematic pose (topics.ee_pose or reward.ee_tf_frame) answers "
              "when one is near the graph's stamp, else the perceived object with that label"),
    ParamSpec("reward.ee_pose_max_age_s", FLOAT, 0.1,
              "An end-effector or goal pose further than this from the graph's stamp is not used", unit="s",
              min=0.0, max=3600.0),
    ParamSpec("reward.ee_tf_frame", STRING, "",
              "When set, the end effector's pose is this tf frame's origin, looked up in /tf and /tf_static at each "
              "graph's stamp, instead of topics.ee_pose", read_only=True),
    ParamSpec("query.max_graph_age_s", FLOAT, 1.0,
              "A distance query is not valid when the latest graph was computed longer ago than this (a stopped "
              "camera or pipeline)", unit="s", min=0.001, max=3600.0),
    # Output.
    ParamSpec("markers.enabled", BOOL, True, "Publish RViz markers on /scene_graph/markers"),
    ParamSpec("log_throttle_s", FLOAT, 2.0, "Smallest interval between two error logs of one kind (messages that "
              "differ only in their numbers); each kind is logged the first time it happens", unit="s",
              min=0.0, max=3600.0),
)


class Config(Mapping[str, Any]):
    """A complete, validated set of parameter values (read-only mapping from dotted name to value)."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        merged = {name: spec.default for name, spec in SCHEMA.items()}
        for name, value in (values or {}).items():
            merged[name] = _spec(name).validate(value)
        _check_consistency(merged)
        self._values = merged

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def with_overrides(self, overrides: Mapping[str, Any]) -> Config:
        """Return a new config with ``overrides`` validated and applied."""
        return Config({**self._values, **overrides})

    def to_ros_parameters_yaml(self) -> str:
        """The config as a ROS 2 parameter file (``/**: ros__parameters: ...``)."""
        return _dump_yaml({"/**": {"ros__parameters": _parameter_values(self._values)}}, sort_keys=True)

    def sha256(self) -> str:
        """A fingerprint of the values, independent of how any file writes them (JSON, names sorted)."""
        return hashlib.sha256(json.dumps(self._values, sort_keys=True).encode()).hexdigest()

    def legacy_sha256(self) -> str:
        """The fingerprint ``tsg label`` manifests held before 2026-11-28: of :meth:`to_ros_parameters_yaml` as it
        was written then, strings unquoted. Accepted for them, so that their runs still resume."""
        return hashlib.sha256(_dump_yaml({"/**": {"ros__parameters": dict(self._values)}},
                                         sort_keys=True).encode()).hexdigest()


def _spec(name: str) -> ParamSpec:
    try:
        return SCHEMA[name]
    except KeyError:
        if is_ros_builtin(name):
            # rclpy's own parameter: not the schema's, so the parameter file or rcl's arguments carry it.
            # Offline commands (tsg label, tsg eval) take no --ros-args: say who reads it, and where from.
            raise ConfigError(f"{name!r} is rclpy's own parameter, not one of the schema: only the ROS nodes read "
                              f"it, from their parameter file (tsg bringup --config, or --ros-args --params-file) or "
                              f"`--ros-args -p {name}:=VALUE`") from None
        close = difflib.get_close_matches(name, SCHEMA, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown parameter {name!r}{hint}") from None


# A ROS 2 topic name (https://design.ros2.org/articles/topic_and_service_names.html): tokens of alphanumerics and
# underscores, none starting with a digit, separated by single slashes, optionally absolute ('/') or private ('~/');
# no trailing slash. '{}' substitutions are refused: rcl expands only {node} and {ns}, which a config rarely wants.
_TOKEN = r"[A-Za-z_][A-Za-z0-9_]*"
TOPIC_NAME = re.compile(rf"(?:/|~/)?{_TOKEN}(?:/{_TOKEN})*|~")
# Topic parameters an empty value turns off (the node then subscribes no pose on them).
OPTIONAL_TOPICS: tuple[str, ...] = ("topics.ee_pose", "topics.goal_pose")
# Parameters naming a tf frame id: tf2 refuses a leading '/' (a ROS 1 habit), which only shows once a lookup fails.
FRAME_PARAMETERS: tuple[str, ...] = ("graph_frame", "reward.ee_tf_frame")


def topic_parameters() -> list[str]:
    """The schema's parameters holding a topic name: the string topics.* entries that are not a choice (the
    transports)."""
    return [name for name, spec in SCHEMA.items()
            if name.startswith("topics.") and spec.type == STRING and not spec.choices]


def check_topic_name(name: str, value: str) -> None:
    """:class:`ConfigError` unless ``value`` is a valid ROS 2 topic name (:data:`TOPIC_NAME`)."""
    if TOPIC_NAME.fullmatch(value) is None:
        why = ("is empty" if not value else
               "has a repeated '/'" if "//" in value else
               "ends with '/'" if value.endswith("/") else
               "has a token starting with a digit" if re.search(r"(?:^|/)[0-9]", value) else
               "has a character other than letters, digits, '_', '/' and a leading '~'")
        raise ConfigError(f"{name}: {value!r} is not a ROS 2 topic name: it {why} (e.g. '/camera/color/image_raw')")


def check_frame_id(name: str, value: str) -> None:
    """:class:`ConfigError` when ``value`` cannot be a tf2 frame id: one starting with '/' (tf2 refuses it)."""
    if value.startswith("/"):
        raise ConfigError(f"{name}: {value!r} starts with '/', which tf2 refuses in a frame id: write "
                          f"{value.lstrip('/')!r}")


def _unsubscribed_topics(values: Mapping[str, Any]) -> set[str]:
    """Topic parameters the node does not subscribe to with these values, which may then be empty: the pose topics
    (empty: off), the depth topic without sensor depth, the instance topic without the 'sim' detector."""
    unused = set(OPTIONAL_TOPICS)
    if values["depth.backend"] != "sensor":
        unused.add("topics.depth")
    if values["detector.backend"] != "sim":
        unused.add("topics.instances")
    return unused


def _check_consistency(values: Mapping[str, Any]) -> None:
    """Checks that involve more than one parameter, and the names (topics, frames) a single regex checks."""
    may_be_empty = _unsubscribed_topics(values)
    for name in topic_parameters():
        if values[name] or name not in may_be_empty:
            check_topic_name(name, values[name])
    for name in FRAME_PARAMETERS:
        check_frame_id(name, values[name])
    if not values["graph_frame"]:
        raise ConfigError("graph_frame is empty: name the frame the graph is expressed in (e.g. 'world')")
    if values["depth.min_m"] >= values["depth.max_m"]:
        raise ConfigError(
            f"depth.min_m ({values['depth.min_m']} m) must be below depth.max_m ({values['depth.max_m']} m)"
        )
    band_low, band_high = values["trust.vlm_query_band"]
    if band_low > band_high:
        # An inverted band selects no claim at all: the VLM would silently never be asked.
        raise ConfigError(f"trust.vlm_query_band: low {band_low} is above high {band_high} (expected [low, high])")
    for name in ("topics.color", "topics.depth"):
        last = values[name].rstrip("/").rpartition("/")[2]
        if last in ("compressed", "compressedDepth"):
            # The node appends the transport's name itself: it would subscribe .../compressed/compressed, or read a
            # CompressedImage topic as raw Images.
            raise ConfigError(f"{name} {values[name]!r} ends in an image transport's name: give the base topic and "
                              f"set {name}_transport to {last!r}")
    colour_image = values["topics.color"].rstrip("/").rpartition("/")[2]
    if colour_image.startswith("image_rect") and not values["topics.rectified"]:
        # Read as a raw image, a rectified one would be undistorted a second time (image_pipeline's naming).
        raise ConfigError(f"topics.color {values['topics.color']!r} is a rectified image but topics.rectified is "
                          "false (raw images): set topics.rectified to true")
    norm = math.sqrt(sum(q * q for q in values["extrinsic.rotation_xyzw"]))
    if abs(norm - 1.0) > 1e-3:
        raise ConfigError(f"extrinsic.rotation_xyzw: quaternion norm is {norm:.4f}, expected 1")
    if values["detector.backend"] == "grounding_dino" and not [p for p in values["detector.vocabulary"] if p.strip()]:
        raise ConfigError("detector.vocabulary is empty: the 'grounding_dino' detector needs at least one phrase")
    vocabulary = {phrase.strip() for phrase in values["detector.vocabulary"] if phrase.strip()}
    for entry in values["detector.label_map"]:
        phrase, sep, label = entry.partition(":")
        if not sep or not phrase.strip() or not label.strip():
            raise ConfigError(f"detector.label_map: {entry!r} is not of the form 'phrase:label'")
        if phrase.strip() not in vocabulary:
            # It would rename nothing: the detector matches its phrases exactly (a case difference included).
            key = " ".join(phrase.lower().split())
            near = [known for known in vocabulary if " ".join(known.lower().split()) == key]
            raise ConfigError(f"detector.label_map: {entry!r} renames {phrase.strip()!r}, which is not in "
                              f"detector.vocabulary" + (f" (it has {near[0]!r})" if near else ""))
    if values["detector.half_precision"] and values["detector.device"] != "cuda":
        raise ConfigError("detector.half_precision needs detector.device 'cuda' (float16 is slow or unsupported "
                          f"on {values['detector.device']!r})")
    sim_ids: dict[int, str] = {}
    for entry in values["detector.sim_labels"]:
        instance_id, sep, label = entry.partition(":")
        if not sep or not instance_id.strip().isdecimal() or not label.strip():
            raise ConfigError(f"detector.sim_labels: {entry!r} is not of the form 'id:label'")
        number = int(instance_id)
        if not 1 <= number <= 65535:  # 0 is the background of the 16-bit instance image
            raise ConfigError(f"detector.sim_labels: {entry!r}: the id must be in 1..65535 (0 is the background)")
        if number in sim_ids:
            raise ConfigError(f"detector.sim_labels: {sim_ids[number]!r} and {entry!r} give id {number} two labels")
        sim_ids[number] = entry
    if "goal" in (name.strip().lower() for name in values["reward.ee_names"]):
        raise ConfigError("reward.ee_names: 'goal' names the goal (topics.goal_pose); it cannot also name the end "
                          "effector")
    from trusted_scene_graph.reward import RewardError, pairs_from_config  # here: reward.pairs reads SCHEMA

    try:
        pairs_from_config(values)
    except RewardError as exc:
        raise ConfigError(f"reward.pairs: {exc}") from exc


def render_parameter_file(config: Config | None = None, ros_parameters: Mapping[str, Any] | None = None) -> str:
    """A ROS 2 parameter file of ``config`` (default: the schema defaults), every entry commented from the schema,
    followed by ``ros_parameters``: rclpy's own parameters (``use_sim_time``...) by dotted name, if any."""
    config = config if config is not None else Config()
    lines = ["# trusted_scene_graph parameters (generated from trusted_scene_graph/config/schema.py: tsg config).",
             "# Every node reads the same file; units and ranges are in the comments and in `ros2 param describe`.",
             "/**:", "  ros__parameters:"]
    for name, spec in SCHEMA.items():
        limits = []
        if spec.min is not None or spec.max is not None:
            limits.append(f"range [{spec.min}, {spec.max}]")
        if spec.choices:
            limits.append(f"one of {list(spec.choices)}")
        if spec.read_only:
            limits.append("read-only: change needs a restart")
        suffix = f" ({'; '.join(limits)})" if limits else ""
        lines.append(f"    # {spec.full_description}{suffix}")
        value = _dump_yaml(_parameter_values(config[name]), default_flow_style=True).strip().removesuffix("...").strip()
        lines.append(f"    {name}: {value}")
    if ros_parameters:
        lines.append("    # rclpy's own parameters (not the schema's, checked by rclpy).")
        # Nested, not dotted: a QoS override's name holds its topic (qos_overrides./tf.subscription.depth).
        nested: dict[str, Any] = {}
        for name, value in ros_parameters.items():
            *parents, leaf = name.split(".")
            tree = nested
            for parent in parents:
                tree = tree.setdefault(parent, {})
            tree[leaf] = value
        lines += [f"    {line}" for line in _dump_yaml(_parameter_values(nested), sort_keys=True).splitlines()]
    return "\n".join(lines) + "\n"


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to dotted names, as ROS 2 does with parameter files."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


# The scene-graph node (config.nodes.NODES) as the launch file and `tsg bringup` start it: in the root namespace.
NODE_NAME = "scene_graph"
NODE_FQN = f"/{NODE_NAME}"

# Parameters rclpy declares on every node itself (the sim clock, the type description service) and, for a publisher
# or subscription created with QoS overriding options, the QoS overrides: not the schema's, yet a parameter file may
# set them for our node, and `ros2 param set` may change use_sim_time. They are passed to the node unvalidated (rclpy
# checks them), instead of being refused as unknown.
ROS_BUILTIN_PARAMETERS: tuple[str, ...] = ("use_sim_time", "start_type_description_service")
ROS_BUILTIN_PREFIXES: tuple[str, ...] = ("qos_overrides.",)
# The types of a ROS parameter's value (exactly: a bool is not an int there), alone or in a list of one type.
_ROS_VALUE_TYPES = (bool, int, float, str)


def is_ros_builtin(name: str) -> bool:
    """Whether ``name`` is one of rclpy's own parameters (:data:`ROS_BUILTIN_PARAMETERS`, ``qos_overrides.*``)."""
    return name in ROS_BUILTIN_PARAMETERS or name.startswith(ROS_BUILTIN_PREFIXES)


#: How close (difflib's ratio) an unknown name without a schema group must be to a known one to be taken for a typo.
TYPO_CUTOFF = 0.85
_SCHEMA_GROUPS = frozenset(known.split(".")[0] for known in SCHEMA if "." in known)
_KNOWN_NAMES = (*SCHEMA, *ROS_BUILTIN_PARAMETERS)


def looks_meant_for_the_node(name: str) -> bool:
    """Whether a parameter name neither the schema nor rclpy knows looks meant for our node all the same (a typo to
    refuse): a name in one of the schema's groups (``trust.anything``) or close to one of its names
    (``trust.treshold``). Other names (``robot_description``, another node's settings in a shared ``/**`` section)
    are for other nodes."""
    # 0.85, not difflib's 0.6: at 0.6 other nodes' common names (map_frame, base_frame, transform_tolerance) look
    # like ours (graph_frame, tf_max_age_s) and a shared /** file that rcl accepts would be refused.
    return name.split(".")[0] in _SCHEMA_GROUPS or bool(difflib.get_close_matches(name, _KNOWN_NAMES, n=1,
                                                                                   cutoff=TYPO_CUTOFF))


def _sections(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any, list[str]]]:
    """(node name, its ``ros__parameters``, the keys beside them that are no node section) of every node section,
    top-level (``/ns/node:``) or nested under its namespaces (``ns: node:``), also beside another node's
    ``ros__parameters`` (``/**: {ros__parameters: ..., scene_graph: {ros__parameters: ...}}``), as rcl reads a
    parameter file."""
    for key, value in tree.items():
        if isinstance(value, Mapping):
            name = f"{prefix}/{str(key).strip('/')}"
            if "ros__parameters" in value:
                others = {k: v for k, v in value.items() if k != "ros__parameters"}
                nested = {k: v for k, v in others.items() if _holds_section(v)}
                yield name, value["ros__parameters"], [str(k) for k in others if k not in nested]
                yield from _sections(nested, name)
            else:
                yield from _sections(value, name)


def _outside_sections(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The entries of a sectioned parameter document that are in no node section: a value at namespace level, or a
    mapping with no ``ros__parameters`` anywhere in it (a misspelled section), by their dotted path."""
    stray = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and "ros__parameters" in value:
            continue  # a section: what stands beside its ros__parameters is checked with it
        if isinstance(value, Mapping) and _holds_section(value):
            stray += _outside_sections(value, f"{path}.")
        else:
            stray.append(path)
    return stray


def _holds_section(value: Any) -> bool:
    """Whether ``value`` is a node section or namespace of them: a mapping with ``ros__parameters`` somewhere in it."""
    return isinstance(value, Mapping) and ("ros__parameters" in value or any(map(_holds_section, value.values())))


def _applies_to(section_name: str, node_fqn: str) -> bool:
    """Whether a parameter file's section is for the node ``node_fqn``, by rcl's rules (rclcpp and rclpy alike): a
    name without a leading slash is read from the root, ``/*`` stands for one name token, ``/**`` for any number."""
    pattern = re.escape(section_name).replace(r"/\*\*", r"(/\w+)*").replace(r"/\*", r"/\w+")
    return re.fullmatch(pattern, node_fqn) is not None


def node_parameters(document: Mapping[str, Any], node_fqn: str = NODE_FQN) -> dict[str, Any]:
    """The parameters a parameter document gives the node ``node_fqn``, flattened to dotted names: the
    ``ros__parameters`` of each section for that node (``/**``, ``scene_graph``, ``/ns/scene_graph``...) merged in
    file order, as rcl does. Sections for other nodes (a camera's, in a file shared by a whole launch) are ignored,
    and so are the names of a wildcard section (``/**``) that are not for this node (:func:`looks_meant_for_the_node`:
    ``robot_description``). A document without any ``ros__parameters`` section holds the parameters themselves (a
    plain or nested mapping).

    A document whose sections are all for other nodes is a :class:`ConfigError`: rcl would start the node with its
    defaults, but the document was given as our config (tsg eval, label, bringup), so a misnamed section (the
    executable's name, ``scene_graph_node``) would silently run on defaults."""
    if not isinstance(document, Mapping):
        raise ConfigError(f"expected a mapping at the top of the config, got {type(document).__name__}")
    sections = list(_sections(document))
    if not sections:
        return flatten(document)
    if stray := _outside_sections(document):
        # rcl refuses such a file when the node starts ("Cannot have a value before ros__parameters"); read here as
        # our config (and by the launch file, which hands the node its own file) they would be dropped unnoticed.
        raise ConfigError(f"{', '.join(stray[:5])}{' ...' if len(stray) > 5 else ''} outside every node section: "
                          "indent parameters under a section's ros__parameters (and spell it ros__parameters)")
    if not any(_applies_to(name, node_fqn) for name, _, _ in sections):
        found = ", ".join(dict.fromkeys(name for name, _, _ in sections))
        raise ConfigError(f"ros__parameters for {found} only, none for {node_fqn}: name the section "
                          f"{node_fqn.lstrip('/')} or /**")
    values: dict[str, Any] = {}
    for name, section, beside in sections:
        if not _applies_to(name, node_fqn):
            continue
        if beside:
            # Parameters indented one level too little, beside ros__parameters instead of under it: rcl refuses the
            # file when the node starts ("Cannot have a value before ros__parameters"), but read here as our config
            # (tsg eval, tsg label) they would be dropped, and the run would use the defaults without a word.
            raise ConfigError(f"{name}: {', '.join(beside[:5])}{' ...' if len(beside) > 5 else ''} beside "
                              "ros__parameters, not under it: indent the parameters under ros__parameters")
        if section is None:  # an empty "ros__parameters:", no override
            continue
        if not isinstance(section, Mapping):
            raise ConfigError(f"{name}: ros__parameters must be a mapping of parameters, got {type(section).__name__}")
        parameters = flatten(section)
        if "*" in name:  # a section for every node (/**) holds other nodes' parameters too: those are left alone
            parameters = {key: value for key, value in parameters.items()
                          if key in SCHEMA or is_ros_builtin(key) or looks_meant_for_the_node(key)}
        values.update(parameters)
    return values


def load_config(document: Mapping[str, Any], node_fqn: str = NODE_FQN) -> Config:
    """Validate the parameters a parsed parameter document (ROS 2 layout or a plain mapping) gives the node
    ``node_fqn`` into a :class:`Config`. rclpy's own parameters (``use_sim_time``...) are not part of it: see
    :func:`ros_builtin_parameters`; any other name outside the schema is refused."""
    return _split_parameters(node_parameters(document, node_fqn))[0]


def _split_parameters(values: Mapping[str, Any]) -> tuple[Config, dict[str, Any]]:
    """A node's parameters (:func:`node_parameters`) as (the schema's, validated; rclpy's own, checked)."""
    config = Config({name: value for name, value in values.items() if not is_ros_builtin(name)})
    return config, _checked_builtins({name: value for name, value in values.items() if is_ros_builtin(name)})


def ros_builtin_parameters(document: Mapping[str, Any], node_fqn: str = NODE_FQN) -> dict[str, Any]:
    """rclpy's own parameters that a parsed parameter document gives the node ``node_fqn`` (:func:`is_ros_builtin`).

    Only their type is checked where rclpy's is fixed (a bool), so that a launch fails before starting the node, and
    that each is a value a ROS parameter can hold (bool, int, float, str or a list of one of these), as rcl refuses a
    list of mixed types and a null, binary or nested value has no ROS type."""
    return _checked_builtins({name: value for name, value in node_parameters(document, node_fqn).items()
                              if is_ros_builtin(name)})


def _checked_builtins(builtins: dict[str, Any]) -> dict[str, Any]:
    """``builtins`` (rclpy's own parameters), once each has a value rclpy can take (see
    :func:`ros_builtin_parameters`)."""
    for name in ROS_BUILTIN_PARAMETERS:
        if name in builtins and not isinstance(builtins[name], bool):
            raise ConfigError(f"{name}: expected bool, got {type(builtins[name]).__name__} {builtins[name]!r}")
    for name, value in builtins.items():
        items = value if isinstance(value, list) else [value]
        if not all(type(item) in _ROS_VALUE_TYPES for item in items) or len({type(item) for item in items}) > 1:
            raise ConfigError(f"{name}: {value!r} is not a ROS parameter value (a bool, int, float or string, or a "
                              "list of one of these types)")
    return builtins


class _RosYamlLoader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-2`` (no dot) as a string; ROS 2's parameter parser reads it as a float, so do we. It reads
    ``2001-12-14`` as a date, which ROS 2 has no type for: rcl reads the text as a string, so do we."""


_RosYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.VERBOSE),
    list("-+0123456789."),
)
# add_implicit_resolver gave the class its own copy of the resolver lists (SafeLoader's are left as they are).
_RosYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _RosYamlLoader.yaml_implicit_resolvers.items()}


class _RosYamlDumper(yaml.SafeDumper):
    """Writes what :class:`_RosYamlLoader` (and rcl) read back as written: a dumper quotes a string its own resolvers
    would read as another type, so it is given the loader's (a string ``2e5`` is quoted, a float to them)."""


_RosYamlDumper.yaml_implicit_resolvers = _RosYamlLoader.yaml_implicit_resolvers


class _ParameterString(str):
    """A string parameter value, always written quoted: rcl reads more plain scalars as other types than YAML does
    (``y``, ``n`` as bools; whatever ``strtod`` takes, ``inf``, ``nan``, ``0x1p3``, as doubles), and a quoted one
    always as a string."""


_RosYamlDumper.add_representer(
    _ParameterString, lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", str(text), style="'"))


def _parameter_values(value: Any) -> Any:
    """``value`` (a parameter value, or a mapping of them) with every string value marked to be written quoted;
    mapping keys (parameter names) are left plain."""
    if isinstance(value, str):
        return _ParameterString(value)
    if isinstance(value, Mapping):
        return {key: _parameter_values(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_parameter_values(item) for item in value]
    return value


def _dump_yaml(data: Any, **options: Any) -> str:
    """``data`` as a parameter file's YAML: strings quoted as :class:`_RosYamlDumper` decides, and no line folded
    (a folded flow value, a long path with spaces, is no valid YAML in the block it is written into)."""
    return yaml.dump(data, Dumper=_RosYamlDumper, width=_NO_FOLD, **options)


_NO_FOLD = 1 << 30  # characters: no line is folded


def parse_value(text: str) -> Any:
    """One value written on a command line (``--set name=VALUE``, a pair's ``setting=VALUE``), read as a parameter
    file reads it (``5e-2`` is a float); :class:`ConfigError` when it is not YAML."""
    try:
        return yaml.load(text, Loader=_RosYamlLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{text!r} is not a YAML value: {exc}") from exc


def load_parameter_file(path: str | Path, node_fqn: str = NODE_FQN) -> tuple[Config, dict[str, Any]]:
    """Read and validate a YAML parameter file for the node ``node_fqn``: (its :class:`Config`, the rclpy built-in
    parameters it sets, see :func:`ros_builtin_parameters`). Errors name the file."""
    path = Path(path)
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_RosYamlLoader)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from exc
    try:
        return _split_parameters(node_parameters(document or {}, node_fqn))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def load_config_file(path: str | Path, node_fqn: str = NODE_FQN) -> Config:
    """Read and validate a YAML config file for the node ``node_fqn``; errors name the file."""
    return load_parameter_file(path, node_fqn)[0]
