"""Tiny, randomly initialised vision-language models written to a directory, for tests (no network).

- :func:`build_tiny_vlm`: LLaVA architecture (a CLIP vision tower feeding a Llama language model), which
  ``AutoModelForImageTextToText`` and ``AutoProcessor`` load like the released checkpoints. Everything is built from
  configs: a word-level tokenizer (``tokenizers``) with "yes" and "no" in its vocabulary, a CLIP image processor
  resizing to 32 px and a LLaVA processor with a chat template.
- :func:`build_tiny_contrastive`: a CLIP or SigLIP dual encoder with the same kind of tokenizer, which ``AutoModel``
  and ``AutoProcessor`` load.

Their answers are meaningless but deterministic for a seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

IMAGE_PX = 32  # the vision tower's input size
PATCH_PX = 8  # (32 / 8)^2 = 16 image tokens per image
IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>", IMAGE_TOKEN)

# Words of the question prompt, the chat template and the fixture captions (others tokenise to <unk>, which works).
DEFAULT_WORDS = (
    "is", "this", "statement", "true", "answer", "yes", "no", "or", "user", "assistant", ":", "?", ".", "the", "a",
    "of", "left", "right", "above", "below", "on", "top", "under", "beneath", "in", "front", "behind", "at", "side",
    "near", "cat", "dog", "cup", "ball", "box", "red", "blue", "green", "yellow", "square", "circle", "table",
)

# LLaVA-1.5's prompt format: "USER: <image>\n<question> ASSISTANT:".
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: "
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>\n"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %} "
    "{% elif message['role'] == 'assistant' %}ASSISTANT: "
    "{% for item in message['content'] %}{{ item['text'] }}{% endfor %}</s>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def build_tiny_vlm(directory: Path, words: Sequence[str] = DEFAULT_WORDS, seed: int = 0,
                   chat_template: str | None = CHAT_TEMPLATE, max_new_tokens: int = 4) -> Path:
    """Save a ~40 k parameter LLaVA (CLIP 32 wide, 2 layers; Llama 32 wide, 1 layer) and its processor to
    ``directory`` (safetensors); returns it. ``chat_template=None`` saves a processor without one.
    ``max_new_tokens`` goes into the generation config: random weights rarely produce the end-of-sequence token.
    """
    import torch
    from transformers import (
        CLIPVisionConfig,
        GenerationConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tokenizer, vocabulary = _word_level_tokenizer(words, SPECIAL_TOKENS, "<s> $A")
    token_ids = {token: i for i, token in enumerate(vocabulary)}

    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=IMAGE_PX, patch_size=PATCH_PX, projection_dim=32)
    text = LlamaConfig(vocab_size=len(vocabulary), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                       pad_token_id=token_ids["<pad>"], bos_token_id=token_ids["<s>"], eos_token_id=token_ids["</s>"])
    num_image_tokens = (IMAGE_PX // PATCH_PX) ** 2
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=token_ids[IMAGE_TOKEN],
                         image_seq_length=num_image_tokens, vision_feature_select_strategy="default",
                         vision_feature_layer=-1)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    # The default initialisation (std 0.02) makes every next-token distribution nearly uniform; larger weights give
    # answers that differ from image to image and question to question.
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim > 1:
                parameter.normal_(0.0, 0.5)
    model.generation_config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False,
                                               bos_token_id=token_ids["<s>"], eos_token_id=token_ids["</s>"],
                                               pad_token_id=token_ids["<pad>"])
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_PX},
                                            crop_size={"height": IMAGE_PX, "width": IMAGE_PX})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH_PX,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=chat_template, image_token=IMAGE_TOKEN)
    processor.save_pretrained(directory)
    return directory


def _word_level_tokenizer(words: Sequence[str], special_tokens: Sequence[str], template: str,
                          model_max_length: int | None = None):
    """A lower-casing word-level fast tokenizer over ``special_tokens`` then ``words``, and its vocabulary.

    ``template`` is the single-sequence post-processing template ("<s> $A" or "<s> $A </s>").
    """
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocabulary = list(special_tokens) + [w for w in dict.fromkeys(w.lower() for w in words) if w not in special_tokens]
    token_ids = {token: i for i, token in enumerate(vocabulary)}
    backend = Tokenizer(WordLevel(token_ids, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()  # words and runs of punctuation
    backend.add_special_tokens(list(special_tokens))  # matched before pre-tokenisation: "<image>" stays one token
    used = [token for token in ("<s>", "</s>") if token in template]
    backend.post_processor = processors.TemplateProcessing(single=template,
                                                           special_tokens=[(t, token_ids[t]) for t in used])
    extra = {} if model_max_length is None else {"model_max_length": model_max_length}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>", pad_token="<pad>", **extra)
    return tokenizer, vocabulary


# "</s>" is not id 2: CLIP's text tower treats eos id 2 as a legacy config and pools at the highest token id instead.
CONTRASTIVE_SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>")
CONTRASTIVE_TEXT_TOKENS = 16  # longest caption, in tokens, with <s> and </s>


def build_tiny_contrastive(directory: Path, kind: str = "clip", words: Sequence[str] = DEFAULT_WORDS,
                           seed: int = 0) -> Path:
    """Save a ~50 k parameter CLIP (``kind="clip"``) or SigLIP (``"siglip"``) and its processor to ``directory``
    (safetensors); returns it. Text and vision towers are 32 wide with 2 layers; images are resized to 32 px,
    captions hold up to :data:`CONTRASTIVE_TEXT_TOKENS` tokens ("<s> ... </s>", so CLIP pools at "</s>").
    """
    import torch
    from transformers import (
        CLIPConfig,
        CLIPModel,
        CLIPProcessor,
        CLIPTextConfig,
        CLIPVisionConfig,
        SiglipConfig,
        SiglipModel,
        SiglipProcessor,
        SiglipTextConfig,
        SiglipVisionConfig,
    )
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    tokenizer, vocabulary = _word_level_tokenizer(words, CONTRASTIVE_SPECIAL_TOKENS, "<s> $A </s>",
                                                  model_max_length=CONTRASTIVE_TEXT_TOKENS)
    text = {"vocab_size": len(vocabulary), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "max_position_embeddings": CONTRASTIVE_TEXT_TOKENS,
            "pad_token_id": vocabulary.index("<pad>"), "bos_token_id": vocabulary.index("<s>"),
            "eos_token_id": vocabulary.index("</s>")}
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "image_size": IMAGE_PX, "patch_size": PATCH_PX}
    torch.manual_seed(seed)
    if kind == "clip":
        config = CLIPConfig(text_config=CLIPTextConfig(**text).to_dict(),
                            vision_config=CLIPVisionConfig(**vision).to_dict(), projection_dim=16)
        model = CLIPModel(config)
        image_processor = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_PX},
                                                crop_size={"height": IMAGE_PX, "width": IMAGE_PX})
        processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    elif kind == "siglip":
        config = SiglipConfig(text_config=SiglipTextConfig(**text).to_dict(),
                              vision_config=SiglipVisionConfig(**vision).to_dict())
        model = SiglipModel(config)
        processor = SiglipProcessor(image_processor=SiglipImageProcessorPil(size={"height": IMAGE_PX,
                                                                                  "width": IMAGE_PX}),
                                    tokenizer=tokenizer)
    else:
        raise ValueError(f"kind must be 'clip' or 'siglip', got {kind!r}")
    # As in build_tiny_vlm: larger weights than the default initialisation make the captions' scores differ.
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim > 1:
                parameter.normal_(0.0, 0.5)
    directory.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
