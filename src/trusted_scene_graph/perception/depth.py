"""Depth backends: where a frame's metric depth comes from, registered to the colour image.

``sensor`` passes the RGB-D camera's registered depth image through; ``monocular`` estimates metric depth from the
colour image alone with a ``transformers`` depth model, for RGB-only cameras. Both return float32 (H, W) metres in
the colour image's pixel grid, NaN where there is no usable depth; the range limits (``depth.min_m``,
``depth.max_m``) are applied later, by the lifting.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from trusted_scene_graph.example_models import MONOCULAR_DEPTH_EXAMPLE_ID
from trusted_scene_graph.image.decode import has_invalid_depth, invalid_depth_to_nan
from trusted_scene_graph.perception.detector import PerceptionError, build_backend
from trusted_scene_graph.perception.hf import check_image_size, inference_errors, load_complete_model, load_pretrained

_MODEL_PARAMETER = "depth.model_path"


class DepthBackend(Protocol):
    """What every depth backend provides. Construction loads any model; ``depth_m`` must not."""

    # False: the node does not subscribe to topics.depth and passes sensor_depth_m=None.
    needs_depth_topic: bool

    def depth_m(self, rgb: np.ndarray, sensor_depth_m: np.ndarray | None) -> np.ndarray:
        """Float32 (H, W) depth in metres along the optical axis, registered to ``rgb``; NaN where invalid."""
        ...


def _size(array: np.ndarray) -> str:
    return f"{array.shape[1]}x{array.shape[0]}" if array.ndim >= 2 else f"shape {array.shape}"


def _check_rgb(rgb: np.ndarray, backend: str) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise PerceptionError(f"the {backend!r} depth backend needs an (H, W, 3) colour image, got shape {rgb.shape}")


def _invalid_to_nan(depth_m: np.ndarray) -> np.ndarray:
    """``depth_m`` as float32 with non-finite and non-positive values set to NaN; the same array if already so."""
    depth_m = depth_m.astype(np.float32, copy=False)
    if not has_invalid_depth(depth_m):
        return depth_m
    # Copy rather than write in place: the input may be a decoded ROS message buffer shared with other consumers.
    depth_m = depth_m.copy()
    invalid_depth_to_nan(depth_m)
    return depth_m


class SensorDepth:
    """The RGB-D camera's depth image, which must already be registered to the colour image."""

    needs_depth_topic = True

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SensorDepth:
        return cls()

    def depth_m(self, rgb: np.ndarray, sensor_depth_m: np.ndarray | None) -> np.ndarray:
        _check_rgb(rgb, "sensor")
        if sensor_depth_m is None:
            raise PerceptionError("the 'sensor' depth backend needs a depth image (topics.depth), none was given; "
                                  "for an RGB-only camera set depth.backend: monocular")
        if sensor_depth_m.ndim != 2:
            raise PerceptionError(f"depth image must be a 2-D (H, W) array, got shape {sensor_depth_m.shape}")
        if sensor_depth_m.shape != rgb.shape[:2]:
            raise PerceptionError(f"depth image is {_size(sensor_depth_m)} but colour is {_size(rgb)}; "
                                  "depth must be registered to the colour image")
        if not np.issubdtype(sensor_depth_m.dtype, np.floating):
            # Integer depth is a raw encoding (16UC1 is millimetres); its unit must come from the decoder.
            raise PerceptionError(f"depth image has dtype {sensor_depth_m.dtype}, expected float metres "
                                  "(decode it with trusted_scene_graph.image.decode_depth_m)")
        return _invalid_to_nan(sensor_depth_m)


