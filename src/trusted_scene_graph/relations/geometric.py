"""Qualitative and metric relations computed from 3D boxes in the gravity-aligned graph frame.

Frame and viewpoint (REP-103 graph frame: x forward, y left, z up). The camera's horizontal axes come from
:func:`horizontal_axes`: ``left`` is the image's left direction projected on the horizontal plane (for a camera that
is not rolled, its viewing direction turned 90 degrees counter-clockwise seen from above; it stays image-left for a
camera looking straight down or up, or rolled, and turns continuously with the camera) and ``forward`` is the viewing
direction projected on the horizontal plane (``left`` turned 90 degrees clockwise for a camera looking straight down
or up). Every object is an axis-aligned box in the graph frame (centroid and full size along x, y,
z, in metres).

Qualitative predicates. One edge ``a predicate b`` per ordered pair for which it holds. Its ``margin_m`` says how
far, in metres, the pair is past the decision boundary: the edge is emitted only when the margin is > 0 (a pair
exactly on the boundary gets neither edge) and its trust is the geometric prior ``margin_trust(margin_m,
relations.margin_scale_m)``. With ``d = centroid_a - centroid_b``:

================  ===========================================================================  ==================
predicate         margin_m                                                                     value_m
================  ===========================================================================  ==================
``left_of``       ``d . left``                                                                 NaN
``right_of``      ``-d . left``                                                                NaN
``above``         ``d_z`` (along gravity)                                                      NaN
``below``         ``-d_z``                                                                     NaN
``in_front_of``   ``-d . forward`` (closer to the camera)                                      NaN
``behind``        ``d . forward``                                                              NaN
``near``          ``relations.near_m - surface``                                               ``surface``
``far``           ``surface - relations.near_m``                                               ``surface``
``on_top_of``     ``min(tol - |gap_z|, overlap_x, overlap_y)`` if ``d_z > 0`` (below)          ``gap_z``
``bigger_than``   ``size_a - size_b`` (:func:`size_measure_m`, below)                          NaN
``taller_than``   ``size_a_z - size_b_z`` (height along gravity)                               NaN
================  ===========================================================================  ==================

``surface`` is the distance between the closest points of the two boxes (0 when they touch or overlap).

``size`` (:func:`size_measure_m`) is ``sqrt(s_1 * s_2)`` for the box's extents sorted ``s_1 >= s_2 >= s_3``: the side
of the square with the area of the box's largest face. Unlike the cube root of the volume it does not vanish when
one extent is 0, as it is for a table top lifted from a view of its top only (no visible thickness), which would
otherwise be smaller than a 4 cm cube standing on it; it is 0 only for a box with two zero extents.

``on_top_of(a, b)``, "a rests on b", needs all of: (1) a's bottom within ``tol = relations.contact_tolerance_m``
of b's top, ``|gap_z| < tol`` with ``gap_z = (z_a - size_a_z / 2) - (z_b + size_b_z / 2)`` (negative when the boxes
interpenetrate, as noisy boxes do); (2) the horizontal footprints overlap, ``overlap_x > 0`` and ``overlap_y > 0``
where ``overlap_x = (size_a_x + size_b_x) / 2 - |d_x|`` is how far a would have to move along x for the footprints to
stop overlapping (the overlap depth; negative: the gap between them); (3) a's centre is above b's, ``d_z > 0``. Its
margin is the smallest of the three slacks of (1) and (2) when (3) holds, else ``min(those, d_z)`` (never positive),
so it is positive exactly when all conditions hold and says how little would break the weakest one. (3) is a gate,
not a slack: how far a's centre is above b's says nothing about how well a rests on b, and as a slack it would rate a
plate lying flat on a table top lifted without thickness by half the plate's thickness.

Quantitative (measurement) edges. One edge per unordered pair, from the lower id to the higher (``a.id < b.id``),
always emitted; ``margin_m`` carries the measured magnitude (there is no decision boundary: ``margin_m = value_m``,
except ``vertical_offset`` whose margin is ``|value_m|`` so that no emitted edge has a negative margin) and the trust
is :func:`~trusted_scene_graph.graph.model.distance_trust` (the weaker input's detection score times the weaker
valid-depth fraction; 1 for ground truth through :func:`relations_from_boxes`):

- ``distance``: centroid distance ``|d|``;
- ``surface_distance``: closest-surface distance between the boxes (``surface`` above);
- ``horizontal_offset``: horizontal centroid distance ``hypot(d_x, d_y)``;
- ``vertical_offset``: signed height difference ``d_z = z_a - z_b`` of the lower id over the higher id.

Dimensions of one object as the camera sees it, :func:`object_dimensions_m`: ``width`` is the extent of the box
along the horizontal ``left`` axis, ``height`` along z and ``depth`` along the horizontal ``forward`` axis, where the
extent of an axis-aligned box of size ``s`` along a unit direction ``u`` is ``sum_i |u_i| s_i`` (the length of its
shadow on that line). A 1 x 2 x 0.5 m box seen along x is 2 m wide and 1 m deep; seen at 45 degrees, both are
``3 / sqrt(2)`` m.

Edges come in a fixed order: qualitative edges by ordered pair (in input order, subject-major) and, within a pair, in
:data:`QUALITATIVE_PREDICATES` order; then the measurement edges by pair (ordered by the position of the pair's
lower-id object in the input, then the other's), each pair's in :data:`QUANTITATIVE_PREDICATES` order.

All pairs are evaluated at once on (N, N) arrays; :class:`Relation` objects are created only for emitted edges.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
from scipy.special import expit

from trusted_scene_graph.errors import TsgError
from trusted_scene_graph.geometry.boxes import (
    box_extent_along_m,
    is_horizontal_unit,
    pairwise_box_gaps_m,
    surface_distances_from_gaps_m,
)
from trusted_scene_graph.graph.model import ObjectNode, Relation

QUALITATIVE_PREDICATES = ("left_of", "right_of", "above", "below", "in_front_of", "behind", "near", "far",
                          "on_top_of", "bigger_than", "taller_than")
QUANTITATIVE_PREDICATES = ("distance", "surface_distance", "horizontal_offset", "vertical_offset")

# Where a claim comes from (SpatialRelation.SOURCE_*); an edge's source is stored as its index here.
EDGE_SOURCES = ("geometry", "vlm")

_QUALITATIVE = np.array(QUALITATIVE_PREDICATES, dtype=object)
_SOURCES = np.array(EDGE_SOURCES, dtype=object)
_QUANTITATIVE = np.array(QUANTITATIVE_PREDICATES, dtype=object)
_NEAR, _FAR, _ON_TOP_OF = (QUALITATIVE_PREDICATES.index(name) for name in ("near", "far", "on_top_of"))


class RelationError(TsgError):
    """Relations cannot be computed from the given geometry."""


@dataclass(frozen=True)
class RelationSettings:
    near_m: float = 0.15
    margin_scale_m: float = 0.02
    contact_tolerance_m: float = 0.02

    def __post_init__(self) -> None:
        # Built directly, not only from a validated config: a negative scale would invert the prior, a NaN near_m
        # silently drop near/far.
        for name in ("near_m", "margin_scale_m", "contact_tolerance_m"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise RelationError(f"RelationSettings {name} must be a finite number > 0 (metres), got {value!r}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RelationSettings:
        return cls(config["relations.near_m"], config["relations.margin_scale_m"],
                   config["relations.contact_tolerance_m"])


def margin_trust(margin_m: float, scale_m: float) -> float:
    """Geometric prior P(edge correct) = logistic(margin / scale).

    Not calibrated: it only orders edges by how clear-cut they are, until the learned trust model replaces it.
    """
    return float(expit(margin_m / scale_m))


# Below this horizontal component of a unit direction (about 10 degrees from vertical) the optical axis gives no stable
# heading.
_MIN_HORIZONTAL = 0.17


def _unit_direction(name: str, direction: np.ndarray | Sequence[float]) -> np.ndarray:
    """``direction`` as a unit 3-vector, or a :class:`RelationError` naming it when it is not a finite non-zero one."""
    try:
        vector = np.asarray(direction, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise RelationError(f"{name} must be a finite non-zero 3-vector in the graph frame, got {direction!r}") from exc
    if vector.shape != (3,) or not np.isfinite(vector).all() or not vector.any():
        raise RelationError(f"{name} must be a finite non-zero 3-vector in the graph frame, got {vector.tolist()}")
    vector = vector / np.abs(vector).max()  # rescaled first so that the norm can neither overflow nor underflow
    return vector / np.linalg.norm(vector)


def horizontal_axes(
    camera_forward_graph: np.ndarray, camera_up_graph: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The camera's horizontal forward and left unit vectors in the graph frame (``left = z x forward``).

    ``camera_forward_graph`` (the optical z axis) and ``camera_up_graph`` (the image's up direction, the optical -y
    axis) are finite non-zero 3-vectors in the graph frame, of any length.

    With ``camera_up_graph``, ``left`` is the image's left direction (``image_up x optical_axis``, the optical -x
    axis) projected on the horizontal plane: left stays image-left at every tilt, a camera looking straight down or up
    (a top-down or wrist camera) and a rolled one included, and it turns continuously as the camera turns. For a camera
    that is not rolled this is the optical axis' horizontal direction turned 90 degrees counter-clockwise seen from
    above. ``forward`` is the optical axis projected on the horizontal plane (``in_front_of`` is closer to the camera,
    rolled or not); for a camera looking within about 10 degrees of straight down or up, which has no such direction,
    it is ``left`` turned 90 degrees clockwise (image-up, for a camera that is not rolled: it turns by the roll angle
    for a rolled one at that switch). The one exception for ``left`` is a camera whose image-left is within about 10
    degrees of vertical (mounted in portrait and looking nearly level), where image-left says nothing about the
    horizontal plane: there ``left`` is the viewing direction turned 90 degrees counter-clockwise.

    Without ``camera_up_graph``, ``forward`` is the optical axis projected on the horizontal plane, which a camera
    looking within about 10 degrees of straight down or up does not have (a :class:`RelationError`).
    """
    forward = _unit_direction("camera_forward_graph", camera_forward_graph)
    up = None if camera_up_graph is None else _unit_direction("camera_up_graph", camera_up_graph)
    heading = forward[:2]
    if up is not None:
        image_left = np.cross(up, forward)  # of length 1 when image up is perpendicular to the optical axis, as it is
        if math.hypot(*image_left[:2]) >= _MIN_HORIZONTAL:
            x, y = image_left[:2] / math.hypot(*image_left[:2])
            if math.hypot(*heading) >= _MIN_HORIZONTAL:
                # Front is towards the camera along where it looks: left turned 90 degrees would point sideways for a
                # rolled camera, and backwards for one upside down.
                heading_x, heading_y = heading / math.hypot(*heading)
                return np.array([heading_x, heading_y, 0.0]), np.array([x, y, 0.0])
            return np.array([y, -x, 0.0]), np.array([x, y, 0.0])  # forward = left turned 90 degrees clockwise
    if math.hypot(*heading) < _MIN_HORIZONTAL:
        if up is None:
            raise RelationError(f"the camera looks straight up or down (camera_forward_graph {forward.tolist()}) and "
                                f"no image-up direction was given; left/right and front/behind are undefined")
        # Both the optical axis and image-left within 10 degrees of vertical: image up is not perpendicular to the
        # optical axis.
        raise RelationError(f"the camera looks straight up or down (camera_forward_graph {forward.tolist()}) and "
                            f"its image-up direction camera_up_graph {up.tolist()} is not horizontal either; "
                            f"left/right and front/behind are undefined")
    x, y = heading / math.hypot(*heading)
    return np.array([x, y, 0.0]), np.array([-y, x, 0.0])  # left = z cross forward


