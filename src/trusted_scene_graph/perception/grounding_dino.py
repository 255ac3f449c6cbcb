"""The 'grounding_dino' detector backend: open-vocabulary 2D boxes from Grounding DINO (``transformers``).

Structured like a ``transformers`` pipeline: :meth:`GroundingDinoDetector.preprocess` turns the colour image into
pixel tensors (the text side is tokenised once, at construction), :meth:`~GroundingDinoDetector.forward` is the only
step that touches the model and the device, and :meth:`~GroundingDinoDetector.postprocess` turns the raw output into
:class:`Detection` objects with labels from the configured vocabulary only.

The vocabulary is sent to the model as one prompt "phrase one. phrase two. ..." per batch; a vocabulary whose prompt
is longer than the model's text limit (``max_text_len``, 256 tokens for the released checkpoints) is split into
several batches, one forward pass each, rather than truncated. The text encoder's output depends only on the prompt,
so it is computed once per batch and reused for every frame (:class:`CachingTextBackbone`).

This module imports torch when imported; ``detector.py`` imports it only when this backend is selected.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trusted_scene_graph.example_models import GROUNDING_DINO_EXAMPLE_ID
from trusted_scene_graph.perception.detector import (
    CameraFrame,
    Detection,
    PerceptionError,
    label_renames,
    vocabulary_phrases,
)
from trusted_scene_graph.perception.hf import check_image_size, inference_errors, load_complete_model, load_pretrained
from trusted_scene_graph.relations.image import box_iou_matrix

_MODEL_PARAMETER = "detector.model_path"
_MODEL_TYPE = "grounding-dino"
# Characters the model's text side treats as phrase delimiters ('.' and '?' are among its special tokens): inside a
# phrase they would silently split it in two.
_DELIMITERS = (".", "?")


def non_max_suppression(boxes_xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, highest score first (ties keep input order).

    A box is dropped when its IoU with an already kept, higher-scoring box is above ``iou_threshold``. Boxes are
    (N, 4) ``x0, y0, x1, y1``. Written here because torchvision (whose ``nms`` this mirrors) is not a dependency;
    the IoUs come from :func:`~trusted_scene_graph.relations.image.box_iou_matrix`.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise PerceptionError(f"non_max_suppression: {len(boxes)} boxes but {len(scores)} scores")
    sizes = np.clip(boxes[:, 2:] - boxes[:, :2], 0, None)  # a degenerate box is empty, never negative
    iou = box_iou_matrix(np.concatenate([boxes[:, :2], sizes], axis=1))
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        kept.append(int(best))
        order = rest[iou[best, rest] <= iou_threshold]
    return np.asarray(kept, dtype=np.int64)


class CachingTextBackbone(torch.nn.Module):
    """The model's text encoder (BERT) that returns its stored output when called again with identical inputs.

    Grounding DINO encodes the prompt on every forward pass although it is the same for every frame; wrapped in
    this module, the frames after the first skip the text encoder. Holds one entry per vocabulary batch (the
    least recently used is replaced). Only caches under ``torch.inference_mode``/``no_grad`` (valid because the
    weights do not change at inference); with gradients enabled every call goes to the wrapped encoder.
    """

    def __init__(self, text_backbone: torch.nn.Module, max_entries: int = 1) -> None:
        super().__init__()
        self.inner = text_backbone
        self.max_entries = max_entries
        self._entries: list[tuple[tuple[Any, ...], dict[str, Any], Any]] = []

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                **kwargs: Any) -> Any:
        tensors = (input_ids, attention_mask, token_type_ids, position_ids)
        if torch.is_grad_enabled():
            return self.inner(*tensors, **kwargs)
        for index, (stored_tensors, stored_kwargs, output) in enumerate(self._entries):
            if stored_kwargs == kwargs and all(map(_same_tensor, stored_tensors, tensors)):
                self._entries.append(self._entries.pop(index))  # most recently used last
                return output
        output = self.inner(*tensors, **kwargs)
        self._entries.append((tuple(t if t is None else t.detach().clone() for t in tensors), dict(kwargs), output))
        del self._entries[:-self.max_entries]
        return output

    def clear(self) -> None:
        """Forget every stored output (e.g. after changing the encoder's weights)."""
        self._entries.clear()


def _same_tensor(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)


@dataclass(frozen=True)
class PhraseBatch:
    """One prompt sent to the model: its phrases and tokenised text, with where each phrase's tokens are."""

    phrases: tuple[str, ...]
    prompt: str
    input_ids: torch.Tensor  # (1, T) on the model's device
    attention_mask: torch.Tensor  # (1, T)
    token_type_ids: torch.Tensor  # (1, T)
    token_spans: tuple[tuple[int, int], ...]  # per phrase: [start, end) token positions in input_ids

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[1])


