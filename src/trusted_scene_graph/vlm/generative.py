"""The 'generative' VLM backend: a ``transformers`` image-text-to-text model asked a yes/no question.

Structured like a ``transformers`` pipeline: :meth:`GenerativeVlm.preprocess` builds the prompt (the processor's
chat template when it has one) and the model inputs, :meth:`~GenerativeVlm.forward` is the only step that touches
the model and the device (greedy generation, raw logits kept), and :meth:`~GenerativeVlm.postprocess` turns the
logits into a :class:`VlmAnswer` (:mod:`trusted_scene_graph.vlm.scoring` says how).

Any model ``AutoModelForImageTextToText`` loads works (SmolVLM, LLaVA, Qwen2-VL, ...), from a local directory or
the local Hugging Face cache only; missing or corrupt weights fail with the path and how to get them. This module
imports torch when imported; :func:`trusted_scene_graph.vlm.make_vlm` imports it only when this backend is selected.

At load the prompt is rendered once and must hold the processor's image token (a broken chat template fails then,
naming its file, not at every question). The processor refusing an input and the model failing (a ``ValueError``
or ``RuntimeError``, such as ``torch.OutOfMemoryError``) raise :class:`VlmError` with the reason, so a caller that
skips what a VLM cannot answer (the node's frame callback, ``tsg eval vsr``) skips that question only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trusted_scene_graph.example_models import GENERATIVE_VLM_EXAMPLE_ID
from trusted_scene_graph.perception.hf import inference_errors
from trusted_scene_graph.vlm.base import (
    VlmAnswer,
    VlmError,
    check_rgb,
    judge_relation_as_statement,
    question_for,
)
from trusted_scene_graph.vlm.hf import MODEL_PARAMETER, load_vlm
from trusted_scene_graph.vlm.scoring import NMLP_TOP_K, answer_from_logits

# Enough for "Yes." or "No, it is not." plus an end token; NMLP averages over what was generated.
DEFAULT_MAX_NEW_TOKENS = 8
# Where a saved processor keeps its chat template, newest format first (transformers 4.4x+ writes the .jinja file).
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json", "processor_config.json", "tokenizer_config.json")


def answer_token_ids(tokenizer: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Ids of the single-token spellings of "yes" and "no" (any case, with or without a leading space).

    Raises :class:`VlmError` when the tokenizer has no single token for either word (the probability would be
    undefined).
    """
    unknown = getattr(tokenizer, "unk_token_id", None)
    found: dict[str, tuple[int, ...]] = {}
    for word in ("yes", "no"):
        ids = []
        for spelling in (word, word.capitalize(), word.upper()):
            for prefix in ("", " "):
                encoded = tokenizer.encode(prefix + spelling, add_special_tokens=False)
                if len(encoded) == 1 and encoded[0] != unknown:
                    ids.append(int(encoded[0]))
        if not ids:
            raise VlmError(f"the VLM's tokenizer ({type(tokenizer).__name__}) has no single token for {word!r}; "
                           "its yes/no probability is undefined")
        found[word] = tuple(dict.fromkeys(ids))
    shared = set(found["yes"]) & set(found["no"])
    if shared:
        raise VlmError(f"the VLM's tokenizer maps 'yes' and 'no' to the same token ids {sorted(shared)}")
    return found["yes"], found["no"]


def chat_template_source(model_path: str) -> str:
    """The file a local model folder's chat template is read from (for error messages); the folder or model id
    itself when none of :data:`CHAT_TEMPLATE_FILES` is there."""
    folder = Path(model_path).expanduser()
    found = next((folder / name for name in CHAT_TEMPLATE_FILES if (folder / name).is_file()), None)
    return f"{model_path!r} (file {found.name})" if found is not None else repr(model_path)


