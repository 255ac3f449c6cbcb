"""The shared ``transformers`` loader (perception.hf): broken model folders, model ids, image sizes.

Every broken folder must fail as the backend's TsgError naming the folder: the ROS node catches TsgError while
configuring and logs its message; anything else would leave it in ERROR with nothing logged. Tiny, randomly
initialised models (no network).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from tiny_models import build_tiny_depth_anything, build_tiny_grounding_dino
from tiny_vlm import build_tiny_vlm

from trusted_scene_graph.perception.depth import MonocularDepth
from trusted_scene_graph.perception.detector import PerceptionError
from trusted_scene_graph.perception.grounding_dino import GroundingDinoDetector
from trusted_scene_graph.perception.hf import load_pretrained, resolve_model_source
from trusted_scene_graph.vlm.base import VlmError
from trusted_scene_graph.vlm.generative import GenerativeVlm


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_models")
    return {"detector": build_tiny_grounding_dino(root / "gd"), "depth": build_tiny_depth_anything(root / "da"),
            "vlm": build_tiny_vlm(root / "vlm")}


# backend -> (loader, error class, the processor's config file)
BACKENDS: dict[str, tuple[Callable[[str], object], type[Exception], str]] = {
    "detector": (lambda path: GroundingDinoDetector.from_pretrained(path, ["red cube"]), PerceptionError,
                 "processor_config.json"),
    "depth": (lambda path: MonocularDepth.from_config({"depth.model_path": path, "depth.device": "cpu"}),
              PerceptionError, "preprocessor_config.json"),
    "vlm": (GenerativeVlm.from_pretrained, VlmError, "processor_config.json"),
}


def _pickle_weights(folder: Path, _: str) -> None:
    # A truncated or garbled pytorch_model.bin: torch.load raises _pickle.UnpicklingError.
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04garbage")


def _null_config(folder: Path, _: str) -> None:
    (folder / "config.json").write_text("null")  # TypeError in transformers


def _list_config(folder: Path, _: str) -> None:
    (folder / "config.json").write_text("[]")  # TypeError for the VLM (the others report a missing model_type)


def _list_processor_config(folder: Path, processor_file: str) -> None:
    (folder / processor_file).write_text("[]")  # AttributeError: 'list' object has no attribute 'get'


def _wrongly_typed_config_field(folder: Path, _: str) -> None:
    # huggingface_hub's StrictDataclassFieldValidationError, which derives from Exception only.
    config = json.loads((folder / "config.json").read_text())
    config["backbone_config"] = 5
    (folder / "config.json").write_text(json.dumps(config))


CASES = [("detector", _pickle_weights), ("depth", _pickle_weights), ("vlm", _pickle_weights),
         ("detector", _null_config), ("depth", _null_config), ("vlm", _null_config), ("vlm", _list_config),
         ("detector", _list_processor_config), ("depth", _list_processor_config), ("vlm", _list_processor_config),
         ("detector", _wrongly_typed_config_field), ("depth", _wrongly_typed_config_field)]


@pytest.mark.parametrize(("backend", "breakage"), CASES, ids=[f"{b}-{f.__name__.strip('_')}" for b, f in CASES])
def test_a_broken_model_folder_is_the_backends_error_naming_the_folder(
        tmp_path: Path, tiny_dirs: dict[str, Path], backend: str, breakage: Callable[[Path, str], None]) -> None:
    load, error, processor_file = BACKENDS[backend]
    folder = tmp_path / "model"
    shutil.copytree(tiny_dirs[backend], folder)
    breakage(folder, processor_file)
    with pytest.raises(error, match=rf"cannot load \w+ from '{re.escape(str(folder))}' \(\w+\.model_path\): \w+"):
        load(str(folder))


def test_a_model_needing_a_package_that_is_not_installed_is_the_backends_error_naming_it(tmp_path: Path) -> None:
    # Qwen2-VL's video processor needs torchvision, SigLIP's tokenizer SentencePiece: an ImportError escaping the
    # loader would leave the node in ERROR with nothing logged.
    class Qwen2VLProcessor:
        @staticmethod
        def from_pretrained(*args: object, **kwargs: object) -> None:
            raise ImportError("Qwen2VLVideoProcessor requires the Torchvision library but it was not found")

    with pytest.raises(PerceptionError, match=rf"^cannot load Qwen2VLProcessor from '{re.escape(str(tmp_path))}' "
                                              r"\(vlm.model_path\): the model needs a Python package that is not "
                                              r"installed: Qwen2VLVideoProcessor requires the Torchvision library"):
        load_pretrained(Qwen2VLProcessor, str(tmp_path), "vlm.model_path", "Qwen/Qwen2-VL-2B-Instruct")


def test_a_missing_relative_org_name_path_is_neither_a_directory_nor_a_cached_model_id(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PerceptionError, match=rf"^detector.model_path: 'models/gdino' is neither a directory "
                                              rf"\(relative to the current directory '{re.escape(str(tmp_path))}'\) "
                                              r"nor a model id in the local HF cache; download the weights"):
        resolve_model_source("models/gdino", "detector.model_path", "IDEA-Research/grounding-dino-tiny")


def test_a_model_id_in_the_local_hf_cache_is_passed_on_to_from_pretrained(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    # The cache layout huggingface_hub writes: refs/main names the snapshot holding the files.
    repo = tmp_path / "models--org--model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text("{}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert resolve_model_source("org/model", "detector.model_path", "org/model") == "org/model"