class GroundingDinoDetector:
    """Open-vocabulary detector: boxes for the configured phrases, labels from ``label_map`` (default: the phrase).

    ``model`` is a ``GroundingDinoForObjectDetection`` and ``processor`` its ``GroundingDinoProcessor``, already
    built (:meth:`from_pretrained` and :meth:`from_config` load both from local weights). With
    ``cache_text_features`` the model's text encoder is wrapped in a :class:`CachingTextBackbone` (the model is
    modified in place). ``min_box_area_px`` drops boxes smaller than that many pixels.
    """

    needs_instances = False
    every_detection_masked = False  # boxes only

    def __init__(self, model: Any, processor: Any, vocabulary: Sequence[str], *,
                 label_map: Mapping[str, str] | None = None, box_threshold: float = 0.35,
                 text_threshold: float = 0.25, nms_iou: float = 0.5, min_box_area_px: int = 1,
                 device: str = "cpu", half_precision: bool = False, cache_text_features: bool = True) -> None:
        self.phrases = _normalised_vocabulary(vocabulary)
        label_map = dict(label_map or {})
        unknown = sorted(set(label_map) - set(self.phrases))
        if unknown:
            raise PerceptionError(f"detector.label_map renames {unknown}, which is not in detector.vocabulary "
                                  f"{list(self.phrases)}")
        self.labels = {phrase: label_map.get(phrase, phrase) for phrase in self.phrases}
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        if model_type != _MODEL_TYPE:
            raise PerceptionError(f"the 'grounding_dino' detector needs a Grounding DINO model (e.g. "
                                  f"{GROUNDING_DINO_EXAMPLE_ID}), got a {model_type!r} model")
        if (not hasattr(processor, "post_process_grounded_object_detection")
                or getattr(processor, "tokenizer", None) is None):
            raise PerceptionError(f"the 'grounding_dino' detector needs a GroundingDinoProcessor with a tokenizer, "
                                  f"got {type(processor).__name__}")
        if device == "cuda" and not torch.cuda.is_available():
            raise PerceptionError("detector.device is 'cuda' but torch sees no CUDA device; set detector.device: cpu")
        if half_precision and device != "cuda":
            raise PerceptionError(f"detector.half_precision needs detector.device 'cuda', got {device!r}")
        self.box_threshold = box_threshold
        self.text_threshold = text_threshold
        self.nms_iou = nms_iou
        self.min_box_area_px = min_box_area_px
        self.device = device
        self.dtype = torch.float16 if half_precision else torch.float32
        self.model = model.to(device=device, dtype=self.dtype).eval()
        self.processor = processor
        _check_tokenizer_knows_delimiters(processor.tokenizer)
        self.max_text_len = int(model.config.max_text_len)
        self.batches = _phrase_batches(processor.tokenizer, self.phrases, self.max_text_len, device)
        if cache_text_features:
            _install_text_cache(self.model, max_entries=len(self.batches))

    @classmethod
    def from_pretrained(cls, model_path: str, vocabulary: Sequence[str], **settings: Any) -> GroundingDinoDetector:
        """Load model and processor from a local directory (or a model id in the local HF cache); never downloads.

        ``settings`` are the keyword arguments of the constructor.
        """
        # Imported here: transformers is slow to import and only needed while loading.
        from transformers import AutoConfig, AutoModelForZeroShotObjectDetection, AutoProcessor

        _normalised_vocabulary(vocabulary)  # fail before loading the weights
        model_config = load_pretrained(AutoConfig, model_path, _MODEL_PARAMETER, GROUNDING_DINO_EXAMPLE_ID)
        if getattr(model_config, "model_type", None) != _MODEL_TYPE:
            raise PerceptionError(f"{_MODEL_PARAMETER}: {model_path!r} is a {model_config.model_type!r} model; the "
                                  "'grounding_dino' detector needs a Grounding DINO model, e.g. "
                                  f"{GROUNDING_DINO_EXAMPLE_ID}")
        processor = load_pretrained(AutoProcessor, model_path, _MODEL_PARAMETER, GROUNDING_DINO_EXAMPLE_ID)
        model = load_complete_model(AutoModelForZeroShotObjectDetection, model_path, _MODEL_PARAMETER,
                                    GROUNDING_DINO_EXAMPLE_ID, "detector model", config=model_config)
        return cls(model, processor, vocabulary, **settings)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> GroundingDinoDetector:
        """Build from the ``detector.*`` parameters (loads the weights)."""
        return cls.from_pretrained(
            config[_MODEL_PARAMETER], config["detector.vocabulary"], label_map=label_renames(config),
            box_threshold=config["detector.box_threshold"], text_threshold=config["detector.text_threshold"],
            nms_iou=config["detector.nms_iou"], min_box_area_px=config["detector.min_pixels"],
            device=config["detector.device"], half_precision=config["detector.half_precision"])

    def reconfigure(self, config: Mapping[str, Any]) -> None:
        """The thresholds, the NMS overlap and the smallest box (post-processing only: the model is kept)."""
        self.box_threshold = config["detector.box_threshold"]
        self.text_threshold = config["detector.text_threshold"]
        self.nms_iou = config["detector.nms_iou"]
        self.min_box_area_px = config["detector.min_pixels"]

    def restart(self) -> None:
        """Nothing to do: detection draws nothing at random (the text features it caches are the same again)."""

    def detect(self, frame: CameraFrame, labels: Collection[str] | None = None) -> list[Detection]:
        """Detections of the vocabulary's phrases in ``frame.rgb``, highest score first, after NMS across phrases.

        ``labels`` is not used to shorten the prompt: the phrases compete for each box, so a shorter prompt would
        change what is detected; the caller filters the result."""
        rgb = frame.rgb  # (H, W, 3) uint8, non-empty: CameraFrame and its Intrinsics check that
        height_px, width_px = rgb.shape[:2]
        pixels = self.preprocess(rgb)
        detections = []
        for batch in self.batches:
            detections += self.postprocess(self.forward(pixels, batch), batch, height_px, width_px)
        boxes_xyxy = np.array([(x, y, x + w, y + h) for x, y, w, h in (d.box_xywh_px for d in detections)],
                              dtype=np.float64).reshape(-1, 4)
        kept = non_max_suppression(boxes_xyxy, np.array([d.score for d in detections]), self.nms_iou)
        return [detections[i] for i in kept]  # NMS returns them highest score first

    def preprocess(self, rgb: np.ndarray) -> dict[str, torch.Tensor]:
        """The image as the model's ``pixel_values`` and ``pixel_mask``, on the device (the text is pre-tokenised)."""
        check_image_size(rgb, "Grounding DINO detector")
        # Channel order given explicitly: inference from the shape is ambiguous for images 3 pixels high.
        with inference_errors("Grounding DINO detector's image processor"):
            inputs = self.processor.image_processor(images=rgb, return_tensors="pt",
                                                    input_data_format="channels_last")
        pixels = {"pixel_values": inputs["pixel_values"].to(device=self.device, dtype=self.dtype)}
        if "pixel_mask" in inputs:  # a processor with do_pad false gives none: the model then takes every pixel
            pixels["pixel_mask"] = inputs["pixel_mask"].to(self.device)
        return pixels

    def forward(self, pixels: Mapping[str, torch.Tensor], batch: PhraseBatch) -> Any:
        """One forward pass for one phrase batch; the raw logits and boxes come back as float32 on the CPU."""
        with torch.inference_mode(), inference_errors("Grounding DINO detector"):
            outputs = self.model(**pixels, input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                 token_type_ids=batch.token_type_ids)
            return type(outputs)(logits=outputs.logits.float().cpu(), pred_boxes=outputs.pred_boxes.float().cpu())

    def postprocess(self, outputs: Any, batch: PhraseBatch, height_px: int, width_px: int) -> list[Detection]:
        """Boxes above ``box_threshold``, each labelled with the phrase of its batch it matches best (before NMS)."""
        (result,) = self.processor.post_process_grounded_object_detection(
            outputs, input_ids=batch.input_ids.cpu(), threshold=self.box_threshold,
            text_threshold=self.text_threshold, target_sizes=[(height_px, width_px)])
        # The post-processor's text label is the decoded text of all tokens above text_threshold: part of a phrase,
        # or several phrases run together. The phrase is chosen from the per-token probabilities instead: the one
        # whose tokens reach the highest probability. The post-processor does not say which queries it kept, so its
        # rule (max token probability above box_threshold, in query order) is applied again here.
        token_probs = outputs.logits[0].sigmoid()
        token_probs = token_probs[token_probs.max(dim=-1).values > self.box_threshold]
        if len(token_probs) != len(result["scores"]):
            raise PerceptionError(f"the Grounding DINO post-processor kept {len(result['scores'])} boxes where "
                                  f"{len(token_probs)} pass detector.box_threshold; unsupported transformers version?")
        phrase_probs = torch.stack([token_probs[:, start:end].max(dim=-1).values
                                    for start, end in batch.token_spans], dim=-1).numpy()
        boxes_xyxy = result["boxes"].numpy().reshape(-1, 4)
        # Clipped to the image, then rounded to whole pixels.
        boxes_xyxy = np.rint(np.clip(boxes_xyxy, 0, [width_px, height_px, width_px, height_px])).astype(np.int64)
        detections = []
        for score, (x0, y0, x1, y1), probs in zip(result["scores"].tolist(), boxes_xyxy, phrase_probs, strict=True):
            phrase_index = int(np.argmax(probs))  # first of equal maxima: deterministic
            if probs[phrase_index] <= self.text_threshold:
                continue  # no phrase token confident enough; upstream would give an empty label
            width, height = int(x1 - x0), int(y1 - y0)
            if width <= 0 or height <= 0 or width * height < self.min_box_area_px:
                continue
            label = self.labels[batch.phrases[phrase_index]]
            detections.append(Detection(label, float(score), (int(x0), int(y0), width, height)))
        return detections


