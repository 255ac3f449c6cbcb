"""Loading ``transformers`` models from local weights only (a directory, or a model id in the local HF cache).

Shared by the model backends (detector, monocular depth, later the VLMs) so that every one of them fails the same
way when weights are missing: a :class:`PerceptionError` naming the parameter, the path and how to get the weights.
Never downloads: the product must start the same way on a robot with no network.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from pickle import UnpicklingError
from typing import Any

from trusted_scene_graph.errors import TsgError
from trusted_scene_graph.perception.detector import PerceptionError


def resolve_model_source(model_path: str, parameter: str, example_id: str) -> str:
    """Return what ``from_pretrained`` should load: an existing directory, or a hub id to find in the local cache.

    ``parameter`` (for example ``detector.model_path``) and ``example_id`` make the error tell the user what to set
    and what to download.
    """
    how_to_get = (f"download the weights on a machine with network access, e.g. "
                  f"`hf download {example_id} --local-dir DIR`, copy DIR to the robot and set {parameter}: DIR")
    if not model_path.strip():
        raise PerceptionError(f"{parameter} is empty: this backend needs model weights; {how_to_get}")
    path = Path(model_path).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists():
        raise PerceptionError(f"{parameter}: {model_path!r} is a file, expected a model directory "
                              f"(config.json plus weights); {how_to_get}")
    # A relative "org/name" that is not a directory: a hub id, looked up in the HF cache only. Checked here so that
    # a mistyped relative directory is reported as such, not as a failure to reach huggingface.co.
    if model_path.count("/") == 1 and not model_path.startswith((".", "/", "~")):
        if _in_hf_cache(model_path):
            return model_path
        raise PerceptionError(f"{parameter}: {model_path!r} is neither a directory (relative to the current "
                              f"directory {os.getcwd()!r}) nor a model id in the local HF cache; {how_to_get}")
    raise PerceptionError(f"{parameter}: model directory {model_path!r} does not exist; {how_to_get}")


def _in_hf_cache(model_id: str) -> bool:
    """Whether the local Hugging Face cache holds a ``config.json`` for ``model_id`` (looked up without network)."""
    from huggingface_hub import try_to_load_from_cache  # noqa: PLC0415 - heavy, needed only for a hub id

    try:
        cached = try_to_load_from_cache(model_id, "config.json")
    except ValueError:  # HFValidationError: not a valid model id (e.g. 'dir/na me'), so not in the cache either
        return False
    # A str is the cached file's path; None or a "known missing" sentinel otherwise.
    return isinstance(cached, str)


def _load_errors() -> tuple[type[BaseException], ...]:
    """The exceptions ``from_pretrained`` raises for a broken model folder (not for a bug in this package).

    OSError: missing files / not in the cache; ValueError, KeyError: an unknown or mismatched config;
    RuntimeError: weights that do not fit the config (including corrupt safetensors headers); UnpicklingError: a
    corrupt ``pytorch_model.bin``; TypeError, AttributeError: a JSON file holding ``null`` or a list where
    transformers expects an object; StrictDataclassFieldValidationError (derives from Exception only, and only in
    recent huggingface_hub versions): a config field of the wrong type.
    """
    errors: tuple[type[BaseException], ...] = (OSError, ValueError, KeyError, RuntimeError, UnpicklingError,
                                               TypeError, AttributeError)
    try:
        from huggingface_hub.errors import StrictDataclassFieldValidationError  # noqa: PLC0415 - heavy, optional
    except ImportError:  # older huggingface_hub: no strict dataclass validation, so nothing more to catch
        return errors
    return (*errors, StrictDataclassFieldValidationError)


def load_pretrained(loader: Any, model_path: str, parameter: str, example_id: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained(source, local_files_only=True, **kwargs)`` with errors that say what to do."""
    source = resolve_model_source(model_path, parameter, example_id)
    try:
        return loader.from_pretrained(source, local_files_only=True, **kwargs)
    except ImportError as exc:
        # A tokenizer or processor whose library is not installed (SigLIP's SentencePiece tokenizer, Qwen2-VL's
        # torchvision video processor): an uncaught ImportError would leave the node in ERROR with nothing logged.
        raise PerceptionError(f"cannot load {getattr(loader, '__name__', loader)} from {model_path!r} "
                              f"({parameter}): the model needs a Python package that is not installed: {exc}"
                              ) from exc
    except _load_errors() as exc:
        raise PerceptionError(f"cannot load {getattr(loader, '__name__', loader)} from {model_path!r} "
                              f"({parameter}): {type(exc).__name__}: {exc}. If the weights are missing, "
                              f"download them on a machine with network access, e.g. "
                              f"`hf download {example_id} --local-dir DIR`, and set {parameter}: DIR") from exc


