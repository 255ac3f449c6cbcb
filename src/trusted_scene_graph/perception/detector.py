"""The detector interface, the name → backend mapping, and the simulator backend."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from trusted_scene_graph.errors import TsgError
from trusted_scene_graph.geometry.camera import Intrinsics


class PerceptionError(TsgError):
    """Input a detector or the lifting cannot work with (missing image, mismatched sizes, no depth)."""


#: The instance id of pixels that belong to no object.
BACKGROUND_INSTANCE_ID = 0


@dataclass(frozen=True)
class CameraFrame:
    """One synchronised RGB-D frame (arrays in the colour camera's pixel grid)."""

    stamp_ns: int
    rgb: np.ndarray  # (H, W, 3) uint8
    depth_m: np.ndarray | None  # (H, W) float32, NaN where invalid; None for RGB-only cameras
    intrinsics: Intrinsics
    instances: np.ndarray | None = None  # (H, W) uint16 instance ids, only from simulators

    def __post_init__(self) -> None:
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype != np.uint8:
            raise PerceptionError(f"colour image must be (H, W, 3) uint8 RGB, got {self.rgb.dtype} {self.rgb.shape}")
        height, width = self.rgb.shape[:2]
        for name, image in (("depth", self.depth_m), ("instance", self.instances)):
            if image is not None and image.ndim != 2:
                raise PerceptionError(f"{name} image must be a 2-D (H, W) array, got shape {image.shape}")
        if self.depth_m is not None and self.depth_m.shape != (height, width):
            raise PerceptionError(
                f"depth image is {self.depth_m.shape[1]}x{self.depth_m.shape[0]} but colour is {width}x{height}; "
                "depth must be registered to the colour image"
            )
        if (self.intrinsics.width, self.intrinsics.height) != (width, height):
            raise PerceptionError(
                f"camera_info is {self.intrinsics.width}x{self.intrinsics.height} but colour is {width}x{height}"
            )
        if self.instances is not None and self.instances.shape != (height, width):
            raise PerceptionError(
                f"instance image is {self.instances.shape[1]}x{self.instances.shape[0]} but colour is "
                f"{width}x{height}"
            )


@dataclass(frozen=True)
class Detection:
    """A 2D detection: label, score in [0, 1], box (x, y, w, h) in pixels and an optional boolean mask."""

    label: str
    score: float
    box_xywh_px: tuple[int, int, int, int]
    mask: np.ndarray | None = None


class Detector(Protocol):
    """What every detector backend provides. Construction loads the model; ``detect`` must not."""

    needs_instances: bool
    #: Whether every detection comes with a mask. When not, a caller that needs some labels only still asks for
    #: every detection: a box-only detection's silhouette leaves out the boxes nested in it, whatever their label.
    every_detection_masked: bool

    def detect(self, frame: CameraFrame, labels: Collection[str] | None = None) -> list[Detection]:
        """The frame's detections. ``labels`` (lower case), when given, are the only labels the caller needs: a
        backend may skip the others' work (the caller drops any it still returns)."""

    def reconfigure(self, config: Mapping[str, Any]) -> None:
        """Apply the backend's writable ``detector.*`` parameters (a node's parameter change); the model is kept."""

    def restart(self) -> None:
        """Detect from now on as a detector just built would (the model kept): any random generator re-seeded."""


# Imported here, after Detection and PerceptionError, because corruption.py builds on both.
from trusted_scene_graph.perception.corruption import DetectionCorruption  # noqa: E402

#: The 'sim' detector keeps (and the node warns about) the first this many instance ids without a label; it counts
#: the others.
MAX_UNKNOWN_IDS_KEPT = 20


class SimDetector:
    """Detections from a simulator's instance-segmentation image (exact masks, score 1).

    Used for the end-to-end slice and for evaluation with known geometry; the open-vocabulary detector
    replaces it on real cameras. ``corruption`` (``detector.corruption.*``) optionally adds misses, box jitter,
    label swaps, false positives and score noise for stress tests; its random generator lives as long as the
    detector, so the corruption changes from frame to frame yet replays exactly for a seed.
    """

    needs_instances = True

    def __init__(
        self, labels_by_id: Mapping[int, str], min_pixels: int = 30, corruption: DetectionCorruption | None = None,
        masks: bool = True,
    ) -> None:
        self.labels_by_id = dict(labels_by_id)
        self.masks = masks  # False: boxes only, as a box detector (GroundingDINO) reports
        # Ids seen in an instance image that have no label, so were never detected (the background excepted): the
        # node reports them, since a config whose sim_labels miss a recording's ids otherwise just finds less. Only
        # the first MAX_UNKNOWN_IDS_KEPT are kept (a simulator may give every frame fresh ids); the count is of all
        # distinct ones. Replaced, never mutated, so another thread can read them while detect runs (the count is
        # updated first: a reader taking the ids, then the count, never sees fewer counted than listed).
        self.unknown_instance_ids: frozenset[int] = frozenset()
        self.unknown_instance_id_count = 0
        # Which ids were counted, by id: ids are uint16, so at most 64 kB, however many frames come.
        self._unknown_seen = np.zeros(0, bool)
        self.min_pixels = min_pixels
        self.corruption = corruption if corruption is not None else DetectionCorruption()
        self._rng = self.corruption.make_rng()
        # Sorted: swaps and false positives pick by index, so the order must not depend on the mapping's order.
        self._known_labels = tuple(sorted(set(self.labels_by_id.values())))

    @property
    def every_detection_masked(self) -> bool:
        # Corruption makes mask-less detections: false positives, and boxes jittered off their object's pixels.
        return self.masks and not self.corruption.enabled

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SimDetector:
        return cls(sim_labels(config), min_pixels=config["detector.min_pixels"],
                   corruption=DetectionCorruption.from_config(config), masks=config["detector.sim_masks"])

    def reconfigure(self, config: Mapping[str, Any]) -> None:
        """The smallest object and the corruption's rates; its random generator goes on (the seed is read-only)."""
        self.min_pixels = config["detector.min_pixels"]
        self.corruption = DetectionCorruption.from_config(config)

    def restart(self) -> None:
        """The corruption's random draws start again from its seed."""
        self._rng = self.corruption.make_rng()

    def detect(self, frame: CameraFrame, labels: Collection[str] | None = None) -> list[Detection]:
        if frame.instances is None:
            raise PerceptionError("the 'sim' detector needs an instance-id image (topics.instances), none was given")
        if labels is not None and not self.corruption.enabled:
            # Only the objects asked for: one comparison of the image per wanted id, no histogram of every pixel.
            # (The ids of unlabelled objects are then not collected; only the node reports them.) With corruption
            # every object is detected, so that the random draws, and hence the corruption, stay those of a full run.
            wanted = sorted(i for i, label in self.labels_by_id.items() if label.strip().lower() in labels)
            masks = [(i, frame.instances == i) for i in wanted]
            return [self._detection(mask, i) for i, mask in masks if np.count_nonzero(mask) >= self._min_count]
        # A histogram of the ids, not np.unique: unique sorts every pixel, bincount counts them in one pass (ids are
        # uint16, so the histogram has at most 65,536 bins).
        histogram = np.bincount(frame.instances.ravel())
        ids = np.flatnonzero(histogram)
        unknown = set(ids.tolist()) - self.labels_by_id.keys() - {BACKGROUND_INSTANCE_ID}
        if unknown:
            self._count_unknown(unknown)
        detections = [self._detection(frame.instances == i, i) for i in ids.tolist()
                      if i in self.labels_by_id and histogram[i] >= self._min_count]
        if self.corruption.enabled:
            height, width = frame.instances.shape
            detections = self.corruption.apply(detections, height, width, self._known_labels, self._rng)
        if labels is not None:  # after the corruption, whose random draws are then those of a full run
            detections = [d for d in detections if d.label.strip().lower() in labels]
        return detections

    def _count_unknown(self, unknown: set[int]) -> None:
        """Count the ids of ``unknown`` not seen before, and keep them while fewer than MAX_UNKNOWN_IDS_KEPT are."""
        if max(unknown) >= len(self._unknown_seen):
            self._unknown_seen = np.concatenate([self._unknown_seen, np.zeros(max(unknown) + 1
                                                                              - len(self._unknown_seen), bool)])
        new = sorted(i for i in unknown if not self._unknown_seen[i])
        if not new:
            return
        self._unknown_seen[new] = True
        self.unknown_instance_id_count += len(new)
        room = MAX_UNKNOWN_IDS_KEPT - len(self.unknown_instance_ids)
        if room > 0:
            self.unknown_instance_ids = self.unknown_instance_ids | frozenset(new[:room])

    @property
    def _min_count(self) -> int:
        return max(self.min_pixels, 1)

    def _detection(self, mask: np.ndarray, instance_id: int) -> Detection:
        """The object ``instance_id`` (labelled, with pixels in ``mask``) with its exact box, and its exact mask unless
        the detector gives boxes only."""
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        box = (int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))
        return Detection(self.labels_by_id[instance_id], 1.0, box, mask if self.masks else None)


