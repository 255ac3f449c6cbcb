"""Vision-language models that judge spatial claims, behind one small interface.

A backend implements :class:`VisionLanguageModel`: ``judge(image_rgb, statement)`` and
``judge_relation(image_rgb, subject, predicate, object_)`` return a :class:`VlmAnswer` (the verdict, the probability
of that verdict, the NMLP confidence, the generated text and the contrastive margin). ``vlm.backend`` picks one from
:data:`VLM_BACKENDS`:

- ``generative``: a ``transformers`` image-text-to-text model asked "Is this statement true? ... Answer yes or no."
  (:mod:`trusted_scene_graph.vlm.generative`; imports torch only when selected);
- ``contrastive``: a CLIP or SigLIP dual encoder choosing between a relation claim and its converse
  (:data:`CONVERSE_PREDICATES`; :mod:`trusted_scene_graph.vlm.contrastive`; imports torch only when selected). It
  judges relation triples only (``judge_relation``; :func:`needs_relation_triple` is true for it);
- ``recorded``: answers read from a JSONL file (:mod:`trusted_scene_graph.vlm.recorded`); it does not look at the
  pixels (:func:`looks_at_pixels` is false for it), so no perceptual-sensitivity check is made with it;
- ``none``: no VLM (:func:`make_vlm` returns None).

:func:`noised_image` perturbs an image for a perceptual-sensitivity check (how much an answer's probability drops).
Further model families (per-edge features, ...) register here the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from trusted_scene_graph.vlm.base import (
    CONVERSE_PREDICATES,
    QUESTION_TEMPLATE,
    VisionLanguageModel,
    VlmAnswer,
    VlmError,
    converse_relation,
    judge_relation_as_statement,
    looks_at_pixels,
    needs_relation_triple,
    noised_image,
    predicate_key,
    question_for,
    relation_statement,
    statement_key,
)
from trusted_scene_graph.vlm.recorded import RecordedVlm
from trusted_scene_graph.vlm.scoring import NMLP_TOP_K, answer_from_logits, nmlp, yes_no_masses


def _generative(config: Mapping[str, Any]) -> VisionLanguageModel:
    # Imported here: the module pulls in torch and transformers, which the 'recorded' backend does not need.
    from trusted_scene_graph.vlm.generative import GenerativeVlm

    return GenerativeVlm.from_config(config)


def _contrastive(config: Mapping[str, Any]) -> VisionLanguageModel:
    # Imported here for the same reason as _generative.
    from trusted_scene_graph.vlm.contrastive import ContrastiveVlm

    return ContrastiveVlm.from_config(config)


VLM_BACKENDS: dict[str, Callable[[Mapping[str, Any]], VisionLanguageModel]] = {
    "contrastive": _contrastive,
    "generative": _generative,
    "recorded": RecordedVlm.from_config,
}


def make_vlm(config: Mapping[str, Any]) -> VisionLanguageModel | None:
    """Build the backend named by ``vlm.backend`` (None for 'none'); an unknown name lists the known ones.

    The same look-up as ``perception.detector.build_backend``, written out because 'none' is a valid choice here
    and the error must be a :class:`VlmError`.
    """
    name = config["vlm.backend"]
    if name == "none":
        return None
    factory = VLM_BACKENDS.get(name)
    if factory is None:
        raise VlmError(f"unknown VLM backend {name!r}; known backends: {['none', *sorted(VLM_BACKENDS)]}")
    return factory(config)


__all__ = [
    "CONVERSE_PREDICATES",
    "NMLP_TOP_K",
    "QUESTION_TEMPLATE",
    "VLM_BACKENDS",
    "RecordedVlm",
    "VisionLanguageModel",
    "VlmAnswer",
    "VlmError",
    "answer_from_logits",
    "converse_relation",
    "judge_relation_as_statement",
    "looks_at_pixels",
    "make_vlm",
    "needs_relation_triple",
    "nmlp",
    "noised_image",
    "predicate_key",
    "question_for",
    "relation_statement",
    "statement_key",
    "yes_no_masses",
]
