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
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from trusted_scene_graph import reward
from trusted_scene_graph.clock import jumped_back, seconds_to_ns
from trusted_scene_graph.geometry.boxes import box_surface_distance_m
from trusted_scene_graph.graph.model import GraphError, SceneGraph, distance_trust
from trusted_scene_graph.graph.query import object_id, resolve_object
from trusted_scene_graph.perception.detector import configured_labels

EE_FRAME, GOAL_FRAME = "ee", "goal"
PERCEPTION, KINEMATICS = "perception", "kinematics"
#: Seconds of poses kept per robot frame before the newest (or ``reward.ee_pose_max_age_s``, if longer). A frame is
#: rewarded once perception has finished it, seconds after its stamp with a detector on CPU, and the pose at its stamp
#: must still be there: a count would keep half a second of a 1 kHz topic, and the reward would fall back to the
#: perceived gripper unannounced. Over JUMP_BACK_NS, so that a clock restarted by less (which clears no history) does
#: not get the new timeline's poses pruned as old.
POSE_HISTORY_S = 10.0
#: At most this many poses per robot frame, whatever the rate and the span: a 1 kHz topic over a minute (about 15 MB),
#: so memory stays bounded against a faster topic or an ``ee_pose_max_age_s`` of an hour.
MAX_POSES = 60_000
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


