"""Per-edge features of the trust model: one row per claimed edge, one column per :data:`FEATURES` entry.

A claimed edge is ``subject predicate object`` with a source: the geometry (its margin is > 0) or the VLM (a claim the
VLM prefers to the geometry's, whose margin is then <= 0). Every column is computed for all edges at once from the
frame's :class:`~trusted_scene_graph.relations.geometric.RelationGrid` and per-object arrays. A feature that is not
available for an edge (no VLM answer, no 2D analogue of the predicate, no history yet) is NaN, which XGBoost treats
as missing; it is never silently 0.

Notation: ``a`` is the subject, ``b`` the object, ``p`` the predicate; ``margin`` the grid's signed margin of the
claim in metres (:mod:`trusted_scene_graph.relations.geometric`); box ``(x, y, w, h)`` in pixels with centre
``(u, v)``; ``ext_k(o)`` is object o's extent along the predicate's axis ``k``: the camera's horizontal ``left`` axis
(left_of, right_of), its horizontal ``forward`` axis (in_front_of, behind), height ``z`` (above, below, on_top_of,
taller_than), the equivalent cube side ``cbrt(volume)`` (near, far) or the size that bigger_than compares,
:func:`~trusted_scene_graph.relations.geometric.size_measure_m` (bigger_than), so that its alignment is its margin
over the same measure.

``FEATURE_SCHEMA_VERSION`` changes whenever a column is added, removed, reordered or redefined; a trust model trained
on another version is refused when loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trusted_scene_graph.relations.geometric import QUALITATIVE_PREDICATES, RelationGrid, size_measure_m
from trusted_scene_graph.relations.image import box_iou_matrix
from trusted_scene_graph.trust import TrustError

FEATURE_SCHEMA_VERSION = 2  # 2: bigger_than alignment_3d over size_measure_m (was the cube root of the volume)

# Scales are floored so that a degenerate (flat or empty) box cannot blow a ratio up to infinity.
MIN_SCALE_M = 0.01
MIN_SCALE_PX = 1.0


@dataclass(frozen=True)
class FeatureSpec:
    """One column of the feature table, as documented (README, "Trust features")."""

    name: str
    formula: str
    range: str
    source: str


FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("predicate", "index of p in QUALITATIVE_PREDICATES (left_of=0 ... taller_than=10)", "{0..10}",
                "claim"),
    FeatureSpec("claim_from_vlm", "1 when the VLM made the claim (its margin is <= 0), 0 for a geometry claim",
                "{0, 1}", "claim"),
    FeatureSpec("margin_m", "the claim's signed margin in the 3D grid (agreement sign x margin)", "(-inf, inf) m",
                "3D geometry"),
    FeatureSpec("alignment_3d", "margin / max(0.01 m, (ext_k(a) + ext_k(b)) / 2)", "(-inf, inf)", "3D geometry"),
    FeatureSpec("alignment_2d",
                "image margin / mean box size: left_of (u_b - u_a) / w, above and on_top_of (v_b - v_a) / h, "
                "in_front_of (bottom_a - bottom_b) / h, bigger_than (sqrt(area_a) - sqrt(area_b)) / sqrt(area), "
                "taller_than (h_a - h_b) / h, and the converses negated; NaN for near and far",
                "(-inf, inf) or NaN", "2D boxes"),
    FeatureSpec("iou_2d", "intersection over union of the two boxes", "[0, 1]", "2D boxes"),
    FeatureSpec("overlap_3d", "volume of the 3D boxes' intersection / the smaller box's volume", "[0, 1]",
                "3D geometry"),
    FeatureSpec("distance_over_size", "centroid distance / max(0.01 m, (cbrt(vol_a) + cbrt(vol_b)) / 2)", "[0, inf)",
                "3D geometry"),
    FeatureSpec("subject_score", "detection score of a", "[0, 1]", "detector"),
    FeatureSpec("object_score", "detection score of b", "[0, 1]", "detector"),
    FeatureSpec("subject_depth_valid", "fraction of a's pixels with usable depth", "[0, 1]", "depth"),
    FeatureSpec("object_depth_valid", "fraction of b's pixels with usable depth", "[0, 1]", "depth"),
    FeatureSpec("subject_box_area", "w * h of a's box / image area", "[0, 1]", "detector"),
    FeatureSpec("object_box_area", "w * h of b's box / image area", "[0, 1]", "detector"),
    FeatureSpec("subject_track_age", "frames a's track has been observed in", "[1, inf)", "tracker"),
    FeatureSpec("object_track_age", "frames b's track has been observed in", "[1, inf)", "tracker"),
    FeatureSpec("temporal_agreement",
                "fraction of the last K frames in which the same track pair was seen where the geometry held the "
                "claim (K = trust.temporal_window_frames); NaN before the pair's second frame", "[0, 1] or NaN",
                "tracker"),
    FeatureSpec("vlm_p_claim", "probability the VLM gives to the claim being true", "[0, 1] or NaN", "VLM"),
    FeatureSpec("vlm_nmlp", "NMLP of the VLM's answer tokens (generative backends)", "[0, inf) or NaN", "VLM"),
    FeatureSpec("vlm_margin", "contrastive margin: top-1 minus top-2 caption probability (contrastive backends)",
                "[0, 1] or NaN", "VLM"),
    FeatureSpec("vlm_sensitivity",
                "vlm_p_claim minus the same probability on a noised image (CA-TTS self-check; optional, one more "
                "VLM call per claim)", "[-1, 1] or NaN", "VLM"),
    FeatureSpec("subject_prototype_similarity",
                "cosine of a's crop embedding to the running prototype of its label (TrustVLM-style; optional)",
                "[-1, 1] or NaN", "VLM image encoder"),
    FeatureSpec("object_prototype_similarity", "the same for b", "[-1, 1] or NaN", "VLM image encoder"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(spec.name for spec in FEATURES)
FEATURE_INDEX = {name: k for k, name in enumerate(FEATURE_NAMES)}
# The VLM columns, in the order of the (E, 4) array edge_features takes.
VLM_FEATURES = ("vlm_p_claim", "vlm_nmlp", "vlm_margin", "vlm_sensitivity")

# Per predicate: which per-object 3D extent scales its margin (0: along left, 1: along forward, 2: height,
# 3: equivalent cube side, 4: the bigger_than size measure).
_EXTENT_KIND = np.array([0, 0, 2, 2, 1, 1, 3, 3, 2, 4, 2])
# Per predicate, the image coordinate compared (0: u, 1: v, 2: bottom edge, 3: sqrt(area), 4: h; -1: none), the sign
# (+1: a - b, -1: b - a) and the box size that scales it (0: w, 1: h, 2: sqrt(area)).
_IMAGE_COORD = np.array([0, 0, 1, 1, 2, 2, -1, -1, 1, 3, 4])
_IMAGE_SIGN = np.array([-1.0, 1.0, -1.0, 1.0, 1.0, -1.0, 0.0, 0.0, -1.0, 1.0, 1.0])
_IMAGE_SCALE = np.array([0, 0, 1, 1, 1, 1, 0, 0, 1, 2, 1])
if not (len(_EXTENT_KIND) == len(_IMAGE_COORD) == len(_IMAGE_SIGN) == len(_IMAGE_SCALE)
        == len(QUALITATIVE_PREDICATES)):  # an import-time consistency check of the tables above, not a runtime check
    raise ImportError("trust.features: the per-predicate tables do not match QUALITATIVE_PREDICATES")


@dataclass(frozen=True)
class ObjectArrays:
    """Per-object inputs of the features, in the grid's object order."""

    scores: np.ndarray  # (N,)
    depth_valid_fractions: np.ndarray  # (N,)
    boxes_xywh_px: np.ndarray  # (N, 4)
    track_ages: np.ndarray  # (N,)
    image_area_px: float

    @classmethod
    def from_nodes(cls, objects, image_width_px: int, image_height_px: int) -> ObjectArrays:
        """From :class:`~trusted_scene_graph.graph.model.ObjectNode` objects of an image of the given size."""
        if image_width_px <= 0 or image_height_px <= 0:
            raise TrustError(f"image size must be positive, got {image_width_px}x{image_height_px} px")
        return cls(np.array([o.score for o in objects], dtype=np.float64),
                   np.array([o.depth_valid_fraction for o in objects], dtype=np.float64),
                   np.array([o.box_xywh_px for o in objects], dtype=np.float64).reshape(-1, 4),
                   np.array([o.track_age for o in objects], dtype=np.float64),
                   float(image_width_px * image_height_px))


