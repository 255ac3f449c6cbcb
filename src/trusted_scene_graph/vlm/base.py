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


@dataclass(frozen=True)
class VlmAnswer:
    """A VLM's verdict on one statement about one image.

    ``answer``: the model says the statement is true. ``probability``: the probability the model gives to the
    answer it gave, in [0, 1] (``generative``: from the "yes"/"no" token probabilities, so >= 0.5).
    ``nmlp``: negative mean top-k log-probability of the generated tokens (:func:`~.scoring.nmlp`; higher is more
    confident), NaN when unknown. ``raw_text``: what the model generated.
    """

    answer: bool
    probability: float
    nmlp: float = math.nan
    raw_text: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.probability) and 0.0 <= self.probability <= 1.0):
            raise VlmError(f"VLM answer probability must be in [0, 1], got {self.probability!r}")

    @property
    def p_true(self) -> float:
        """The probability the model gives to the statement being true."""
        return self.probability if self.answer else 1.0 - self.probability


class VisionLanguageModel(Protocol):
    """What every VLM backend provides. Construction loads any model; ``judge`` must not.

    ``image_id`` names the image (a file name such as VSR's ``000000451431.jpg``) for backends that look answers up
    rather than compute them; models that look at the pixels ignore it.
    """

    def judge(self, image_rgb: np.ndarray, statement: str, *, image_id: str | None = None) -> VlmAnswer: ...


# The question every generative backend asks, after Imran & Lee (2026): a yes/no verdict on the caption.
QUESTION_TEMPLATE = "Is this statement true? {statement} Answer yes or no."


def question_for(statement: str) -> str:
    """The yes/no question asked about ``statement``."""
    return QUESTION_TEMPLATE.format(statement=statement.strip())


def relation_statement(subject: str, predicate: str, object_: str) -> str:
    """A relation triple as a VSR-style caption: ``The <subject> is <predicate> the <object>.``

    Used wherever a claim is given as a triple rather than a sentence (recorded answers, scene-graph edges), so that
    the same claim always reads the same way.
    """
    predicate = predicate.strip().replace("_", " ")
    return f"The {subject.strip()} is {predicate} the {object_.strip()}."


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
