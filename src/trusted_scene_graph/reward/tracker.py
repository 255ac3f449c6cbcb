"""Per-frame rewards of the configured pairs, with the state a reward needs across frames of one episode.

For each pair and graph (:meth:`RewardTracker.update`):

1. Resolve both sides (:class:`~.sides.SideResolver`). When a label matches several objects, the object the pair
   used in the previous frame is kept while it is still in the graph, so a reward does not jump between two cubes;
   otherwise the highest detection score wins (ties: the lowest id). The sample names the ids it used.
2. Measure the distance (``distance_mode``) and its trust (:func:`~.sides.pair_trust`).
3. Valid when both sides resolved to different things, the trust is at least ``min_trust`` and each perceived side
   has at least ``min_depth_valid_fraction`` of its pixels with valid depth. Otherwise the sample says why.
4. The reward is shaped from the median of the valid distances among the pair's last ``smoothing_frames`` frames
   (an unusable frame takes its place in that window, so a gap ages old distances out instead of carrying them
   over); ``progress`` divides by the episode's first valid, smoothed distance. The window holds distances between
   the same two things only: when a side resolves to another object (the previous one left the graph) or changes
   source (perceived gripper to kinematic pose), the window starts again, so a median never mixes two objects. The
   ``progress`` baseline stays the episode's.
5. An invalid frame holds the last valid sample (distance, reward and trust; ``held``, ``age_s`` says how old) while
   that is at most ``hold_last_valid_s`` older than the graph (and not newer: a frame stamped before the last valid
   one belongs to another timeline): a held sample counts as valid, as its value was. After that it is
   ``valid=False`` with NaN reward and distance.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from trusted_scene_graph import reward
from trusted_scene_graph.graph.model import SceneGraph
from trusted_scene_graph.reward.pairs import RewardPair
from trusted_scene_graph.reward.shaping import shape_reward
from trusted_scene_graph.reward.sides import (
    PERCEPTION,
    Endpoint,
    PoseHistory,
    SideResolver,
    distance_m,
    pair_trust,
    same_thing,
)


def no_graph_reason(why: object) -> str:
    """The message of a frame's rewards when the frame gives no graph (its images were refused), the live node's and
    the labellers' alike: the labels are what the node would have published."""
    return f"no scene graph for this frame: {why}"

@dataclass(frozen=True)
class RewardSample:
    """One pair's reward for one graph."""

    pair: str  # "subject:object" as configured
    subject: str
    object: str
    stamp_ns: int  # the graph's (the colour image's) stamp
    reward: float  # NaN when not valid
    distance_m: float  # the (smoothed) distance the reward was shaped from; NaN when not valid
    valid: bool
    trust: float  # of this frame's measurement (0 when a side did not resolve)
    held: bool = False  # reward and distance are the last valid ones, this frame's were not usable
    age_s: float = 0.0  # how much older than the graph the distance is (0 unless held)
    subject_id: int = 0  # object ids used (0: a robot frame or unresolved)
    object_id: int = 0
    subject_source: str = ""  # "perception" or "kinematics" ("" when unresolved)
    object_source: str = ""
    message: str = ""  # why not valid, or why held; empty for a fresh valid sample


@dataclass
class _PairState:
    recent_m: deque = field(default_factory=deque)
    first_distance_m: float | None = None
    last_valid: RewardSample | None = None
    subject_id: int | None = None
    object_id: int | None = None
    measured: tuple | None = None  # (source, id) of both sides of the distances in recent_m


