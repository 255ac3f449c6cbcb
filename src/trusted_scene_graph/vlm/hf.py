"""Loading a ``transformers`` VLM (model and processor) from local weights only, for the torch backends.

:func:`load_vlm` is :mod:`trusted_scene_graph.perception.hf`'s loader with the ``vlm.model_path`` parameter named in
its errors and those errors raised as :class:`VlmError`. Shared by the 'generative' and 'contrastive' backends;
kept out of :mod:`trusted_scene_graph.vlm.base`, which every backend imports (the 'recorded' one too), so that only
the model backends pull in the perception loader. transformers is imported on the call, not with this module.
"""

from __future__ import annotations

from typing import Any

from trusted_scene_graph.perception.detector import PerceptionError
from trusted_scene_graph.perception.hf import load_complete_model, load_pretrained
from trusted_scene_graph.vlm.base import VlmError

MODEL_PARAMETER = "vlm.model_path"


def load_vlm(model_class: Any, model_path: str, example_id: str, what: str) -> tuple[Any, Any]:
    """``(model, processor)`` from a local directory (or a model id in the local HF cache); never downloads.

    ``model_class`` is the ``transformers`` auto class of the model (``AutoModel``, ...); the processor is loaded
    with ``AutoProcessor``. ``example_id`` is the model id the error messages suggest downloading, ``what`` names
    the model in them ("VLM", "contrastive VLM").
    """
    # Imported here: transformers is slow to import and only needed while loading.
    from transformers import AutoProcessor

    try:
        processor = load_pretrained(AutoProcessor, model_path, MODEL_PARAMETER, example_id)
        model = load_complete_model(model_class, model_path, MODEL_PARAMETER, example_id, what)
    except PerceptionError as exc:  # the shared loader's error class; here it is a VLM that failed to load
        raise VlmError(str(exc)) from exc
    return model, processor
