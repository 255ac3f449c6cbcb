"""Per-frame trust: claims -> features -> model -> (VLM on a budget) -> P(correct) for every claimed edge.

:class:`EdgeTrust` is what :class:`~trusted_scene_graph.pipeline.scene.ScenePipeline` calls once per frame. It keeps
the state that spans frames: the temporal history of each track pair, the last VLM answer of each claim, and the
label prototypes. The steps of :meth:`EdgeTrust.assess`:

1. the geometry's claims (margin > 0) get features with the VLM answers remembered from earlier frames, and a trust;
2. with a VLM, the claims whose trust lies in ``trust.vlm_query_band`` and that have no answer younger than
   ``trust.vlm_answer_max_age_frames`` are asked about, most uncertain first (trust closest to 0.5), at most
   ``trust.vlm_queries_per_frame`` per frame (:func:`select_queries`); the others reuse their last answer, which is
   kept while both tracks live. A pair of objects with the same label (two cups) is never asked about: "The cup is
   left of the cup." names neither object, so no answer could be about the pair, and it gets no VLM claims. With
   ``trust.vlm_sensitivity`` each question is asked again on a noised image, unless the backend does not look at
   the pixels (``recorded``): then ``vlm_sensitivity`` stays missing (NaN), as for a model that never computed it;
3. a claim the VLM rejects (probability < 0.5) whose predicate has a converse (left_of/right_of, above/below,
   in_front_of/behind, near/far) adds the VLM's own claim, the converse, as an edge with source 'vlm' and a negative
   margin: the geometry disagrees, and the trust model weighs the two;
4. features are recomputed with this frame's answers and the model gives each edge its final trust.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trusted_scene_graph.perception.hf import MAX_IMAGE_ASPECT_RATIO, MIN_IMAGE_SIDE_PX
from trusted_scene_graph.relations.geometric import QUALITATIVE_PREDICATES, RelationGrid
from trusted_scene_graph.trust import TrustError
from trusted_scene_graph.trust.features import (
    FEATURES,
    VLM_FEATURES,
    ObjectArrays,
    TemporalHistory,
    edge_features,
)
from trusted_scene_graph.trust.model import EdgeTrustModel, MarginPriorTrust, load_trust_model
from trusted_scene_graph.vlm import make_vlm
from trusted_scene_graph.vlm.base import CONVERSE_PREDICATES, looks_at_pixels, noised_image, statement_key
from trusted_scene_graph.vlm.recorded import RecordedVlm

SOURCE_GEOMETRY, SOURCE_VLM = 0, 1
_NO_ANSWER = np.full(len(VLM_FEATURES), np.nan)
# The features only a VLM fills in: a model with zero gain on all of them ignores every VLM answer.
VLM_INPUT_FEATURES = ("claim_from_vlm", *VLM_FEATURES)


@dataclass(frozen=True)
class CandidateEdges:
    """Every claimed qualitative edge of a frame, before pruning: arrays (E,) and the feature table of its facts.

    ``subject``/``object`` index the frame's objects; ``predicate`` indexes QUALITATIVE_PREDICATES; ``source`` is
    0 (geometry) or 1 (VLM). An edge and its converse ("a left_of b", "b right_of a"; "a near b", "b near a") state
    one fact: ``features`` has one row per fact (C, F), ``canonical`` (E,) is each edge's row, and
    ``representative`` (E,) marks the one edge per fact whose subject and object the row describes.
    """

    subject: np.ndarray
    object: np.ndarray
    predicate: np.ndarray
    source: np.ndarray
    features: np.ndarray
    trust: np.ndarray
    vlm_queries: int = 0
    canonical: np.ndarray | None = None
    representative: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.canonical is None:  # every edge is its own fact
            object.__setattr__(self, "canonical", np.arange(len(self.predicate)))
            object.__setattr__(self, "representative", np.ones(len(self.predicate), dtype=bool))

    def __len__(self) -> int:
        return len(self.predicate)

    @classmethod
    def empty(cls, feature_count: int) -> CandidateEdges:
        index = np.zeros(0, dtype=np.intp)
        return cls(index, index, index, index, np.zeros((0, feature_count), np.float32), np.zeros(0))


# Per predicate: the predicate of the same fact stated from the other object (right_of -> left_of), -1 for a predicate
# that states its fact once, and whether the predicate is symmetric (near, far).
_STATED_FROM_OTHER = {QUALITATIVE_PREDICATES.index(stated): QUALITATIVE_PREDICATES.index(canonical)
                      for stated, canonical in (("right_of", "left_of"), ("below", "above"),
                                                ("behind", "in_front_of"))}
_SYMMETRIC = (QUALITATIVE_PREDICATES.index("near"), QUALITATIVE_PREDICATES.index("far"))
# Per predicate, the same fact stated from the other object (right_of for left_of and back, near for near), -1 for
# a predicate without one: how a VLM claim is published both ways, as geometry claims are.
_FROM_OTHER_INDEX = np.full(len(QUALITATIVE_PREDICATES), -1, dtype=np.intp)
for _stated, _canonical in _STATED_FROM_OTHER.items():
    _FROM_OTHER_INDEX[_stated], _FROM_OTHER_INDEX[_canonical] = _canonical, _stated
for _symmetric in _SYMMETRIC:
    _FROM_OTHER_INDEX[_symmetric] = _symmetric
# Per predicate, the index of the one a VLM claims when it rejects it (right_of for left_of, far for near), -1 when
# the relation set has none (on_top_of, bigger_than, taller_than).
_CONVERSE_INDEX = np.array([QUALITATIVE_PREDICATES.index(CONVERSE_PREDICATES[name]) if name in CONVERSE_PREDICATES
                            else -1 for name in QUALITATIVE_PREDICATES])


def canonical_claims(holds: np.ndarray) -> tuple[np.ndarray, ...]:
    """The claims of a frame and their facts, from ``holds`` (N, N, P): the margins > 0 (the diagonal is ignored).

    Returns ``(subject, object, predicate, row, representative)`` per claim, claims row-major (by subject, object,
    predicate, as :meth:`RelationGrid.claims`). A fact is represented by left_of/above/in_front_of when the pair also
    has the converse (right_of/below/behind from the other object), by near/far from the lower object index, and by
    every other predicate itself; ``row`` numbers the facts in claim order. A claim whose converse does not hold
    represents itself (it cannot happen for exact margins, which are antisymmetric, but costs nothing to allow)."""
    count = holds.shape[0]
    holds = holds.copy()
    diagonal = np.arange(count)
    holds[diagonal, diagonal] = False
    facts = holds.copy()
    for stated, canonical in _STATED_FROM_OTHER.items():
        facts[:, :, stated] &= ~holds[:, :, canonical].T  # stated from the other object: a fact only as an orphan
    lower = np.tril(np.ones((count, count), dtype=bool), -1)
    for symmetric in _SYMMETRIC:
        facts[:, :, symmetric] &= ~(lower & holds[:, :, symmetric].T)  # (b, a) with a < b: the fact is (a, b)
    rows = np.full(holds.shape, -1, dtype=np.intp)
    rows[facts] = np.arange(int(facts.sum()))  # boolean assignment runs row-major: facts numbered in claim order
    for stated, canonical in _STATED_FROM_OTHER.items():
        rows[:, :, stated] = np.where(facts[:, :, stated], rows[:, :, stated], rows[:, :, canonical].T)
    for symmetric in _SYMMETRIC:
        rows[:, :, symmetric] = np.where(facts[:, :, symmetric], rows[:, :, symmetric], rows[:, :, symmetric].T)
    subject, obj, predicate = np.nonzero(holds)
    return subject, obj, predicate, rows[subject, obj, predicate], facts[subject, obj, predicate]


def scene_graph_vlm(config: Mapping[str, Any]) -> Any:
    """The VLM the pipeline asks (``vlm.backend``; None for 'none'). Recorded answers must be about the scene graph's
    predicates: a line with any other predicate is an error naming the file and line, at startup."""
    if config["vlm.backend"] == "recorded":
        return RecordedVlm.from_config(config, predicates=QUALITATIVE_PREDICATES)
    return make_vlm(config)


def select_queries(trust: np.ndarray, eligible: np.ndarray, band: Sequence[float], max_queries: int) -> np.ndarray:
    """Indices of the edges to ask the VLM about: eligible, trust within ``band`` (inclusive), most uncertain (closest
    to 0.5) first, at most ``max_queries``. Ties keep the edges' order."""
    low, high = float(band[0]), float(band[1])
    if not 0.0 <= low <= high <= 1.0:
        raise TrustError(f"the VLM query band must satisfy 0 <= low <= high <= 1, got [{low}, {high}]")
    if max_queries < 0:
        raise TrustError(f"the VLM query budget must be >= 0 queries per frame, got {max_queries}")
    trust = np.asarray(trust, dtype=np.float64)
    candidates = np.flatnonzero(np.asarray(eligible, dtype=bool) & (trust >= low) & (trust <= high))
    order = np.argsort(np.abs(trust[candidates] - 0.5), kind="stable")
    return candidates[order[:max_queries]]