def load_complete_model(loader: Any, model_path: str, parameter: str, example_id: str, what: str,
                        **kwargs: Any) -> Any:
    """:func:`load_pretrained` for model weights, refusing a corrupt file or a checkpoint with missing weights.

    ``what`` names the model in errors ("detector model", "depth model"). ``from_pretrained`` would otherwise fill
    missing or mis-shaped weights with random values and only log it: the model would run and return confident-
    looking nonsense.
    """
    from safetensors import SafetensorError  # noqa: PLC0415 - comes with transformers, needed only here

    try:
        model, loading_info = load_pretrained(loader, model_path, parameter, example_id, output_loading_info=True,
                                              **kwargs)
    except SafetensorError as exc:  # derives from Exception only, so load_pretrained does not catch it
        raise PerceptionError(f"cannot load the {what} from {model_path!r} ({parameter}): corrupt weights file: "
                              f"{exc}; download the weights again, e.g. `hf download {example_id} --local-dir DIR`"
                              ) from exc
    broken = sorted(loading_info["missing_keys"]) + sorted(str(key) for key in loading_info["mismatched_keys"])
    if broken:
        raise PerceptionError(f"{what} in {model_path!r} ({parameter}) lacks weights for {len(broken)} parameters "
                              f"(e.g. {broken[:3]}); the checkpoint does not match its config.json")
    return model


# Smallest image side a model backend accepts: the processors upscale any image to the model's input size, so a
# few-pixel image would be run as a blurred square of nothing, and the smallest (test) models fail in their
# GroupNorm layers on it.
MIN_IMAGE_SIDE_PX = 16
# Widest (or tallest) image a model backend accepts. The processors resize the longer side to at most ~1333 px
# (Grounding DINO) and the shorter one in proportion; a strip 2000x1 px gives a 0 px side, which they cannot handle.
# At 10:1 the shorter resized side stays >= 9 px even for a 96 px test model, and no robot camera (nor a 2:1
# equirectangular panorama) comes near it.
MAX_IMAGE_ASPECT_RATIO = 10.0


def check_image_size(rgb: Any, backend: str) -> None:
    """Refuse an ``(H, W, ...)`` image too small or too thin for a model backend's preprocessing, naming its size."""
    height_px, width_px = rgb.shape[:2]
    if min(height_px, width_px) < MIN_IMAGE_SIDE_PX:
        raise PerceptionError(f"the {backend} needs an image at least {MIN_IMAGE_SIDE_PX} px on each side, got "
                              f"{width_px}x{height_px} px (width x height)")
    if max(height_px, width_px) > MAX_IMAGE_ASPECT_RATIO * min(height_px, width_px):
        raise PerceptionError(f"the {backend} needs an image at most {MAX_IMAGE_ASPECT_RATIO:g} times as wide as "
                              f"high or as high as wide, got {width_px}x{height_px} px (width x height): resized "
                              f"for the model its shorter side would shrink to nothing")


@contextlib.contextmanager
def inference_errors(backend: str, error: type[TsgError] = PerceptionError) -> Iterator[None]:
    """Raise what a model or its processor raise on one input as ``error``, naming ``backend``: an image shape one
    of the model's layers cannot take (ValueError) or the device running out of memory (RuntimeError, of which
    torch's OutOfMemoryError is one). The frame is then skipped with the reason and the node keeps running, as for
    any input it refuses. Only around the calls into the model and processor: anything else is a bug to see."""
    try:
        yield
    except (ValueError, RuntimeError) as exc:
        raise error(f"the {backend} failed on this image ({type(exc).__name__}: {exc})") from exc
