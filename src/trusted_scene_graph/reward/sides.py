"""What a reward or a distance query measures between: perceived objects and robot frames, resolved per graph.

A side named in ``reward.ee_names`` ("gripper", "ee", ...) is the end effector. Its pose from the robot's kinematics
(``topics.ee_pose``, or tf with ``reward.ee_tf_frame``) beats perceiving the gripper: kinematics is exact and every
frame has it, a detection can be missed, cut by the image border or fused with the object it grasps. Only when no
pose lies within ``reward.ee_pose_max_age_s`` of the graph's stamp does the perceived object with that label answer.
``goal`` is the task's goal position (``topics.goal_pose``) when one is published, else a perceived label "goal".
Any other name is a label or an id, resolved by :func:`~trusted_scene_graph.graph.query.resolve_object`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from trusted_scene_graph import reward
from trusted_scene_graph.clock import jumped_back
from trusted_scene_graph.geometry.boxes import box_surface_distance_m
from trusted_scene_graph.graph.model import GraphError, SceneGraph, distance_trust
from trusted_scene_graph.graph.query import resolve_object
from trusted_scene_graph.perception.detector import configured_labels

EE_FRAME, GOAL_FRAME = "ee", "goal"
PERCEPTION, KINEMATICS = "perception", "kinematics"
#: Poses kept per robot frame: a few seconds at a controller's rate, enough to pair a pose with a late graph.
POSE_HISTORY_LENGTH = 512
_ZERO_SIZE = np.zeros(3)


@dataclass(frozen=True)
class Endpoint:
    """One resolved side: a perceived object (its 3D box) or a robot frame (a point, size 0)."""

    source: str  # PERCEPTION or KINEMATICS
    id: int  # the object's track id; 0 for a robot frame
    label: str  # the object's label, or the robot frame's name
    centroid_m: np.ndarray
    size_m: np.ndarray
    score: float = 1.0  # detection score (1 for kinematics)
    depth_valid_fraction: float = 1.0  # (1 for kinematics)


def distance_m(a: Endpoint, b: Endpoint, mode: str) -> float:
    """Centroid distance, or (``surface``) the distance between the closest points of the two boxes."""
    if mode == "centroid":
        return float(np.linalg.norm(a.centroid_m - b.centroid_m))
    return box_surface_distance_m(a.centroid_m, a.size_m, b.centroid_m, b.size_m)


def same_thing(a: Endpoint, b: Endpoint) -> bool:
    """Whether two endpoints are one object or one robot frame (a distance between them says nothing)."""
    return a.source == b.source and a.id == b.id and a.label == b.label


def pair_trust(a: Endpoint, b: Endpoint) -> float:
    """As :func:`~trusted_scene_graph.graph.model.distance_trust`: the weaker side's detection score times the
    weaker side's valid-depth fraction, with kinematics counting as certain (uncalibrated)."""
    return distance_trust(a, b)  # an Endpoint has the score and valid-depth fraction an ObjectNode has


def frame_of(name: str, ee_names: Iterable[str]) -> str | None:
    """The robot frame ``name`` stands for: EE_FRAME for an end-effector name, GOAL_FRAME for 'goal', else None."""
    return _frame_of(name, frozenset(n.strip().lower() for n in ee_names) | {EE_FRAME})


def _frame_of(name: str, ee_names_lower: frozenset[str]) -> str | None:
    """:func:`frame_of` with the end-effector names already lower case and holding EE_FRAME."""
    wanted = name.strip().lower()
    return EE_FRAME if wanted in ee_names_lower else GOAL_FRAME if wanted == GOAL_FRAME else None


class PoseHistory:
    """Recent stamped positions of one robot frame, searched for the one nearest a graph's stamp. A pose stamped
    more than :data:`~trusted_scene_graph.clock.JUMP_BACK_NS` before the newest starts the history again."""

    def __init__(self, max_poses: int = POSE_HISTORY_LENGTH) -> None:
        self.max_poses = max_poses
        self._stamps: list[int] = []
        self._poses: list[tuple[str, np.ndarray]] = []

    def __len__(self) -> int:
        return len(self._stamps)

    def add(self, stamp_ns: int, frame_id: str, position_m: Iterable[float]) -> None:
        position = np.asarray(list(position_m), dtype=np.float64)
        if position.shape != (3,) or not np.all(np.isfinite(position)):
            raise reward.RewardError(f"pose position {position.tolist()} is not 3 finite numbers")
        if jumped_back(stamp_ns, self._stamps[-1] if self._stamps else None):
            # The clock went back (a simulator reset): the old timeline's poses must not answer for the new one's
            # stamps, and a full history would evict this pose, its smallest stamp, as soon as it is added.
            self.clear()
        index = bisect.bisect_right(self._stamps, stamp_ns)
        self._stamps.insert(index, int(stamp_ns))
        self._poses.insert(index, (frame_id, position))
        if len(self._stamps) > self.max_poses:
            del self._stamps[0], self._poses[0]

    def clear(self) -> None:
        self._stamps.clear()
        self._poses.clear()

    def nearest(self, stamp_ns: int, max_age_ns: int) -> tuple[str, np.ndarray] | str:
        """(frame_id, position) of the pose nearest ``stamp_ns`` within ``max_age_ns``, or why there is none."""
        if not self._stamps:
            return "none received"
        index = bisect.bisect_left(self._stamps, stamp_ns)
        best = min((i for i in (index - 1, index) if 0 <= i < len(self._stamps)),
                   key=lambda i: abs(self._stamps[i] - stamp_ns))
        gap_ns = abs(self._stamps[best] - stamp_ns)
        if gap_ns > max_age_ns:
            return f"the nearest is {gap_ns / 1e9:.3f} s from the graph's stamp (limit {max_age_ns / 1e9:g} s)"
        return self._poses[best]


