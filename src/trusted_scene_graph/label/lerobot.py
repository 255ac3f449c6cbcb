"""``tsg label`` on a LeRobot v3 dataset: a new dataset with a ``next.reward`` float32 column.

Each episode is one work item: its camera frames (image features stored in the data parquet: colour, optional 16-bit
depth in millimetres, optional 16-bit instance ids for the 'sim' detector) go through the same
:class:`~trusted_scene_graph.pipeline.ScenePipeline` and :class:`~trusted_scene_graph.reward.RewardTracker` as a bag
frame, with the camera intrinsics given on the command line (LeRobot stores none) and the end effector and goal
positions read from state features (``observation.state[0:3]``: graph-frame metres). Its rewards table is committed
to ``OUTPUT/tsg_rewards/episode-NNNNNN/rewards.parquet``, beside ``source.json`` (:data:`SOURCE_FILE`: a
fingerprint of the source rows it was labelled from, which a rerun checks before reusing it); once every episode has
one, the dataset is written around them by :func:`~trusted_scene_graph.dataset.lerobot.write_with_column`:
``next.reward`` is the sum of the pairs' rewards (one pair: its reward) of the *next* frame (LeRobot's convention:
the reward ``env.step`` returned for the frame's action), NaN (or ``--invalid-reward``) where any pair is not valid
and at the episode's last frame, which has no next frame; ``next.reward_valid`` says which frames have a reward;
stats are recomputed for both; videos are hard-linked, never decoded or re-encoded.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trusted_scene_graph.config.schema import Config
from trusted_scene_graph.dataset import DatasetError
from trusted_scene_graph.dataset.lerobot import LABELLER_SUBDIR, LeRobotDataset, write_with_column
from trusted_scene_graph.errors import TsgError
from trusted_scene_graph.files import replace_text
from trusted_scene_graph.geometry.camera import GeometryError, Intrinsics
from trusted_scene_graph.label import LabelError
from trusted_scene_graph.label.bags import (
    REWARDS_FILE,
    perceives_posed_frames,
    pipeline_for,
    read_rewards_table,
    reward_row,
    valid_fraction,
    write_rewards_table,
)
from trusted_scene_graph.label.engine import WorkItem
from trusted_scene_graph.perception.detector import CameraFrame
from trusted_scene_graph.reward import RewardTracker, SideResolver, pairs_from_config
from trusted_scene_graph.reward.sides import EE_FRAME, GOAL_FRAME
from trusted_scene_graph.reward.tracker import no_graph_reason

REWARD_COLUMN = "next.reward"
VALID_COLUMN = "next.reward_valid"
#: Beside each committed episode's rewards table: the fingerprint of the source rows it was labelled from.
SOURCE_FILE = "source.json"
_FEATURE_SLICE = re.compile(r"^(?P<key>[^\[\]]+?)(?:\[(?P<start>\d+):(?P<stop>\d+)\])?$")


@dataclass(frozen=True)
class FrameSource:
    """Which features of a LeRobot dataset make the camera frames and robot poses."""

    camera: str
    intrinsics: tuple[float, float, float, float]  # fx, fy, cx, cy in pixels
    depth: str | None = None  # 16-bit image feature, millimetres (0 = no depth)
    instances: str | None = None
    ee_position: str | None = None  # "key" or "key[start:stop]" holding x, y, z in the graph frame, metres
    goal_position: str | None = None


def parse_feature_slice(text: str) -> tuple[str, slice]:
    """``observation.state[0:3]`` -> ("observation.state", slice(0, 3)); a bare key takes 3 values from 0 (and
    :func:`check_frame_source` refuses it unless the feature holds exactly 3)."""
    match = _FEATURE_SLICE.match(text.strip())
    if match is None:
        raise LabelError(f"position feature {text!r} is not 'KEY' or 'KEY[START:STOP]'")
    start, stop = int(match["start"] or 0), int(match["stop"] or 3)
    if stop - start != 3:
        raise LabelError(f"position feature {text!r} selects {stop - start} values; a position needs 3 (x, y, z)")
    return match["key"], slice(start, stop)


def check_frame_source(dataset: LeRobotDataset, source: FrameSource, config: Config) -> None:
    """Refuse, naming the feature, what the dataset cannot give before any episode is labelled."""
    if config["depth.backend"] == "sensor" and source.depth is None:
        raise LabelError("--depth is required with depth.backend 'sensor' (a 16-bit depth image feature in "
                         "millimetres); for an RGB-only dataset use --set depth.backend=monocular")
    if config["detector.backend"] == "sim" and source.instances is None:
        raise LabelError("--instances is required with the 'sim' detector (a 16-bit instance-id image feature); "
                         "for real camera images use --set detector.backend=grounding_dino")
    if config["extrinsic.source"] == "tf":
        raise LabelError("a LeRobot dataset has no tf: set extrinsic.source to 'static' (with extrinsic.translation_m "
                         "and extrinsic.rotation_xyzw, the camera's pose in the graph frame) or 'plane_fit'")
    first = dataset.episodes[0].episode_index if dataset.episodes else None
    for what, key, kind in (("camera", source.camera, "colour"), ("depth", source.depth, "16-bit"),
                            ("instances", source.instances, "16-bit")):
        if key is None:
            continue
        if key in dataset.video_keys:
            raise LabelError(f"{what} feature {key!r} is stored as video; tsg label reads cameras stored as images "
                             f"(dtype 'image'): {dataset.image_keys or 'none in this dataset'}")
        if key not in dataset.image_keys:
            raise LabelError(f"{what} feature {key!r} is not an image feature of {dataset.root}; image features: "
                             f"{dataset.image_keys or 'none'}")
        if first is not None:
            # Checked on the first frame: a wrong feature would otherwise make every frame invalid, found at the end.
            image = next(dataset.episode_images(first, key))
            fits = (image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8) if kind == "colour" else (
                image.ndim == 2 and image.dtype == np.uint16)
            if not fits:
                expected = "an 8-bit RGB image" if kind == "colour" else "a 16-bit single-channel image"
                raise LabelError(f"{what} feature {key!r} holds {image.dtype} images of shape {image.shape}, "
                                 f"expected {expected}")
            if kind == "colour":
                fx, fy, cx, cy = source.intrinsics
                try:  # checked against the image size here, not once per frame of every episode
                    Intrinsics(int(image.shape[1]), int(image.shape[0]), fx, fy, cx, cy)
                except GeometryError as exc:
                    raise LabelError(f"--intrinsics {fx:g},{fy:g},{cx:g},{cy:g} (pixels) do not fit {key!r}'s "
                                     f"{image.shape[1]}x{image.shape[0]} images: {exc}") from exc
    for text in (source.ee_position, source.goal_position):
        if text is not None:
            key, part = parse_feature_slice(text)
            feature = dataset.features.get(key)
            if feature is None or feature.get("dtype") not in ("float32", "float64"):
                raise LabelError(f"position feature {key!r} is not a float feature of {dataset.root}")
            values = int(np.prod(feature.get("shape", [0])))
            if part.stop > values:
                raise LabelError(f"position feature {text!r} reaches past {key!r}'s shape {feature.get('shape')}")
            if "[" not in text and values != 3:
                # A bare key means the whole feature: a joint state's first three values are no position.
                raise LabelError(f"position feature {key!r} holds {values} values (shape {feature.get('shape')}); "
                                 f"name the three that are x, y, z: {key}[START:STOP]")


@dataclass(frozen=True)
class EpisodeJob:
    """One episode to label (picklable)."""

    root: str
    episode_index: int
    config: dict[str, Any]
    pairs: tuple[str, ...]
    source: FrameSource


def episode_key(episode_index: int) -> str:
    return f"episode-{episode_index:06d}"


def label_episode_item(job: EpisodeJob, staging_dir: Path) -> int:
    """The engine's work function for one episode: writes ``rewards.parquet`` and :data:`SOURCE_FILE`; returns the
    frames labelled."""
    config = Config(job.config)
    pipeline = pipeline_for(config)
    dataset = LeRobotDataset(job.root)
    source = job.source
    tracker = RewardTracker(pairs_from_config(config, list(job.pairs)),
                            SideResolver.from_config(config, reduced_graphs=True))  # the pairs' objects alone
    # One read of the episode's rows, with only the columns used here: times, positions and cameras.
    cameras = _cameras(source)
    data_file = _data_file_state(dataset, job.episode_index)  # before the read: a later change then shows
    table = dataset.episode_table(job.episode_index, columns=episode_columns(source))
    timestamps_s = table.column("timestamp").to_numpy()
    frame_indices = table.column("frame_index").to_numpy()
    poses = {frame: _positions(table, text) for frame, text in ((EE_FRAME, source.ee_position),
                                                                (GOAL_FRAME, source.goal_position)) if text}
    images = {name: dataset.episode_images(job.episode_index, key, table) for name, key in cameras.items()}
    graph_frame = config["graph_frame"]
    perceive_posed = perceives_posed_frames(tracker, config)  # else the gripper only where its pose is missing
    rows = []
    for i, stamp_ns in enumerate(frame_stamps_ns(timestamps_s, frame_indices, dataset.fps).tolist()):
        for frame_name, positions in poses.items():
            if np.all(np.isfinite(positions[i])):  # a NaN state is a frame without that pose
                tracker.resolver.poses[frame_name].add(stamp_ns, graph_frame, positions[i])
        arrays = {name: next(iterator) for name, iterator in images.items()}
        labels = (tracker.labels_needed if perceive_posed
                  else tracker.labels_needed_at(stamp_ns, graph_frame))
        try:
            graph = pipeline.process(_camera_frame(stamp_ns, arrays, source), relations=False, labels=labels)
        except TsgError as exc:
            samples = tracker.skip(stamp_ns, no_graph_reason(exc))
        else:
            samples = tracker.update(graph)
        rows += [reward_row(sample, dataset.root.name, job.episode_index, int(frame_indices[i]))
                 for sample in samples]
    write_rewards_table(rows, Path(staging_dir) / REWARDS_FILE)
    record = {"episode_index": job.episode_index, "frames": table.num_rows, "rows_sha256": rows_fingerprint(table),
              **data_file}
    _write_source_record(Path(staging_dir) / SOURCE_FILE, record)
    return len(timestamps_s)


def _cameras(source: FrameSource) -> dict[str, str]:
    return {name: key for name, key in (("rgb", source.camera), ("depth", source.depth),
                                        ("instances", source.instances)) if key is not None}


def episode_columns(source: FrameSource) -> list[str]:
    """The columns an episode is labelled from: times, the position features and the cameras."""
    position_keys = [parse_feature_slice(text)[0] for text in (source.ee_position, source.goal_position) if text]
    return ["timestamp", "frame_index", *dict.fromkeys([*position_keys, *_cameras(source).values()])]


def rows_fingerprint(table: Any) -> str:
    """SHA-256 of an episode's rows of the columns it is labelled from, by value (image cells by their bytes and
    path), so it does not depend on how the data file stores them."""
    digest = hashlib.sha256()
    for name in table.column_names:
        digest.update(f"{len(name)}:{name}".encode())
        for value in table.column(name).to_pylist():
            _hash_value(digest, value)
    return digest.hexdigest()


def _hash_value(digest: Any, value: Any) -> None:
    if isinstance(value, bytes):
        digest.update(b"b%d:" % len(value))
        digest.update(value)
    elif isinstance(value, dict):
        digest.update(b"{%d:" % len(value))
        for key in sorted(value):
            digest.update(f"{len(key)}:{key}".encode())
            _hash_value(digest, value[key])
    elif isinstance(value, list):
        digest.update(b"[%d:" % len(value))
        for item in value:
            _hash_value(digest, item)
    else:  # numbers, strings, None
        text = repr(value).encode()
        digest.update(b"%d:" % len(text) + text)


def _data_file_state(dataset: LeRobotDataset, episode_index: int) -> dict[str, Any]:
    path = dataset.data_file(episode_index)
    state = path.stat()
    return {"data_file": str(path.relative_to(dataset.root)), "size": state.st_size, "mtime_ns": state.st_mtime_ns}


def check_committed_episodes(dataset: LeRobotDataset, source: FrameSource, items_dir: Path) -> None:
    """Refuse to reuse committed episode rewards whose source rows changed since they were labelled (the manifest
    records the input's path, not its content: episodes replaced by others of the same lengths would otherwise keep
    their old rewards).

    Each committed episode's :data:`SOURCE_FILE` holds its data file's size and mtime and a hash of its rows
    (:func:`rows_fingerprint`). Where the file's size and mtime are unchanged the rewards are reused without reading
    anything more; otherwise the episode's rows are read and hashed again, so a file rewritten with the same content
    (a fresh download) is still accepted, and its new size and mtime are recorded so later reruns need not hash it
    again."""
    for episode in dataset.episodes:
        item = items_dir / episode_key(episode.episode_index)
        if not item.is_dir():
            continue
        record_path = item / SOURCE_FILE
        fresh = "label into a fresh --out"
        try:
            recorded = json.loads(record_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DatasetError(f"episode {episode.episode_index}'s committed rewards ({item}) have no {SOURCE_FILE} "
                               f"recording the source rows they were labelled from (an older tsg label wrote them), "
                               f"so they cannot be checked against {dataset.root}: {fresh}") from None
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot read {record_path}: {exc}; {fresh}") from None
        if not isinstance(recorded, dict):
            raise DatasetError(f"{record_path} holds a JSON {type(recorded).__name__}, not an object; {fresh}")
        data_file = _data_file_state(dataset, episode.episode_index)  # before the read: a later change then shows
        unchanged = {key: recorded.get(key) for key in ("data_file", "size", "mtime_ns")} == data_file
        if unchanged and recorded.get("frames") == episode.length:
            continue
        table = dataset.episode_table(episode.episode_index, columns=episode_columns(source))
        if recorded.get("frames") != table.num_rows or recorded.get("rows_sha256") != rows_fingerprint(table):
            raise DatasetError(f"episode {episode.episode_index} of {dataset.root} changed since its rewards were "
                               f"committed to {item}: its rows of {episode_columns(source)} differ from the "
                               f"{recorded.get('frames')} frames labelled then ({table.num_rows} frames now); the "
                               f"rewards would be stale: {fresh}")
        _write_source_record(record_path, {**recorded, **data_file})


def _write_source_record(path: Path, record: dict[str, Any]) -> None:
    """Replace :data:`SOURCE_FILE` atomically and durably: a crash leaves the old record or the new, never a torn
    one that would make the committed episode unreadable."""
    replace_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n", durable=True)


def _positions(table: Any, text: str) -> np.ndarray:
    key, part = parse_feature_slice(text)
    values = np.asarray(table.column(key).to_pylist(), dtype=np.float64).reshape(table.num_rows, -1)
    return values[:, part]


def _camera_frame(stamp_ns: int, arrays: dict[str, np.ndarray], source: FrameSource) -> CameraFrame:
    rgb = arrays["rgb"]
    height, width = rgb.shape[:2]
    fx, fy, cx, cy = source.intrinsics
    depth_m = None
    if "depth" in arrays:
        depth_mm = arrays["depth"]
        if depth_mm.dtype != np.uint16:
            raise LabelError(f"depth feature {source.depth!r} is {depth_mm.dtype}, expected 16-bit millimetres")
        depth_m = np.where(depth_mm > 0, depth_mm.astype(np.float32) / 1000.0, np.float32(np.nan))
    instances = arrays.get("instances")
    if instances is not None and instances.dtype != np.uint16:
        raise LabelError(f"instances feature {source.instances!r} is {instances.dtype}, expected 16-bit ids")
    return CameraFrame(stamp_ns, rgb, depth_m, Intrinsics(width, height, fx, fy, cx, cy), instances)


def assemble(dataset: LeRobotDataset, out_dir: Path, *, invalid_reward: float = float("nan"),
             overwrite: bool = False) -> tuple[int, float, dict[tuple[str, str], tuple[float, str]]]:
    """Write the labelled dataset into ``out_dir`` from the committed episode tables; returns (frames, fraction of
    frames with a valid reward, each pair's :func:`~.bags.valid_fraction` over its own frames in the episode tables:
    which pair a frame without a reward lacks).

    ``next.reward[t]`` follows LeRobot's convention (what ``env.step(action_t)`` returned): the reward of the frame
    the action led to, frame t + 1. The episode's last frame has no next frame, so no reward: ``next.reward_valid``
    is False there and ``next.reward`` is ``invalid_reward``, as at any frame without a valid reward. The episode
    tables keep each frame's own reward."""
    rewards: dict[int, np.ndarray] = {}
    valid: dict[int, np.ndarray] = {}
    reasons: Counter[str] = Counter()
    tables = []
    for episode in dataset.episodes:
        table = read_rewards_table(out_dir / LABELLER_SUBDIR / episode_key(episode.episode_index) / REWARDS_FILE)
        tables.append(table)
        reward, ok = episode_reward(table, episode.length)
        reasons.update(m for m, v in zip(table.column("message").to_pylist(), table.column("valid").to_pylist(),
                                         strict=True) if not v)
        reward, ok = np.append(reward[1:], np.nan), np.append(ok[1:], False)  # the last frame has no next frame
        rewards[episode.episode_index] = np.where(ok, reward, invalid_reward).astype(np.float32)
        valid[episode.episode_index] = ok
    frames = sum(v.size for v in valid.values())
    valid_frames = int(sum(v.sum() for v in valid.values()))
    if frames and not valid_frames:
        common = "; ".join(f"{n}x {m}" for m, n in reasons.most_common(3)) or (
            "every episode has a single frame, and an episode's last frame has no next frame to take its reward from")
        raise LabelError(f"no frame of {dataset.root} has a valid reward (most common reasons: {common}); fix the "
                         "options and label into a new --out")
    # The stats are of the valid rewards: an --invalid-reward placeholder is no reward.
    write_with_column(dataset, out_dir, REWARD_COLUMN, rewards, dtype="float32",
                      extra_bool_columns={VALID_COLUMN: valid}, overwrite=overwrite, counted_by_episode=valid)
    return frames, valid_frames / max(frames, 1), valid_fraction(pa.concat_tables(tables)) if tables else {}