def size_measure_m(sizes_m: np.ndarray) -> np.ndarray:
    """The size that ``bigger_than`` compares, in metres, of boxes with full sizes ``sizes_m`` (N, 3): (N,).

    ``sqrt(s_1 * s_2)`` for the extents sorted ``s_1 >= s_2 >= s_3``, the side of the square with the area of the
    box's largest face. The cube root of the volume would be 0 for a box with one zero extent (a table top lifted
    from a view of its top only), making it smaller than anything standing on it.
    """
    sizes = np.asarray(sizes_m, dtype=np.float64)
    if sizes.ndim != 2 or sizes.shape[1] != 3:
        raise RelationError(f"sizes_m must have shape (N, 3), got {sizes.shape}")
    largest_two = np.sort(sizes, axis=1)[:, 1:]
    return np.sqrt(largest_two[:, 0] * largest_two[:, 1])


def object_dimensions_m(size_m: np.ndarray, forward: np.ndarray, left: np.ndarray) -> tuple[float, float, float]:
    """(width, height, depth) in metres of a graph-frame axis-aligned box of full size ``size_m`` seen by a camera.

    ``forward`` and ``left`` are the camera's horizontal unit axes (:func:`horizontal_axes`). Width is the box's
    extent along ``left``, height along z, depth along ``forward`` (see the module docstring).
    """
    size = np.asarray(size_m, dtype=np.float64)
    if size.shape != (3,) or not np.isfinite(size).all() or (size < 0).any():
        raise RelationError(f"size_m must be 3 finite non-negative extents in metres, got {size.tolist()}")
    for name, axis in (("forward", forward), ("left", left)):
        axis = np.asarray(axis, dtype=np.float64)
        if not is_horizontal_unit(axis):
            raise RelationError(f"{name} must be a horizontal unit vector (see horizontal_axes), got {axis.tolist()}")
    return box_extent_along_m(size, left), float(size[2]), box_extent_along_m(size, forward)


