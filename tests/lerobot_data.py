"""Tiny LeRobot v3.0 datasets written the way LeRobot writes them, for the tests of the LeRobot reader/writer.

Data files are built like LeRobot's ``DatasetWriter._save_episode_data``: a ``datasets.Dataset`` per episode with
the features of ``info.json``, images embedded as ``{"bytes": png, "path": "frame-XXXXXX.png"}`` cells, written
with one row group per episode, several episodes per file. The episodes table, ``tasks.parquet``, ``stats.json``
(min/max/mean/std/count and quantiles, aggregated over episodes) and ``info.json`` follow LeRobot v3.0; the video
files are a few dummy bytes (never decoded by the code under test).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

STATE = "observation.state"
ACTION = "action"
FRONT = "observation.images.front"
FRONT_DEPTH = "observation.images.front_depth"
FRONT_INSTANCES = "observation.images.front_instances"
WRIST = "observation.images.wrist"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}


@dataclass(frozen=True)
class SyntheticFrame:
    """One recorded frame: what the cameras saw and the robot's state and command."""

    rgb: np.ndarray  # (H, W, 3) uint8
    depth_mm: np.ndarray  # (H, W) uint16
    state: np.ndarray  # (6,) float32
    action: np.ndarray  # (4,) float32
    instances: np.ndarray | None = None  # (H, W) uint16 instance ids (with_instances only)


#: (episode_index, frame_index, height, width) -> the frame.
FrameFn = Callable[[int, int, int, int], SyntheticFrame]


def default_frame(episode_index: int, frame_index: int, height: int, width: int) -> SyntheticFrame:
    """Distinct, deterministic content per episode and frame."""
    rng = np.random.default_rng(1000 * episode_index + frame_index)
    return SyntheticFrame(
        rgb=rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        depth_mm=rng.integers(300, 4000, (height, width), dtype=np.uint16),
        state=rng.normal(0.0, 1.0, 6).astype(np.float32),
        action=rng.normal(0.0, 0.5, 4).astype(np.float32))


@dataclass(frozen=True)
class BuiltDataset:
    root: Path
    frames: dict[int, list[SyntheticFrame]]  # episode index -> frames in order
    tasks: list[str]  # by task index


