"""Stable object ids across frames: label-aware 3D nearest-neighbour association (Hungarian assignment).

A track's position is exponentially smoothed: ``p <- smoothing * measured + (1 - smoothing) * p``, so a static
object's published position stops jittering with depth noise, at the cost of lagging a moving one by about
``1 / smoothing - 1`` frames. Its size, when given, is smoothed the same way, which is smoothing the box's bounds:
the published box is then one box (centre and extent lag alike), never a smoothed centre around this frame's
extent, which no frame measured. Association compares new measurements with the smoothed positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

# Cost that forbids an assignment (different label or beyond the gate); finite so the solver stays well-posed.
_FORBIDDEN = 1e9


@dataclass
class Track:
    id: int
    label: str
    centroid_m: np.ndarray
    size_m: np.ndarray | None = None  # None: the tracker was given no sizes
    age: int = 1
    missed: int = 0


class Tracker:
    """Assigns each frame's objects to tracks; unmatched objects start new tracks, stale tracks retire."""

    def __init__(self, gate_m: float = 0.3, max_missed_frames: int = 5, smoothing: float = 1.0) -> None:
        self.gate_m = gate_m
        self.max_missed_frames = max_missed_frames
        self.smoothing = smoothing
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, labels: list[str], centroids_m: list[np.ndarray],
               sizes_m: list[np.ndarray] | None = None) -> list[Track]:
        """Return the track of each input object, in input order. With ``sizes_m`` (each object's box extent) the
        tracks smooth their boxes, not only their centres (see the module docstring)."""
        assigned: list[Track | None] = [None] * len(labels)
        if self.tracks and labels:
            distance = cdist(np.asarray(centroids_m, dtype=np.float64).reshape(-1, 3),
                             np.array([track.centroid_m for track in self.tracks], dtype=np.float64))
            same_label = np.array(labels, dtype=object)[:, None] == np.array([t.label for t in self.tracks],
                                                                               dtype=object)[None, :]
            cost = np.where(same_label & (distance <= self.gate_m), distance, _FORBIDDEN)
            for i, j in zip(*linear_sum_assignment(cost), strict=True):
                if cost[i, j] < _FORBIDDEN:
                    assigned[i] = self.tracks[j]
        matched_ids = set()
        for i, track in enumerate(assigned):
            measured = np.asarray(centroids_m[i], dtype=np.float64)
            measured_size = None if sizes_m is None else np.asarray(sizes_m[i], dtype=np.float64)
            if track is None:
                track = Track(self._next_id, labels[i], measured, measured_size, age=0)
                self._next_id += 1
                self.tracks.append(track)
                assigned[i] = track
            else:
                track.centroid_m = self._smoothed(measured, track.centroid_m)
                track.size_m = self._smoothed(measured_size, track.size_m)
            track.age += 1
            track.missed = 0
            matched_ids.add(track.id)
        for track in self.tracks:
            if track.id not in matched_ids:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed_frames]
        return [t for t in assigned if t is not None]

    def _smoothed(self, measured: np.ndarray | None, previous: np.ndarray | None) -> np.ndarray | None:
        if measured is None or previous is None or self.smoothing == 1.0:  # 1: off (and no arithmetic per object)
            return measured
        return self.smoothing * measured + (1.0 - self.smoothing) * previous
