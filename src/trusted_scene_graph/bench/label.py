"""``tsg bench label``: ``tsg label``'s throughput on a bag, against reading the same bag, and on 2 workers vs 1.

Measured in one run, on the same machine, on one bag: by default one the bench records itself (``FetchPush``,
``--episodes`` 2 at ``--width`` x ``--height`` 320x240, seed 0, with :func:`~trusted_scene_graph.sim.record.
benchmark_config`), or ``--bag DIR``. The path timed is the geometry one: the 'sim' detector on the recorded instance
images (recorded detections), the sensor's exact depth, no VLM; other configs are refused.

- ``read_fps``: camera frames per second of reading the bag without labelling it: opening it with
  :class:`~trusted_scene_graph.dataset.BagReader` (what ``tsg eval`` reads through) and deserialising every message.
- ``label_fps``: camera frames per second of labelling it in this process with the engine's work function
  (:func:`~trusted_scene_graph.label.bags.label_bag_item`: the pipeline replay, the rewards, the labelled copy of
  the bag and ``rewards.parquet``, written into a scratch directory). The recorded bag is an indexed mcap file, so
  it is copied on a background thread (direct I/O on ext4, else the kernel's copy_file_range) with the rewards
  appended to it; the rewards need only the objects the pairs name, so only those are lifted. Nothing is fsynced
  here (``tsg label`` does, when it commits an item): a direct I/O copy has reached the disk when the labelling
  returns, where a copy through the page cache leaves its writeback for later, so on a slow disk the first can
  lower ``label_fps`` (on the development machine it stayed within its run-to-run spread).
  ``frames`` (for both) is the number of camera frames the labeller completed and labelled. After one untimed
  warm-up of each, reads and labellings alternate ``--repeats`` times, so both see the same machine load; the fastest
  run of each is kept (load from other processes only ever adds time). ``read_ratio = label_fps / read_fps``.
- ``open_s``: the fastest of the reads' openings of the bag (``BagReader``, i.e. rosbags' ``Reader`` parsing
  ``metadata.yaml`` and every topic's QoS), a fixed cost per bag that labelling pays too, as it opens the bag the same
  way. ``read_ratio_excluding_open`` takes it out of both times: a long bag's ratio is nearer this one, its opening
  being spread over more frames (a little above it: labelling's other fixed costs, such as inspecting the mcap
  summary for the copy and writing ``rewards.parquet``, stay in its time).
- ``label_stages_ms_per_frame``: where the fastest labelling's time went, in milliseconds per frame, by stage
  (:data:`~trusted_scene_graph.label.bags.LABEL_STAGES`, kept by every labelling at the cost of a few clock reads per
  message), with ``other`` the rest; ``read_stages_ms_per_frame`` splits the fastest read into ``open`` and ``read``
  the same way. Interleaved with the frames' work, ``read`` takes longer inside a labelling than alone.
- ``ray_speedup``: the wall time of :func:`~trusted_scene_graph.label.engine.run_items` on ``--bags`` items (the
  same bag under different keys, so every item costs the same), ``engine='ray'`` with ``workers=1`` over
  ``workers=2``, on one local Ray cluster of 2 CPUs started once (or the one this process is already connected to).
  The cluster's start-up and the workers' first task (process start, imports, loading the pipeline) are left out:
  two warm-up items run on both workers before the timed runs, which then alternate 1 and 2 workers
  ``--engine-repeats`` times (fastest kept). Each run commits its items as ``tsg label`` does (fsync and rename).
  Without ray installed (or with ``--no-ray``) it is null, and ``ray.note`` says why. Ray runs its workers at nice
  15 (its default), so on a machine shared with other work they yield to it and this number drops: compare it on an
  otherwise idle machine (``machine.load_average_1m`` holds the load before and after the run).
- ``ray_speedup_rewards_only``: the same, on the same cluster right after, with ``tsg label --rewards-only`` items:
  each writes a bag of its rewards alone instead of a copy of the bag, so the two speedups differ by what writing the
  copies costs (the rewards-only items also write through rosbags' writer instead of appending, and their runs come
  after the copies' instead of alternating with them). A copy through the page cache (copy_file_range) costs CPU time
  a single worker leaves to the idle second core but two workers share; direct I/O (on ext4) costs next to none.
- ``local_speedup``: the same for the local engine. Its ``workers=1`` labels in this process (pipeline already
  loaded); ``workers>1`` spawns its worker processes for every run, so their start-up (interpreter, imports and
  building the pipeline, which loads no trust model) is part of its time, as it is of a ``tsg label --workers 2``
  run.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trusted_scene_graph.config.schema import Config
from trusted_scene_graph.dataset import BagReader
from trusted_scene_graph.label import LabelError
from trusted_scene_graph.label.bags import LABEL_STAGES, BagJob, bag_key, find_bags, label_bag_item
from trusted_scene_graph.label.engine import WorkItem, run_items
from trusted_scene_graph.label.run import check_pair_names
from trusted_scene_graph.report import write_json

READ_RATIO_GOAL = 0.5
RAY_SPEEDUP_GOAL = 1.7
TASK = "FetchPush"
DEFAULT_PAIRS = ("gripper:cube",)
DEFAULT_EPISODES, DEFAULT_WIDTH, DEFAULT_HEIGHT = 2, 320, 240
RAY_CPUS = 2
#: The geometry path with recorded detections: what ``read_ratio`` is set against.
GEOMETRY_PATH = {"detector.backend": "sim", "depth.backend": "sensor", "vlm.backend": "none"}


def check_settings(config: Config, bag: Path | None, episodes: int | None, width: int | None, height: int | None,
                   items: int, repeats: int, engine_repeats: int, pairs: Sequence[str]) -> None:
    """Refuse, naming the option, what the bench cannot measure, before anything is recorded or timed."""
    check_pair_names(config, pairs)  # as tsg label refuses them: the pair's form, settings and labels
    for key, expected in GEOMETRY_PATH.items():
        if config[key] != expected:
            raise LabelError(f"tsg bench label times the geometry path with recorded detections; {key} is "
                             f"{config[key]!r}: set {key}={expected}")
    if bag is not None:
        given = [option for option, value in (("--episodes", episodes), ("--width", width), ("--height", height))
                 if value is not None]
        if given:
            raise LabelError(f"{', '.join(given)} set the bag the bench records; they do not apply with --bag {bag}")
    for option, value in (("--episodes", episodes), ("--width", width), ("--height", height)):
        if value is not None and value < 1:
            raise LabelError(f"{option} {value}: must be at least 1")
    if items < 2:
        raise LabelError(f"--bags {items}: the 2 vs 1 worker comparison needs at least 2 items (4 or more keep both "
                         "workers busy)")
    for option, value in (("--repeats", repeats), ("--engine-repeats", engine_repeats)):
        if value < 1:
            raise LabelError(f"{option} {value}: must be at least 1")


def directory_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def time_read(bag: Path, colour_topic: str) -> tuple[float, float, int, int]:
    """Seconds to open ``bag`` and deserialise every message; returns (seconds, of which opening, messages, colour
    images)."""
    start_s = time.perf_counter()
    messages = colour_images = 0
    with BagReader(bag) as reader:
        open_s = time.perf_counter() - start_s
        for message in reader.messages():
            messages += 1
            colour_images += message.topic == colour_topic
    return time.perf_counter() - start_s, open_s, messages, colour_images


def time_label(job: BagJob, scratch: Path) -> tuple[float, int, Counter[str]]:
    """Seconds to label the job's bag in this process (the engine's work function); returns (seconds, frames,
    seconds per stage)."""
    out_dir = Path(tempfile.mkdtemp(prefix="label-", dir=scratch))
    stage_seconds: Counter[str] = Counter()
    start_s = time.perf_counter()
    frames = label_bag_item(job, out_dir, stage_seconds)
    elapsed_s = time.perf_counter() - start_s
    shutil.rmtree(out_dir)
    return elapsed_s, frames, stage_seconds


def stages_ms_per_frame(stage_seconds: Mapping[str, float], frames: int) -> dict[str, float]:
    """Milliseconds per frame of each stage of a labelling (:data:`LABEL_STAGES` order), and ``other``: its total
    less the stages."""
    stages = {name: 1e3 * stage_seconds[name] / frames for name in LABEL_STAGES if name in stage_seconds}
    return {**stages, "other": 1e3 * stage_seconds["total"] / frames - sum(stages.values())}


def time_engine(items: Sequence[WorkItem], engine: str, workers: int, scratch: Path) -> float:
    """Wall seconds of one ``run_items`` over ``items`` into a fresh directory (removed afterwards)."""
    out_dir = Path(tempfile.mkdtemp(prefix=f"{engine}-{workers}-", dir=scratch))
    start_s = time.perf_counter()
    summary = run_items(items, label_bag_item, out_dir, engine=engine, workers=workers, max_retries=0)
    elapsed_s = time.perf_counter() - start_s
    shutil.rmtree(out_dir)
    if not summary.ok or len(summary.done) != len(items):
        raise LabelError(f"the {engine} engine with {workers} workers labelled {len(summary.done)} of {len(items)} "
                         f"bench items: {dict(summary.failed)}")
    return elapsed_s


def compare_workers(items: Sequence[WorkItem], engine: str, repeats: int, scratch: Path) -> dict[str, Any]:
    """1 vs 2 workers, alternating, ``repeats`` times each; the fastest run of each is compared."""
    runs: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(repeats):
        for workers in (1, 2):
            runs[workers].append(time_engine(items, engine, workers, scratch))
    best = {workers: min(times) for workers, times in runs.items()}
    return {"speedup": best[1] / best[2], "workers_1_s": best[1], "workers_2_s": best[2],
            "workers_1_runs_s": runs[1], "workers_2_runs_s": runs[2], "items": len(items)}


def ray_comparison(items: Sequence[WorkItem], repeats: int, scratch: Path,
                   rewards_only_items: Sequence[WorkItem] = ()) -> dict[str, Any]:
    """:func:`compare_workers` on a local Ray cluster started once, after a warm-up of both workers; then on
    ``rewards_only_items`` (when given) under ``rewards_only``."""
    try:
        import ray
    except ImportError:
        return {"speedup": None, "note": "ray is not installed (pip install 'trusted_scene_graph[ray]'): not measured"}
    started_here = not ray.is_initialized()
    start_s = time.perf_counter()
    if started_here:
        ray.init(address="local", num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - start_s
    try:
        cluster_cpus = float(ray.cluster_resources().get("CPU", 0.0))
        if cluster_cpus < 2:
            return {"speedup": None, "cluster_cpus": cluster_cpus,
                    "note": f"the Ray cluster this process is connected to has {cluster_cpus:g} CPUs; 2 workers "
                            "need 2: not measured"}
        # Two items on two workers at once: each worker process starts, imports and loads its pipeline here, not in
        # a timed run.
        warmup_s = time_engine(items[:2], "ray", 2, scratch)
        result = compare_workers(items, "ray", repeats, scratch)
        if rewards_only_items:
            result["rewards_only"] = compare_workers(rewards_only_items, "ray", repeats, scratch)
    finally:
        if started_here:
            ray.shutdown()
    note = (f"local Ray cluster of {RAY_CPUS} CPUs started once ({init_s:.1f} s, excluded)" if started_here
            else f"the Ray cluster this process was connected to ({cluster_cpus:g} CPUs)")
    return {**result, "cluster_cpus": cluster_cpus, "started_here": started_here, "init_s": init_s,
            "warmup_s": warmup_s, "ray_version": ray.__version__,
            "note": f"{note}; one warm-up run of 2 items on 2 workers (excluded) loaded both workers' pipelines; "
                    "Ray's workers run at nice 15, so other load on the machine lowers the speedup"}


def label_bench(config: Config, scratch: Path, *, bag: Path | None = None, episodes: int | None = None,
                width: int | None = None, height: int | None = None, items: int = 4, repeats: int = 5,
                engine_repeats: int = 3, pairs: Sequence[str] = DEFAULT_PAIRS, ray: bool = True,
                local: bool = True) -> dict[str, Any]:
    """The bench's result (see the module docstring); recorded bags and labelled copies go under ``scratch``."""
    check_settings(config, bag, episodes, width, height, items, repeats, engine_repeats, pairs)
    load_start = os.getloadavg()[0]
    bag_info: dict[str, Any]
    if bag is None:
        from trusted_scene_graph.sim.record import RecordSettings, record_sim_bag

        settings = RecordSettings(scene=TASK, episodes=episodes or DEFAULT_EPISODES, seed=0,
                                  width=width or DEFAULT_WIDTH, height=height or DEFAULT_HEIGHT)
        bag = scratch / "bench-bag"
        start_s = time.perf_counter()
        record_sim_bag(bag, settings, config)
        bag_info = {"source": f"recorded: {TASK}, seed 0", "episodes": settings.episodes,
                    "width": settings.width, "height": settings.height,
                    "record_s": time.perf_counter() - start_s}
    else:
        bags = find_bags(bag)
        if len(bags) != 1:
            raise LabelError(f"--bag {bag} holds {len(bags)} bags; give one of them")
        bag = bags[0]
        bag_info = {"source": str(bag)}
    bag = bag.resolve()
    job = BagJob(str(bag), dict(config), tuple(pairs))

    # Untimed warm-ups: the first pass pays for imports, loading the pipeline and a cold page cache.
    time_label(job, scratch)
    time_read(bag, config["topics.color"])
    read_runs_s, open_runs_s, label_runs_s, frames_seen = [], [], [], set()
    fastest_stages: Counter[str] = Counter()
    for _ in range(repeats):
        read_s, open_s, messages, colour_images = time_read(bag, config["topics.color"])
        label_s, frames, stage_seconds = time_label(job, scratch)
        if not label_runs_s or label_s < min(label_runs_s):
            fastest_stages = stage_seconds
        read_runs_s.append(read_s)
        open_runs_s.append(open_s)
        label_runs_s.append(label_s)
        frames_seen.add(frames)
    if len(frames_seen) != 1:  # replays are deterministic: anything else is a bug, not noise
        raise LabelError(f"labelling {bag} gave different frame counts on repeated runs: {sorted(frames_seen)}")
    frames = frames_seen.pop()
    if frames == 0:
        raise LabelError(f"{bag} has no complete camera frame for the config's camera topics; nothing to time")
    read_fps, label_fps = frames / min(read_runs_s), frames / min(label_runs_s)
    open_s = min(open_runs_s)

    work = [WorkItem(f"{bag_key(bag)}-{index}", job) for index in range(items)]
    rewards_only_work = [WorkItem(item.key, dataclasses.replace(job, rewards_only=True)) for item in work]
    local_result: dict[str, Any] = {"speedup": None, "note": "skipped (--no-local)"}
    if local:
        local_result = compare_workers(work, "local", engine_repeats, scratch)
        local_result["note"] = ("workers=1 labels in this process with its pipeline loaded; workers=2 spawns 2 "
                                "worker processes each run, and their start-up is counted")
    ray_result: dict[str, Any] = {"speedup": None, "note": "skipped (--no-ray)"}
    if ray:
        ray_result = ray_comparison(work, engine_repeats, scratch, rewards_only_work)

    result: dict[str, Any] = {
        "label_fps": label_fps,
        "read_fps": read_fps,
        "read_ratio": label_fps / read_fps,
        # Both rates pay the same opening; a long bag, over whose frames it is spread, has a ratio nearer this one.
        "read_ratio_excluding_open": (min(read_runs_s) - open_s) / (min(label_runs_s) - open_s),
        "open_s": open_s,
        # Where the time goes: the fastest labelling's stages, and the fastest read's opening and the rest of it.
        "label_stages_ms_per_frame": stages_ms_per_frame(fastest_stages, frames),
        "read_stages_ms_per_frame": {"open": 1e3 * open_s / frames,
                                     "read": 1e3 * (min(read_runs_s) - open_s) / frames},
        "ray_speedup": ray_result["speedup"],
        "ray_speedup_rewards_only": ray_result.get("rewards_only", {}).get("speedup"),
        "local_speedup": local_result["speedup"],
        "frames": frames,
        "label_s": min(label_runs_s),
        "read_s": min(read_runs_s),
        "label_runs_s": label_runs_s,
        "read_runs_s": read_runs_s,
        "repeats": repeats,
        "items": items,
        "bag": {**bag_info, "bytes": directory_bytes(bag), "messages": messages, "colour_images": colour_images},
        "pairs": list(pairs),
        "path": {key: config[key] for key in (*GEOMETRY_PATH, "extrinsic.source")},
        "ray": ray_result,
        "local": local_result,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1m": [load_start, os.getloadavg()[0]]},
        "method": {
            "read": "BagReader: open the bag, deserialise every message",
            "stages": {**LABEL_STAGES, "other": "the rest: synchronising a frame's messages, queueing frames, "
                       "tf lookups, poses, checks"},
            "open": "open_s: the fastest opening of the bag by BagReader (rosbags' Reader parsing metadata.yaml and "
                    "each topic's QoS), a fixed cost per bag that labelling pays too (it opens the bag the same way); "
                    "read_ratio_excluding_open takes it out of both times",
            "label": "label_bag_item in this process: replay (lifting only the pairs' objects), rewards, the "
                     "labelled copy (copied on a background thread + appended rewards, for an indexed mcap bag) "
                     "and rewards.parquet into a scratch directory",
            "frames": "camera frames the labeller completed (the same count for both rates)",
            "timing": f"one untimed warm-up each, then {repeats} alternating runs; the fastest of each is kept",
            "speedups": f"run_items wall time on {items} copies of the item, workers=1 over workers=2, "
                        f"{engine_repeats} alternating runs each, fastest kept; ray_speedup_rewards_only: the same "
                        "with items that write a bag of the rewards alone instead of a copy of the bag",
        },
    }
    ray_met = None if result["ray_speedup"] is None else result["ray_speedup"] >= RAY_SPEEDUP_GOAL
    result["goals"] = {"read_ratio_min": READ_RATIO_GOAL, "ray_speedup_min": RAY_SPEEDUP_GOAL,
                       "read_ratio_met": result["read_ratio"] >= READ_RATIO_GOAL, "ray_speedup_met": ray_met}
    return result