def build_lerobot_dataset(root: Path, *, episode_lengths: Sequence[int] = (3, 4, 2),
                          image_hw: tuple[int, int] = (6, 8), frame_fn: FrameFn = default_frame, fps: int = 10,
                          episodes_per_data_file: int = 2, episodes_per_meta_file: int | None = None,
                          chunks_size: int = 1000, embed_images: bool = True, with_depth: bool = True,
                          with_video: bool = True, with_instances: bool = False,
                          tasks: Sequence[str] = ("pick up the red cube", "put the cube in the bowl")) -> BuiltDataset:
    """Write a LeRobot v3.0 dataset at ``root`` (created) and return what it holds.

    Episodes go ``episodes_per_data_file`` to a data file (and video file), chunk and file indices advancing as
    LeRobot's ``update_chunk_file_indices`` does with ``chunks_size``; the episodes table is split into files of
    ``episodes_per_meta_file`` rows (one file when None). With ``embed_images=False`` image cells hold only a path
    to a PNG under ``images/`` (relative to the root) and no bytes. Episode ``e`` does task ``e % len(tasks)``.
    """
    import datasets
    from PIL import Image

    height, width = image_hw
    root.mkdir(parents=True)
    features = _features(height, width, fps, with_depth, with_video, with_instances)
    hf_features = datasets.Features({k: _hf_feature(datasets, f) for k, f in features.items()
                                     if f["dtype"] != "video"})
    frames = {e: [frame_fn(e, i, height, width) for i in range(n)] for e, n in enumerate(episode_lengths)}
    task_list = list(tasks)

    def image_cell(array: np.ndarray, key: str, episode: int, frame: int) -> dict[str, Any]:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        name = f"frame-{frame:06d}.png"
        if embed_images:
            return {"bytes": buffer.getvalue(), "path": name}
        relative = Path("images") / key / f"episode-{episode:06d}" / name
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(buffer.getvalue())
        return {"bytes": None, "path": str(relative)}

    rows: list[dict[str, Any]] = []
    all_stats: list[dict[str, dict[str, np.ndarray]]] = []
    chunk_index, file_index, global_index = 0, 0, 0
    groups = [list(range(len(episode_lengths)))[i:i + episodes_per_data_file]
              for i in range(0, len(episode_lengths), episodes_per_data_file)]
    for group_number, group in enumerate(groups):
        if group_number:
            file_index += 1
            if file_index == chunks_size:
                chunk_index, file_index = chunk_index + 1, 0
        path = root / DATA_PATH.format(chunk_index=chunk_index, file_index=file_index)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = None
        video_time_s = 0.0
        for episode in group:
            episode_frames = frames[episode]
            n = len(episode_frames)
            columns: dict[str, Any] = {
                STATE: np.stack([f.state for f in episode_frames]),
                ACTION: np.stack([f.action for f in episode_frames]),
                FRONT: [image_cell(f.rgb, FRONT, episode, i) for i, f in enumerate(episode_frames)],
                "timestamp": (np.arange(n) / fps).astype(np.float32),
                "frame_index": np.arange(n, dtype=np.int64),
                "episode_index": np.full(n, episode, dtype=np.int64),
                "index": np.arange(global_index, global_index + n, dtype=np.int64),
                "task_index": np.full(n, episode % len(task_list), dtype=np.int64),
            }
            if with_depth:
                columns[FRONT_DEPTH] = [image_cell(f.depth_mm, FRONT_DEPTH, episode, i)
                                        for i, f in enumerate(episode_frames)]
            if with_instances:
                columns[FRONT_INSTANCES] = [image_cell(f.instances, FRONT_INSTANCES, episode, i)
                                            for i, f in enumerate(episode_frames)]
            table = datasets.Dataset.from_dict({k: columns[k] for k in hf_features}, features=hf_features,
                                               split="train").with_format("arrow")[:]
            if writer is None:
                writer = pq.ParquetWriter(path, schema=table.schema, compression="snappy", use_dictionary=True)
            writer.write_table(table)

            stats = {k: _stats(columns[k]) for k in (STATE, ACTION, *DEFAULT_FEATURES)}
            stats[FRONT] = _image_stats(np.stack([f.rgb for f in episode_frames]) / 255.0)
            if with_depth:
                depth = np.stack([f.depth_mm for f in episode_frames])[..., None].repeat(3, axis=-1)
                stats[FRONT_DEPTH] = _image_stats(depth / 65535.0)
            if with_instances:
                ids = np.stack([f.instances for f in episode_frames])[..., None].repeat(3, axis=-1)
                stats[FRONT_INSTANCES] = _image_stats(ids / 65535.0)
            row: dict[str, Any] = {
                "episode_index": episode, "tasks": [task_list[episode % len(task_list)]], "length": n,
                "data/chunk_index": chunk_index, "data/file_index": file_index,
                "dataset_from_index": global_index, "dataset_to_index": global_index + n}
            if with_video:
                stats[WRIST] = _image_stats(np.stack([f.rgb for f in episode_frames])[:, ::-1] / 255.0)
                row.update({f"videos/{WRIST}/chunk_index": chunk_index, f"videos/{WRIST}/file_index": file_index,
                            f"videos/{WRIST}/from_timestamp": video_time_s,
                            f"videos/{WRIST}/to_timestamp": video_time_s + n / fps})
                video_time_s += n / fps
            row.update({f"stats/{k}/{s}": v.tolist() for k, st in stats.items() for s, v in st.items()})
            rows.append(row)
            all_stats.append(stats)
            global_index += n
        if writer is not None:
            writer.close()
        if with_video:
            video = root / VIDEO_PATH.format(video_key=WRIST, chunk_index=chunk_index, file_index=file_index)
            video.parent.mkdir(parents=True, exist_ok=True)
            video.write_bytes(b"\x00\x00\x00\x20ftypisom" + f"{WRIST} {chunk_index} {file_index}".encode() * 7)

    _write_episodes(root, rows, episodes_per_meta_file or len(rows))
    _write_tasks(root, task_list)
    stats_json = {k: {s: v.tolist() for s, v in st.items()} for k, st in _aggregate(all_stats).items()}
    (root / "meta/stats.json").write_text(json.dumps(stats_json, indent=4))
    info = {
        "codebase_version": "v3.0", "robot_type": "so101_follower", "total_episodes": len(episode_lengths),
        "total_frames": int(sum(episode_lengths)), "total_tasks": len(task_list), "chunks_size": chunks_size,
        "data_files_size_in_mb": 100, "video_files_size_in_mb": 200, "fps": fps,
        "splits": {"train": f"0:{len(episode_lengths)}"}, "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if with_video else None, "features": features}
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    (root / "README.md").write_text("---\ntags:\n- LeRobot\n---\nThis dataset was created using LeRobot.\n")
    return BuiltDataset(root, frames, task_list)


def _features(height: int, width: int, fps: int, with_depth: bool, with_video: bool,
              with_instances: bool = False) -> dict[str, dict[str, Any]]:
    camera_names = ["height", "width", "channels"]
    features: dict[str, dict[str, Any]] = {
        STATE: {"dtype": "float32", "shape": [6], "names": [f"joint_{i}.pos" for i in range(6)]},
        ACTION: {"dtype": "float32", "shape": [4], "names": ["x", "y", "z", "gripper"]},
        FRONT: {"dtype": "image", "shape": [height, width, 3], "names": camera_names},
    }
    if with_depth:
        features[FRONT_DEPTH] = {"dtype": "image", "shape": [height, width, 1], "names": camera_names}
    if with_instances:
        features[FRONT_INSTANCES] = {"dtype": "image", "shape": [height, width, 1], "names": camera_names}
    if with_video:
        features[WRIST] = {"dtype": "video", "shape": [height, width, 3], "names": camera_names, "info": {
            "video.height": height, "video.width": width, "video.codec": "av1", "video.pix_fmt": "yuv420p",
            "video.is_depth_map": False, "video.fps": fps, "video.channels": 3, "has_audio": False}}
    return {**features, **DEFAULT_FEATURES}


def _hf_feature(datasets: Any, feature: dict[str, Any]) -> Any:
    """LeRobot's get_hf_features_from_features for the shapes used here."""
    if feature["dtype"] == "image":
        return datasets.Image()
    if feature["shape"] == [1]:
        return datasets.Value(feature["dtype"])
    return datasets.Sequence(length=feature["shape"][0], feature=datasets.Value(feature["dtype"]))


def _stats(values: np.ndarray) -> dict[str, np.ndarray]:
    data = np.asarray(values, dtype=np.float64)
    data = data.reshape(len(data), -1)
    out = {"min": data.min(0), "max": data.max(0), "mean": data.mean(0), "std": data.std(0),
           "count": np.array([len(data)])}
    for q, value in zip(QUANTILES, np.quantile(data, QUANTILES, axis=0, method="inverted_cdf"), strict=True):
        out[f"q{round(q * 100):02d}"] = value
    return out


def _image_stats(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel stats of (N, H, W, 3) images in [0, 1], shaped (3, 1, 1) as LeRobot stores them."""
    stats = _stats(images.reshape(-1, 3))
    stats = {k: v if k == "count" else v.reshape(3, 1, 1) for k, v in stats.items()}
    stats["count"] = np.array([len(images)])
    return stats


def _aggregate(stats: list[dict[str, dict[str, np.ndarray]]]) -> dict[str, dict[str, np.ndarray]]:
    """LeRobot's aggregate_stats: min of mins, count-weighted mean, pooled variance and weighted quantiles."""
    out = {}
    for key in stats[0]:
        parts = [s[key] for s in stats]
        counts = np.array([p["count"][0] for p in parts], dtype=np.float64)
        weights = counts.reshape(-1, *([1] * parts[0]["mean"].ndim))
        means = np.stack([p["mean"] for p in parts])
        mean = (means * weights).sum(0) / counts.sum()
        variance = ((np.stack([p["std"] for p in parts]) ** 2 + (means - mean) ** 2) * weights).sum(0) / counts.sum()
        out[key] = {"min": np.min([p["min"] for p in parts], axis=0), "max": np.max([p["max"] for p in parts], axis=0),
                    "mean": mean, "std": np.sqrt(variance), "count": np.array([int(counts.sum())])}
        for q in (k for k in parts[0] if k.startswith("q")):
            out[key][q] = (np.stack([p[q] for p in parts]) * weights).sum(0) / counts.sum()
    return out


def _write_episodes(root: Path, rows: list[dict[str, Any]], per_file: int) -> None:
    for file_index, start in enumerate(range(0, len(rows), per_file)):
        part = [{**row, "meta/episodes/chunk_index": 0, "meta/episodes/file_index": file_index}
                for row in rows[start:start + per_file]]
        path = root / EPISODES_PATH.format(chunk_index=0, file_index=file_index)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(part), path, compression="snappy")


def _write_tasks(root: Path, tasks: list[str]) -> None:
    import pandas as pd

    frame = pd.DataFrame({"task_index": np.arange(len(tasks), dtype=np.int64)}, index=pd.Index(tasks, name="task"))
    frame.to_parquet(root / "meta/tasks.parquet")
