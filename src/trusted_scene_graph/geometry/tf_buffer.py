"""A minimal tf buffer over ``tf2_msgs/TFMessage`` contents, for offline evaluation and the node's ``tf`` extrinsic."""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from trusted_scene_graph.clock import JUMP_BACK_NS
from trusted_scene_graph.errors import TsgError
from trusted_scene_graph.geometry.camera import GeometryError
from trusted_scene_graph.geometry.transform import RigidTransform
from trusted_scene_graph.pipeline.messages import stamp_to_ns


@dataclass(frozen=True)
class _Entry:
    stamp_ns: int
    parent: str
    transform: RigidTransform
    static: bool


@dataclass(frozen=True)
class TfLookup:
    """A lookup's result: the transform, or None with the reason it is missing."""

    transform: RigidTransform | None
    reason: str = ""


def _product(links: list[_Entry]) -> np.ndarray:
    """The matrix mapping the first link's child frame into the last link's parent frame."""
    matrix = np.eye(4)
    for link in links:
        matrix = link.transform.matrix @ matrix
    return matrix


class TransformBuffer:
    """Transforms per child frame from tf messages, looked up as of a stamp and chained through the tree.

    Written by hand because tf2_ros is not installable here. It serves "latest transform at or before the stamp"
    lookups without interpolation, which is what offline evaluation and a camera extrinsic need: evaluation scores
    frames a little after reading them, so later transforms (a new episode's camera) are already buffered and the
    stamp matters. Messages are duck-typed (``tf2_msgs/msg/TFMessage`` from rclpy or rosbags).

    As in tf2, the two topics differ: a ``/tf_static`` transform holds until a newer one for the same frame (also
    for images stamped before it, e.g. published after the first image), and a static one stamped earlier than the
    frame's newest starts its history again (a new episode after a clock reset). A ``/tf`` transform holds for at
    most ``max_age_ns`` after its stamp, so a dead publisher makes lookups fail instead of freezing the pose, and
    never for images stamped before it (no extrapolation back in time).
    """

    def __init__(self, max_age_ns: int | None = None) -> None:
        if max_age_ns is not None and max_age_ns <= 0:
            raise TsgError(f"TransformBuffer: max_age_ns must be positive, got {max_age_ns}")
        self.max_age_ns = max_age_ns
        self._history: dict[str, list[_Entry]] = defaultdict(list)
        # (target, source) -> (the entries the last lookup chained, its result); see lookup_explained.
        self._lookups: dict[tuple[str, str], tuple[tuple[_Entry | None, ...], TfLookup]] = {}
        self._refused: dict[str, str] = {}  # child frame -> why its last transform was not buffered

    def add(self, tf_message: Any, static: bool = False) -> None:
        """Buffer every transform of a TFMessage; ``static`` for messages from ``/tf_static``."""
        for stamped in tf_message.transforms:
            t, r = stamped.transform.translation, stamped.transform.rotation
            child = stamped.child_frame_id.lstrip("/")
            try:
                transform = RigidTransform.from_xyzw([t.x, t.y, t.z], [r.x, r.y, r.z, r.w])
            except TsgError as exc:
                # Not a usable transform (tf2 refuses it too); a lookup the frame leaves unconnected names it.
                self._refused[child] = f"the transform of {child!r} from {stamped.header.frame_id!r} was refused: {exc}"
                continue
            self._refused.pop(child, None)
            entry = _Entry(stamp_to_ns(stamped.header.stamp), stamped.header.frame_id.lstrip("/"), transform, static)
            history = self._history[child]
            if self.restarts(child, entry.stamp_ns, static):
                history.clear()  # the clock went back: the old timeline's transforms no longer apply
            # insort keeps arrival order among equal stamps, so a re-published transform wins over the older copy
            bisect.insort_right(history, entry, key=lambda e: e.stamp_ns)

    def restarts(self, child_frame_id: str, stamp_ns: int, static: bool = False) -> bool:
        """Whether a transform of ``child_frame_id`` stamped ``stamp_ns`` would start the frame's history again (the
        clock went back; see the class docstring): callers that must finish with the old transforms first ask
        before :meth:`add`."""
        history = self._history.get(child_frame_id.lstrip("/"))
        return bool(history) and stamp_ns < history[-1].stamp_ns - (0 if static else JUMP_BACK_NS)

    def _at(self, child: str, stamp_ns: int) -> _Entry | str | None:
        """The entry in force for ``child`` at ``stamp_ns``; a reason string when it exists but does not apply;
        None when the frame has no parent in the buffer (a root)."""
        history = self._history.get(child)
        if not history:
            return None
        index = bisect.bisect_right(history, stamp_ns, key=lambda e: e.stamp_ns)
        if index == 0:
            first = history[0]
            if first.static:
                return first
            return (f"the first /tf transform of {child!r} is stamped {(first.stamp_ns - stamp_ns) / 1e9:.3f} s "
                    f"after the image (no extrapolation back in time)")
        entry = history[index - 1]
        age_ns = stamp_ns - entry.stamp_ns
        if not entry.static and self.max_age_ns is not None and age_ns > self.max_age_ns:
            return (f"the newest /tf transform of {child!r} before the image is {age_ns / 1e9:.3f} s old "
                    f"(more than extrinsic.tf_max_age_s = {self.max_age_ns / 1e9:g} s)")
        return entry

    def _links(self, frame: str, stamp_ns: int) -> tuple[list[str], list[_Entry], str]:
        """The frames from ``frame`` up to its root (or as far as the tf applies at ``stamp_ns``), the entry linking
        each to the next, and why the chain stopped early ("" when it reached a root)."""
        frames, links = [frame], []
        for _ in range(64):  # tf trees are shallow; the bound stops a cycle
            link = self._at(frame, stamp_ns)
            if isinstance(link, str):
                return frames, links, link
            if link is None or link.parent in frames:
                break
            frame = link.parent
            frames.append(frame)
            links.append(link)
        return frames, links, ""

    def lookup_explained(self, target_frame: str, source_frame: str, stamp_ns: int) -> TfLookup:
        """``source -> target`` at ``stamp_ns`` (maps source points into the target frame) through the frames'
        lowest common ancestor, as tf2's lookup does; without it, the reason.

        The chain's product is remembered per frame pair together with the entries it was built from: a camera on
        a static mount (or a /tf publisher that has not sent anything newer) finds the same entries frame after
        frame, and then the lookup costs the walk up the tree only, not the matrix products and their checks."""
        target_frame, source_frame = target_frame.lstrip("/"), source_frame.lstrip("/")
        source_frames, source_links, source_stop = self._links(source_frame, stamp_ns)
        target_frames, target_links, target_stop = self._links(target_frame, stamp_ns)
        common = next((frame for frame in target_frames if frame in source_frames), None)
        if common is None:
            stale = "; ".join(reason for reason in (source_stop, target_stop) if reason)
            refused = "; ".join(self._refused[frame] for frame in (*source_frames, *target_frames)
                                if frame in self._refused)
            return TfLookup(None, stale or f"{source_frame!r} and {target_frame!r} are not connected"
                            + (f" ({refused})" if refused else ""))
        source_links = source_links[:source_frames.index(common)]
        target_links = target_links[:target_frames.index(common)]
        used = (*source_links, None, *target_links)  # None separates the two chains
        cached = self._lookups.get((target_frame, source_frame))
        if cached is not None and len(cached[0]) == len(used) and all(
                a is b for a, b in zip(cached[0], used, strict=True)):
            return cached[1]
        try:
            # Each transform was checked when added; chained, finite ones can still overflow (1e308 m twice).
            with np.errstate(over="ignore", invalid="ignore"):
                matrix = np.linalg.inv(_product(target_links)) @ _product(source_links)
            found = TfLookup(RigidTransform.from_matrix(matrix))
        except (GeometryError, np.linalg.LinAlgError) as exc:
            found = TfLookup(None, f"the /tf transforms from {source_frame!r} to {target_frame!r} do not compose to a "
                                   f"rigid transform ({exc})")
        self._lookups[(target_frame, source_frame)] = (used, found)
        return found

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int) -> RigidTransform | None:
        """:meth:`lookup_explained` without the reason: the transform, or None."""
        return self.lookup_explained(target_frame, source_frame, stamp_ns).transform

    def forget_before(self, stamp_ns: int) -> None:
        """Drop entries superseded before ``stamp_ns`` (keeping the latest one at or before it)."""
        for child, history in self._history.items():
            self._forget_child_before(child, history, stamp_ns)

    def keep_recent(self, cache_ns: int) -> None:
        """Bounded memory for a live buffer: drop each frame's entries superseded more than ``cache_ns`` before that
        frame's own newest entry, as tf2's cache length does. Per frame, not against the newest stamp of all: one
        frame far ahead of the others (left from before a clock reset, or a publisher stamping wall-clock time beside
        sim time) would cut every other frame's history to its last entry, and lookups at slightly older image stamps
        would fail."""
        for child, history in self._history.items():
            if history:
                self._forget_child_before(child, history, history[-1].stamp_ns - cache_ns)

    def _forget_child_before(self, child: str, history: list[_Entry], stamp_ns: int) -> None:
        index = bisect.bisect_right(history, stamp_ns, key=lambda e: e.stamp_ns)
        if index > 1:
            self._history[child] = history[index - 1:]


def express_in(tf: TransformBuffer | None, target_frame: str, frame_id: str, position_m: Any,
               stamp_ns: int) -> tuple[str, np.ndarray]:
    """A point stamped in ``frame_id`` (a pose's position), in ``target_frame`` when ``tf`` holds that transform at
    ``stamp_ns`` (a frame_id without its leading '/'; an empty one is taken as ``target_frame``); else as given, with
    its own frame, for the caller to refuse or explain. What the node, ``tsg eval`` and ``tsg label`` do with an
    end-effector or goal pose in the robot's base frame."""
    position = np.asarray(position_m, dtype=np.float64)
    frame_id = frame_id.lstrip("/")
    target_frame = target_frame.lstrip("/")
    if not frame_id or frame_id == target_frame:
        return target_frame, position
    transform = tf.lookup(target_frame, frame_id, stamp_ns) if tf is not None else None
    if transform is None:
        return frame_id, position
    return target_frame, transform.apply(position[None, :])[0]
