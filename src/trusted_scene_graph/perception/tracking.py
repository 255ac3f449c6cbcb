"""Stable object ids across frames: label-aware 3D nearest-neighbour association (Hungarian assignment)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

# Cost that forbids an assignment (different label or beyond the gate); finite so the solver stays well-posed.
_FORBIDDEN = 1e9


@dataclass
class Track:
    id: int
    label: str
    centroid_m: np.ndarray
    age: int = 1
    missed: int = 0


class Tracker:
    """Assigns each frame's objects to tracks; unmatched objects start new tracks, stale tracks retire."""

    def __init__(self, gate_m: float = 0.3, max_missed_frames: int = 5) -> None:
        self.gate_m = gate_m
        self.max_missed_frames = max_missed_frames
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, labels: list[str], centroids_m: list[np.ndarray]) -> list[Track]:
        """Return the track of each input object, in input order."""
        assigned: list[Track | None] = [None] * len(labels)
        if self.tracks and labels:
            cost = np.full((len(labels), len(self.tracks)), _FORBIDDEN)
            for i, (label, centroid) in enumerate(zip(labels, centroids_m, strict=True)):
                for j, track in enumerate(self.tracks):
                    distance = float(np.linalg.norm(centroid - track.centroid_m))
                    if track.label == label and distance <= self.gate_m:
                        cost[i, j] = distance
            for i, j in zip(*linear_sum_assignment(cost), strict=True):
                if cost[i, j] < _FORBIDDEN:
                    assigned[i] = self.tracks[j]
        matched_ids = set()
        for i, track in enumerate(assigned):
            if track is None:
                track = Track(self._next_id, labels[i], centroids_m[i], age=0)
                self._next_id += 1
                self.tracks.append(track)
                assigned[i] = track
            track.centroid_m = centroids_m[i]
            track.age += 1
            track.missed = 0
            matched_ids.add(track.id)
        for track in self.tracks:
            if track.id not in matched_ids:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed_frames]
        return [t for t in assigned if t is not None]