class LabelPrototypes:
    """Running mean embedding per label from confident crops (TrustVLM-style prototype similarity)."""

    def __init__(self, momentum: float, min_score: float) -> None:
        if not 0.0 <= momentum < 1.0:
            raise TrustError(f"prototype momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.min_score = min_score
        self.prototypes: dict[str, np.ndarray] = {}

    def similarity(self, labels: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
        """Cosine of each embedding (unit rows) to its label's prototype before this frame; NaN without one."""
        result = np.full(len(labels), np.nan)
        for k, label in enumerate(labels):
            prototype = self.prototypes.get(label)
            if prototype is not None:
                result[k] = float(embeddings[k] @ prototype / max(np.linalg.norm(prototype), 1e-12))
        return result

    def update(self, labels: Sequence[str], embeddings: np.ndarray, scores: Sequence[float]) -> None:
        for label, embedding, score in zip(labels, embeddings, scores, strict=True):
            if score < self.min_score:
                continue
            old = self.prototypes.get(label)
            self.prototypes[label] = embedding.copy() if old is None else (
                self.momentum * old + (1.0 - self.momentum) * embedding)


def _crop(image_rgb: np.ndarray, box_xywh_px: Sequence[int]) -> np.ndarray:
    """The box's pixels, grown about its centre to at least MIN_IMAGE_SIDE_PX a side and at most
    MAX_IMAGE_ASPECT_RATIO (the limits the model backends accept, perception.hf); edge-padded where the image ends.

    An image processor scales the shorter side to its input size and the longer in proportion: a 1x1280 px box
    would become 224x286720 px (a second and 600 MB per crop) before its centre crop.
    """
    x, y, w, h = (int(v) for v in box_xywh_px)
    height, width = image_rgb.shape[:2]
    x0, y0 = min(max(x, 0), width - 1), min(max(y, 0), height - 1)
    x1, y1 = max(x0 + 1, min(x + w, width)), max(y0 + 1, min(y + h, height))
    box_w, box_h = x1 - x0, y1 - y0
    want_w = max(box_w, MIN_IMAGE_SIDE_PX, math.ceil(box_h / MAX_IMAGE_ASPECT_RATIO))
    want_h = max(box_h, MIN_IMAGE_SIDE_PX, math.ceil(box_w / MAX_IMAGE_ASPECT_RATIO))
    # Grown about the centre, shifted to stay inside the image where it fits.
    x0 = min(max(x0 - (want_w - box_w) // 2, 0), max(width - want_w, 0))
    y0 = min(max(y0 - (want_h - box_h) // 2, 0), max(height - want_h, 0))
    crop = image_rgb[y0:y0 + want_h, x0:x0 + want_w]
    pad_h, pad_w = want_h - crop.shape[0], want_w - crop.shape[1]  # > 0 only where the image is smaller
    return np.pad(crop, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)), mode="edge")


def vlm_unused_warning(model: Any) -> str | None:
    """Why a VLM cannot change this model's trust (None when it can or cannot be told): every feature a VLM fills
    in (:data:`VLM_INPUT_FEATURES`) has zero gain, i.e. no tree of the model splits on it. Only learned models
    (``feature_importance``) are checked; the prior is geometry-only by its description."""
    importance = getattr(model, "feature_importance", None)
    if not callable(importance):
        return None
    gain = importance("gain")
    if any(gain.get(name, 0.0) > 0.0 for name in VLM_INPUT_FEATURES):
        return None
    return (f"the trust model ({getattr(model, 'source_', 'given')}) was trained without VLM answers: none of its "
            f"trees uses the VLM features ({', '.join(VLM_INPUT_FEATURES)}), so VLM answers will not move any trust "
            "and the VLM's own claims are pruned like any claim the geometry rejects; the VLM calls only cost time. "
            "Retrain with `tsg trust train` on data recorded with VLM answers (the same vlm.backend), or set "
            "vlm.backend: none")


class EdgeTrust:
    """The trust step of the pipeline (see the module docstring); ``model`` and ``vlm`` default to the config's."""

    def __init__(self, config: Mapping[str, Any], model: EdgeTrustModel | None = None, vlm: Any = None) -> None:
        self.model = model if model is not None else load_trust_model(config)
        self.vlm = vlm
        # Checked once: the model and the VLM are fixed for the EdgeTrust's life (read-only parameters).
        self._vlm_unused = vlm_unused_warning(self.model) if vlm is not None else None
        self.history = TemporalHistory(int(config["trust.temporal_window_frames"]))
        self.prototypes: LabelPrototypes | None = None
        if config["trust.prototype_similarity"]:
            if vlm is None or not hasattr(vlm, "embed_images"):
                raise TrustError("trust.prototype_similarity needs an image encoder: set vlm.backend to "
                                 f"'contrastive' (it is {config['vlm.backend']!r})")
            self.prototypes = LabelPrototypes(config["trust.prototype_momentum"], config["trust.prototype_min_score"])
        self.reconfigure(config)
        # The last VLM answer of each fact (VLM_FEATURES values) and the frame number it was given at.
        self._answers: dict[tuple[int, int, int], tuple[np.ndarray, int]] = {}
        self._frame = 0
        self._rng = np.random.default_rng(0)  # the sensitivity check's noise is seeded: same frames, same trust

    def start_sequence(self) -> None:
        """Forget what is kept per track pair, the VLM's answers and the claims' history: a new sequence numbers its
        tracks from 1 again, so another scene's pair would take them over. The label prototypes, of the labels'
        appearance, are kept."""
        self._answers.clear()
        self.history = TemporalHistory(self.history.window_frames)

    def restart(self) -> None:
        """:meth:`start_sequence`, the label prototypes forgotten and the sensitivity check's noise re-seeded: as a
        trust step just built."""
        self.start_sequence()
        self._frame = 0
        self._rng = np.random.default_rng(0)
        if self.prototypes is not None:
            self.prototypes = LabelPrototypes(self.prototypes.momentum, self.prototypes.min_score)

    def reconfigure(self, config: Mapping[str, Any]) -> None:
        if isinstance(self.model, MarginPriorTrust):  # the prior's scale is a (settable) relations parameter
            self.model.margin_scale_m = config["relations.margin_scale_m"]
        override = float(config["trust.threshold"])
        self.threshold = override if override >= 0.0 else float(self.model.threshold)
        self.max_queries = int(config["trust.vlm_queries_per_frame"])
        self.answer_max_age_frames = int(config["trust.vlm_answer_max_age_frames"])
        self.band = tuple(config["trust.vlm_query_band"])
        self.sensitivity_noise = float(config["trust.vlm_sensitivity_noise"])
        if self.prototypes is not None:  # the prototypes learnt so far are kept
            self.prototypes.momentum = config["trust.prototype_momentum"]
            self.prototypes.min_score = config["trust.prototype_min_score"]
        # A backend that does not look at the pixels (recorded answers) gives the same answer on a noised image: its
        # "sensitivity" would be 0 whatever the evidence, so the check is skipped and the feature stays missing.
        # Skipped rather than refused: a config made for a live model replays its recorded answers unchanged.
        wants_sensitivity = bool(config["trust.vlm_sensitivity"]) and self.vlm is not None
        self.sensitivity = wants_sensitivity and looks_at_pixels(self.vlm)
        skipped_sensitivity = (f"trust.vlm_sensitivity is on, but the {config['vlm.backend']!r} VLM backend does not "
                               "look at the pixels, so a noised image cannot change its answers: the vlm_sensitivity "
                               "feature is left missing" if wants_sensitivity and not self.sensitivity else None)
        # Said once where the graph is made (the node's log, tsg eval's warnings): pruning at the model's own threshold
        # when that threshold guarantees nothing, and a VLM whose answers cannot matter.
        notes = [self.model.warning if override < 0.0 else None, self._vlm_unused, skipped_sensitivity]
        self.warning = "\n".join(note for note in notes if note) or None

    def assess(self, grid: RelationGrid, objects: Sequence[Any], image_width_px: int, image_height_px: int,
               image_rgb: np.ndarray | None = None, image_id: str | None = None) -> CandidateEdges:
        """Trust of every claimed edge of this frame (``objects``: the grid's ObjectNodes, same order)."""
        self._frame += 1
        if grid.count < 2:
            self.history.end_frame()
            return CandidateEdges.empty(len(FEATURES))
        arrays = ObjectArrays.from_nodes(objects, image_width_px, image_height_px)
        holds = grid.margins_m > 0
        all_subject, all_object, all_predicate, canonical, representative = canonical_claims(holds)
        # The model scores each fact once: "a left_of b" and "b right_of a" are one claim with one trust.
        subject, obj, predicate = (all_subject[representative], all_object[representative],
                                   all_predicate[representative])
        temporal = self.history.agreement(grid.ids, holds, subject, obj, predicate)
        prototype = self._prototype_similarity(objects, image_rgb)
        track = grid.ids
        keys, answers = [], None
        if self.vlm is not None:  # without a VLM there are no answers to look up (the columns stay NaN)
            keys = [_answer_key(a, b, p) for a, b, p in zip(track[subject].tolist(), track[obj].tolist(),
                                                             predicate.tolist(), strict=True)]
            # A pair whose labels read the same ("cup", " Cup") cannot be told apart in a question: never asked, and
            # an answer from when the labels differed is not used.
            names = [statement_key(o.label) for o in objects]
            askable = np.array([names[a] != names[b] for a, b in zip(subject, obj, strict=True)], dtype=bool)
            answers = self._answer_table(keys, askable)
        features = edge_features(grid, arrays, subject, obj, predicate, vlm=answers, temporal_agreement=temporal,
                                 prototype_similarity=prototype)
        trust = self.model.trust(features)
        queries = 0
        sources = np.zeros(len(all_predicate), dtype=np.intp)
        if self.vlm is not None and image_rgb is not None:
            queries = self._ask(trust, keys, askable, objects, subject, obj, predicate, image_rgb, image_id)
            self._forget_answers(set(track.tolist()))
            answers = self._answer_table(keys, askable)
            subject, obj, predicate, row_sources, answers, temporal = _with_vlm_claims(subject, obj, predicate,
                                                                                       answers, temporal)
            features = edge_features(grid, arrays, subject, obj, predicate, row_sources, vlm=answers,
                                     temporal_agreement=temporal, prototype_similarity=prototype)
            trust = self.model.trust(features)
            added = np.arange(int(representative.sum()), len(predicate))  # the VLM's own claims, one row each
            # Each published both ways, as a geometry claim is: "the cup right_of the bowl" and "the bowl left_of the
            # cup" (near/far: from each object), the second pointing at the first's row.
            other_predicate = _FROM_OTHER_INDEX[predicate[added]]
            all_subject = np.concatenate([all_subject, subject[added], obj[added]])
            all_object = np.concatenate([all_object, obj[added], subject[added]])
            all_predicate = np.concatenate([all_predicate, predicate[added], other_predicate])
            sources = np.concatenate([sources, row_sources[added], row_sources[added]])
            canonical = np.concatenate([canonical, added, added])
            representative = np.concatenate([representative, np.ones(added.size, dtype=bool),
                                             np.zeros(added.size, dtype=bool)])
        return CandidateEdges(all_subject, all_object, all_predicate, sources, features, trust[canonical], queries,
                              canonical, representative)

    def _ask(self, trust: np.ndarray, keys: list[tuple[int, int, int]], askable: np.ndarray, objects: Sequence[Any],
             subject: np.ndarray, obj: np.ndarray, predicate: np.ndarray, image_rgb: np.ndarray,
             image_id: str | None) -> int:
        oldest = self._frame - self.answer_max_age_frames
        due = np.array([self._answers.get(key, (None, oldest))[1] <= oldest for key in keys], dtype=bool)
        chosen = select_queries(trust, due & askable, self.band, self.max_queries)
        noised = None
        if self.sensitivity and chosen.size:
            noised = noised_image(image_rgb, self.sensitivity_noise, self._rng)
        for k in chosen:
            args = (objects[subject[k]].label, QUALITATIVE_PREDICATES[predicate[k]], objects[obj[k]].label)
            answer = self.vlm.judge_relation(image_rgb, *args, image_id=image_id)
            sensitivity = np.nan
            if noised is not None:
                sensitivity = answer.p_true - self.vlm.judge_relation(noised, *args, image_id=None).p_true
            self._answers[keys[k]] = (np.array([answer.p_true, answer.nmlp, answer.margin, sensitivity]), self._frame)
        return int(chosen.size)

    def _answer_table(self, keys: list[tuple[int, int, int]], askable: np.ndarray) -> np.ndarray:
        """(E, 4) VLM features of the facts ``keys``: their last answers, NaN for facts never asked or not
        ``askable``."""
        return np.array([self._answers[key][0] if ok and key in self._answers else _NO_ANSWER
                         for key, ok in zip(keys, askable, strict=True)]).reshape(-1, len(VLM_FEATURES))

    def _forget_answers(self, present_tracks: set[int]) -> None:
        """Keep answers only for claims between tracks of this frame, so the cache stays as small as the scene."""
        stale = [key for key in self._answers if key[0] not in present_tracks or key[1] not in present_tracks]
        for key in stale:
            del self._answers[key]

    def _prototype_similarity(self, objects: Sequence[Any], image_rgb: np.ndarray | None) -> np.ndarray | None:
        if self.prototypes is None or image_rgb is None:
            return None
        labels = [o.label for o in objects]
        embeddings = self.vlm.embed_images([_crop(image_rgb, o.box_xywh_px) for o in objects])
        similarity = self.prototypes.similarity(labels, embeddings)
        self.prototypes.update(labels, embeddings, [o.score for o in objects])
        return similarity


def _answer_key(subject_track: int, object_track: int, predicate: int) -> tuple[int, int, int]:
    """The key of a fact's VLM answer: its subject's and object's track ids and predicate; near/far by the lower track
    id first, so the answer is found whichever order the detector lists the two objects in (a fact is represented
    from the lower object index, :func:`canonical_claims`)."""
    if predicate in _SYMMETRIC and object_track < subject_track:
        return object_track, subject_track, predicate
    return subject_track, object_track, predicate


def _with_vlm_claims(subject: np.ndarray, obj: np.ndarray, predicate: np.ndarray, answers: np.ndarray,
                     temporal: np.ndarray) -> tuple[np.ndarray, ...]:
    """Append the VLM's own claims: the converse of each geometry claim it rejected (see the module docstring)."""
    converse = _CONVERSE_INDEX
    rejected = np.flatnonzero((answers[:, 0] < 0.5) & (converse[predicate] >= 0))
    sources = np.zeros(len(predicate) + rejected.size, dtype=np.intp)
    sources[len(predicate):] = SOURCE_VLM
    vlm_answers = answers[rejected].copy()
    vlm_answers[:, 0] = 1.0 - vlm_answers[:, 0]  # the probability of the VLM's own claim
    vlm_answers[:, 3] = -vlm_answers[:, 3]
    # The converse does not hold geometrically in this frame. The pair's predicates are exclusive (one side of a
    # boundary), so the converse's history is the complement of the claim's, up to frames exactly on the boundary.
    vlm_temporal = 1.0 - temporal[rejected]
    return (np.concatenate([subject, subject[rejected]]), np.concatenate([obj, obj[rejected]]),
            np.concatenate([predicate, converse[predicate[rejected]]]), sources,
            np.concatenate([answers, vlm_answers]), np.concatenate([temporal, vlm_temporal]))