def _grounding_dino(config: Mapping[str, Any]) -> Detector:
    # Imported here: the module pulls in torch and transformers, which the 'sim' backend does not need.
    from trusted_scene_graph.perception.grounding_dino import GroundingDinoDetector

    return GroundingDinoDetector.from_config(config)


DETECTORS: dict[str, Callable[[Mapping[str, Any]], Detector]] = {
    "sim": SimDetector.from_config,
    "grounding_dino": _grounding_dino,
}


def build_backend(kind: str, backends: Mapping[str, Callable[[Mapping[str, Any]], Any]],
                  config: Mapping[str, Any], parameter: str) -> Any:
    """Build the backend of a ``kind`` (detector, depth, ...) named by ``config[parameter]``; an unknown name is an
    error listing the known ones. One mechanism for every pluggable model family."""
    name = config[parameter]
    try:
        factory = backends[name]
    except KeyError:
        raise PerceptionError(f"unknown {kind} backend {name!r}; known backends: {sorted(backends)}") from None
    return factory(config)


def make_detector(config: Mapping[str, Any]) -> Detector:
    """Build the backend named by ``detector.backend``; an unknown name lists the known ones."""
    return build_backend("detector", DETECTORS, config, "detector.backend")


def sim_labels(config: Mapping[str, Any]) -> dict[int, str]:
    """``detector.sim_labels`` as instance id -> label (the schema has checked the 'id:label' form)."""
    labels = {}
    for entry in config["detector.sim_labels"]:
        instance_id, _, label = entry.partition(":")
        labels[int(instance_id)] = label.strip()
    return labels