class MonocularDepth:
    """Metric depth estimated from the colour image by a ``transformers`` depth model (Depth Anything V2 Metric).

    Only models whose output is known to be metres are accepted, checked on the config before the weights load:
    Depth Anything (``model_type`` 'depth_anything') with ``depth_estimation_type`` 'metric'. Everything else is
    refused: relative Depth Anything and DPT predict relative inverse depth with no scale, so lifting with it would
    put objects at made-up distances; ZoeDepth and Depth Pro are metric but need post-processing this backend does
    not implement (padding removal, field of view), and Prompt Depth Anything needs a sensor depth prompt.
    """

    needs_depth_topic = False

    def __init__(self, processor: Any, model: Any, device: str) -> None:
        self.processor = processor
        self.model = model
        self.device = device

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MonocularDepth:
        # Imported here: torch and transformers are heavy and only this backend needs them.
        import torch
        from transformers import AutoConfig, AutoImageProcessor, AutoModelForDepthEstimation

        model_path = config[_MODEL_PARAMETER]
        device = config["depth.device"]
        if device == "cuda" and not torch.cuda.is_available():
            raise PerceptionError("depth.device is 'cuda' but torch sees no CUDA device; set depth.device: cpu")
        model_config = load_pretrained(AutoConfig, model_path, _MODEL_PARAMETER, MONOCULAR_DEPTH_EXAMPLE_ID)
        _check_metric(model_config, model_path)
        processor = load_pretrained(AutoImageProcessor, model_path, _MODEL_PARAMETER, MONOCULAR_DEPTH_EXAMPLE_ID)
        _check_processor(processor, model_path)
        _probe_processor(processor, model_path, getattr(getattr(model_config, "backbone_config", None),
                                                        "patch_size", None))
        model = load_complete_model(AutoModelForDepthEstimation, model_path, _MODEL_PARAMETER,
                                    MONOCULAR_DEPTH_EXAMPLE_ID, "depth model", config=model_config)
        return cls(processor, model.to(device).eval(), device)

    def depth_m(self, rgb: np.ndarray, sensor_depth_m: np.ndarray | None = None) -> np.ndarray:
        """Estimated depth for ``rgb`` ((H, W, 3) uint8); ``sensor_depth_m`` is ignored."""
        _check_rgb(rgb, "monocular")
        if rgb.dtype != np.uint8:  # the processor rescales by 1/255: a float image in [0, 1] would look black
            raise PerceptionError(f"the 'monocular' depth backend needs a uint8 colour image, got {rgb.dtype}")
        outputs = self._forward(self._preprocess(rgb))
        return self._postprocess(outputs, rgb.shape[0], rgb.shape[1])

    def _preprocess(self, rgb: np.ndarray) -> Any:
        check_image_size(rgb, "'monocular' depth backend")
        # Channel order given explicitly: inference from the shape is ambiguous for images 3 pixels high.
        with inference_errors("'monocular' depth backend's image processor"):
            return self.processor(images=rgb, return_tensors="pt", input_data_format="channels_last")

    def _forward(self, inputs: Any) -> Any:
        """The only step that touches the model and the device; returns the raw prediction on the CPU."""
        import torch
        from transformers.modeling_outputs import DepthEstimatorOutput

        with torch.inference_mode(), inference_errors("'monocular' depth backend"):
            outputs = self.model(pixel_values=inputs["pixel_values"].to(self.device))
            return DepthEstimatorOutput(predicted_depth=outputs.predicted_depth.float().cpu())

    def _postprocess(self, outputs: Any, height: int, width: int) -> np.ndarray:
        # Resized back to the full colour image so that pixel (u, v) of the depth is pixel (u, v) of the colour.
        # The processor's bicubic resize can overshoot below 0 at depth edges; those pixels become NaN below.
        (result,) = self.processor.post_process_depth_estimation(outputs, target_sizes=[(height, width)])
        depth_m = result["predicted_depth"].numpy().reshape(height, width)
        return _invalid_to_nan(depth_m)


def _check_metric(model_config: Any, model_path: str) -> None:
    model_type = getattr(model_config, "model_type", None)
    if model_type != "depth_anything":
        raise PerceptionError(f"{_MODEL_PARAMETER}: {model_path!r} is a {model_type!r} model; the 'monocular' depth "
                              f"backend supports metric Depth Anything models only, e.g. {MONOCULAR_DEPTH_EXAMPLE_ID}")
    estimation_type = getattr(model_config, "depth_estimation_type", None)
    if estimation_type != "metric":
        raise PerceptionError(f"{_MODEL_PARAMETER}: {model_path!r} predicts {estimation_type!r} depth, not metres; "
                              "lifting needs a metric model (depth_estimation_type 'metric'), e.g. "
                              f"{MONOCULAR_DEPTH_EXAMPLE_ID}")