def _normalised_vocabulary(vocabulary: Sequence[str]) -> tuple[str, ...]:
    """The phrases as :func:`~trusted_scene_graph.perception.detector.vocabulary_phrases` gives them, checked for
    what Grounding DINO cannot read."""
    phrases = vocabulary_phrases(vocabulary)
    if not phrases:
        raise PerceptionError(f"detector.vocabulary is empty ({list(vocabulary)!r}): the 'grounding_dino' detector "
                              "needs at least one phrase")
    for phrase in phrases:
        delimiter = next((d for d in _DELIMITERS if d in phrase), None)
        if delimiter is not None:
            raise PerceptionError(f"detector.vocabulary: phrase {phrase!r} contains {delimiter!r}, which Grounding "
                                  "DINO reads as the end of a phrase; remove it")
    return phrases


def _check_tokenizer_knows_delimiters(tokenizer: Any) -> None:
    """Refuse a tokenizer that reads the phrase delimiter '.' as an unknown token. A model folder without its
    tokenizer files (vocab.txt, tokenizer.json) still loads, with a stand-in tokenizer that maps every word to [UNK]:
    the prompt's phrases could not be told apart, and every box would get the first phrase's label."""
    unknown_id = getattr(tokenizer, "unk_token_id", None)
    if unknown_id is not None and tokenizer.convert_tokens_to_ids(".") == unknown_id:
        raise PerceptionError(f"the detector's tokenizer reads the phrase delimiter '.' as {tokenizer.unk_token}: its "
                              "model folder lacks the tokenizer files (vocab.txt or tokenizer.json) it was trained "
                              "with")