class SideResolver:
    """Resolves pair and query names against one graph, with the robot frames' pose histories."""

    def __init__(self, ee_names: Iterable[str] = ("gripper", "ee", "end_effector"), known_labels: Iterable[str] = (),
                 ee_pose_max_age_s: float = 0.2) -> None:
        self.ee_names = frozenset(name.strip().lower() for name in ee_names) | {EE_FRAME}
        self.known_labels = tuple(known_labels)
        self.max_age_ns = int(ee_pose_max_age_s * 1e9)
        self.poses: dict[str, PoseHistory] = {EE_FRAME: PoseHistory(), GOAL_FRAME: PoseHistory()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SideResolver:
        """From the ``reward.*`` settings; the known labels are those the configured detector can produce."""
        return cls(config["reward.ee_names"], configured_labels(config), config["reward.ee_pose_max_age_s"])

    def frame_of(self, name: str) -> str | None:
        """The robot frame ``name`` stands for (EE_FRAME, GOAL_FRAME), or None for a perceived object."""
        return _frame_of(name, self.ee_names)  # self.ee_names is already lower case and holds EE_FRAME

    def labels_needed(self, names: Iterable[str], posed: Iterable[str] = ()) -> frozenset[str] | None:
        """The labels (lower case) of every perceived object that resolving ``names`` can use, so that a labeller
        can leave the other objects out; None when a name is an id (``#3``), which any object can match.

        A robot frame's name can fall back to a perceived object (:meth:`resolve`): the end effector to any
        end-effector label, 'goal' to an object labelled 'goal'; not when its frame is in ``posed`` (the frames
        with a usable pose at the graph's stamp, :meth:`posed_frames`), since the pose then answers."""
        posed = frozenset(posed)
        labels: set[str] = set()
        for name in names:
            wanted = name.strip().lower()
            if wanted.removeprefix("#").isdigit():
                return None
            frame = self.frame_of(name)
            if frame is not None and frame in posed:
                continue
            labels.add(wanted)
            if frame == EE_FRAME:
                labels |= self.ee_names
        return frozenset(labels)

    def posed_frames(self, stamp_ns: int, graph_frame_id: str,
                     histories: Mapping[str, PoseHistory] | None = None) -> frozenset[str]:
        """The robot frames whose pose :meth:`resolve` would use for a graph stamped ``stamp_ns`` in
        ``graph_frame_id``: from the resolver's own pose histories, or from ``histories`` (a labeller's copy of
        what they will hold by the time that graph is resolved)."""
        histories = self.poses if histories is None else histories
        return frozenset(frame for frame, history in histories.items()
                         if not isinstance(self._usable_pose(history, stamp_ns, graph_frame_id), str))

    def _usable_pose(self, history: PoseHistory, stamp_ns: int, graph_frame_id: str) -> np.ndarray | str:
        """The position of the pose nearest ``stamp_ns`` within the age limit and in the graph frame, or why there
        is none."""
        found = history.nearest(stamp_ns, self.max_age_ns)
        if isinstance(found, str):
            return found
        frame_id, position = found
        if frame_id and frame_id != graph_frame_id:
            return f"it is in frame {frame_id!r}, not the graph frame {graph_frame_id!r}"
        return position

    def resolve(self, graph: SceneGraph, name: str, prefer_id: int | None = None) -> Endpoint:
        """The endpoint ``name`` means in ``graph``; :class:`RewardError` says why there is none."""
        frame = self.frame_of(name)
        if frame is None:
            return self._perceived(graph, name, prefer_id)
        pose = self._usable_pose(self.poses[frame], graph.stamp_ns, graph.frame_id)
        if not isinstance(pose, str):
            return Endpoint(KINEMATICS, 0, frame, pose, _ZERO_SIZE)
        pose_problem = pose
        # Without a pose, a perceived object answers: one labelled like the name asked for, or (end effector) like
        # any other end-effector name, so 'ee' finds a detected 'gripper'.
        labels = [name, *sorted(self.ee_names - {name.strip().lower()})] if frame == EE_FRAME else [name]
        errors = []
        for label in labels:
            try:
                return self._perceived(graph, label, prefer_id)
            except reward.RewardError as exc:
                errors.append(exc)
        what = "end-effector" if frame == EE_FRAME else "goal"
        # A label the detector knows but did not see says more than the alias asked for ('ee') being no label.
        absent = [exc for exc in errors if not str(exc).startswith("unknown object")]
        raise reward.RewardError(f"{name!r}: no usable {what} pose ({pose_problem}) and {(absent or errors)[0]}"
                                 ) from None

    def _perceived(self, graph: SceneGraph, name: str, prefer_id: int | None) -> Endpoint:
        try:
            obj = resolve_object(graph, name, prefer_id=prefer_id, known_labels=self.known_labels)
        except GraphError as exc:
            raise reward.RewardError(str(exc)) from None
        return Endpoint(PERCEPTION, obj.id, obj.label, obj.centroid_m, obj.size_m, obj.score,
                        obj.depth_valid_fraction)