def label_renames(config: Mapping[str, Any]) -> dict[str, str]:
    """``detector.label_map`` as phrase -> label (the schema has checked the 'phrase:label' form)."""
    renamed = {}
    for entry in config["detector.label_map"]:
        phrase, _, label = entry.partition(":")
        renamed[phrase.strip()] = label.strip()
    return renamed


def vocabulary_phrases(vocabulary: Sequence[str]) -> tuple[str, ...]:
    """The phrases of ``detector.vocabulary`` as the detector uses them: stripped, without empty entries and exact
    repeats, in the configured order. Two entries that differ only in case or spacing are refused, naming both: the
    detector reads its prompt in lower case, so the second could never be told from the first."""
    phrases = tuple(dict.fromkeys(phrase.strip() for phrase in vocabulary if phrase.strip()))
    seen: dict[str, str] = {}
    for phrase in phrases:
        key = " ".join(phrase.lower().split())
        if key in seen:
            raise PerceptionError(f"detector.vocabulary: {seen[key]!r} and {phrase!r} are one phrase to the detector "
                                  "(it reads the prompt in lower case); keep one")
        seen[key] = phrase
    return phrases


def phrase_labels(config: Mapping[str, Any]) -> dict[str, str]:
    """'grounding_dino': each ``detector.vocabulary`` phrase (:func:`vocabulary_phrases`) -> the label its
    detections get (``detector.label_map`` renames, default the phrase itself)."""
    renamed = label_renames(config)
    return {phrase: renamed.get(phrase, phrase) for phrase in vocabulary_phrases(config["detector.vocabulary"])}


def configured_labels(config: Mapping[str, Any]) -> tuple[str, ...]:
    """Every label the configured detector can produce, sorted: a name outside it is unknown, one inside it but not
    in a graph is absent from that frame."""
    if config["detector.backend"] == "sim":
        return tuple(sorted(set(sim_labels(config).values())))
    return tuple(sorted(set(phrase_labels(config).values())))