#: How far a frame's timestamp may be from ``frame_index / fps`` and still be taken as it (LeRobot's own check of a
#: dataset's timestamps uses this tolerance).
TIMESTAMP_TOLERANCE_S = 1e-4


def frame_stamps_ns(timestamps_s: np.ndarray, frame_indices: np.ndarray, fps: float) -> np.ndarray:
    """The stamps, in nanoseconds, of one episode's frames. LeRobot records ``frame_index / fps`` as a float32, off by
    up to its last bit (0.2 s is 0.200000003 s): where every frame's timestamp is that, frame k is stamped k periods
    of ``round(1e9 / fps)`` ns, so frames a period apart are the same nanoseconds apart at every frame, and whether a
    pose a period away is within a limit does not change from frame to frame with the rounding (at 10 fps, 100000001
    and 100000002 ns against a limit of 0.1 s). Other timestamps (recorded from a clock) are taken as they are."""
    timestamps_s = np.asarray(timestamps_s, dtype=np.float64)
    frame_indices = np.asarray(frame_indices, dtype=np.int64)
    if np.all(np.abs(timestamps_s - frame_indices / fps) <= TIMESTAMP_TOLERANCE_S):
        return frame_indices * round(1e9 / fps)
    return np.round(timestamps_s * 1e9).astype(np.int64)