def _check_edges(grid: RelationGrid, objects: ObjectArrays, subject: np.ndarray, obj: np.ndarray,
                 predicate: np.ndarray) -> None:
    count = grid.count
    for name, array in (("scores", objects.scores), ("depth_valid_fractions", objects.depth_valid_fractions),
                        ("track_ages", objects.track_ages)):
        if array.shape != (count,):
            raise TrustError(f"{name} must hold one value per object ({count}), got shape {array.shape}")
    if objects.boxes_xywh_px.shape != (count, 4):
        raise TrustError(f"boxes_xywh_px must have shape ({count}, 4), got {objects.boxes_xywh_px.shape}")
    if not (subject.shape == obj.shape == predicate.shape) or subject.ndim != 1:
        raise TrustError(f"subject, object and predicate must be 1-D of one length, got shapes {subject.shape}, "
                         f"{obj.shape} and {predicate.shape}")


def edge_features(
    grid: RelationGrid,
    objects: ObjectArrays,
    subject: np.ndarray,
    obj: np.ndarray,
    predicate: np.ndarray,
    sources: np.ndarray | None = None,
    *,
    vlm: np.ndarray | None = None,
    temporal_agreement: np.ndarray | None = None,
    prototype_similarity: np.ndarray | None = None,
) -> np.ndarray:
    """The (E, F) float32 feature table of E claimed edges (indices into the grid; see :data:`FEATURES`).

    ``sources`` (E,): 0 geometry, 1 VLM (default: all geometry). Optional inputs, NaN where not given: ``vlm`` (E, 4)
    in :data:`VLM_FEATURES` order, ``temporal_agreement`` (E,), ``prototype_similarity`` (N,) per object.
    """
    subject, obj, predicate = (np.asarray(a, dtype=np.intp) for a in (subject, obj, predicate))
    _check_edges(grid, objects, subject, obj, predicate)
    edges = len(predicate)
    if edges == 0:
        return np.full((0, len(FEATURES)), np.nan, dtype=np.float32)
    # Pair quantities are computed on the (N, N) grid and per-object ones on (N,), then gathered once per edge: far
    # fewer numpy calls than gathering every input per edge (this runs every frame).
    count = grid.count
    pair = subject * count + obj
    table = np.full((edges, len(FEATURES)), np.nan, dtype=np.float32)
    column = FEATURE_INDEX
    table[:, column["predicate"]] = predicate
    table[:, column["claim_from_vlm"]] = 0.0 if sources is None else sources
    margin = grid.margins_m[subject, obj, predicate]
    table[:, column["margin_m"]] = margin

    sizes = grid.sizes_m
    cube_side = np.cbrt(np.prod(sizes, axis=1))
    extents = np.stack([np.abs(sizes) @ np.abs(grid.left), np.abs(sizes) @ np.abs(grid.forward), sizes[:, 2],
                        cube_side, size_measure_m(sizes)], axis=1)  # (N, 5): the _EXTENT_KIND columns
    kind = _EXTENT_KIND[predicate]
    table[:, column["alignment_3d"]] = margin / np.maximum((extents[subject, kind] + extents[obj, kind]) / 2,
                                                           MIN_SCALE_M)

    boxes = objects.boxes_xywh_px
    width, height = boxes[:, 2], boxes[:, 3]
    root_area = np.sqrt(width * height)
    coords = np.stack([boxes[:, 0] + width / 2, boxes[:, 1] + height / 2, boxes[:, 1] + height, root_area, height],
                      axis=1)
    box_scales = np.stack([width, height, root_area], axis=1)
    coord = _IMAGE_COORD[predicate]
    scale_kind = _IMAGE_SCALE[predicate]
    scale_px = np.maximum((box_scales[subject, scale_kind] + box_scales[obj, scale_kind]) / 2, MIN_SCALE_PX)
    image_margin = _IMAGE_SIGN[predicate] * (coords[subject, coord] - coords[obj, coord]) / scale_px
    image_margin[coord < 0] = np.nan  # no image-plane analogue (coord -1 indexed the last column: discarded)
    table[:, column["alignment_2d"]] = image_margin

    # (N, N) pair quantities: 2D IoU, 3D overlap of the smaller box, centroid distance over the mean cube side.
    inter = np.clip(np.minimum(-grid.gaps_m, np.minimum(sizes[:, None, :], sizes[None, :, :])), 0.0, None)
    volume = np.prod(sizes, axis=1)
    overlap = np.prod(inter, axis=2) / np.maximum(np.minimum(volume[:, None], volume[None, :]), 1e-12)
    spread = np.linalg.norm(grid.offsets_m, axis=2) / np.maximum((cube_side[:, None] + cube_side[None, :]) / 2,
                                                                  MIN_SCALE_M)
    pairs = np.stack([box_iou_matrix(boxes).ravel(), overlap.ravel(), spread.ravel()], axis=1)
    table[:, [column["iou_2d"], column["overlap_3d"], column["distance_over_size"]]] = pairs[pair]

    per_object = np.stack([objects.scores, objects.depth_valid_fractions, width * height / objects.image_area_px,
                           objects.track_ages,
                           np.full(count, np.nan) if prototype_similarity is None else prototype_similarity], axis=1)
    for role, index in (("subject", subject), ("object", obj)):
        names = (f"{role}_score", f"{role}_depth_valid", f"{role}_box_area", f"{role}_track_age",
                 f"{role}_prototype_similarity")
        table[:, [column[name] for name in names]] = per_object[index]
    if temporal_agreement is not None:
        table[:, column["temporal_agreement"]] = temporal_agreement
    if vlm is not None:
        vlm = np.asarray(vlm)
        if vlm.shape != (edges, len(VLM_FEATURES)):
            raise TrustError(f"vlm features must have shape ({edges}, {len(VLM_FEATURES)}), got {vlm.shape}")
        table[:, [column[name] for name in VLM_FEATURES]] = vlm
    return table


