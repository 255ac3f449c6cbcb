"""What a jump back in time is, for every buffer that keeps stamped messages (standard library only).

A message stamped more than :data:`JUMP_BACK_NS` before the newest one of its own stream (a tf frame's history, a
pose topic, a camera topic) means the clock went back (a simulator reset, a bag looped or replayed again), not a late
message: the buffer restarts from it, as tf2 clears its buffer on a jump back in time. Within one stream a late
message (best-effort transport reordering) is milliseconds behind the newest, not a second; a whole stream that lags
the others (a slow segmenter) is still in order, which is why each stream is judged against itself.
"""

from __future__ import annotations

from dataclasses import dataclass

JUMP_BACK_NS = 1_000_000_000
#: Colour images whose order of arrival :class:`EpisodeStarts` remembers: far more than a synchroniser holds, so the
#: image of any frame perception can still take is among them.
COLOUR_ARRIVALS_KEPT = 1024


def seconds_to_ns(seconds: float) -> int:
    """A duration in seconds (a limit or tolerance from the config) in whole nanoseconds, the nearest: ``int``
    truncates, and most decimal seconds are a binary fraction below their value (``int(1.001 * 1e9)`` is 1000999999),
    so a stamp exactly at the limit fell outside it."""
    return round(seconds * 1e9)


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


@dataclass(frozen=True)
class EpisodeStart:
    """A frame starts a new episode. ``went_back_from_ns``: where the old timeline had been when the clock went back
    (what is kept per stamp, the pose histories, holds an old timeline to drop): the previous frame's stamp when this
    frame is stamped at or before it and its colour image arrived after the previous frame's; the later of that and
    the colour stream's newest stamp before it jumped back, when it jumped between the two frames' images. None when
    the episode starts after the old one's stamps, or at a frame only late (its colour image arrived before the
    previous frame's: one timeline)."""

    went_back_from_ns: int | None = None


class EpisodeStarts:
    """Which frame starts a new episode, from the colour images' stamps and reset requests (the node's rule).

    A frame starts one when the clock jumped back: against the previous frame (:func:`jumped_back`), or in the colour
    stream between the previous frame's image and this one's (a slow detector can take its next frame from the new
    timeline stamped after the previous frame, when the old episode ran on past it); or when a
    :meth:`request_reset` is pending and the frame is the first stamped after the newest colour image received when it
    was called (frames already captured when an RL loop resets its environment belong to the episode that ended,
    whichever frame perception takes next), or is stamped at or before the previous frame (the simulator restarted
    its clock, by less than a jump after an episode shorter than :data:`JUMP_BACK_NS`). A jump serves a pending
    request (it is that reset). Not thread-safe: the node calls it under its synchroniser's lock.
    """

    def __init__(self) -> None:
        self.newest_colour_ns: int | None = None
        self.last_frame_ns: int | None = None
        self.reset_after_ns: int | None = None  # a pending request: frames stamped after this start the episode
        self._colours = 0  # colour images arrived
        self._arrivals: dict[int, int] = {}  # colour image stamp -> how many arrived before it; in arrival order
        self._last_frame_arrival: int | None = None  # the previous frame's colour image's
        # The colour stream's last jump back: (the arrival of the image that jumped, the newest stamp before it).
        self._jump: tuple[int, int] | None = None

    def colour(self, stamp_ns: int) -> None:
        """A colour image arrived."""
        previous_newest_ns = self.newest_colour_ns
        self.newest_colour_ns, jumped = follow_newest(stamp_ns, previous_newest_ns)
        if jumped and previous_newest_ns is not None:
            self._jump = (self._colours, previous_newest_ns)
        self._arrivals.pop(stamp_ns, None)  # a stamp again (a new timeline): its latest arrival counts
        self._arrivals[stamp_ns] = self._colours
        self._colours += 1
        if len(self._arrivals) > COLOUR_ARRIVALS_KEPT:
            del self._arrivals[next(iter(self._arrivals))]

    def request_reset(self) -> None:
        """The next frame stamped after every colour image received so far, or at or before the previous frame,
        starts a new episode."""
        self.reset_after_ns = self.newest_colour_ns if self.newest_colour_ns is not None else -1

    def frame(self, stamp_ns: int) -> EpisodeStart | None:
        """The episode the frame stamped ``stamp_ns``, about to be processed, starts, or None (it continues one)."""
        previous_ns, self.last_frame_ns = self.last_frame_ns, stamp_ns
        arrival = self._arrivals.get(stamp_ns)
        previous_arrival, self._last_frame_arrival = self._last_frame_arrival, arrival
        # Perception takes frames in order, so one stamped at or before the previous is a clock that went back (or a
        # frame late by milliseconds). Without a request only a jump tells a reset from a late frame. With one, any
        # step back is the reset: a simulator that restarts its clock after an episode shorter than JUMP_BACK_NS
        # stamps the new episode's frames among the old one's, none after reset_after_ns until the clock passes it
        # again, and the new episode would start that late, mid-way.
        went_back = previous_ns is not None and stamp_ns <= previous_ns
        pending = self.reset_after_ns is not None
        jump = self._jump
        if jump is not None and arrival is not None and jump[0] <= arrival:
            self._jump = None  # this frame's image came at or after the jump: it is judged here, once
            # The colour stream jumped back after the previous frame's image: this frame is the new timeline's, though
            # stamped after the previous frame. The pose histories' old timeline reached the colour stream's newest
            # stamp before the jump, later than the previous frame.
            if previous_ns is not None and previous_arrival is not None and previous_arrival < jump[0]:
                self.reset_after_ns = None
                return EpisodeStart(max(previous_ns, jump[1]))
        if jumped_back(stamp_ns, previous_ns) or (pending and (went_back or stamp_ns > self.reset_after_ns)):
            self.reset_after_ns = None
            # A frame only late (its depth came last) is stamped back too, but its colour image arrived before the
            # previous frame's, where a restarted clock's arrives after it: then the pose histories would drop the
            # only timeline's poses. Unknown arrivals count as a clock gone back: dropping costs only kinematics.
            late = arrival is not None and previous_arrival is not None and arrival < previous_arrival
            # Stamped exactly as the previous frame (a simulator that neither steps nor restarts its clock on reset):
            # a new episode, but no older timeline whose poses to drop (restarting would drop the reset's own).
            clock_went_back = (went_back and stamp_ns != previous_ns
                               and (jumped_back(stamp_ns, previous_ns) or not late))
            return EpisodeStart(previous_ns if clock_went_back else None)
        return None
