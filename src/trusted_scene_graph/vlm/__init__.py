"""Vision-language models that judge spatial claims, behind one small interface.

A backend implements :class:`VisionLanguageModel`: ``judge(image_rgb, statement)`` returns a :class:`VlmAnswer`
(the verdict, the probability of that verdict, the NMLP confidence and the generated text). ``vlm.backend`` picks
one from :data:`VLM_BACKENDS`:

- ``generative``: a ``transformers`` image-text-to-text model asked "Is this statement true? ... Answer yes or no."
  (:mod:`trusted_scene_graph.vlm.generative`; imports torch only when selected);
- ``recorded``: answers read from a JSONL file (:mod:`trusted_scene_graph.vlm.recorded`);
- ``none``: no VLM (:func:`make_vlm` returns None).

Further model families (contrastive CLIP/SigLIP scorers, per-edge features) register here the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from trusted_scene_graph.vlm.base import (
    QUESTION_TEMPLATE,
    VisionLanguageModel,
    VlmAnswer,
    VlmError,
    question_for,
    relation_statement,
    statement_key,
)
from trusted_scene_graph.vlm.recorded import RecordedVlm
from trusted_scene_graph.vlm.scoring import NMLP_TOP_K, answer_from_logits, nmlp, yes_probability


def _generative(config: Mapping[str, Any]) -> VisionLanguageModel:
    # Imported here: the module pulls in torch and transformers, which the 'recorded' backend does not need.
    from trusted_scene_graph.vlm.generative import GenerativeVlm

    return GenerativeVlm.from_config(config)


VLM_BACKENDS: dict[str, Callable[[Mapping[str, Any]], VisionLanguageModel]] = {
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
    "NMLP_TOP_K",
    "QUESTION_TEMPLATE",
    "VLM_BACKENDS",
    "RecordedVlm",
    "VisionLanguageModel",
    "VlmAnswer",
    "VlmError",
    "answer_from_logits",
    "make_vlm",
    "nmlp",
    "question_for",
    "relation_statement",
    "statement_key",
    "yes_probability",
]
