"""Loading ``transformers`` models from local weights only (a directory, or a model id in the local HF cache).

Shared by the model backends (detector, monocular depth, later the VLMs) so that every one of them fails the same
way when weights are missing: a :class:`PerceptionError` naming the parameter, the path and how to get the weights.
Never downloads: the product must start the same way on a robot with no network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    # A relative "org/name" that is not a directory: a hub id, looked up in the HF cache only.
    if model_path.count("/") == 1 and not model_path.startswith((".", "/", "~")):
        return model_path
    raise PerceptionError(f"{parameter}: model directory {model_path!r} does not exist; {how_to_get}")


def load_pretrained(loader: Any, model_path: str, parameter: str, example_id: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained(source, local_files_only=True, **kwargs)`` with errors that say what to do."""
    source = resolve_model_source(model_path, parameter, example_id)
    try:
        return loader.from_pretrained(source, local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        # OSError: missing files / not in the cache; ValueError, KeyError: an unknown or mismatched config;
        # RuntimeError: weights that do not fit the config (including corrupt safetensors headers).
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
