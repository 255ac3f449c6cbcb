"""What a jump back in time is, for every buffer that keeps stamped messages (standard library only).

A message stamped more than :data:`JUMP_BACK_NS` before the newest one of its own stream (a tf frame's history, a
pose topic, a camera topic) means the clock went back (a simulator reset, a bag looped or replayed again), not a late
message: the buffer restarts from it, as tf2 clears its buffer on a jump back in time. Within one stream a late
message (best-effort transport reordering) is milliseconds behind the newest, not a second; a whole stream that lags
the others (a slow segmenter) is still in order, which is why each stream is judged against itself.
"""

from __future__ import annotations

JUMP_BACK_NS = 1_000_000_000


def jumped_back(stamp_ns: int, newest_ns: int | None) -> bool:
    """Whether a message stamped ``stamp_ns`` starts a new timeline after one whose newest stamp is ``newest_ns``
    (None: nothing held yet)."""
    return newest_ns is not None and stamp_ns < newest_ns - JUMP_BACK_NS


def follow_newest(stamp_ns: int, newest_ns: int | None) -> tuple[int, bool]:
    """A stream's newest stamp once a message stamped ``stamp_ns`` arrived after ``newest_ns``, and whether that
    message jumped back (it then starts the new timeline, and is its newest)."""
    if jumped_back(stamp_ns, newest_ns):
        return stamp_ns, True
    return (stamp_ns if newest_ns is None else max(stamp_ns, newest_ns)), False


class EpisodeStarts:
    """Which frame starts a new episode, from the colour images' stamps and reset requests (the node's rule).

    A frame starts one when the clock jumped back (:func:`jumped_back` against the previous frame), or when it is the
    first frame stamped after the newest colour image received when :meth:`request_reset` was called: frames already
    captured when an RL loop resets its environment belong to the episode that ended, whichever frame perception
    takes next. A jump serves a pending request (it is that reset). Not thread-safe: the node calls it under its
    synchroniser's lock.
    """

    def __init__(self) -> None:
        self.newest_colour_ns: int | None = None
        self.last_frame_ns: int | None = None
        self.reset_after_ns: int | None = None  # a pending request: frames stamped after this start the episode

    def colour(self, stamp_ns: int) -> None:
        """A colour image arrived."""
        self.newest_colour_ns, _ = follow_newest(stamp_ns, self.newest_colour_ns)

    def request_reset(self) -> None:
        """The next frame stamped after every colour image received so far starts a new episode."""
        self.reset_after_ns = self.newest_colour_ns if self.newest_colour_ns is not None else -1

    def frame(self, stamp_ns: int) -> bool:
        """Whether the frame stamped ``stamp_ns``, about to be processed, starts a new episode."""
        jumped = jumped_back(stamp_ns, self.last_frame_ns)
        self.last_frame_ns = stamp_ns
        if jumped or (self.reset_after_ns is not None and stamp_ns > self.reset_after_ns):
            self.reset_after_ns = None
            return True
        return False
