"""``tsg bench perception``: the geometry after the detector, timed next to one detector forward pass.

Measured in one run, on the same machine:

- ``perception_ms``: lifting + tracking + relations + building the kept edges (``ScenePipeline.process_detections``
  without its ``trust`` stage, which ``tsg bench trust`` times against its own goal) for 20 objects with instance
  masks on a 640x480 depth image, median over repeated frames (tracks continue across them);
  ``perception_with_trust_ms`` is the whole of ``process_detections``, trust included;
- ``perception_ms_50``: the same with 50 objects of the same pixel size (the ordered pair count grows 6.4x);
- ``detector_forward_ms``: one forward pass of GroundingDINO with the full tiny-size architecture (Swin-T + BERT-base,
  ``transformers``' default ``GroundingDinoConfig``) and random weights, at 800x1066 (what a 640x480 frame is
  resized to) with an 82-token prompt naming 20 objects. Weights do not change the cost of a forward pass, only
  its output.

``ratio = perception_ms / detector_forward_ms`` and ``scaling = perception_ms_50 / perception_ms`` are the numbers
to watch; absolute milliseconds depend on the machine. The ratio goal holds against the full detector only: with
``--detector-size tiny`` (a miniature model, to check the bench quickly) ``goals.ratio_met`` is null.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from trusted_scene_graph.bench import BenchError
from trusted_scene_graph.config.schema import Config
from trusted_scene_graph.geometry.camera import Intrinsics
from trusted_scene_graph.perception.detector import Detection
from trusted_scene_graph.pipeline.scene import ScenePipeline
from trusted_scene_graph.report import check_output_file, write_json


def check_bench_options(out_path: Path, repeats: int, detector_repeats: int) -> None:
    """Refuse, before the timing starts, counts below 1 (a median of nothing) and an --out that cannot be written
    (found only after minutes of timing otherwise), naming the option, as ``tsg bench label`` does."""
    for option, value in (("--repeats", repeats), ("--detector-repeats", detector_repeats)):
        if value < 1:
            raise BenchError(f"{option} {value}: must be at least 1")
    check_output_file(out_path)


RATIO_GOAL = 0.0005
SCALING_GOAL = 7.0
OBJECT_SIZE_PX = 48  # every object has the same pixel size, so 20 and 50 objects differ only in their count


def synthetic_scene(num_objects: int, width: int = 640, height: int = 480, seed: int = 0):
    """A background plane 1.5 m away and ``num_objects`` square objects 0.6-1.4 m away, with full-image masks.

    Objects sit on a jittered grid so they do not overlap; returns (depth_m, intrinsics, detections).
    """
    rng = np.random.default_rng(seed)
    cols, rows = width // OBJECT_SIZE_PX, height // OBJECT_SIZE_PX
    if num_objects > cols * rows:
        raise ValueError(f"{num_objects} objects of {OBJECT_SIZE_PX} px do not fit in {width}x{height}")
    cells = rng.choice(cols * rows, size=num_objects, replace=False)
    depth_m = np.full((height, width), 1.5, np.float32)
    depth_m += rng.normal(0.0, 0.002, size=depth_m.shape).astype(np.float32)  # sensor-like noise
    detections = []
    for index, cell in enumerate(cells):
        x, y = int(cell % cols) * OBJECT_SIZE_PX, int(cell // cols) * OBJECT_SIZE_PX
        mask = np.zeros((height, width), bool)
        mask[y:y + OBJECT_SIZE_PX, x:x + OBJECT_SIZE_PX] = True
        depth_m[mask] = rng.uniform(0.6, 1.4) + rng.normal(0.0, 0.002, size=OBJECT_SIZE_PX ** 2)
        detections.append(Detection(f"object {index % 10}", float(rng.uniform(0.5, 1.0)),
                                    (x, y, OBJECT_SIZE_PX, OBJECT_SIZE_PX), mask))
    intrinsics = Intrinsics(width, height, 525.0, 525.0, (width - 1) / 2, (height - 1) / 2)
    return depth_m, intrinsics, detections


def time_perception(config: Config, num_objects: int, repeats: int, warmup: int = 5) -> dict[str, float]:
    """Median milliseconds per frame, in total and per stage, of ``process_detections`` on a synthetic scene."""
    depth_m, intrinsics, detections = synthetic_scene(num_objects)
    pipeline = ScenePipeline(config)  # its detector is never called: the detections are given
    totals, with_trust, stages = [], [], {}
    for index in range(warmup + repeats):
        timing_ms: dict[str, float] = {}
        start = time.perf_counter()
        graph = pipeline.process_detections(index, detections, depth_m, intrinsics, timing_ms)
        elapsed_ms = (time.perf_counter() - start) * 1e3
        if index >= warmup:
            totals.append(elapsed_ms - timing_ms.get("trust", 0.0))  # the geometry; trust has its own bench
            with_trust.append(elapsed_ms)
            for stage, ms in timing_ms.items():
                stages.setdefault(stage, []).append(ms)
    if len(graph.objects) != num_objects:
        raise RuntimeError(f"the bench scene lifted {len(graph.objects)} of {num_objects} objects")
    return {"total_ms": statistics.median(totals), "with_trust_ms": statistics.median(with_trust),
            **{f"{stage}_ms": statistics.median(values) for stage, values in stages.items()},
            "relations_kept": len(graph.relations), "relations_pruned": graph.num_pruned}


def time_detector_forward(size: str, repeats: int = 1) -> dict[str, object]:
    """Milliseconds of one GroundingDINO forward pass (minimum over ``repeats`` after one warm-up pass)."""
    from trusted_scene_graph.perception.grounding_dino import forward_timing_model

    model, inputs, description = forward_timing_model(size)
    import torch

    times_ms = []
    with torch.inference_mode():
        for index in range(repeats + 1):
            start = time.perf_counter()
            model(**inputs)
            if index > 0:
                times_ms.append((time.perf_counter() - start) * 1e3)
    return {"detector_forward_ms": min(times_ms), "detector": description, "detector_size": size,
            "detector_threads": torch.get_num_threads()}


def bench_result(name: str, twenty: dict[str, float], fifty: dict[str, float], detector: dict[str, object],
                 repeats: int, ratio_goal: float, scaling_goal: float, **extra: object) -> dict[str, object]:
    """The JSON of a ``tsg bench`` run, shared by the perception and trust benches.

    ``twenty`` and ``fifty`` are the per-stage medians on 20 and 50 objects (their ``total_ms`` becomes
    ``<name>_ms`` and ``<name>_ms_50``), ``detector`` is :func:`time_detector_forward`'s dict. Keys in order: those
    two, the detector's, ``stages_ms_20``, ``stages_ms_50``, ``extra``, ``image``, ``repeats``, ``machine``, then
    ``ratio`` (``<name>_ms`` / detector forward), ``scaling`` (50 / 20 objects) and ``goals``.

    The ratio goal is set against the full-size detector: against the ``tiny`` test model (``detector_size``
    'tiny') the ratio says nothing about the goal, so ``goals.ratio_met`` is ``None`` (JSON null) then.
    """
    result = {
        f"{name}_ms": twenty["total_ms"],
        f"{name}_ms_50": fifty["total_ms"],
        **detector,
        "stages_ms_20": twenty,
        "stages_ms_50": fifty,
        **extra,
        "image": "640x480, square objects of 48 px with masks",  # synthetic_scene's defaults
        "repeats": repeats,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    result["ratio"] = result[f"{name}_ms"] / result["detector_forward_ms"]
    result["scaling"] = result[f"{name}_ms_50"] / result[f"{name}_ms"]
    ratio_applies = detector["detector_size"] == "full"
    result["goals"] = {"ratio_max": ratio_goal, "scaling_max": scaling_goal,
                       "ratio_met": result["ratio"] <= ratio_goal if ratio_applies else None,
                       "scaling_met": result["scaling"] <= scaling_goal}
    return result


def ratio_goal_text(result: dict[str, object]) -> str:
    """The printed note on the ratio goal: the goal, or that it applies to the full detector only."""
    goal = result["goals"]["ratio_max"]
    if result["goals"]["ratio_met"] is None:
        return f"(goal <= {goal} applies to the full detector only, not to the {result['detector_size']} one)"
    return f"(goal <= {goal})"


def run_perception_bench(config: Config, out_path: Path, repeats: int = 50, detector_size: str = "full",
                         detector_repeats: int = 1) -> int:
    check_bench_options(out_path, repeats, detector_repeats)
    twenty = time_perception(config, 20, repeats)
    fifty = time_perception(config, 50, repeats)
    detector = time_detector_forward(detector_size, detector_repeats)
    result = bench_result("perception", twenty, fifty, detector, repeats, RATIO_GOAL, SCALING_GOAL,
                          perception_with_trust_ms=twenty["with_trust_ms"],
                          perception_with_trust_ms_50=fifty["with_trust_ms"])
    write_json(result, out_path)
    print(f"perception {result['perception_ms']:.2f} ms (20 objects), {result['perception_ms_50']:.2f} ms (50), "
          f"trust stage excluded ({twenty['with_trust_ms']:.2f} and {fifty['with_trust_ms']:.2f} ms with it); "
          f"detector forward {result['detector_forward_ms']:.0f} ms ({detector['detector']}); "
          f"ratio {result['ratio']:.6f} {ratio_goal_text(result)}, scaling {result['scaling']:.2f} "
          f"(goal <= {SCALING_GOAL}) -> {out_path}")
    return 0