def _tokenise(tokenizer: Any, phrases: Sequence[str], device: str) -> PhraseBatch:
    # The upstream prompt format (GroundingDinoProcessor for a list of labels): lower case, each phrase ended by '.'.
    lowered = [phrase.lower() for phrase in phrases]
    prompt = "".join(f"{phrase}. " for phrase in lowered).rstrip()
    char_spans = []
    start = 0
    for phrase in lowered:
        char_spans.append((start, start + len(phrase)))
        start += len(phrase) + 2
    encoding = tokenizer(prompt, return_offsets_mapping=True, return_token_type_ids=True, return_attention_mask=True,
                         return_tensors="pt")
    offsets = encoding["offset_mapping"][0].tolist()
    token_spans = []
    for phrase, (char_start, char_end) in zip(phrases, char_spans, strict=True):
        # Special tokens have empty offsets (0, 0) and are never part of a phrase.
        inside = [i for i, (s, e) in enumerate(offsets) if e > s and s >= char_start and e <= char_end]
        if not inside:
            raise PerceptionError(f"detector.vocabulary: phrase {phrase!r} tokenises to nothing")
        token_spans.append((inside[0], inside[-1] + 1))
    return PhraseBatch(tuple(phrases), prompt, encoding["input_ids"].to(device),
                       encoding["attention_mask"].to(device), encoding["token_type_ids"].to(device),
                       tuple(token_spans))