class RewardTracker:
    """Rewards of ``pairs`` frame after frame; :meth:`start_episode` resets what an episode accumulates."""

    def __init__(self, pairs: Sequence[RewardPair], resolver: SideResolver) -> None:
        if not pairs:
            raise reward.RewardError("no reward pairs configured (reward.pairs or --pair)")
        self.pairs = list(pairs)
        self.resolver = resolver
        self.start_episode()

    def start_episode(self) -> None:
        """Forget smoothing, held values, the progress baseline and the objects chosen (a new scene)."""
        self._states = [_PairState(recent_m=deque(maxlen=p.smoothing_frames)) for p in self.pairs]

    @property
    def labels_needed(self) -> frozenset[str] | None:
        """The object labels the pairs can resolve to (:meth:`SideResolver.labels_needed`): a labeller lifts only
        these; None: every object."""
        return self.resolver.labels_needed(self._names())

    def labels_needed_at(self, stamp_ns: int, graph_frame_id: str,
                         histories: Mapping[str, PoseHistory] | None = None) -> frozenset[str] | None:
        """:attr:`labels_needed` for a graph stamped ``stamp_ns``, less the fallback labels of the robot frames
        whose pose will answer then (:meth:`SideResolver.posed_frames`, with ``histories`` as given there): with
        the end effector's kinematic pose at hand, the gripper need not be perceived."""
        return self.resolver.labels_needed(self._names(),
                                           self.resolver.posed_frames(stamp_ns, graph_frame_id, histories))

    def _names(self) -> list[str]:
        return [name for pair in self.pairs for name in (pair.subject, pair.object)]

    def update(self, graph: SceneGraph) -> list[RewardSample]:
        return [self._update_pair(pair, state, graph) for pair, state in zip(self.pairs, self._states, strict=True)]

    def skip(self, stamp_ns: int, reason: str, *, in_window: bool = True) -> list[RewardSample]:
        """The samples of a frame that produced no graph (bad image, no camera pose): invalid with ``reason``, or
        held, like any frame whose distance is not usable. ``in_window=False`` for a frame the live node never sees
        (a colour image whose frame never completed, which only a labeller writes a row for): it does not take a
        place in the smoothing window, so smoothing spans the same frames live and offline."""
        return [self._invalid(pair, state, stamp_ns, {"pair": pair.name, "subject": pair.subject,
                                                      "object": pair.object, "stamp_ns": stamp_ns}, reason, 0.0,
                              in_window)
                for pair, state in zip(self.pairs, self._states, strict=True)]

    def _update_pair(self, pair: RewardPair, state: _PairState, graph: SceneGraph) -> RewardSample:
        base = {"pair": pair.name, "subject": pair.subject, "object": pair.object, "stamp_ns": graph.stamp_ns}
        try:
            a = self.resolver.resolve(graph, pair.subject, state.subject_id)
            b = self.resolver.resolve(graph, pair.object, state.object_id)
        except reward.RewardError as exc:
            return self._invalid(pair, state, graph.stamp_ns, base, str(exc), trust=0.0)
        ids = {"subject_id": a.id, "object_id": b.id, "subject_source": a.source, "object_source": b.source}
        # Each perceived side's object is remembered for the next frame (the rule in the module docstring), also
        # when the other side is a robot frame and when this frame turns out invalid.
        if a.source == PERCEPTION:
            state.subject_id = a.id
        if b.source == PERCEPTION:
            state.object_id = b.id
        measured = ((a.source, a.id), (b.source, b.id))
        if state.measured is not None and measured != state.measured:
            state.recent_m.clear()  # the window's distances are to another object: not to be mixed with this one's
        state.measured = measured
        trust = pair_trust(a, b)
        problem = _problem(pair, a, b, trust)
        if problem is not None:
            return self._invalid(pair, state, graph.stamp_ns, {**base, **ids}, problem, trust)
        measured_m = distance_m(a, b, pair.distance_mode)
        if not math.isfinite(measured_m):
            # Positions at infinity (a camera_info whose focal length or principal point lifts pixels out of range)
            # give no distance to shape: an invalid sample, not an infinite reward or an error that ends the node.
            return self._invalid(pair, state, graph.stamp_ns, {**base, **ids},
                                 f"the distance between {pair.subject!r} and {pair.object!r} is {measured_m} m, not "
                                 "finite", trust)
        state.recent_m.append(measured_m)
        # statistics.median of the window's usable distances: the same value as numpy's nanmedian (the mean of the
        # middle two for an even count), at a fraction of its cost on a few floats, once per pair and frame.
        smoothed_m = float(statistics.median(d for d in state.recent_m if not math.isnan(d)))
        if state.first_distance_m is None:
            state.first_distance_m = smoothed_m
        value = shape_reward(smoothed_m, pair.shaping, pair.shaping_scale_m, state.first_distance_m)
        sample = RewardSample(**base, **ids, reward=float(value), distance_m=smoothed_m, valid=True, trust=trust)
        state.last_valid = sample
        return sample

    def _invalid(self, pair: RewardPair, state: _PairState, stamp_ns: int, fields: dict, reason: str,
                 trust: float, in_window: bool = True) -> RewardSample:
        if in_window:
            state.recent_m.append(math.nan)  # an unusable frame still takes its place in the smoothing window
        last = state.last_valid
        if last is not None and pair.hold_last_valid_s > 0:  # 0: never hold, also in a frame stamped like the last
            age_s = (stamp_ns - last.stamp_ns) / 1e9
            if 0.0 <= age_s <= pair.hold_last_valid_s:
                return RewardSample(**{**fields, "subject_id": last.subject_id, "object_id": last.object_id,
                                       "subject_source": last.subject_source, "object_source": last.object_source},
                                    reward=last.reward, distance_m=last.distance_m, valid=True, trust=last.trust,
                                    held=True, age_s=age_s, message=f"held {age_s:.3f} s: {reason}")
        return RewardSample(**fields, reward=math.nan, distance_m=math.nan, valid=False, trust=trust,
                            message=reason)


def _problem(pair: RewardPair, a: Endpoint, b: Endpoint, trust: float) -> str | None:
    """Why this frame's distance between ``a`` and ``b`` is not to be used, or None."""
    if same_thing(a, b):
        return f"{pair.subject!r} and {pair.object!r} both resolve to {f'object #{a.id}' if a.id else a.label}"
    for side, name in ((a, pair.subject), (b, pair.object)):
        if not side.depth_valid_fraction >= pair.min_depth_valid_fraction:  # `not >=`: NaN is not enough
            return (f"depth: {side.depth_valid_fraction:.0%} of {name!r} (#{side.id}) has valid depth, below "
                    f"min_depth_valid_fraction {pair.min_depth_valid_fraction:.0%}")
    if not trust >= pair.min_trust:
        return f"trust {trust:.3f} is below min_trust {pair.min_trust:.3f}"
    return None