def episode_reward(table: Any, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Per frame of one episode's rewards table: the sum of the pairs' rewards (meaningless where not valid) and
    whether every pair is valid."""
    frame = table.column("frame").to_numpy()
    reward = np.zeros(length)
    ok = np.ones(length, dtype=bool)
    for pair in sorted(set(table.column("pair").to_pylist())):
        rows = pc.equal(table.column("pair"), pair)
        frames = frame[rows.to_numpy(zero_copy_only=False)]
        part = table.filter(rows)
        if not np.array_equal(np.sort(frames), np.arange(length)):
            raise LabelError(f"the rewards table of pair {pair!r} has {frames.size} rows, not one per frame of an "
                             f"episode of {length} frames; delete its tsg_rewards entry and label again")
        reward[frames] += part.column("reward").to_numpy()
        ok[frames] &= part.column("valid").to_numpy(zero_copy_only=False)
    return reward, ok  # the caller chooses what an invalid frame's reward becomes


def lerobot_jobs(dataset: LeRobotDataset, config: Config, pairs: Sequence[str],
                 source: FrameSource) -> list[WorkItem]:
    """One work item per episode."""
    values = dict(config)
    return [WorkItem(episode_key(e.episode_index),
                     # Resolved: a Ray cluster's workers need not share this process's working directory.
                     EpisodeJob(str(dataset.root.resolve()), e.episode_index, values, tuple(pairs), source))
            for e in dataset.episodes]