def _per_object(name: str, values: Sequence[float] | np.ndarray | None, count: int) -> np.ndarray:
    if values is None:
        return np.ones(count)
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (count,):
        raise RelationError(f"{name} must hold one value per object ({count}), got shape {array.shape}")
    bad = ~((array >= 0.0) & (array <= 1.0))  # NaN included: a trust of NaN would prune the always-emitted edges
    if bad.any():
        raise RelationError(f"{name} must be in [0, 1]; the object at index {int(np.flatnonzero(bad)[0])} has "
                            f"{float(array[bad][0])!r}")
    return array


def _validated_boxes(
    ids: Sequence[int] | np.ndarray, centroids_m: np.ndarray, sizes_m: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    centroids = np.asarray(centroids_m, dtype=np.float64)
    sizes = np.asarray(sizes_m, dtype=np.float64)
    object_ids = np.asarray(ids, dtype=np.int64)
    if centroids.ndim != 2 or centroids.shape[1] != 3:
        raise RelationError(f"centroids_m must have shape (N, 3), got {centroids.shape}")
    if sizes.shape != centroids.shape:
        raise RelationError(f"sizes_m must have the shape of centroids_m {centroids.shape}, got {sizes.shape}")
    if object_ids.shape != (len(centroids),):
        raise RelationError(f"ids must hold one id per box ({len(centroids)}), got shape {object_ids.shape}")
    if len(set(object_ids.tolist())) != len(object_ids):
        unique, counts = np.unique(object_ids, return_counts=True)
        raise RelationError(f"object ids must be unique; repeated: {unique[counts > 1].tolist()}")
    bad = ~(np.isfinite(centroids).all(axis=1) & np.isfinite(sizes).all(axis=1) & (sizes >= 0).all(axis=1))
    if bad.any():
        index = int(np.argmax(bad))
        raise RelationError(f"object {int(object_ids[index])} has centroid {centroids[index].tolist()} m and size "
                            f"{sizes[index].tolist()} m; both must be finite and the size non-negative")
    return object_ids, centroids, sizes


def relations_from_boxes(
    ids: Sequence[int] | np.ndarray,
    centroids_m: np.ndarray,
    sizes_m: np.ndarray,
    camera_forward_graph: np.ndarray,
    settings: RelationSettings,
    camera_up_graph: np.ndarray | None = None,
    *,
    scores: Sequence[float] | np.ndarray | None = None,
    depth_valid_fractions: Sequence[float] | np.ndarray | None = None,
) -> list[Relation]:
    """All edges between N axis-aligned boxes given as arrays (see the module docstring).

    This is :func:`compute_relations` without :class:`ObjectNode`: it needs only ids, centroids (N, 3) and sizes
    (N, 3) in the graph frame, so it also serves ground truth (true centres and sizes). ``scores`` and
    ``depth_valid_fractions`` (N,) set the measurement edges' trust as ``distance_trust`` does; left out, they are
    1 (exact geometry), so ground-truth distances have trust 1.
    """
    return _relations_from_boxes(ids, centroids_m, sizes_m, camera_forward_graph, settings, camera_up_graph,
                                 scores=scores, depth_valid_fractions=depth_valid_fractions)[0]


@dataclass(frozen=True)
class RelationGrid:
    """Every qualitative margin of every ordered pair of N boxes, and what the measurement edges need.

    ``margins_m[a, b, p]`` is the margin of ``a QUALITATIVE_PREDICATES[p] b`` (the diagonal is meaningless); the
    claims that hold are :meth:`claims`. Built once per frame by :func:`relation_grid`; the trust model reads its
    per-edge features from it (:mod:`trusted_scene_graph.trust.features`).
    """

    ids: np.ndarray  # (N,) int64
    centroids_m: np.ndarray  # (N, 3)
    sizes_m: np.ndarray  # (N, 3)
    forward: np.ndarray  # the camera's horizontal forward axis (3,)
    left: np.ndarray  # the camera's horizontal left axis (3,)
    offsets_m: np.ndarray  # (N, N, 3): centroid_a - centroid_b
    gaps_m: np.ndarray  # (N, N, 3): per-axis gap between the boxes (negative: overlap depth)
    surface_m: np.ndarray  # (N, N): closest-surface distance
    contact_gap_m: np.ndarray  # (N, N): a's bottom minus b's top
    margins_m: np.ndarray  # (N, N, P)

    @property
    def count(self) -> int:
        return len(self.ids)

    def claims(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(subject, object, predicate)`` indices of the qualitative edges that hold (margin > 0), row-major: by
        subject, object, then predicate (the order of :func:`compute_relations`)."""
        holds = self.margins_m > 0
        diagonal = np.arange(self.count)
        holds[diagonal, diagonal] = False
        return np.nonzero(holds)

    def values_m(self, subject: np.ndarray, obj: np.ndarray, predicate: np.ndarray) -> np.ndarray:
        """``value_m`` of qualitative edges: the surface distance for near/far, the contact gap for on_top_of, NaN
        otherwise (see the module docstring)."""
        value = np.full(len(predicate), np.nan)
        measured_here = (predicate == _NEAR) | (predicate == _FAR)
        value[measured_here] = self.surface_m[subject[measured_here], obj[measured_here]]
        resting_here = predicate == _ON_TOP_OF
        value[resting_here] = self.contact_gap_m[subject[resting_here], obj[resting_here]]
        return value


def relation_grid(
    ids: Sequence[int] | np.ndarray,
    centroids_m: np.ndarray,
    sizes_m: np.ndarray,
    camera_forward_graph: np.ndarray,
    settings: RelationSettings,
    camera_up_graph: np.ndarray | None = None,
) -> RelationGrid:
    """The (N, N) pair geometry and (N, N, P) qualitative margins of N boxes (validated; see the module docstring)."""
    forward, left = horizontal_axes(camera_forward_graph, camera_up_graph)
    object_ids, centroids, sizes = _validated_boxes(ids, centroids_m, sizes_m)
    offsets = centroids[:, None, :] - centroids[None, :, :]  # [a, b] = centroid_a - centroid_b
    lateral = offsets @ left
    longitudinal = offsets @ forward
    rise = offsets[:, :, 2]
    gaps = pairwise_box_gaps_m(centroids, sizes)
    surface = surface_distances_from_gaps_m(gaps)
    half_height = sizes[:, 2] / 2
    contact_gap = (centroids[:, 2] - half_height)[:, None] - (centroids[:, 2] + half_height)[None, :]
    support = np.minimum(settings.contact_tolerance_m - np.abs(contact_gap),
                         np.minimum(-gaps[:, :, 0], -gaps[:, :, 1]))
    resting = np.where(rise > 0, support, np.minimum(support, rise))
    size = size_measure_m(sizes)
    margins = np.stack([lateral, -lateral, rise, -rise, -longitudinal, longitudinal,
                        settings.near_m - surface, surface - settings.near_m, resting,
                        size[:, None] - size[None, :], sizes[:, None, 2] - sizes[None, :, 2]], axis=-1)
    return RelationGrid(object_ids, centroids, sizes, forward, left, offsets, gaps, surface, contact_gap, margins)


def relations_from_grid(
    grid: RelationGrid,
    subject: np.ndarray,
    obj: np.ndarray,
    predicate: np.ndarray,
    trust: np.ndarray,
    *,
    sources: np.ndarray | None = None,
    scores: Sequence[float] | np.ndarray | None = None,
    depth_valid_fractions: Sequence[float] | np.ndarray | None = None,
    min_trust: float = 0.0,
) -> tuple[list[Relation], int]:
    """Materialise the qualitative edges ``(subject, obj, predicate)`` (indices into the grid, with their trust and
    :data:`EDGE_SOURCES` code) and every measurement edge; those with trust >= ``min_trust`` are built, the others only
    counted. The margin of an edge is the grid's (negative for a claim the geometry does not support)."""
    count = grid.count
    score = _per_object("scores", scores, count)
    valid_fraction = _per_object("depth_valid_fractions", depth_valid_fractions, count)
    object_ids = grid.ids
    margin = grid.margins_m[subject, obj, predicate]
    value = grid.values_m(subject, obj, predicate)
    source_names = (np.full(len(predicate), EDGE_SOURCES[0], dtype=object) if sources is None
                    else _SOURCES[np.asarray(sources, dtype=np.intp)])

    # Measurement edges, one per unordered pair from the lower id.
    low, high = np.nonzero(object_ids[:, None] < object_ids[None, :])
    pair_offsets = grid.offsets_m[low, high]
    horizontal = np.hypot(pair_offsets[:, 0], pair_offsets[:, 1])
    measured = np.stack([np.hypot(horizontal, pair_offsets[:, 2]), grid.surface_m[low, high], horizontal,
                         pair_offsets[:, 2]], axis=1).ravel()
    kinds = len(QUANTITATIVE_PREDICATES)
    measured_trust = np.repeat(np.minimum(score[low], score[high])
                               * np.minimum(valid_fraction[low], valid_fraction[high]), kinds)

    # One tolist per dtype: the conversion to Python numbers is, after creating the edges, the largest cost.
    pair_ids = np.concatenate([object_ids[[subject, obj]], np.repeat(object_ids[[low, high]], kinds, axis=1)], axis=1)
    predicate_names = np.concatenate([_QUALITATIVE[predicate], np.tile(_QUANTITATIVE, len(low))])
    source_names = np.concatenate([source_names, np.full(len(low) * kinds, EDGE_SOURCES[0], dtype=object)])
    numbers = np.concatenate([[value, margin, trust], [measured, np.abs(measured), measured_trust]], axis=1)
    kept = numbers[2] >= min_trust
    pruned = int(kept.size - np.count_nonzero(kept))
    if pruned:  # pruned edges are counted, never built
        pair_ids, predicate_names, numbers = pair_ids[:, kept], predicate_names[kept], numbers[:, kept]
        source_names = source_names[kept]
    subject_ids, object_ids_out = pair_ids.tolist()
    values, margins_out, trusts = numbers.tolist()
    # tuple.__new__ straight from C: the fields are complete and in order, and this is the bulk of the run time.
    return list(map(tuple.__new__, repeat(Relation), zip(subject_ids, predicate_names.tolist(), object_ids_out,
                                                         values, margins_out, trusts, source_names.tolist(),
                                                         strict=False))), pruned


def _relations_from_boxes(
    ids: Sequence[int] | np.ndarray,
    centroids_m: np.ndarray,
    sizes_m: np.ndarray,
    camera_forward_graph: np.ndarray,
    settings: RelationSettings,
    camera_up_graph: np.ndarray | None = None,
    *,
    scores: Sequence[float] | np.ndarray | None = None,
    depth_valid_fractions: Sequence[float] | np.ndarray | None = None,
    min_trust: float = 0.0,
) -> tuple[list[Relation], int]:
    """The edges with trust >= ``min_trust`` (qualitative: the geometric prior) and the number of the others."""
    grid = relation_grid(ids, centroids_m, sizes_m, camera_forward_graph, settings, camera_up_graph)
    _per_object("scores", scores, grid.count)
    _per_object("depth_valid_fractions", depth_valid_fractions, grid.count)
    if grid.count < 2:
        return [], 0
    subject, obj, predicate = grid.claims()
    trust = expit(grid.margins_m[subject, obj, predicate] / settings.margin_scale_m)
    return relations_from_grid(grid, subject, obj, predicate, trust, scores=scores,
                               depth_valid_fractions=depth_valid_fractions, min_trust=min_trust)


def compute_relations(
    objects: Sequence[ObjectNode],
    camera_forward_graph: np.ndarray,
    settings: RelationSettings,
    camera_up_graph: np.ndarray | None = None,
) -> list[Relation]:
    """All candidate edges between the objects (trust from the geometric prior); see the module docstring.

    Uses only each object's ``id``, ``centroid_m`` and ``size_m``, plus ``score`` and ``depth_valid_fraction`` for
    the measurement edges' trust, so :class:`ObjectNode` objects built from ground truth work as well.
    """
    return prune_relations(objects, camera_forward_graph, settings, camera_up_graph, min_trust=0.0)[0]


def prune_relations(
    objects: Sequence[ObjectNode],
    camera_forward_graph: np.ndarray,
    settings: RelationSettings,
    camera_up_graph: np.ndarray | None = None,
    *,
    min_trust: float,
) -> tuple[list[Relation], int]:
    """The candidate edges with trust >= ``min_trust``, and how many were pruned (those are never built)."""
    if len(objects) < 2:
        horizontal_axes(camera_forward_graph, camera_up_graph)  # the camera is checked whatever the scene
        return [], 0
    try:
        centroids = np.array([obj.centroid_m for obj in objects], dtype=np.float64)
        sizes = np.array([obj.size_m for obj in objects], dtype=np.float64)
    except ValueError as exc:
        raise RelationError(f"every object needs a 3-vector centroid_m and size_m: {exc}") from exc
    return _relations_from_boxes([obj.id for obj in objects], centroids, sizes, camera_forward_graph, settings,
                                 camera_up_graph, scores=[obj.score for obj in objects],
                                 depth_valid_fractions=[obj.depth_valid_fraction for obj in objects],
                                 min_trust=min_trust)