class GenerativeVlm:
    """Yes/no verdicts from an image-text-to-text model (``model``) and its processor, already loaded.

    ``max_new_tokens`` bounds the generated answer; ``top_k`` is the NMLP's k (:data:`~.scoring.NMLP_TOP_K`).
    ``source`` names where the processor came from in errors (:meth:`from_pretrained` gives the folder and file).
    """

    # The answers come from the image (read by vlm.base.looks_at_pixels).
    looks_at_pixels = True

    def __init__(self, model: Any, processor: Any, *, device: str = "cpu",
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, top_k: int = NMLP_TOP_K,
                 source: str | None = None) -> None:
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is None:
            raise VlmError(f"the 'generative' VLM needs a processor with a tokenizer, got {type(processor).__name__}")
        if device == "cuda" and not torch.cuda.is_available():
            raise VlmError("vlm.device is 'cuda' but torch sees no CUDA device; set vlm.device: cpu")
        if device not in ("cpu", "cuda"):
            raise VlmError(f"vlm.device must be 'cpu' or 'cuda', got {device!r}")
        if max_new_tokens < 1:
            raise VlmError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.top_k = top_k
        self.yes_ids, self.no_ids = answer_token_ids(tokenizer)
        self.uses_chat_template = bool(getattr(processor, "chat_template", None))
        if not self.uses_chat_template and not getattr(processor, "image_token", None):
            raise VlmError(f"the VLM's processor ({type(processor).__name__}) has neither a chat template nor an "
                           "image token: cannot tell where the image goes in the prompt")
        self._check_prompt(source or f"the VLM's processor ({type(processor).__name__})")

    def _check_prompt(self, source: str) -> None:
        """Render a prompt once: a chat template that fails, or that leaves out the image token, would otherwise
        fail every question with the processor's own error."""
        from jinja2 import TemplateError  # noqa: PLC0415 - transformers' template engine, loaded with it

        try:
            prompt = self.prompt("The cup is left of the bowl.")
        except (TemplateError, ValueError, TypeError) as exc:
            raise VlmError(f"the chat template of the VLM {source} cannot be rendered: {exc}") from exc
        image_token = getattr(self.processor, "image_token", None)
        if not isinstance(prompt, str) or (isinstance(image_token, str) and image_token not in prompt):
            raise VlmError(f"the chat template of the VLM {source} renders a prompt without the image token "
                           f"{image_token!r}, so the image has no place in it: got {str(prompt)[:200]!r}; restore "
                           "the model's own chat template")

    @classmethod
    def from_pretrained(cls, model_path: str, **settings: Any) -> GenerativeVlm:
        """Load model and processor from a local directory (or a model id in the local HF cache); never downloads.

        ``settings`` are the keyword arguments of the constructor.
        """
        # Imported here: transformers is slow to import and only needed while loading.
        from transformers import AutoModelForImageTextToText

        model, processor = load_vlm(AutoModelForImageTextToText, model_path, GENERATIVE_VLM_EXAMPLE_ID, "VLM")
        return cls(model, processor, **{"source": chat_template_source(model_path), **settings})

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> GenerativeVlm:
        """Build from the ``vlm.*`` parameters (loads the weights)."""
        return cls.from_pretrained(config[MODEL_PARAMETER], device=config["vlm.device"])

    def judge(self, image_rgb: np.ndarray, statement: str, *, image_id: str | None = None) -> VlmAnswer:
        """Ask whether ``statement`` is true of the image; ``image_id`` is not used (the model sees the pixels)."""
        logits, generated_ids = self.forward(self.preprocess(image_rgb, statement))
        return self.postprocess(logits, generated_ids)

    def judge_relation(self, image_rgb: np.ndarray, subject: str, predicate: str, object_: str, *,
                       image_id: str | None = None) -> VlmAnswer:
        """:meth:`judge` on the claim "The <subject> is <predicate> the <object>."."""
        return judge_relation_as_statement(self, image_rgb, subject, predicate, object_, image_id=image_id)

    def prompt(self, statement: str) -> str:
        """The text sent with the image: the question in the processor's chat template, with the generation prompt."""
        question = question_for(statement)
        if self.uses_chat_template:
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return f"{self.processor.image_token}\n{question}"

    def preprocess(self, image_rgb: np.ndarray, statement: str) -> Any:
        """The model inputs (token ids, pixel values, ...) on the device."""
        from PIL import Image  # noqa: PLC0415 - a PIL image leaves no doubt about the channel order

        image = Image.fromarray(check_rgb(image_rgb), mode="RGB")
        prompt = self.prompt(statement)
        try:
            return self.processor(images=[image], text=[prompt], return_tensors="pt").to(self.device)
        except (ValueError, RuntimeError) as exc:  # the processor refused the input, or the device is out of memory
            raise VlmError(f"the VLM's processor cannot prepare the question {statement!r} with a "
                           f"{image.width}x{image.height} px image: {exc}") from exc

    def forward(self, inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy generation; returns the raw logits (T, V) of the generated positions (float32, CPU) and their ids."""
        with torch.inference_mode(), inference_errors(f"VLM generating an answer on {self.device}", VlmError):
            # num_beams=1: a checkpoint's generation_config.json may ask for beam search, whose per-step logits are
            # beam 0's, not those of the sequence returned.
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1,
                                         output_logits=True, return_dict_in_generate=True)
        prompt_length = inputs["input_ids"].shape[1]
        logits = torch.cat([step[:1] for step in output.logits], dim=0).float().cpu()
        return logits, output.sequences[0, prompt_length:].cpu()

    def postprocess(self, logits: torch.Tensor, generated_ids: Sequence[int] | torch.Tensor) -> VlmAnswer:
        """The answer, its probability and the yes/no mass from the first position's logits, NMLP over all generated
        positions."""
        answer, probability, confidence, answer_mass = answer_from_logits(logits.numpy(), self.yes_ids, self.no_ids,
                                                                          self.top_k)
        raw_text = self.processor.decode(generated_ids, skip_special_tokens=True).strip()
        return VlmAnswer(answer, probability, confidence, raw_text, answer_mass=answer_mass)
