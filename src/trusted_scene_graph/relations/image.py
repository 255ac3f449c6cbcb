"""Relations between 2D boxes in the image plane, for claims about the image as seen (VSR style).

"The cat is left of the dog" in a visual-spatial-reasoning benchmark is a claim about the picture, not about the 3D
scene: these predicates use only the detection boxes, in pixels. A box ``(x, y, w, h)`` covers columns ``[x, x + w)``
and rows ``[y, y + h)`` (``x``, ``y``: its top-left corner, as in ``ObjectNode.box_xywh_px`` and a ROS
RegionOfInterest); its centre is ``(x + w / 2, y + h / 2)``. Image "up" is towards smaller rows.

One :class:`ImageRelation` per ordered pair ``(a, b)`` and predicate that holds. ``margin_px`` is how far, in pixels,
the pair is past the decision boundary; the edge is emitted only when it is > 0 (a pair exactly on the boundary gets
neither edge). Every edge also carries the pair's intersection over union, ``iou``, whatever its predicate (heavily
overlapping boxes make "left of" a weaker claim):

==================  ==========================================================================================
predicate           margin_px
==================  ==========================================================================================
``image_left_of``   ``centre_x_b - centre_x_a``
``image_right_of``  ``centre_x_a - centre_x_b``
``image_above``     ``centre_y_b - centre_y_a`` (a's centre is higher in the image)
``image_below``     ``centre_y_a - centre_y_b``
``image_overlaps``  ``min(depth_x, depth_y)`` with ``depth_x = (w_a + w_b) / 2 - |centre_x_a - centre_x_b|``:
                    how far the boxes would have to move apart to stop overlapping. Holds exactly when the
                    IoU is > 0 (so never for an empty box); emitted in both directions
``image_contains``  ``min(x_b - x_a, y_b - y_a, right_a - right_b, bottom_a - bottom_b)``: a's box strictly
                    contains b's, with that much room on its tightest side (a shared edge is not containment)
==================  ==========================================================================================

Edges are ordered by ordered pair (in input order, subject-major), then in :data:`IMAGE_PREDICATES` order.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import NamedTuple

import numpy as np

from trusted_scene_graph.relations.geometric import RelationError

IMAGE_PREDICATES = ("image_left_of", "image_right_of", "image_above", "image_below", "image_overlaps",
                    "image_contains")
_IMAGE_PREDICATES = np.array(IMAGE_PREDICATES, dtype=object)


class ImageRelation(NamedTuple):
    """A directed image-plane edge ``subject predicate object`` with its margin in pixels and the pair's IoU."""

    subject_id: int
    predicate: str
    object_id: int
    margin_px: float
    iou: float


