"""The 'contrastive' VLM backend: a CLIP or SigLIP dual encoder choosing between a claim and its converse.

A contrastive model scores how well each caption matches the image, but its scores only mean something relative to
other captions. So a relation claim "the cat is left of the dog" is judged against its converse
(:func:`~trusted_scene_graph.vlm.base.converse_relation`: "the cat is right of the dog"), both worded by
:func:`~trusted_scene_graph.vlm.base.relation_statement`: the softmax of the image-caption logits over the two
captions gives ``p_claim``; the answer is ``p_claim > 0.5`` (a tie does not endorse the claim), its probability is
that of the answer given, and the margin is top-1 minus top-2 (``|2 p_claim - 1|``). CLIP's ``logits_per_image``
are scaled cosine similarities; SigLIP's add a bias, which the softmax over the candidates cancels. A free sentence
has no converse, so :meth:`ContrastiveVlm.judge` refuses it.

Structured like a ``transformers`` pipeline: :meth:`ContrastiveVlm.preprocess` builds the model inputs,
:meth:`~ContrastiveVlm.forward` and :meth:`~ContrastiveVlm.forward_image_features` are the only steps touching the
model and the device, :meth:`~ContrastiveVlm.postprocess` turns logits into probabilities.
:meth:`~ContrastiveVlm.embed_images` gives L2-normalised image embeddings (e.g. to compare object crops with label
prototypes).

Any model ``AutoModel`` loads as a dual encoder (CLIP, SigLIP, SigLIP 2, ...) works, from a local directory or the
local Hugging Face cache only; missing or corrupt weights fail with the path and how to get them. This module
imports torch when imported; :func:`trusted_scene_graph.vlm.make_vlm` imports it only when this backend is selected.
The processor refusing an input and the model failing (a ``ValueError`` or ``RuntimeError``, such as
``torch.OutOfMemoryError``) raise :class:`VlmError` with the reason. Captions that tokenise the same (two long
captions truncated to the model's text length before they differ) are refused: the model could not tell them apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy.special import softmax

from trusted_scene_graph.example_models import CONTRASTIVE_VLM_EXAMPLE_ID
from trusted_scene_graph.perception.hf import inference_errors
from trusted_scene_graph.vlm.base import VlmAnswer, VlmError, check_rgb, converse_relation, relation_statement
from trusted_scene_graph.vlm.hf import MODEL_PARAMETER, load_vlm

# SigLIP was trained on captions padded to the full text length (its text tower pools the last position), so its
# captions must be padded the same way; CLIP pools the end-of-text token and takes any padding.
_PAD_TO_MAX_LENGTH = ("siglip", "siglip2")


def _check_tokenizer_knows_words(tokenizer: Any) -> None:
    """Refuse a tokenizer that reads a caption's words as unknown tokens. A model folder without its tokenizer files
    still loads, with a stand-in tokenizer that knows only its special tokens: every caption would then tokenise
    alike, and every question fail as captions that cannot be told apart, frame after frame."""
    ids = tokenizer("the cup is left of the bowl", add_special_tokens=False)["input_ids"]
    special = {*tokenizer.all_special_ids, tokenizer.unk_token_id}
    if not [token for token in ids if token not in special]:
        raise VlmError("the 'contrastive' VLM's tokenizer reads every word of a caption as an unknown or special "
                       "token: its model folder lacks the tokenizer files (tokenizer.json, vocab.json and merges.txt, "
                       "or spiece.model) it was trained with")


class ContrastiveVlm:
    """Relation verdicts from a CLIP/SigLIP ``model`` and its ``processor``, already loaded."""

    # Judges relation triples only (see the module docstring); read by vlm.base.needs_relation_triple.
    needs_relation_triple = True
    # The answers come from the image (read by vlm.base.looks_at_pixels).
    looks_at_pixels = True

    def __init__(self, model: Any, processor: Any, *, device: str = "cpu") -> None:
        for method in ("get_image_features", "get_text_features"):
            if not callable(getattr(model, method, None)):
                raise VlmError(f"the 'contrastive' VLM needs a dual image-text encoder such as CLIP or SigLIP; "
                               f"{type(model).__name__} has no {method}()")
        for part in ("tokenizer", "image_processor"):
            if getattr(processor, part, None) is None:
                raise VlmError(f"the 'contrastive' VLM needs a processor with a {part}, got "
                               f"{type(processor).__name__}")
        if device not in ("cpu", "cuda"):
            raise VlmError(f"vlm.device must be 'cpu' or 'cuda', got {device!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise VlmError("vlm.device is 'cuda' but torch sees no CUDA device; set vlm.device: cpu")
        _check_tokenizer_knows_words(processor.tokenizer)
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = device
        config = model.config
        text_config = getattr(config, "text_config", config)
        self.max_text_tokens = int(getattr(text_config, "max_position_embeddings", 0)) or None
        self.pad_to_max_length = getattr(config, "model_type", "") in _PAD_TO_MAX_LENGTH

    @classmethod
    def from_pretrained(cls, model_path: str, **settings: Any) -> ContrastiveVlm:
        """Load model and processor from a local directory (or a model id in the local HF cache); never downloads.

        ``settings`` are the keyword arguments of the constructor.
        """
        # Imported here: transformers is slow to import and only needed while loading.
        from transformers import AutoModel

        model, processor = load_vlm(AutoModel, model_path, CONTRASTIVE_VLM_EXAMPLE_ID, "contrastive VLM")
        return cls(model, processor, **settings)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ContrastiveVlm:
        """Build from the ``vlm.*`` parameters (loads the weights)."""
        return cls.from_pretrained(config[MODEL_PARAMETER], device=config["vlm.device"])

    # --- the VisionLanguageModel interface ---------------------------------------------------------------------------

    def judge(self, image_rgb: np.ndarray, statement: str, *, image_id: str | None = None) -> VlmAnswer:
        """Refused: a contrastive model needs the claim as a triple to build its converse (see judge_relation)."""
        raise VlmError(f"the 'contrastive' VLM backend cannot judge the free statement {statement!r}: it compares a "
                       "claim with its converse, so it needs the relation triple; call judge_relation(image, "
                       "subject, predicate, object)")

    def judge_relation(self, image_rgb: np.ndarray, subject: str, predicate: str, object_: str, *,
                       image_id: str | None = None) -> VlmAnswer:
        """The claim "The <subject> is <predicate> the <object>." against its converse; ``image_id`` is not used.

        ``raw_text`` is the caption the model preferred; ``nmlp`` is NaN (nothing is generated).
        """
        claim = relation_statement(subject, predicate, object_)
        converse = relation_statement(*converse_relation(subject, predicate, object_))
        p_claim, p_converse = self.caption_probabilities(image_rgb, [claim, converse])
        answer = bool(p_claim > 0.5)
        return VlmAnswer(answer, float(p_claim if answer else p_converse),
                         raw_text=claim if answer else converse, margin=float(abs(p_claim - p_converse)))

    # --- public scoring -----------------------------------------------------------------------------------------------

    def caption_probabilities(self, image_rgb: np.ndarray, captions: Sequence[str]) -> np.ndarray:
        """Softmax over ``captions`` (at least two) of their match with the image: (len(captions),) float64."""
        return self.postprocess(self.forward(self.preprocess(image_rgb, captions)))

    def embed_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """L2-normalised image embeddings (N, D) float64 of (H, W, 3) uint8 RGB ``images`` (sizes may differ)."""
        if len(images) == 0:
            raise VlmError("embed_images needs at least one image")
        features = self.forward_image_features(self.preprocess_images(images))
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        if not np.all(norms > 0):
            raise VlmError("the contrastive VLM gave an all-zero image embedding; it cannot be normalised")
        return features / norms

    # --- pipeline steps -----------------------------------------------------------------------------------------------

    def preprocess(self, image_rgb: np.ndarray, captions: Sequence[str]) -> Any:
        """Model inputs for one image and ``captions`` (token ids, attention mask, pixel values) on the device."""
        if isinstance(captions, str) or len(captions) < 2:
            raise VlmError(f"a contrastive VLM compares at least two captions, got {captions!r}")
        bad = [caption for caption in captions if not isinstance(caption, str) or not caption.strip()]
        if bad:
            raise VlmError(f"captions must be non-empty strings, got {bad!r}")
        padding: dict[str, Any] = {"padding": "max_length" if self.pad_to_max_length else True}
        if self.max_text_tokens is not None:
            padding.update(truncation=True, max_length=self.max_text_tokens)
        image = self._pil(image_rgb)
        try:
            inputs = self.processor(images=[image], text=list(captions), return_tensors="pt", **padding)
        except (ValueError, RuntimeError) as exc:  # the processor refused the input
            raise VlmError(f"the contrastive VLM's processor cannot prepare captions {list(captions)!r} with a "
                           f"{image.width}x{image.height} px image: {exc}") from exc
        _check_distinct_captions(captions, inputs["input_ids"], self.max_text_tokens)
        return self._to_device(inputs)

    def preprocess_images(self, images: Sequence[np.ndarray]) -> Any:
        """Model inputs (pixel values) for ``images`` on the device."""
        pil_images = [self._pil(image) for image in images]
        try:
            inputs = self.processor.image_processor(images=pil_images, return_tensors="pt")
        except (ValueError, RuntimeError) as exc:
            sizes = sorted({f"{image.width}x{image.height}" for image in pil_images})
            raise VlmError(f"the contrastive VLM's image processor cannot prepare images of {sizes} px: "
                           f"{exc}") from exc
        return self._to_device(inputs)

    def _to_device(self, inputs: Any) -> Any:
        try:
            return inputs.to(self.device)
        except RuntimeError as exc:  # torch.OutOfMemoryError is one
            raise VlmError(f"the contrastive VLM's inputs do not fit on {self.device}: {exc}") from exc

    def forward(self, inputs: Any) -> torch.Tensor:
        """The image-caption logits (1, C) (``logits_per_image``), float32 on the CPU."""
        with torch.inference_mode(), inference_errors(f"contrastive VLM scoring the captions on {self.device}",
                                                      VlmError):
            output = self.model(**inputs)
        return output.logits_per_image.float().cpu()

    def forward_image_features(self, inputs: Any) -> np.ndarray:
        """The projected image features (N, D), float64, not normalised."""
        with torch.inference_mode(), inference_errors(f"contrastive VLM embedding the images on {self.device}",
                                                      VlmError):
            features = self.model.get_image_features(**inputs)
        # transformers 5 returns the encoder output with the projected embedding as pooler_output; 4.x the tensor.
        features = getattr(features, "pooler_output", features)
        return features.double().cpu().numpy()

    def postprocess(self, logits: torch.Tensor) -> np.ndarray:
        """Softmax of the one image's logits over the captions, float64."""
        row = logits.double().numpy().reshape(-1)
        if not np.all(np.isfinite(row)):
            raise VlmError(f"the contrastive VLM gave non-finite caption logits {row.tolist()}")
        return softmax(row)

    @staticmethod
    def _pil(image_rgb: np.ndarray) -> Any:
        from PIL import Image  # noqa: PLC0415 - a PIL image leaves no doubt about the channel order

        return Image.fromarray(check_rgb(image_rgb), mode="RGB")


def _check_distinct_captions(captions: Sequence[str], input_ids: torch.Tensor, max_text_tokens: int | None) -> None:
    """:class:`VlmError` when two captions tokenise the same: the softmax over them would be exactly even whatever
    the image (long labels truncated to the text length before the claim and its converse differ)."""
    rows = [tuple(row) for row in input_ids.tolist()]
    first_of: dict[tuple[int, ...], int] = {}
    for k, row in enumerate(rows):
        if row in first_of:
            limit = f" (truncated to the model's {max_text_tokens} text tokens)" if max_text_tokens else ""
            raise VlmError(f"the contrastive VLM cannot tell the captions {captions[first_of[row]]!r} and "
                           f"{captions[k]!r} apart: they tokenise the same{limit}; shorten the labels")
        first_of[row] = k
