"""Frame counters and the health summary a node reports on ``/diagnostics``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

# diagnostic_msgs/DiagnosticStatus levels.
OK, WARN, ERROR = 0, 1, 2


@dataclass
class FrameStats:
    """What happened to the frames a node received."""

    completed: int = 0  # complete (colour + depth + info) frames from the synchronizer
    dropped: int = 0  # complete frames replaced by a newer one before perception took them
    processed: int = 0
    failed: int = 0
    last_failed: bool = False
    last_error: str = ""
    last_process_ms: float = math.nan

    def record_success(self, process_ms: float) -> None:
        self.processed += 1
        self.last_failed = False
        self.last_process_ms = process_ms

    def record_failure(self, error: str) -> None:
        self.failed += 1
        self.last_failed = True
        self.last_error = error


def health(stats: FrameStats, details: Mapping[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    """Level, one-line message and key/values (the counters, then ``details``) for a diagnostics status."""
    values = {
        "frames_completed": str(stats.completed),
        "frames_dropped": str(stats.dropped),
        "frames_processed": str(stats.processed),
        "frames_failed": str(stats.failed),
        "last_process_ms": f"{stats.last_process_ms:.1f}",
        "last_error": stats.last_error,
        **(details or {}),
    }
    if stats.last_failed:
        return ERROR, f"last frame skipped: {stats.last_error}", values
    if stats.processed == 0:
        return WARN, "waiting for a synchronised frame (colour, depth if used, camera_info)", values
    return OK, f"{stats.processed} frames processed, {stats.dropped} dropped, {stats.failed} failed", values
