"""Pair colour, depth, camera_info (and instance) messages by stamp, keeping only the latest complete frame.

``message_filters`` is not installable from PyPI, and its approximate-time policy queues every match; a
perception node that is slower than the camera wants the newest frame only, so this is written here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

from trusted_scene_graph.clock import jumped_back

Item = TypeVar("Item")


class FrameSynchronizer(Generic[Item]):
    """Matches one message per topic whose stamps are within ``tolerance_ns`` of the first topic's stamp.

    The first topic is the anchor (the colour image): a frame's stamp is the anchor's. A completed frame replaces
    any earlier complete frame that was not taken yet (counted in ``dropped``), so memory stays bounded and the
    consumer always gets the newest frame. A message stamped more than
    :data:`~trusted_scene_graph.clock.JUMP_BACK_NS` before the newest one of its own topic (a simulator reset, a
    looped bag) empties the buffers: the old timeline's messages can never pair with the new one's. Per topic, as
    tf2 judges each stream: one input that arrives later than the others (a slow segmenter's instance images carry
    the colour image's stamp) is not a jump, once its first message has been judged (against the newest of any
    topic, so the start-up frames of such an input are lost).
    """

    def __init__(self, topics: Sequence[str], tolerance_ns: int, buffer_size: int = 10) -> None:
        if not topics:
            raise ValueError("at least one topic is needed")
        self.topics = tuple(topics)
        self.tolerance_ns = tolerance_ns
        self._buffers: dict[str, deque[tuple[int, Item]]] = {t: deque(maxlen=buffer_size) for t in self.topics}
        self._latest: tuple[int, dict[str, Item]] | None = None
        self._newest_ns: dict[str, int] = {}  # per topic: the newest stamp added since the last jump back
        self.dropped = 0
        self.completed = 0

    def add(self, topic: str, stamp_ns: int, item: Item) -> bool:
        """Buffer a message; return True when it completed a new frame."""
        # A topic's first message is judged against the newest of any topic: a bag's first colour image of a new
        # timeline must not pair with the old timeline's depth.
        newest_ns = self._newest_ns.get(topic)
        if newest_ns is None:
            newest_ns = max(self._newest_ns.values(), default=None)
        if jumped_back(stamp_ns, newest_ns):
            for buffer in self._buffers.values():
                buffer.clear()
            self._newest_ns.clear()
        self._newest_ns[topic] = max(self._newest_ns.get(topic, stamp_ns), stamp_ns)
        self._buffers[topic].append((stamp_ns, item))
        return self._match()

    def take_latest(self) -> tuple[int, dict[str, Item]] | None:
        """Return and clear the newest complete frame (stamp, {topic: item}), or None."""
        latest, self._latest = self._latest, None
        return latest

    def _match(self) -> bool:
        anchor, *others = self.topics
        # Newest stamp first (of equal stamps, the last to arrive): a buffer is in arrival order, and a late message
        # puts it out of stamp order, where trying the last arrival first would pair an older image.
        for anchor_stamp, anchor_item in sorted(reversed(self._buffers[anchor]), key=lambda entry: entry[0],
                                                reverse=True):
            chosen: dict[str, tuple[int, Item]] = {anchor: (anchor_stamp, anchor_item)}
            for topic in others:
                candidates = [(abs(stamp - anchor_stamp), stamp, item) for stamp, item in self._buffers[topic]
                              if abs(stamp - anchor_stamp) <= self.tolerance_ns]
                if not candidates:
                    break
                _, stamp, item = min(candidates, key=lambda c: c[0])
                chosen[topic] = (stamp, item)
            else:
                if self._latest is not None:
                    self.dropped += 1
                self._latest = (anchor_stamp, {topic: item for topic, (_, item) in chosen.items()})
                self.completed += 1
                # Nothing at or before the used stamps can form a newer frame any more. Filtered, not popped from
                # the left: a buffer is in arrival order, which a late message puts out of stamp order.
                for topic, (stamp, _) in chosen.items():
                    buffer = self._buffers[topic]
                    kept = [entry for entry in buffer if entry[0] > stamp]
                    buffer.clear()
                    buffer.extend(kept)
                return True
        return False
