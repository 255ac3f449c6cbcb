"""``tsg bench trust``: the trust step per frame, timed next to one detector forward pass.

Measured in one run, on the same machine, on :mod:`~trusted_scene_graph.bench.perception`'s synthetic scene:

- ``trust_ms``: for 20 objects (380 ordered pairs, every predicate), the pipeline's ``trust`` stage: the claims and
  their facts, per-fact features (temporal history included), XGBoost prediction and calibration
  (:meth:`EdgeTrust.assess`), and the pruning decision (trust against the threshold), median over repeated frames
  with tracks continuing across them. Building the kept edges for the message is the ``relate`` stage, which
  ``tsg bench perception`` times;
- ``trust_ms_50``: the same for 50 objects (2,450 ordered pairs, 6.4x as many);
- ``detector_forward_ms``: the same GroundingDINO forward pass as ``tsg bench perception``.

``ratio = trust_ms / detector_forward_ms`` and ``scaling = trust_ms_50 / trust_ms`` are the numbers to watch; the
ratio goal holds against the full detector only, so with ``--detector-size tiny`` ``goals.ratio_met`` is null. The
trust model is the config's (``trust.model``, the shipped default unless set); no VLM is asked (``vlm.backend``
must be 'none': VLM calls cost a model forward each and are budgeted separately).

``candidate_edges`` counts the last frame's qualitative claims (ordered pair and predicate), the edges the trust
model scores. ``relations_kept`` and ``relations_pruned`` count every edge of the graph, kept or pruned: the
qualitative ones *plus* the measurement edges (``distance``, ``surface_distance``, ``horizontal_offset``,
``vertical_offset``; four per unordered pair, pruned by detection score and valid depth, not by the trust model).
Measurement edges are no candidates, which is why ``relations_kept + relations_pruned`` exceeds
``candidate_edges`` (by four per unordered pair: 760 for 20 objects).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from trusted_scene_graph.bench.perception import (
    bench_result,
    check_bench_options,
    ratio_goal_text,
    synthetic_scene,
    time_detector_forward,
)
from trusted_scene_graph.config.schema import Config
from trusted_scene_graph.pipeline.scene import ScenePipeline
from trusted_scene_graph.report import write_json
from trusted_scene_graph.trust import TrustError
from trusted_scene_graph.trust.model import load_trust_model

RATIO_GOAL = 0.0003
SCALING_GOAL = 7.0
STAGES = ("trust",)


def time_trust(config: Config, num_objects: int, repeats: int, warmup: int = 5) -> dict[str, float]:
    """Median milliseconds of the trust and prune stages of ``process_detections`` on the synthetic scene."""
    depth_m, intrinsics, detections = synthetic_scene(num_objects)
    pipeline = ScenePipeline(config)  # its detector is never called: the detections are given
    totals, stages, edges = [], {stage: [] for stage in STAGES}, 0
    for index in range(warmup + repeats):
        timing_ms: dict[str, float] = {}
        graph = pipeline.process_detections(index, detections, depth_m, intrinsics, timing_ms)
        if index >= warmup:
            totals.append(sum(timing_ms[stage] for stage in STAGES))
            for stage in STAGES:
                stages[stage].append(timing_ms[stage])
        edges = len(graph.candidates)
    if len(graph.objects) != num_objects:
        raise RuntimeError(f"the bench scene lifted {len(graph.objects)} of {num_objects} objects")
    return {"total_ms": statistics.median(totals),
            **{f"{stage}_ms": statistics.median(values) for stage, values in stages.items()},
            "candidate_edges": edges, "relations_kept": len(graph.relations), "relations_pruned": graph.num_pruned}


def run_trust_bench(config: Config, out_path: Path, repeats: int = 50, detector_size: str = "full",
                    detector_repeats: int = 1) -> int:
    if config["vlm.backend"] != "none":
        raise TrustError(f"tsg bench trust times the trust step without VLM calls; vlm.backend is "
                         f"{config['vlm.backend']!r}: set vlm.backend=none")
    check_bench_options(out_path, repeats, detector_repeats)
    twenty = time_trust(config, 20, repeats)
    fifty = time_trust(config, 50, repeats)
    detector = time_detector_forward(detector_size, detector_repeats)
    result = bench_result("trust", twenty, fifty, detector, repeats, RATIO_GOAL, SCALING_GOAL,
                          trust_model=load_trust_model(config).description)
    write_json(result, out_path)
    print(f"trust {result['trust_ms']:.2f} ms (20 objects, {twenty['candidate_edges']} edges), "
          f"{result['trust_ms_50']:.2f} ms (50, {fifty['candidate_edges']} edges); detector forward "
          f"{result['detector_forward_ms']:.0f} ms ({detector['detector']}); ratio {result['ratio']:.6f} "
          f"{ratio_goal_text(result)}, scaling {result['scaling']:.2f} (goal <= {SCALING_GOAL}) -> {out_path}")
    return 0