def _validated_boxes(boxes_xywh_px: np.ndarray | Sequence[Sequence[float]], name: str) -> np.ndarray:
    boxes = np.asarray(boxes_xywh_px, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise RelationError(f"{name} must have shape (N, 4) as (x, y, width, height) rows, got {boxes.shape}")
    bad = ~(np.isfinite(boxes).all(axis=1) & (boxes[:, 2:] >= 0).all(axis=1))
    if bad.any():
        index = int(np.argmax(bad))
        raise RelationError(f"{name} row {index} is {boxes[index].tolist()}; a box must be finite with "
                            f"non-negative width and height")
    return boxes


def _overlap_lengths_px(boxes_a: np.ndarray, boxes_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lengths (N, M) of the overlap of every pair of boxes along x and y (negative: the gap between them)."""
    right_a, bottom_a = boxes_a[:, 0] + boxes_a[:, 2], boxes_a[:, 1] + boxes_a[:, 3]
    right_b, bottom_b = boxes_b[:, 0] + boxes_b[:, 2], boxes_b[:, 1] + boxes_b[:, 3]
    overlap_x = np.minimum(right_a[:, None], right_b[None, :]) - np.maximum(boxes_a[:, None, 0], boxes_b[None, :, 0])
    overlap_y = np.minimum(bottom_a[:, None], bottom_b[None, :]) - np.maximum(boxes_a[:, None, 1], boxes_b[None, :, 1])
    return overlap_x, overlap_y


def _iou(boxes_a: np.ndarray, boxes_b: np.ndarray, overlap_x: np.ndarray, overlap_y: np.ndarray) -> np.ndarray:
    intersection = np.maximum(overlap_x, 0.0) * np.maximum(overlap_y, 0.0)
    union = (boxes_a[:, 2] * boxes_a[:, 3])[:, None] + (boxes_b[:, 2] * boxes_b[:, 3])[None, :] - intersection
    # Two empty boxes have an empty union: they share no area, so their IoU is 0 rather than 0 / 0.
    return np.divide(intersection, union, out=np.zeros_like(union), where=union > 0)


def box_iou_matrix(
    boxes_a_xywh_px: np.ndarray | Sequence[Sequence[float]],
    boxes_b_xywh_px: np.ndarray | Sequence[Sequence[float]] | None = None,
) -> np.ndarray:
    """Intersection over union of every box in ``a`` (N, 4) with every box in ``b`` (M, 4; default ``a``): (N, M).

    Boxes are ``(x, y, width, height)`` in pixels. Boxes that only touch, and empty boxes, have IoU 0.
    """
    boxes_a = _validated_boxes(boxes_a_xywh_px, "boxes_a_xywh_px")
    boxes_b = boxes_a if boxes_b_xywh_px is None else _validated_boxes(boxes_b_xywh_px, "boxes_b_xywh_px")
    return _iou(boxes_a, boxes_b, *_overlap_lengths_px(boxes_a, boxes_b))


def image_relations(
    boxes_xywh_px: np.ndarray | Sequence[Sequence[float]], ids: Sequence[int] | np.ndarray
) -> list[ImageRelation]:
    """Every image-plane edge that holds between N boxes (N, 4) with the given object ids (see the module docstring)."""
    boxes = _validated_boxes(boxes_xywh_px, "boxes_xywh_px")
    object_ids = np.asarray(ids, dtype=np.int64)
    if object_ids.shape != (len(boxes),):
        raise RelationError(f"ids must hold one id per box ({len(boxes)}), got shape {object_ids.shape}")
    if len(set(object_ids.tolist())) != len(object_ids):
        unique, counts = np.unique(object_ids, return_counts=True)
        raise RelationError(f"object ids must be unique; repeated: {unique[counts > 1].tolist()}")
    count = len(boxes)
    if count < 2:
        return []

    centre_x = boxes[:, 0] + boxes[:, 2] / 2
    centre_y = boxes[:, 1] + boxes[:, 3] / 2
    rightward = centre_x[None, :] - centre_x[:, None]  # [a, b] = centre_x_b - centre_x_a
    downward = centre_y[None, :] - centre_y[:, None]
    overlap_x, overlap_y = _overlap_lengths_px(boxes, boxes)
    iou = _iou(boxes, boxes, overlap_x, overlap_y)
    right, bottom = boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]
    room = np.minimum(np.minimum(boxes[None, :, 0] - boxes[:, None, 0], boxes[None, :, 1] - boxes[:, None, 1]),
                      np.minimum(right[:, None] - right[None, :], bottom[:, None] - bottom[None, :]))
    overlap_depth = np.minimum((boxes[:, None, 2] + boxes[None, :, 2]) / 2 - np.abs(rightward),
                               (boxes[:, None, 3] + boxes[None, :, 3]) / 2 - np.abs(downward))
    # An empty box can lie inside another (positive depth) yet cover no area: only a positive IoU is an overlap.
    overlapping = np.where(iou > 0, overlap_depth, np.minimum(overlap_depth, 0.0))
    margins = np.stack([rightward, -rightward, downward, -downward, overlapping, room], axis=-1)
    holds = margins > 0
    diagonal = np.arange(count)
    holds[diagonal, diagonal] = False
    subject, obj, predicate = np.nonzero(holds)
    return list(map(tuple.__new__, repeat(ImageRelation),
                    zip(object_ids[subject].tolist(), _IMAGE_PREDICATES[predicate].tolist(),
                        object_ids[obj].tolist(), margins[subject, obj, predicate].tolist(),
                        iou[subject, obj].tolist(), strict=True)))
