"""Tiny, randomly initialised ``transformers`` models written to a directory, for tests and benchmarks (no network).

They load through the same ``from_pretrained`` path as the released checkpoints; their outputs are meaningless.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# Words in the tiny tokenizer's vocabulary (anything else tokenises to [UNK], which works but is less realistic).
DEFAULT_WORDS = ("a", "red", "blue", "green", "yellow", "cube", "ball", "mug", "table", "gripper", "robot", "arm",
                 "box", "cup", "on", "the", "of", "small", "large", "bottle", "plate", "bowl", "chair", "shelf")


def build_tiny_grounding_dino(directory: Path, max_text_len: int = 32, words: Sequence[str] = DEFAULT_WORDS,
                              seed: int = 0) -> Path:
    """Save a ~0.5 M parameter Grounding DINO and its processor (safetensors) to ``directory``; returns it.

    The architecture is ``grounding_dino.tiny_config(max_text_len)``; images are resized to 64 px (shortest edge,
    at most 96 px longest). The WordPiece vocabulary puts [CLS], [SEP], '.' and '?' at BERT's ids (101, 102, 1012,
    1029): Grounding DINO hard-codes those ids as its phrase delimiters.
    """
    import torch
    from transformers import BertTokenizer, GroundingDinoForObjectDetection, GroundingDinoProcessor
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import GroundingDinoImageProcessorPil

    from trusted_scene_graph.perception.grounding_dino import tiny_config

    fixed = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 1012: ".", 1029: "?"}
    tokens = [fixed.get(i, f"[unused{i}]") for i in range(1030)]
    tokens += [word for word in dict.fromkeys(w.lower() for w in words) if word not in tokens]
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(tokens)})

    torch.manual_seed(seed)
    model = GroundingDinoForObjectDetection(tiny_config(max_text_len, vocab_size=len(tokens))).eval()
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


def build_tiny_depth_anything(directory: Path, depth_estimation_type: str = "metric", **processor_kwargs) -> Path:
    """A Depth Anything with a 2-layer, 32-wide Dinov2 backbone and its DPT processor (56 px input)."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    backbone = Dinov2Config(image_size=56, patch_size=14, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, out_indices=[1, 2], reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, reassemble_factors=[2, 1],
                                 neck_hidden_sizes=[16, 32], fusion_hidden_size=16, head_hidden_size=8,
                                 depth_estimation_type=depth_estimation_type, max_depth=20)
    torch.manual_seed(0)
    model = DepthAnythingForDepthEstimation(config).eval()
    # The default initialisation makes the head output a constant; random weights give a depth map with structure.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    model.save_pretrained(directory)
    processor = DPTImageProcessorPil(size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14,
                                     do_pad=False, **processor_kwargs)
    processor.save_pretrained(directory)
    return directory
