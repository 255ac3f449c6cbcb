"""The VLM interface: the error class, the answer type, the protocol every backend implements, the prompt text."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import Protocol

import numpy as np

from trusted_scene_graph.errors import TsgError


class VlmError(TsgError):
    """A VLM backend cannot be built or cannot answer (missing weights, no recorded answer, bad image)."""


#: How far below 0.5 a backend's answer probability may fall by float rounding (a float32 two-way softmax).
ANSWER_PROBABILITY_TOLERANCE = 1e-6


@dataclass(frozen=True)
class VlmAnswer:
    """A VLM's verdict on one statement about one image.

    ``answer``: the model says the statement is true. ``probability``: the probability the model gives to the
    answer it gave, in [0.5, 1] (the answer is the likelier one; ``generative``: from the "yes"/"no" token
    probabilities; see :mod:`~trusted_scene_graph.vlm.scoring`).
    ``nmlp``: negative mean top-k log-probability of the generated tokens (:func:`~.scoring.nmlp`; higher is more
    confident), NaN when unknown. ``raw_text``: what the model generated (``contrastive``: the caption it preferred).
    ``margin``: the contrastive margin, top-1 minus top-2 softmax probability among the candidate captions, in
    [0, 1]; NaN for backends that do not compare captions. ``answer_mass``: ``P(yes) + P(no)`` at the first
    generated token (``generative``), in [0, 1]: how much the model answered the yes/no question at all; NaN for
    other backends.
    """

    answer: bool
    probability: float
    nmlp: float = math.nan
    raw_text: str = ""
    margin: float = math.nan
    answer_mass: float = math.nan

    def __post_init__(self) -> None:
        if not (math.isfinite(self.probability) and 0.0 <= self.probability <= 1.0):
            raise VlmError(f"VLM answer probability must be in [0, 1], got {self.probability!r}")
        # The answer is the likelier one: a "yes" at 0.3 would be read as the model rejecting the claim (p_true 0.3)
        # by the trust step and as endorsing it by tsg eval vsr. Float rounding of a two-way softmax is tolerated.
        if self.probability < 0.5 - ANSWER_PROBABILITY_TOLERANCE:
            raise VlmError(f"VLM answer probability is that of the answer given, the likelier one, so at least 0.5; "
                           f"got {self.probability!r} for {'yes' if self.answer else 'no'}")
        if not (math.isnan(self.margin) or 0.0 <= self.margin <= 1.0):
            raise VlmError(f"VLM answer margin must be NaN or in [0, 1], got {self.margin!r}")
        if not (math.isnan(self.answer_mass) or 0.0 <= self.answer_mass <= 1.0):
            raise VlmError(f"VLM answer_mass must be NaN or in [0, 1], got {self.answer_mass!r}")

    @property
    def p_true(self) -> float:
        """The probability the model gives to the statement being true."""
        return self.probability if self.answer else 1.0 - self.probability


class VisionLanguageModel(Protocol):
    """What every VLM backend provides. Construction loads any model; ``judge`` and ``judge_relation`` must not.

    ``judge`` takes a free sentence; ``judge_relation`` the claim "the <subject> is <predicate> the <object>" as a
    triple (``predicate`` like ``left_of``). A backend that needs the triple (``contrastive``, which compares the
    claim with its converse) sets the class attribute ``needs_relation_triple = True`` and refuses ``judge``.
    ``image_id`` names the image (a file name such as VSR's ``000000451431.jpg``) for backends that look answers up
    rather than compute them; models that look at the pixels ignore it. A backend whose answers do not depend on the
    pixels (``recorded``) sets the class attribute ``looks_at_pixels = False``: a perceptual-sensitivity check
    (:func:`noised_image`) is then skipped, since a changed image cannot change its answer.
    """

    def judge(self, image_rgb: np.ndarray, statement: str, *, image_id: str | None = None) -> VlmAnswer: ...

    def judge_relation(self, image_rgb: np.ndarray, subject: str, predicate: str, object_: str, *,
                       image_id: str | None = None) -> VlmAnswer: ...


def judge_relation_as_statement(vlm: VisionLanguageModel, image_rgb: np.ndarray, subject: str, predicate: str,
                                object_: str, *, image_id: str | None = None) -> VlmAnswer:
    """``vlm.judge`` on :func:`relation_statement` of the triple: ``judge_relation`` for sentence-judging backends."""
    return vlm.judge(image_rgb, relation_statement(subject, predicate, object_), image_id=image_id)


def looks_at_pixels(vlm: object) -> bool:
    """Whether ``vlm``'s answers come from the image's pixels (true unless it says otherwise, like ``recorded``)."""
    return bool(getattr(vlm, "looks_at_pixels", True))


def needs_relation_triple(vlm: object) -> bool:
    """Whether ``vlm`` can only judge relation triples (``judge_relation``), not free sentences (``judge``)."""
    return bool(getattr(vlm, "needs_relation_triple", False))


# The opposite claim on the same axis: a contrastive model scores captions only relative to each other, so a claim is
# judged against the one it excludes ("left of" against "right of"), which differs from it in the relation alone.
# Predicates not listed (on_top_of, bigger_than, taller_than, unknown words) are contrasted with the same predicate,
# subject and object swapped (see :func:`converse_relation`).
CONVERSE_PREDICATES: dict[str, str] = {
    "left_of": "right_of", "right_of": "left_of",
    "above": "below", "below": "above",
    "in_front_of": "behind", "behind": "in_front_of",
    "near": "far", "far": "near",
}


def predicate_key(predicate: str) -> str:
    """A predicate in the underscore spelling of :data:`CONVERSE_PREDICATES`: "Left of" -> "left_of"."""
    return "_".join(predicate.lower().split()).strip("_")


def converse_relation(subject: str, predicate: str, object_: str) -> tuple[str, str, str]:
    """The claim to contrast ``subject predicate object_`` with: the converse predicate when
    :data:`CONVERSE_PREDICATES` has one ("cat left_of dog" -> "cat right_of dog"), else the same predicate with
    subject and object swapped ("cup on_top_of table" -> "table on_top_of cup")."""
    converse = CONVERSE_PREDICATES.get(predicate_key(predicate))
    if converse is not None:
        return subject, converse, object_
    return object_, predicate, subject


# The question every generative backend asks, after Imran & Lee (2026): a yes/no verdict on the caption.
QUESTION_TEMPLATE = "Is this statement true? {statement} Answer yes or no."


def question_for(statement: str) -> str:
    """The yes/no question asked about ``statement``."""
    return QUESTION_TEMPLATE.format(statement=statement.strip())


def relation_statement(subject: str, predicate: str, object_: str) -> str:
    """A relation triple as a VSR-style caption: ``The <subject> is <predicate> the <object>.``

    Used wherever a claim is given as a triple rather than a sentence (recorded answers, scene-graph edges), so that
    the same claim always reads the same way. Underscores become spaces; "far" reads "far from" (:data:`PHRASES`).
    """
    predicate = predicate.strip()
    # Looked up by its key: "Far", " far" and "far" are one predicate (as the recorded answers' check takes them).
    predicate = PHRASES.get(predicate_key(predicate), predicate.replace("_", " "))
    return f"The {subject.strip()} is {predicate} the {object_.strip()}."


# Predicates whose words need a preposition to make a sentence.
PHRASES = {"far": "far from"}


def statement_key(statement: str) -> str:
    """``statement`` normalised for look-ups: case-folded, whitespace collapsed, a final full stop dropped."""
    return re.sub(r"\s+", " ", statement).strip().rstrip(".").strip().casefold()


def image_key(image_id: str) -> str:
    """An image name normalised for look-ups: the file name without folders and extension."""
    return PurePath(image_id.strip()).stem


def check_rgb(image_rgb: np.ndarray) -> np.ndarray:
    """``image_rgb`` if it is a non-empty (H, W, 3) uint8 array, else :class:`VlmError` naming what it is."""
    array = np.asarray(image_rgb)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8 or 0 in array.shape:
        raise VlmError(f"a VLM needs a non-empty (H, W, 3) uint8 RGB image, got {array.dtype} {array.shape}")
    return array


def noised_image(image_rgb: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``image_rgb`` plus Gaussian pixel noise of standard deviation ``sigma`` (in 0-255 grey levels), rounded and
    clipped to uint8: the perturbed input of a perceptual-sensitivity check (CA-TTS: an answer whose probability
    drops on a slightly noised image rests on little visual evidence). ``sigma`` 0 returns an equal copy."""
    image = check_rgb(image_rgb)
    if isinstance(sigma, bool) or not isinstance(sigma, int | float | np.floating | np.integer) \
            or not (math.isfinite(sigma) and sigma >= 0.0):
        raise VlmError(f"image noise sigma must be a finite number >= 0 (grey levels), got {sigma!r}")
    if not isinstance(rng, np.random.Generator):
        raise VlmError(f"noised_image needs a numpy Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    noisy = image.astype(np.float64) + rng.normal(0.0, float(sigma), size=image.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