def _check_processor(processor: Any, model_path: str) -> None:
    if not hasattr(processor, "post_process_depth_estimation"):
        raise PerceptionError(f"{_MODEL_PARAMETER}: the image processor in {model_path!r} "
                              f"({type(processor).__name__}) has no post_process_depth_estimation")
    if getattr(processor, "do_pad", False) and getattr(processor, "size_divisor", None):
        # Padding enlarges the network input around the image, so the resized prediction would be shifted against
        # the colour image.
        raise PerceptionError(f"{_MODEL_PARAMETER}: the image processor in {model_path!r} pads its input "
                              "(do_pad: true), which breaks registration with the colour image; set do_pad: false "
                              "in preprocessor_config.json")
    if not getattr(processor, "do_resize", True):  # false or 0: the processor tests it for truth
        # Unresized, the patch embedding drops the rows and columns past the last multiple of its patch size, and
        # the prediction of the rest would be stretched over the whole image.
        raise PerceptionError(f"{_MODEL_PARAMETER}: the image processor in {model_path!r} does not resize its input "
                              "(do_resize: false), which breaks registration with the colour image; set do_resize: "
                              "true in preprocessor_config.json")


#: What an image processor built from a broken preprocessor_config.json raises on its first image (transformers
#: loads such a config without complaint): caught once, at load, rather than on every frame.
_PROCESSOR_CONFIG_ERRORS = (ValueError, TypeError, AttributeError, KeyError, IndexError, ArithmeticError)


#: (height, width) of the image the processor is tried on at load: an odd aspect ratio, so that a resize to a size
#: that is not a whole number of patches shows.
_PROBE_SHAPE = (64, 83)


def _probe_processor(processor: Any, model_path: str, patch_size_px: int | None) -> None:
    """Preprocess a small image and post-process a prediction of the network input's size, so that a processor
    configuration that loads but cannot run fails configure, naming the folder, instead of every frame. The network
    input must be a whole number of the backbone's patches: the patch embedding drops the rows and columns past the
    last whole patch, and the prediction of the rest would be stretched over the image (``ensure_multiple_of`` not a
    multiple of the patch size)."""
    import torch
    from transformers.modeling_outputs import DepthEstimatorOutput

    try:
        inputs = processor(images=np.zeros(_PROBE_SHAPE + (3,), np.uint8), return_tensors="pt",
                           input_data_format="channels_last")
        height, width = inputs["pixel_values"].shape[-2:]
        prediction = DepthEstimatorOutput(predicted_depth=torch.ones((1, height, width)))
        (result,) = processor.post_process_depth_estimation(prediction, target_sizes=[_PROBE_SHAPE])
        shape = tuple(result["predicted_depth"].shape)
    except _PROCESSOR_CONFIG_ERRORS as exc:
        raise PerceptionError(f"{_MODEL_PARAMETER}: the image processor in {model_path!r} cannot process an image "
                              f"({type(exc).__name__}: {exc}); check preprocessor_config.json") from exc
    probe = f"{_PROBE_SHAPE[1]}x{_PROBE_SHAPE[0]}"
    if patch_size_px and (height % patch_size_px or width % patch_size_px):
        raise PerceptionError(f"{_MODEL_PARAMETER}: the image processor in {model_path!r} resizes an {probe} image to "
                              f"{width}x{height}, not a whole number of the model's {patch_size_px} px patches, which "
                              "breaks registration with the colour image; set ensure_multiple_of to a multiple of "
                              f"{patch_size_px} in preprocessor_config.json")
    if shape != _PROBE_SHAPE:
        raise PerceptionError(f"{_MODEL_PARAMETER}: the image processor in {model_path!r} post-processes an {probe} "
                              f"image's depth to shape {shape}, not {_PROBE_SHAPE}")


DEPTH_BACKENDS: dict[str, Callable[[Mapping[str, Any]], DepthBackend]] = {
    "sensor": SensorDepth.from_config,
    "monocular": MonocularDepth.from_config,
}


def make_depth_backend(config: Mapping[str, Any]) -> DepthBackend:
    """Build the backend named by ``depth.backend``; an unknown name lists the known ones."""
    return build_backend("depth", DEPTH_BACKENDS, config, "depth.backend")