def pose_topics(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(robot frame, topic) of the PoseStamped topics the rewards use: the goal, and the end effector unless it comes
    from tf (``reward.ee_tf_frame``); an empty topic name is none. The node subscribes these, and ``tsg label`` reads
    these alone, so that both reward the same poses."""
    topics = [(GOAL_FRAME, config["topics.goal_pose"])]
    if not config["reward.ee_tf_frame"]:
        topics.insert(0, (EE_FRAME, config["topics.ee_pose"]))
    return [(frame, topic) for frame, topic in topics if topic]


def distance_m(a: Endpoint, b: Endpoint, mode: str) -> float:
    """Centroid distance, or (``surface``) the distance between the closest points of the two boxes."""
    if mode == "centroid":
        return float(np.linalg.norm(a.centroid_m - b.centroid_m))
    if mode == "surface":
        return box_surface_distance_m(a.centroid_m, a.size_m, b.centroid_m, b.size_m)
    raise reward.RewardError(f"distance mode {mode!r} is not 'centroid' or 'surface'")


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


class _Pose(NamedTuple):
    frame_id: str
    position_m: np.ndarray
    order: int  # how many poses were added before it
    after_ns: int | None  # the stamp of the pose added just before it (None: the first of its timeline)


class PoseHistory:
    """Recent stamped positions of one robot frame, searched for the one nearest a graph's stamp.

    Poses stamped within ``keep_s`` of the newest are kept (at most ``max_poses``, the earliest stamps dropped
    first). A pose stamped more than :data:`~trusted_scene_graph.clock.JUMP_BACK_NS` before the newest starts the
    history again; one less before is kept, a late message or a clock restarted after a short episode, whose first
    frame then drops the old timeline (:meth:`restart`). Of two poses as near a stamp, the one added last answers: the
    same stamp on two timelines is the newer timeline's.
    """

    def __init__(self, keep_s: float = POSE_HISTORY_S, max_poses: int = MAX_POSES) -> None:
        self.keep_ns = seconds_to_ns(keep_s)
        self.max_poses = max_poses
        self._stamps: list[int] = []  # sorted; equal stamps in the order added
        self._poses: list[_Pose] = []
        self._added = 0
        self._last_added_ns: int | None = None  # of the pose added last, on the timeline held

    def __len__(self) -> int:
        return len(self._stamps)

    def add(self, stamp_ns: int, frame_id: str, position_m: Iterable[float]) -> None:
        position = np.asarray(list(position_m), dtype=np.float64)
        # math.isfinite on the three floats, not np.all(np.isfinite(...)): a pose comes with every frame, several
        # times over, and numpy's reductions cost microseconds each on three values.
        if position.shape != (3,) or not all(map(math.isfinite, position.tolist())):
            raise reward.RewardError(f"pose position {position.tolist()} is not 3 finite numbers")
        if jumped_back(stamp_ns, self._stamps[-1] if self._stamps else None):
            # The clock went back (a simulator reset): the old timeline's poses must not answer for the new one's
            # stamps, and a full history would evict this pose, its smallest stamp, as soon as it is added.
            self.clear()
        index = bisect.bisect_right(self._stamps, stamp_ns)
        self._stamps.insert(index, int(stamp_ns))
        self._poses.insert(index, _Pose(frame_id, position, self._added, self._last_added_ns))
        self._added += 1
        self._last_added_ns = int(stamp_ns)
        kept_from = max(bisect.bisect_left(self._stamps, self._stamps[-1] - self.keep_ns),
                        len(self._stamps) - self.max_poses)
        if kept_from > 0:
            del self._stamps[:kept_from], self._poses[:kept_from]

    def clear(self) -> None:
        """Forget the poses, not the stamp of the last one added: the next pose still tells whether it went back, by
        which :meth:`restart` finds where a new timeline began."""
        self._stamps.clear()
        self._poses.clear()

    def restart(self, previous_frame_ns: int) -> None:
        """A frame started an episode because the clock went back; ``previous_frame_ns`` is where the old timeline
        had been (``EpisodeStart.went_back_from_ns``: the previous frame's stamp, or the colour stream's newest stamp
        before it jumped back, when the frame itself is stamped after the previous frame). Drop the old timeline's
        poses and keep the new one's already added. By order of arrival, not by stamp (the two timelines share
        stamps, and the new one's poses usually come before perception takes its first frame): the new timeline
        starts at the pose that went back (stamped before the pose added just before it) the furthest, to at or
        before ``previous_frame_ns``; it and every pose added after it are kept. The furthest, not the last: a pose
        of the new timeline a few milliseconds out of order goes back too, by milliseconds, where the restart went
        back by about the old episode's length (on a tie, the earlier). A message late by milliseconds at the old
        timeline's end lands after ``previous_frame_ns`` and is no restart. With none gone back, no pose of the new
        timeline has come yet, and all are dropped: kept, the old timeline's would answer for the new one's stamps,
        silently, where the perceived gripper can."""
        went_back = [(pose.after_ns - stamp, -pose.order) for stamp, pose in zip(self._stamps, self._poses, strict=True)
                     if pose.after_ns is not None and stamp < pose.after_ns and stamp <= previous_frame_ns]
        first = -max(went_back)[1] if went_back else self._added
        kept = [(stamp, pose._replace(after_ns=None) if pose.order == first else pose)
                for stamp, pose in zip(self._stamps, self._poses, strict=True) if pose.order >= first]
        self._stamps = [stamp for stamp, _ in kept]
        self._poses = [pose for _, pose in kept]
        if not kept:
            self._last_added_ns = None

    def nearest(self, stamp_ns: int, max_age_ns: int, frame_id: str | None = None) -> tuple[str, np.ndarray] | str:
        """(frame_id, position) of the pose nearest ``stamp_ns`` within ``max_age_ns``, or why there is none. With
        ``frame_id``, of the poses in that frame (or in none: a pose without a frame is taken as in it) only."""
        if not self._stamps:
            return "none received"
        index = bisect.bisect_left(self._stamps, stamp_ns)
        # The last stamped before, and the last added of the first stamp at or after: of equal stamps, the newest.
        candidates = [i for i in (index - 1,) if i >= 0]
        if index < len(self._stamps):
            candidates.append(bisect.bisect_right(self._stamps, self._stamps[index]) - 1)
        best = min(candidates, key=lambda i: self._nearness(i, stamp_ns))
        gap_ns = abs(self._stamps[best] - stamp_ns)
        if gap_ns > max_age_ns:
            return f"the nearest is {gap_ns / 1e9:.3f} s from the graph's stamp (limit {max_age_ns / 1e9:g} s)"
        if frame_id is not None and self._poses[best].frame_id not in ("", frame_id):
            # A pose that could not be put in the frame (the tf not there yet, or too old) must not hide a usable
            # one a little farther: of the poses within the limit in the frame, the nearest, by the same rule.
            within = range(bisect.bisect_left(self._stamps, stamp_ns - max_age_ns),
                           bisect.bisect_right(self._stamps, stamp_ns + max_age_ns))
            usable = [i for i in within if self._poses[i].frame_id in ("", frame_id)]
            if not usable:
                return f"it is in frame {self._poses[best].frame_id!r}, not the graph frame {frame_id!r}"
            best = min(usable, key=lambda i: self._nearness(i, stamp_ns))
        pose = self._poses[best]
        return pose.frame_id, pose.position_m

    def _nearness(self, index: int, stamp_ns: int) -> tuple[int, int]:
        """How near the pose at ``index`` is ``stamp_ns``, as a key to minimise: the gap, then the last added."""
        return abs(self._stamps[index] - stamp_ns), -self._poses[index].order


class SideResolver:
    """Resolves pair and query names against one graph, with the robot frames' pose histories."""

    def __init__(self, ee_names: Iterable[str] = ("gripper", "ee", "end_effector"), known_labels: Iterable[str] = (),
                 ee_pose_max_age_s: float = 0.1, *, reduced_graphs: bool = False) -> None:
        """``reduced_graphs``: the graphs resolved hold only the objects the names need (a labeller lifts
        :meth:`labels_needed` alone), so a name not found is not described by what the graph holds."""
        self.ee_names = frozenset(name.strip().lower() for name in ee_names) | {EE_FRAME}
        self.known_labels = tuple(known_labels)
        self.max_age_ns = seconds_to_ns(ee_pose_max_age_s)
        self.reduced_graphs = reduced_graphs
        self.poses: dict[str, PoseHistory] = self.new_pose_histories()

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, reduced_graphs: bool = False) -> SideResolver:
        """From the ``reward.*`` settings; the known labels are those the configured detector can produce."""
        return cls(config["reward.ee_names"], configured_labels(config), config["reward.ee_pose_max_age_s"],
                   reduced_graphs=reduced_graphs)

    @property
    def pose_keep_s(self) -> float:
        """How long before the newest a pose is kept: :data:`POSE_HISTORY_S`, or as long as a pose stays usable."""
        return max(POSE_HISTORY_S, self.max_age_ns / 1e9)

    def new_pose_histories(self) -> dict[str, PoseHistory]:
        """Empty pose histories of the robot frames, kept :attr:`pose_keep_s` (a labeller's look-ahead copies must
        keep what the resolver's keep)."""
        return {EE_FRAME: PoseHistory(self.pose_keep_s), GOAL_FRAME: PoseHistory(self.pose_keep_s)}

    def take_poses(self, previous: SideResolver) -> None:
        """Use ``previous``'s pose histories (the same objects: a rebuilt resolver keeps the poses received), kept
        :attr:`pose_keep_s`."""
        self.poses = previous.poses
        for history in self.poses.values():
            history.keep_ns = seconds_to_ns(self.pose_keep_s)

    def restart_poses(self, previous_frame_ns: int) -> None:
        """The clock went back at a frame that starts an episode: see :meth:`PoseHistory.restart`."""
        for history in self.poses.values():
            history.restart(previous_frame_ns)

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
            if object_id(wanted) is not None:
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
        found = history.nearest(stamp_ns, self.max_age_ns, graph_frame_id)
        return found if isinstance(found, str) else found[1]

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
        found, errors = [], []
        for label in labels:
            try:
                found.append(self._perceived(graph, label, prefer_id))
            except reward.RewardError as exc:
                errors.append(exc)
        if found:
            # Each label's own pick, then the same rule across them (as if they were one label): the object the
            # pair used keeps it, else the highest score, ties to the lowest id; never the order of the names.
            kept = [endpoint for endpoint in found if endpoint.id == prefer_id]
            return kept[0] if kept else min(found, key=lambda endpoint: (-endpoint.score, endpoint.id))
        what = "end-effector" if frame == EE_FRAME else "goal"
        # A label the detector knows but did not see says more than the alias asked for ('ee') being no label.
        absent = [exc for exc in errors if not str(exc).startswith("unknown object")]
        raise reward.RewardError(f"{name!r}: no usable {what} pose ({pose_problem}) and {(absent or errors)[0]}"
                                 ) from None

    def _perceived(self, graph: SceneGraph, name: str, prefer_id: int | None) -> Endpoint:
        try:
            obj = resolve_object(graph, name, prefer_id=prefer_id, known_labels=self.known_labels,
                                 complete=not self.reduced_graphs)
        except GraphError as exc:
            raise reward.RewardError(str(exc)) from None
        return Endpoint(PERCEPTION, obj.id, obj.label, obj.centroid_m, obj.size_m, obj.score,
                        obj.depth_valid_fraction)