def _phrase_batches(tokenizer: Any, phrases: Sequence[str], max_text_len: int, device: str) -> list[PhraseBatch]:
    """The phrases packed in order into as few prompts as fit ``max_text_len`` tokens (special tokens included)."""
    batches: list[PhraseBatch] = []
    current: PhraseBatch | None = None
    for phrase in phrases:
        candidate = _tokenise(tokenizer, [*current.phrases, phrase] if current else [phrase], device)
        if candidate.num_tokens <= max_text_len:
            current = candidate
            continue
        alone = _tokenise(tokenizer, [phrase], device) if current else candidate
        if alone.num_tokens > max_text_len:
            raise PerceptionError(f"detector.vocabulary: phrase {phrase!r} is {alone.num_tokens} tokens long "
                                  f"(special tokens included), more than the model's text limit of {max_text_len}; "
                                  "shorten it")
        batches.append(current)
        current = alone
    batches.append(current)
    return batches


def _install_text_cache(model: Any, max_entries: int) -> None:
    inner_model = model.model  # GroundingDinoForObjectDetection.model: the GroundingDinoModel
    if isinstance(inner_model.text_backbone, CachingTextBackbone):  # a model shared by several detectors
        inner_model.text_backbone.max_entries = max(inner_model.text_backbone.max_entries, max_entries)
    else:
        inner_model.text_backbone = CachingTextBackbone(inner_model.text_backbone, max_entries)


# --- Models for timing and tests (random weights, no network) ----------------------------------------------------

# The image size the released models see for a 640x480 camera (shortest edge resized to 800 px) and a prompt of a
# handful of phrases.
TIMING_IMAGE_PX = (800, 1066)
# A prompt naming the 20 objects of the perception benchmark, three word pieces each: 20 x (3 + '.') + [CLS], [SEP].
TIMING_TEXT_TOKENS = 82


def tiny_config(max_text_len: int = 32, vocab_size: int = 1100) -> Any:
    """A ~0.5 M parameter Grounding DINO config: Swin 16 wide with 4 one-block stages, BERT 32 wide with 2 layers,
    d_model 32, 1 encoder and 2 decoder layers (the decoder needs at least 2), 10 queries.

    ``vocab_size`` must exceed 1029: the model hard-codes BERT's ids of [CLS], [SEP], '.' and '?' (101, 102, 1012,
    1029) as its phrase delimiters.
    """
    from transformers import BertConfig, GroundingDinoConfig, SwinConfig

    backbone = SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                          window_size=4, out_features=["stage2", "stage3", "stage4"])
    text = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=max(64, max_text_len))
    return GroundingDinoConfig(backbone_config=backbone, text_config=text, d_model=32, encoder_layers=1,
                               decoder_layers=2, num_queries=10, max_text_len=max_text_len, encoder_ffn_dim=64,
                               decoder_ffn_dim=64, encoder_attention_heads=2, decoder_attention_heads=2,
                               encoder_n_points=2, decoder_n_points=2)