def summary_line(result: dict[str, Any], out_path: Path) -> str:
    bag = result["bag"]
    size = f", {bag['width']}x{bag['height']}" if "width" in bag else ""

    def speedup(name: str) -> str:
        value = result[f"{name}_speedup"]
        return "not measured" if value is None else f"{value:.2f}"

    goals = result["goals"]
    ray_goal = "" if goals["ray_speedup_met"] is None else f" (goal >= {goals['ray_speedup_min']})"
    if result.get("ray_speedup_rewards_only") is not None:
        ray_goal += f", {result['ray_speedup_rewards_only']:.2f} writing reward-only bags"
    return (f"label {result['label_fps']:.1f} frames/s vs read {result['read_fps']:.1f} frames/s "
            f"({result['frames']} frames{size}, {bag['bytes'] / 1e6:.0f} MB): read_ratio {result['read_ratio']:.3f} "
            f"(goal >= {goals['read_ratio_min']}; {result['read_ratio_excluding_open']:.3f} without the "
            f"{1e3 * result['open_s']:.0f} ms both spend opening the bag); 2 vs 1 workers on {result['items']} "
            f"items: ray {speedup('ray')}{ray_goal}, "
            f"local {speedup('local')} -> {out_path}")


def run_label_bench(config: Config, out_path: Path, **settings: Any) -> int:
    """Run :func:`label_bench` in a scratch directory, write its JSON to ``out_path`` and print a summary."""
    with tempfile.TemporaryDirectory(prefix="tsg-bench-label-") as scratch:
        result = label_bench(config, Path(scratch), **settings)
    write_json(result, out_path)
    print(summary_line(result, out_path))
    return 0