class TemporalHistory:
    """Which claims held for each track pair over its last ``window_frames`` frames, for ``temporal_agreement``.

    Each ordered track pair gets a row of ``window_frames`` slots; a slot holds the predicates that held in one frame
    as a bit mask and the frame number it was written at, so slots older than the window simply stop counting. Pairs
    are found by binary search of their 64-bit key (both track ids) in a sorted array, so a frame costs a few numpy
    calls whatever the number of pairs.
    """

    def __init__(self, window_frames: int) -> None:
        if window_frames < 1:
            raise TrustError(f"the temporal window must be at least 1 frame, got {window_frames}")
        self.window_frames = window_frames
        self._keys = np.zeros(0, dtype=np.int64)  # sorted pair keys
        self._key_rows = np.zeros(0, dtype=np.int64)  # the row of each key
        self._masks = np.zeros((0, window_frames), dtype=np.uint16)
        self._written = np.full((0, window_frames), -1, dtype=np.int64)
        self._frame = 0

    @staticmethod
    def _pair_keys(track_ids_a: np.ndarray, track_ids_b: np.ndarray) -> np.ndarray:
        return (track_ids_a.astype(np.int64) << 32) | (track_ids_b.astype(np.int64) & 0xFFFFFFFF)

    def _rows_of(self, keys: np.ndarray) -> np.ndarray:
        """The row of each key, -1 for keys not seen yet."""
        index = np.searchsorted(self._keys, keys)
        rows = np.full(keys.size, -1, dtype=np.int64)
        hit = index < self._keys.size
        hit[hit] = self._keys[index[hit]] == keys[hit]
        rows[hit] = self._key_rows[index[hit]]
        return rows

    def agreement(self, track_ids: np.ndarray, holds: np.ndarray, subject: np.ndarray, obj: np.ndarray,
                  predicate: np.ndarray) -> np.ndarray:
        """``temporal_agreement`` of the edges (before this frame), then record this frame's ``holds`` (N, N, P).

        NaN for an edge whose track pair has no earlier frame within the window.
        """
        ids = np.asarray(track_ids, dtype=np.int64)
        count = len(ids)
        pair_a, pair_b = np.nonzero(~np.eye(count, dtype=bool))
        keys = self._pair_keys(ids[pair_a], ids[pair_b])
        rows = self._rows_of(keys)
        pair_row = np.full((count, count), -1, dtype=np.int64)
        pair_row[pair_a, pair_b] = rows

        result = np.full(len(predicate), np.nan)
        edge_rows = pair_row[subject, obj]
        known = edge_rows >= 0
        if known.any():
            written = self._written[edge_rows[known]]
            fresh = (written >= 0) & (written >= self._frame - self.window_frames)  # the K frames before this one
            bits = (self._masks[edge_rows[known]] >> predicate[known, None].astype(np.uint16)) & 1
            frames = fresh.sum(axis=1)
            held = (bits.astype(bool) & fresh).sum(axis=1)
            result[known] = np.where(frames > 0, held / np.maximum(frames, 1), np.nan)

        # Record this frame: new pairs get rows, every pair's slot for this frame is overwritten.
        new = np.flatnonzero(rows < 0)
        if new.size:
            start = len(self._masks)
            rows[new] = np.arange(start, start + new.size)
            order = np.argsort(np.concatenate([self._keys, keys[new]]), kind="stable")
            self._keys = np.concatenate([self._keys, keys[new]])[order]
            self._key_rows = np.concatenate([self._key_rows, rows[new]])[order]
            self._masks = np.concatenate([self._masks, np.zeros((new.size, self.window_frames), np.uint16)])
            self._written = np.concatenate([self._written, np.full((new.size, self.window_frames), -1, np.int64)])
        weights = (1 << np.arange(holds.shape[2], dtype=np.uint16)).astype(np.uint16)
        masks = (holds[pair_a, pair_b].astype(np.uint16) * weights).sum(axis=1).astype(np.uint16)
        slot = self._frame % self.window_frames
        self._masks[rows, slot] = masks
        self._written[rows, slot] = self._frame
        self.end_frame()
        return result

    def end_frame(self) -> None:
        """The frame is over; called by :meth:`agreement`, and for a frame without a track pair (fewer than two
        objects), which still takes its place in the window: the window is the last K frames, not the last K frames
        that had a pair."""
        self._frame += 1
        if self._frame % (4 * self.window_frames) == 0:
            self._forget_stale()

    def _forget_stale(self) -> None:
        """Drop the rows of pairs not seen within the window (tracks that ended), so memory stays bounded."""
        alive = (self._written >= self._frame - self.window_frames).any(axis=1)
        if alive.all():
            return
        keep = np.flatnonzero(alive)
        renumber = np.full(len(alive), -1, dtype=np.int64)
        renumber[keep] = np.arange(keep.size)
        kept_keys = alive[self._key_rows]
        self._keys, self._key_rows = self._keys[kept_keys], renumber[self._key_rows[kept_keys]]
        self._masks, self._written = self._masks[keep], self._written[keep]

    def __len__(self) -> int:
        """Number of track pairs remembered."""
        return int(self._keys.size)
