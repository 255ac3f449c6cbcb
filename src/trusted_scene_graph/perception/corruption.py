"""Optional, seeded corruption of exact detections, so stress tests see the errors of a real detector.

The 'sim' detector reports perfect boxes and masks. With ``detector.corruption.*`` set, :class:`SimDetector` passes
its detections through :meth:`DetectionCorruption.apply`, which in this order:

1. drops each detection with probability ``miss_rate``;
2. moves each box edge by Gaussian noise of ``box_jitter_px`` (rounded to whole pixels, clipped to the image, at
   least 1 px wide and high). The mask is kept as *mask ∩ jittered box*: a shrunk box crops the object, a grown box
   adds no pixels (the mask still says which pixels are the object). If nothing of the mask is left, the mask is
   dropped, so lifting falls back to the centre of the box, as for a detector without masks;
3. replaces the label with probability ``label_swap_rate`` by another known label, chosen uniformly;
4. adds ``Poisson(false_positive_rate)`` spurious detections: a random box (a twentieth to a quarter of the image
   side), no mask, a random known label and a score uniform in [0.3, 1];
5. adds Gaussian noise of ``score_noise`` to every score (false positives included), clipped to [0, 1].

All randomness comes from one ``numpy.random.Generator`` seeded with ``seed`` that the detector owns for its whole
life, so the corruption differs from frame to frame and a run replays exactly. With every rate zero the corruption
is disabled and the detector's output is bit-identical to the uncorrupted one (no random numbers are drawn).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from trusted_scene_graph.perception.detector import Detection, PerceptionError

#: Score range of a false positive: confident enough that a score threshold does not trivially remove it.
FALSE_POSITIVE_SCORE_RANGE = (0.3, 1.0)
#: Side of a false-positive box as a fraction of the image side.
FALSE_POSITIVE_SIZE_RANGE = (1.0 / 20.0, 1.0 / 4.0)


@dataclass(frozen=True)
class DetectionCorruption:
    """How to corrupt detections; see the module docstring for what each setting does."""

    box_jitter_px: float = 0.0  # standard deviation of each box edge's noise
    miss_rate: float = 0.0  # probability of dropping a detection
    false_positive_rate: float = 0.0  # expected number of spurious detections per frame
    label_swap_rate: float = 0.0  # probability of replacing a label with another known label
    score_noise: float = 0.0  # standard deviation of the score's noise
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("box_jitter_px", "false_positive_rate", "score_noise"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0.0:
                raise PerceptionError(f"detection corruption {name}={value} must be finite and >= 0")
        for name in ("miss_rate", "label_swap_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise PerceptionError(f"detection corruption {name}={value} must be a probability in [0, 1]")
        if self.seed < 0:
            raise PerceptionError(f"detection corruption seed={self.seed} must be >= 0")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DetectionCorruption:
        """Read ``detector.corruption.*``."""
        return cls(
            box_jitter_px=config["detector.corruption.box_jitter_px"],
            miss_rate=config["detector.corruption.miss_rate"],
            false_positive_rate=config["detector.corruption.false_positive_rate"],
            label_swap_rate=config["detector.corruption.label_swap_rate"],
            score_noise=config["detector.corruption.score_noise"],
            seed=config["detector.corruption.seed"],
        )

    @property
    def enabled(self) -> bool:
        """Whether any setting changes detections (the seed alone does not)."""
        return any(
            value > 0.0
            for value in (self.box_jitter_px, self.miss_rate, self.false_positive_rate, self.label_swap_rate,
                          self.score_noise)
        )

    def make_rng(self) -> np.random.Generator:
        """The generator a detector should own and pass to every :meth:`apply` call."""
        return np.random.default_rng(self.seed)

    def apply(
        self,
        detections: Sequence[Detection],
        image_height: int,
        image_width: int,
        known_labels: Sequence[str],
        rng: np.random.Generator,
    ) -> list[Detection]:
        """Return corrupted copies of ``detections`` (inputs are not modified), drawing randomness from ``rng``.

        ``known_labels`` are the labels swaps and false positives choose from; pass them in a fixed order (e.g.
        sorted) for reproducible runs. Without known labels, nothing is swapped and no false positives are added.
        """
        if image_height <= 0 or image_width <= 0:
            raise PerceptionError(f"cannot corrupt detections of an empty {image_width}x{image_height} image")
        labels = tuple(known_labels)
        corrupted = []
        for detection in detections:
            if self.miss_rate > 0.0 and rng.random() < self.miss_rate:
                continue
            if self.box_jitter_px > 0.0:
                detection = self._jitter(detection, image_height, image_width, rng)
            if self.label_swap_rate > 0.0 and rng.random() < self.label_swap_rate:
                others = [label for label in labels if label != detection.label]
                if others:
                    detection = replace(detection, label=others[int(rng.integers(len(others)))])
            corrupted.append(detection)
        if self.false_positive_rate > 0.0 and labels:
            for _ in range(int(rng.poisson(self.false_positive_rate))):
                corrupted.append(_false_positive(image_height, image_width, labels, rng))
        if self.score_noise > 0.0:
            noise = rng.normal(0.0, self.score_noise, size=len(corrupted))
            corrupted = [
                replace(detection, score=float(np.clip(detection.score + delta, 0.0, 1.0)))
                for detection, delta in zip(corrupted, noise.tolist(), strict=True)
            ]
        return corrupted

    def _jitter(self, detection: Detection, height: int, width: int, rng: np.random.Generator) -> Detection:
        """Move each box edge by Gaussian noise; keep the mask's pixels inside the new box."""
        x, y, w, h = detection.box_xywh_px
        left, top, right, bottom = (np.array([x, y, x + w, y + h], dtype=np.float64)
                                    + rng.normal(0.0, self.box_jitter_px, size=4)).tolist()
        x0 = int(np.clip(round(left), 0, width - 1))
        y0 = int(np.clip(round(top), 0, height - 1))
        x1 = int(np.clip(round(right), x0 + 1, width))  # exclusive, so at least 1 px
        y1 = int(np.clip(round(bottom), y0 + 1, height))
        mask = detection.mask
        if mask is not None:
            if mask.shape != (height, width):
                raise PerceptionError(
                    f"detection {detection.label!r} has a {mask.shape[1]}x{mask.shape[0]} mask but the image is "
                    f"{width}x{height}"
                )
            cropped = np.zeros_like(mask)
            cropped[y0:y1, x0:x1] = mask[y0:y1, x0:x1]
            mask = cropped if cropped.any() else None
        return replace(detection, box_xywh_px=(x0, y0, x1 - x0, y1 - y0), mask=mask)


def _false_positive(height: int, width: int, labels: tuple[str, ...], rng: np.random.Generator) -> Detection:
    low, high = FALSE_POSITIVE_SIZE_RANGE
    w = int(rng.integers(max(1, int(width * low)), max(1, int(width * high)) + 1))
    h = int(rng.integers(max(1, int(height * low)), max(1, int(height * high)) + 1))
    x = int(rng.integers(0, width - w + 1))
    y = int(rng.integers(0, height - h + 1))
    label = labels[int(rng.integers(len(labels)))]
    return Detection(label, float(rng.uniform(*FALSE_POSITIVE_SCORE_RANGE)), (x, y, w, h), None)