def full_size_random_model(seed: int = 0) -> tuple[Any, Any]:
    """The released Grounding DINO architecture (Swin-T + BERT-base, 900 queries, 256 text tokens), random weights.

    Returns ``(model, image_processor)``: the model in eval mode and the default Grounding DINO image processor
    (shortest edge 800 px, longest 1333 px). There is no tokenizer (its vocabulary would need a download): feed
    the model :func:`forward_timing_inputs` instead. For timing only; the detections are meaningless.
    """
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import GroundingDinoImageProcessorPil

    torch.manual_seed(seed)
    model = GroundingDinoForObjectDetection(GroundingDinoConfig()).eval()
    return model, GroundingDinoImageProcessorPil()


def forward_timing_model(size: str = "full", seed: int = 0) -> tuple[Any, dict[str, Any], str]:
    """``(model, inputs, description)`` for timing one forward pass: ``model(**inputs)`` under inference mode.

    ``size`` 'full': :func:`full_size_random_model` on an 800x1066 image with an 82-token prompt (what a 640x480
    camera frame and 20 three-token phrases become); 'tiny': the :func:`tiny_config` model on 64x96, to check a
    benchmark quickly. Random weights: only the time means something.
    """
    from transformers import GroundingDinoForObjectDetection

    if size == "full":
        model, _ = full_size_random_model(seed)
        (height_px, width_px), text_len = TIMING_IMAGE_PX, TIMING_TEXT_TOKENS
        architecture = "Swin-T + BERT-base"
    elif size == "tiny":
        torch.manual_seed(seed)
        model = GroundingDinoForObjectDetection(tiny_config()).eval()
        (height_px, width_px), text_len = (64, 96), 16
        architecture = "tiny test model"
    else:
        raise PerceptionError(f"unknown timing model size {size!r}; known sizes: ['full', 'tiny']")
    inputs = forward_timing_inputs(model, height_px, width_px, text_len, seed)
    return model, inputs, f"GroundingDINO {architecture}, random weights, {height_px}x{width_px} image, " \
                          f"{text_len} text tokens"

def forward_timing_inputs(model: Any, height_px: int, width_px: int, text_len: int, seed: int = 0) -> dict[str, Any]:
    """Random model inputs of a fixed size: an image of ``height_px`` x ``width_px`` (already preprocessed) and a
    ``text_len``-token prompt ([CLS], phrases of 3 random word tokens ended by '.', [SEP]).

    Use as ``model(**forward_timing_inputs(model, 800, 1066, 32))`` under ``torch.inference_mode()``.
    """
    max_text_len = int(model.config.max_text_len)
    if not 3 <= text_len <= max_text_len:
        raise PerceptionError(f"forward_timing_inputs: text_len {text_len} is outside [3, {max_text_len}]")
    # [CLS], [SEP], '.', '?' of the BERT vocabulary the model was built for.
    cls_id, sep_id, dot_id, *_ = model.model.special_tokens.tolist()
    generator = torch.Generator().manual_seed(seed)
    words = torch.tensor([i for i in range(model.config.text_config.vocab_size)
                          if i not in model.model.special_tokens.tolist()])
    input_ids = words[torch.randint(len(words), (1, text_len), generator=generator)]
    input_ids[0, 4::4] = dot_id
    input_ids[0, 0], input_ids[0, -2], input_ids[0, -1] = cls_id, dot_id, sep_id
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    return {
        "pixel_values": torch.randn(1, 3, height_px, width_px, generator=generator).to(device=device, dtype=dtype),
        "pixel_mask": torch.ones(1, height_px, width_px, dtype=torch.long, device=device),
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones_like(input_ids, device=device),
        "token_type_ids": torch.zeros_like(input_ids, device=device),
    }
