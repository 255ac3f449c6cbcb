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
