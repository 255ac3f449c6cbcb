"""Read LeRobot v3 datasets and write a copy with new per-frame columns (a dense reward), without ``lerobot``.

The layout (LeRobot's ``codebase_version`` "v3.0") is read and written directly with pyarrow:

- ``meta/info.json``: fps, the features (``dtype``/``shape``/``names``), the ``data_path`` and ``video_path``
  templates (formatted with ``chunk_index``/``file_index``), totals and splits;
- ``meta/episodes/chunk-XXX/file-XXX.parquet``: one row per episode (``episode_index``, ``length``, ``tasks``,
  ``data/chunk_index``, ``data/file_index``, ``dataset_from_index``, ``dataset_to_index``,
  ``videos/<key>/...``, ``stats/<feature>/<stat>``, ``meta/episodes/...``);
- ``meta/stats.json``: per feature ``min``/``max``/``mean``/``std``/``count`` and the quantiles
  ``q01``/``q10``/``q50``/``q90``/``q99``;
- ``meta/tasks.parquet``; ``data/chunk-XXX/file-XXX.parquet``, many episodes per file (one row group each), image
  features stored as Hugging Face ``datasets.Image`` cells (``struct<bytes, path>``); ``videos/<key>/...mp4``.

:func:`write_with_column` never modifies its source: it builds the new dataset in a temporary directory next to
the destination, flushes it to disk (fsync) and moves it into place with ``meta/info.json`` last, so an interrupted
run (or a power cut) never leaves a directory that :meth:`LeRobotDataset.is_dataset` accepts. Videos are
hard-linked (byte-copied across filesystems), never decoded. A hard link shares the file with the source, so tools
that rewrite a video in place would change both.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from trusted_scene_graph.dataset import DatasetError
from trusted_scene_graph.files import fsync_dir, fsync_tree

INFO_PATH = Path("meta/info.json")
STATS_PATH = Path("meta/stats.json")
EPISODES_DIR = Path("meta/episodes")
#: A subdirectory the destination may already hold (the labeller's own outputs); left untouched and never copied.
LABELLER_SUBDIR = "tsg_rewards"
#: Top-level entries of a source that are never copied: the labeller's outputs, huggingface_hub's record of the
#: source's downloads (which the new files would contradict) and a git clone's repository (``.git/lfs/objects`` holds
#: a second copy of every file, and its remote is the source's).
UNCOPIED_ENTRIES = (LABELLER_SUBDIR, ".cache", ".git")
#: The columns LeRobot adds to every dataset; never replaced by a written column.
DEFAULT_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
#: LeRobot's default quantiles (``compute_stats.DEFAULT_QUANTILES``) and their stats keys.
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS = tuple(f"q{round(q * 100):02d}" for q in QUANTILES)
_V3_CONVERT_COMMAND = "python -m lerobot.datasets.v30.convert_dataset_v21_to_v30 --repo-id=<repo>"
_EPISODE_COLUMNS = ("episode_index", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
                    "dataset_to_index")
_VALUE_DTYPES = {"float32": pa.float32(), "float64": pa.float64()}
#: meta/info.json's path templates and LeRobot v3.0's default of each.
_PATH_TEMPLATES = {"data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
                   "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"}


@dataclass(frozen=True)
class EpisodeRecord:
    """Where one episode's frames are: its data file and its global frame range ``[from, to)`` (the ``index``)."""

    episode_index: int
    length: int
    data_chunk_index: int
    data_file_index: int
    dataset_from_index: int
    dataset_to_index: int
    tasks: tuple[str, ...] = ()


class LeRobotDataset:
    """A read-only view of a LeRobot v3 dataset directory, validated on opening.

    Opening reads ``meta/info.json`` and the episodes table and checks that every episode's data file exists; the
    frame data are read per episode by :meth:`episode_table`. Videos are neither read nor required.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"LeRobot dataset {self.root} is not a directory")
        self.info: dict[str, Any] = _read_info(self.root)
        self.fps = self.info["fps"]
        self.features: dict[str, dict[str, Any]] = self.info["features"]
        self.episodes: list[EpisodeRecord] = _read_episodes(self.root)
        self._by_index = {episode.episode_index: episode for episode in self.episodes}
        if len(self._by_index) != len(self.episodes):
            counts = np.unique([e.episode_index for e in self.episodes], return_counts=True)
            duplicated = counts[0][counts[1] > 1].tolist()
            raise DatasetError(f"{self.root / EPISODES_DIR} lists episode(s) {duplicated} more than once")
        if len(self.episodes) != self.info["total_episodes"]:
            raise DatasetError(f"{self.root / INFO_PATH} says total_episodes={self.info['total_episodes']!r} but "
                               f"{self.root / EPISODES_DIR} lists {len(self.episodes)} episodes")
        frames = sum(episode.length for episode in self.episodes)
        if frames != self.info["total_frames"]:
            raise DatasetError(f"{self.root / INFO_PATH} says total_frames={self.info['total_frames']!r} but the "
                               f"episodes in {self.root / EPISODES_DIR} add up to {frames} frames")
        for episode in self.episodes:
            path = self.data_file(episode.episode_index)
            if not path.is_file():
                raise DatasetError(f"data file {path} of episode {episode.episode_index} is missing")

    @staticmethod
    def is_dataset(path: Path | str) -> bool:
        """Whether ``path`` looks like a LeRobot dataset (has ``meta/info.json``), e.g. rather than a bag."""
        return (Path(path) / INFO_PATH).is_file()

    @property
    def image_keys(self) -> list[str]:
        """Cameras stored as images in the data parquet files (decodable with :meth:`episode_images`)."""
        return [key for key, feature in self.features.items() if feature.get("dtype") == "image"]

    @property
    def video_keys(self) -> list[str]:
        """Cameras stored as mp4 videos (never decoded here)."""
        return [key for key, feature in self.features.items() if feature.get("dtype") == "video"]

    @property
    def total_frames(self) -> int:
        return int(self.info["total_frames"])

    def episode(self, episode_index: int) -> EpisodeRecord:
        try:
            return self._by_index[episode_index]
        except KeyError:
            raise DatasetError(f"{self.root} has no episode {episode_index} (episodes: "
                               f"{_short_list(sorted(self._by_index))})") from None

    def data_file(self, episode_index: int) -> Path:
        """The data parquet file holding ``episode_index``'s frames."""
        episode = self.episode(episode_index)
        return self.root / _data_relpath(self.info, episode.data_chunk_index, episode.data_file_index)

    def data_files(self) -> list[Path]:
        """Every data file the episodes refer to, each once, in episode order."""
        return list(dict.fromkeys(self.data_file(e.episode_index) for e in self.episodes))

    def episode_table(self, episode_index: int, columns: list[str] | None = None) -> pa.Table:
        """``episode_index``'s rows of its data file (all columns, or ``columns``), sorted by ``frame_index``.

        Raises :class:`DatasetError` when the file does not hold exactly frames ``0 .. length-1`` of the episode.
        """
        episode = self.episode(episode_index)
        path = self.data_file(episode_index)
        wanted = None if columns is None else list(dict.fromkeys([*columns, "frame_index"]))
        if wanted is not None:
            missing = [c for c in wanted if c not in self.features]
            if missing:
                raise DatasetError(f"{self.root} has no column(s) {missing} (features: {list(self.features)})")
        try:
            # LeRobot writes one row group per episode, so the filter skips the other episodes' row groups.
            table = pq.read_table(path, columns=wanted, filters=[("episode_index", "=", episode_index)])
        except (pa.ArrowException, OSError) as exc:
            raise DatasetError(f"cannot read data file {path}: {exc}") from None
        frame_index = table.column("frame_index").to_numpy()
        if not np.array_equal(np.sort(frame_index), np.arange(episode.length)):
            raise DatasetError(f"data file {path} holds {table.num_rows} rows of episode {episode_index} "
                               f"(frame_index {_short_list(np.sort(frame_index).tolist())}) but the episode has "
                               f"length {episode.length}: frames 0..{episode.length - 1} are expected")
        table = table.take(np.argsort(frame_index, kind="stable"))
        return table if columns is None else table.select(columns)

    def episode_images(self, episode_index: int, key: str, table: pa.Table | None = None) -> Iterator[np.ndarray]:
        """The camera ``key``'s images of one episode in frame order, decoded by :func:`decode_image`. ``table``: the
        episode's rows as :meth:`episode_table` returned them with this column among others (saves reading them
        again).

        Only image-stored cameras are read: a video-stored camera raises :class:`DatasetError` (on the call, not
        when iterating); a frame that cannot be decoded raises it when reached.
        """
        feature = self.features.get(key)
        if feature is None:
            raise DatasetError(f"{self.root} has no camera {key!r} (image features: {self.image_keys}, "
                               f"video features: {self.video_keys})")
        if feature.get("dtype") == "video":
            raise DatasetError(f"camera {key!r} of {self.root} is stored as video; only image-stored cameras are "
                               "read (record the dataset with images, e.g. lerobot's use_videos=False)")
        if feature.get("dtype") != "image":
            raise DatasetError(f"feature {key!r} of {self.root} has dtype {feature.get('dtype')!r}, not 'image'")
        if table is None:
            table = self.episode_table(episode_index, columns=[key])
        cells = table.column(key).to_pylist()
        return (decode_image(cell, root=self.root, column=key, frame_index=frame_index, episode_index=episode_index)
                for frame_index, cell in enumerate(cells))


def decode_image(cell: Mapping[str, Any] | None, *, root: Path | str | None = None, column: str = "image",
                 frame_index: int | None = None, episode_index: int | None = None) -> np.ndarray:
    """A parquet image cell (``{"bytes": ..., "path": ...}``) decoded with PIL.

    The bytes are decoded when present, else the file at ``path`` (relative to ``root``, the dataset root). 8-bit
    images come back as HxWx3 uint8 RGB; 16-bit single-channel PNGs (depth in mm, instance ids) as HxW uint16.
    Anything that cannot be decoded raises :class:`DatasetError` naming ``column`` and the frame.
    """
    from PIL import Image, UnidentifiedImageError

    where = f"image {column!r}" + (f" of episode {episode_index}" if episode_index is not None else "") + (
        f" frame {frame_index}" if frame_index is not None else "")
    if not isinstance(cell, Mapping):
        raise DatasetError(f"{where} is {cell!r}, not an image cell with 'bytes' and 'path'")
    data = cell.get("bytes")
    path_text = cell.get("path")
    if data is None:
        if not path_text:
            raise DatasetError(f"{where} has neither bytes nor a path")
        path = Path(path_text)
        if not path.is_absolute() and root is not None:
            path = Path(root) / path
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DatasetError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mode = image.mode
            if mode.startswith("I;16"):
                return np.asarray(image).astype(np.uint16)  # native byte order whatever the PNG's
            if mode == "I":
                # Some Pillow versions open 16-bit grayscale PNGs as 32-bit "I".
                array = np.asarray(image)
                if array.size and (array.min() < 0 or array.max() > np.iinfo(np.uint16).max):
                    raise DatasetError(f"{where} is a 32-bit integer image with values outside uint16 "
                                       f"[{int(array.min())}, {int(array.max())}]")
                return array.astype(np.uint16)
            if mode == "F":
                raise DatasetError(f"{where} is a floating-point image (mode F); only 8-bit and 16-bit integer "
                                   "images are read")
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        # PIL reports truncated or corrupt files as OSError/ValueError/SyntaxError depending on the plugin.
        source = f"{len(data)} bytes" + (f" ({path_text})" if path_text else "")
        raise DatasetError(f"{where} cannot be decoded from {source}: {exc}") from None


def write_with_column(src: LeRobotDataset, dst: Path | str, column: str, values_by_episode: Mapping[int, Any], *,
                      dtype: str = "float32", extra_bool_columns: Mapping[str, Mapping[int, Any]] | None = None,
                      overwrite: bool = False, counted_by_episode: Mapping[int, Any] | None = None) -> LeRobotDataset:
    """Write a copy of ``src`` at ``dst`` with the per-frame ``column`` (and boolean ``extra_bool_columns``) added.

    ``values_by_episode`` maps every episode index to its ``length`` values in frame order (NaN allowed: a frame
    without a value). Each data file is rewritten row group by row group with the new column(s) appended (or, with
    ``overwrite=True``, replaced in place); every other column, the row order and the schema metadata are kept.
    ``meta/info.json`` declares the new features (``shape [1]``, ``names null``) and keeps every total;
    ``meta/stats.json`` and the episodes table gain the new columns' stats, the other features' stats are kept.

    Stats follow LeRobot's ``compute_episode_stats``/``aggregate_stats`` for a 1-D feature, except that NaN values
    are left out (nan-aware: ``count`` is the number of non-NaN values; an episode without any value has count 0,
    std 0, min +inf, max -inf and the dataset's mean and quantiles, so that LeRobot's own re-aggregation of the
    episodes' rows, when it deletes or splits episodes, leaves it out). Per episode: min, max, mean, population std,
    count and the quantiles of the values with numpy's ``inverted_cdf`` method (LeRobot's histogram estimate
    converges to the same inverse CDF). Over the dataset, as LeRobot aggregates: exact min/max/mean/std over all
    values and the count-weighted mean of the episodes' quantiles. Boolean columns get the same stats of their 0/1
    values.

    ``counted_by_episode`` (per episode, one boolean per frame) says which of ``column``'s values its stats count
    (default: every non-NaN one): the others are left out as NaN is, a placeholder written where a frame has no value
    (``tsg label --invalid-reward``).

    ``dst`` must not exist, or be empty apart from a ``tsg_rewards/`` subdirectory, which is left alone. Returns the
    new dataset, opened.
    """
    dst = Path(dst)
    columns = _validated_columns(src, column, values_by_episode, dtype, extra_bool_columns or {}, overwrite)
    if counted_by_episode is not None:
        counted = _validated_values(src, f"{column} (counted)", "bool", counted_by_episode)
        values = columns[0].values
        columns[0] = dataclasses.replace(columns[0], stats_values={
            episode: np.where(counted[episode], values[episode], np.nan) for episode in values})
    _check_destination(src, dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    build = _make_build_dir(dst)
    try:
        info_pending = _build(src, build, columns)
        _move_into_place(build, dst, info_pending)
    finally:
        # After a successful move only the emptied build directory is left; after a failure, the partial build.
        shutil.rmtree(build, ignore_errors=True)
    return LeRobotDataset(dst)


# ---------------------------------------------------------------------------------------------------------------
# Reading the metadata


def _read_info(root: Path) -> dict[str, Any]:
    path = root / INFO_PATH
    if not path.is_file():
        raise DatasetError(f"{root} is not a LeRobot dataset: {path} is missing")
    info = _read_json_object(path)
    version = info.get("codebase_version")
    if not isinstance(version, str) or not version.startswith("v3."):
        hint = (f"; {version} datasets must first be converted to v3.0 with lerobot's convert script "
                f"({_V3_CONVERT_COMMAND})") if isinstance(version, str) and version.startswith("v2.") else ""
        raise DatasetError(f"{path} has codebase_version {version!r}: only LeRobot v3.x datasets are read{hint}")
    for key in ("fps", "features", "data_path", "total_episodes", "total_frames"):
        if key not in info:
            raise DatasetError(f"{path} has no {key!r}")
    fps = info["fps"]
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not fps > 0:
        raise DatasetError(f"{path} has fps {fps!r}, not a positive number")
    features = info["features"]
    if not isinstance(features, dict):
        raise DatasetError(f"{path} has 'features' of type {type(features).__name__}, not an object")
    for key, feature in features.items():
        if not isinstance(feature, dict) or "dtype" not in feature or "shape" not in feature:
            raise DatasetError(f"{path}: feature {key!r} is {feature!r}, not an object with 'dtype' and 'shape'")
    for key in ("episode_index", "frame_index"):
        if key not in features:
            raise DatasetError(f"{path} declares no {key!r} feature, which every LeRobot dataset has")
    # The path templates (LeRobot writes video_path null in a dataset without videos).
    for key, example in _PATH_TEMPLATES.items():
        template = info.get(key)
        if not isinstance(template, str) and not (key == "video_path" and template is None):
            raise DatasetError(f"{path} has {key} {template!r}, not a path template string such as {example!r}")
    try:
        _data_relpath(info, 0, 0)
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise DatasetError(f"{path} has data_path {info['data_path']!r}, not a template of chunk_index and "
                           f"file_index: {exc!r}") from None
    return info


def _data_relpath(info: Mapping[str, Any], chunk_index: int, file_index: int) -> Path:
    return Path(info["data_path"].format(chunk_index=chunk_index, file_index=file_index))


def _episode_files(root: Path) -> list[Path]:
    # The same files LeRobot loads (``load_nested_dataset``: every ``*/*.parquet`` under the directory).
    files = sorted((root / EPISODES_DIR).glob("*/*.parquet"))
    if not files:
        raise DatasetError(f"{root} has no episodes table: no {root / EPISODES_DIR}/chunk-*/file-*.parquet")
    return files


def _read_episodes(root: Path) -> list[EpisodeRecord]:
    records: list[EpisodeRecord] = []
    for path in _episode_files(root):
        try:
            names = pq.read_schema(path).names
            missing = [c for c in _EPISODE_COLUMNS if c not in names]
            if missing:
                raise DatasetError(f"episodes file {path} has no column(s) {missing}")
            table = pq.read_table(path, columns=[*_EPISODE_COLUMNS, *(["tasks"] if "tasks" in names else [])])
        except (pa.ArrowException, OSError) as exc:
            raise DatasetError(f"cannot read episodes file {path}: {exc}") from None
        rows = table.to_pylist()
        for row in rows:
            if any(row[c] is None for c in _EPISODE_COLUMNS):
                raise DatasetError(f"episodes file {path} has a null in {row}")
            records.append(EpisodeRecord(
                episode_index=int(row["episode_index"]), length=int(row["length"]),
                data_chunk_index=int(row["data/chunk_index"]), data_file_index=int(row["data/file_index"]),
                dataset_from_index=int(row["dataset_from_index"]), dataset_to_index=int(row["dataset_to_index"]),
                tasks=tuple(row.get("tasks") or ())))
    for record in records:
        if record.length < 1 or record.dataset_to_index - record.dataset_from_index != record.length:
            raise DatasetError(f"{root / EPISODES_DIR}: episode {record.episode_index} has length {record.length} "
                               f"but frame range [{record.dataset_from_index}, {record.dataset_to_index})")
    return sorted(records, key=lambda r: r.episode_index)


def _short_list(values: list[Any], limit: int = 8) -> str:
    return str(values) if len(values) <= limit else f"[{', '.join(map(str, values[:limit]))}, ...]"


# ---------------------------------------------------------------------------------------------------------------
# Validating the request


@dataclass(frozen=True)
class _NewColumn:
    name: str
    dtype: str  # "float32", "float64" or "bool"
    values: dict[int, np.ndarray]  # episode index -> values in frame order, already of ``dtype``
    # The values the stats are of (default: ``values``); a placeholder written where a frame has none is NaN here.
    stats_values: dict[int, np.ndarray] | None = None

    @property
    def arrow_type(self) -> pa.DataType:
        return pa.bool_() if self.dtype == "bool" else _VALUE_DTYPES[self.dtype]


def _validated_columns(src: LeRobotDataset, column: str, values_by_episode: Mapping[int, Any], dtype: str,
                       extra_bool_columns: Mapping[str, Mapping[int, Any]], overwrite: bool) -> list[_NewColumn]:
    if dtype not in _VALUE_DTYPES:
        raise DatasetError(f"column dtype {dtype!r} is not one of {sorted(_VALUE_DTYPES)}")
    requests = [(column, dtype, values_by_episode), *((n, "bool", v) for n, v in extra_bool_columns.items())]
    names = [name for name, _, _ in requests]
    if len(set(names)) != len(names):
        raise DatasetError(f"column names {names} repeat a name")
    columns = []
    for name, column_dtype, by_episode in requests:
        if not isinstance(name, str) or not name or "/" in name:
            # LeRobot flattens stats keys with "/" (stats/<feature>/<stat>), so feature names cannot hold one.
            raise DatasetError(f"column name {name!r} must be a non-empty string without '/'")
        if name in src.features:
            existing = src.features[name]
            if not overwrite:
                raise DatasetError(f"{src.root} already has a column {name!r} ({existing.get('dtype')}); pass "
                                   "overwrite=True to replace it")
            if name in DEFAULT_COLUMNS or existing.get("dtype") in ("image", "video", "string"):
                raise DatasetError(f"column {name!r} of {src.root} ({existing.get('dtype')}) is part of the "
                                   "recording and cannot be overwritten")
        columns.append(_NewColumn(name, column_dtype, _validated_values(src, name, column_dtype, by_episode)))
    return columns


def _validated_values(src: LeRobotDataset, name: str, dtype: str,
                      by_episode: Mapping[int, Any]) -> dict[int, np.ndarray]:
    expected = {episode.episode_index for episode in src.episodes}
    given = set(by_episode)
    if given - expected:
        raise DatasetError(f"column {name!r}: values given for episode(s) {_short_list(sorted(given - expected))} "
                           f"that {src.root} does not have")
    if expected - given:
        raise DatasetError(f"column {name!r}: no values for episode(s) {_short_list(sorted(expected - given))} "
                           f"of {src.root}; every episode needs one value per frame")
    out = {}
    for episode in src.episodes:
        raw = np.asarray(by_episode[episode.episode_index])
        if raw.ndim == 2 and raw.shape[1] == 1:
            raw = raw[:, 0]
        if raw.ndim != 1 or raw.shape[0] != episode.length:
            raise DatasetError(f"column {name!r}: episode {episode.episode_index} has length {episode.length} but "
                               f"{raw.shape[0] if raw.ndim == 1 else f'shape {raw.shape}'} values were given")
        if dtype == "bool":
            if raw.dtype != np.bool_:
                raise DatasetError(f"column {name!r}: episode {episode.episode_index} values have dtype "
                                   f"{raw.dtype}, not bool")
            out[episode.episode_index] = raw
            continue
        if not (np.issubdtype(raw.dtype, np.floating) or np.issubdtype(raw.dtype, np.integer)):
            raise DatasetError(f"column {name!r}: episode {episode.episode_index} values have dtype {raw.dtype}, "
                               "not numbers")
        values = raw.astype(dtype)
        infinite = np.flatnonzero(np.isinf(values))
        if infinite.size:
            # An infinite value would make the stats (mean, std) infinite and break normalisation; NaN is the
            # marker for "no value".
            raise DatasetError(f"column {name!r}: episode {episode.episode_index} frame {int(infinite[0])} is "
                               f"{values[infinite[0]]}; use NaN for a frame without a value")
        out[episode.episode_index] = values
    if dtype != "bool" and all(np.isnan(v).all() for v in out.values()):
        raise DatasetError(f"column {name!r}: every value is NaN, so there are no stats to write")
    return out


def _check_destination(src: LeRobotDataset, dst: Path) -> None:
    source = src.root.resolve()
    target = dst.resolve()
    if target == source or source in target.parents:
        raise DatasetError(f"destination {dst} is inside the source dataset {src.root}; write to a new directory")
    if dst.exists():
        if not dst.is_dir():
            raise DatasetError(f"destination {dst} exists and is not a directory")
        others = sorted(p.name for p in dst.iterdir() if p.name != LABELLER_SUBDIR)
        if others:
            raise DatasetError(f"destination {dst} is not empty (holds {_short_list(others)}); remove it or choose "
                               "a new directory")


# ---------------------------------------------------------------------------------------------------------------
# Writing


def _build(src: LeRobotDataset, build: Path, columns: list[_NewColumn]) -> Path:
    """Write the whole new dataset into ``build``; ``meta/info.json`` goes to the returned side path, to be moved
    into place last."""
    episode_stats, dataset_stats = {}, {}
    for column in columns:
        episode_stats[column.name], dataset_stats[column.name] = _column_stats(
            column.values if column.stats_values is None else column.stats_values)
    _write_data_files(src, build, columns)
    _write_episode_files(src, build, episode_stats)
    stats_path = src.root / STATS_PATH
    if stats_path.is_file():
        # Without a stats.json in the source none is written: a file holding only the new columns' stats would
        # make LeRobot miss every other feature's.
        stats = _read_json_object(stats_path)
        stats.update(dataset_stats)
        _write_json(build / STATS_PATH, stats)
    info = json.loads(json.dumps(src.info))  # a deep copy, with the source's key order
    for column in columns:
        info["features"][column.name] = {"dtype": column.dtype, "shape": [1], "names": None}
    _copy_other_files(src.root, build)
    info_pending = build / "info.json.pending"
    _write_json(info_pending, info)
    return info_pending


def _write_data_files(src: LeRobotDataset, build: Path, columns: list[_NewColumn]) -> None:
    files = src.data_files()
    lengths = {e.episode_index: e.length for e in src.episodes}
    by_file: dict[Path, set[int]] = {}
    for episode in src.episodes:
        by_file.setdefault(src.data_file(episode.episode_index), set()).add(episode.episode_index)
    # LeRobot loads every parquet file under data/: one the episodes do not refer to would lack the new column.
    stray = sorted(set((src.root / "data").rglob("*.parquet")) - set(files))
    if stray:
        raise DatasetError(f"data file(s) {[str(p) for p in stray]} of {src.root} belong to no episode")
    for path in files:
        try:
            parquet = pq.ParquetFile(path)
            index = parquet.read(columns=["episode_index", "frame_index"])
        except (pa.ArrowException, OSError) as exc:
            raise DatasetError(f"cannot read data file {path}: {exc}") from None
        episode_of_row = index.column("episode_index").to_numpy()
        frame_of_row = index.column("frame_index").to_numpy()
        _check_file_rows(path, episode_of_row, frame_of_row, by_file[path], lengths)
        schema = parquet.schema_arrow
        new_arrays = {}
        for column in columns:
            values = np.empty(len(episode_of_row), dtype=column.values[next(iter(column.values))].dtype)
            for episode_index in by_file[path]:
                rows = episode_of_row == episode_index
                values[rows] = column.values[episode_index][frame_of_row[rows]]
            new_arrays[column.name] = values
            field = pa.field(column.name, column.arrow_type)
            position = schema.get_field_index(column.name)
            schema = schema.set(position, field) if position >= 0 else schema.append(field)
        schema = schema.with_metadata(_hf_metadata_with(schema.metadata, path, columns))
        target = build / path.relative_to(src.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Row group by row group, so the file keeps LeRobot's one-row-group-per-episode layout.
        with pq.ParquetWriter(target, schema, compression=_compression_of(parquet)) as writer:
            start = 0
            for group in range(parquet.num_row_groups):
                table = parquet.read_row_group(group)
                stop = start + table.num_rows
                for column in columns:
                    array = pa.array(new_arrays[column.name][start:stop], type=column.arrow_type)
                    position = table.schema.get_field_index(column.name)
                    field = schema.field(column.name)
                    table = (table.set_column(position, field, array) if position >= 0
                             else table.append_column(field, array))
                writer.write_table(table)
                start = stop


def _check_file_rows(path: Path, episode_of_row: np.ndarray, frame_of_row: np.ndarray, episodes: set[int],
                     lengths: Mapping[int, int]) -> None:
    found = set(np.unique(episode_of_row).tolist())
    if found - episodes:
        raise DatasetError(f"data file {path} holds rows of episode(s) {_short_list(sorted(found - episodes))} "
                           "that the episodes table places in another file")
    for episode_index in sorted(episodes):
        frames = np.sort(frame_of_row[episode_of_row == episode_index])
        if not np.array_equal(frames, np.arange(lengths[episode_index])):
            raise DatasetError(f"data file {path} holds {frames.size} rows of episode {episode_index} but the "
                               f"episode has length {lengths[episode_index]}: frames 0..{lengths[episode_index] - 1} "
                               "are expected once each")


def _hf_metadata_with(metadata: Mapping[bytes, bytes] | None, path: Path,
                      columns: list[_NewColumn]) -> dict[bytes, bytes]:
    """The schema metadata with the new columns added to the ``datasets`` features it records, if any."""
    out = dict(metadata or {})
    if b"huggingface" not in out:
        return out
    try:
        hf = json.loads(out[b"huggingface"])
        features = hf["info"]["features"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DatasetError(f"data file {path} has unreadable 'huggingface' schema metadata: {exc!r}") from None
    for column in columns:
        features[column.name] = {"dtype": column.dtype, "_type": "Value"}
    out[b"huggingface"] = json.dumps(hf).encode()
    return out


def _write_episode_files(src: LeRobotDataset, build: Path, episode_stats: Mapping[str, Mapping[int, dict]]) -> None:
    for path in _episode_files(src.root):
        try:
            parquet = pq.ParquetFile(path)
            table = parquet.read()
        except (pa.ArrowException, OSError) as exc:
            raise DatasetError(f"cannot read episodes file {path}: {exc}") from None
        episode_of_row = table.column("episode_index").to_pylist()
        for name, by_episode in episode_stats.items():
            # Replaced columns (overwrite) are dropped, then all stats columns of the feature are added after the
            # last stats column, where LeRobot groups them.
            prefix = f"stats/{name}/"
            table = table.drop_columns([c for c in table.column_names if c.startswith(prefix)])
            stats_positions = [i for i, c in enumerate(table.column_names) if c.startswith("stats/")]
            position = stats_positions[-1] + 1 if stats_positions else table.num_columns
            for key in ("min", "max", "mean", "std", "count", *QUANTILE_KEYS):
                item_type = pa.int64() if key == "count" else pa.float64()
                cells = [[by_episode[e][key]] for e in episode_of_row]
                table = table.add_column(position, pa.field(prefix + key, pa.list_(item_type)),
                                         pa.array(cells, type=pa.list_(item_type)))
                position += 1
        target = build / path.relative_to(src.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, target, compression=_compression_of(parquet))


def _column_stats(values_by_episode: Mapping[int, np.ndarray]) -> tuple[dict[int, dict[str, float | int]],
                                                                        dict[str, list[float] | list[int]]]:
    """Per episode and over the dataset: min, max, mean, std, count and the quantiles of the non-NaN values.

    An episode without any value gets count 0, std 0, min +inf, max -inf and the dataset's mean and quantiles:
    LeRobot's ``aggregate_stats`` (run by its ``delete_episodes``/``split_dataset`` over a subset of the episodes'
    rows) weights mean, std and quantiles by count, where NaN would poison the sum (NaN * 0 is NaN), and takes the
    min of mins and max of maxes, which only +inf/-inf leave unchanged for every subset: the dataset's extremes would
    come back after deleting the episode that holds them."""
    by_episode = {e: _episode_stats(v) for e, v in values_by_episode.items()}
    overall = _aggregate_stats(values_by_episode, by_episode)
    stand_in = {"min": math.inf, "max": -math.inf, "mean": overall["mean"][0], "std": 0.0,
                "count": 0, **{key: overall[key][0] for key in QUANTILE_KEYS}}
    return {e: stats if stats["count"] else stand_in for e, stats in by_episode.items()}, overall


def _episode_stats(values: np.ndarray) -> dict[str, float | int]:
    finite = values[~np.isnan(values)].astype(np.float64) if values.dtype != np.bool_ else values.astype(np.float64)
    if finite.size == 0:
        return {"count": 0}  # replaced by the dataset's values in _column_stats
    quantiles = np.quantile(finite, QUANTILES, method="inverted_cdf")
    return {"min": float(finite.min()), "max": float(finite.max()), "mean": float(finite.mean()),
            "std": float(finite.std()), "count": int(finite.size),
            **{key: float(q) for key, q in zip(QUANTILE_KEYS, quantiles, strict=True)}}


def _aggregate_stats(values_by_episode: Mapping[int, np.ndarray],
                     episode_stats: Mapping[int, Mapping[str, float | int]]) -> dict[str, list[float] | list[int]]:
    parts = [v[~np.isnan(v)] if v.dtype != np.bool_ else v for v in values_by_episode.values()]
    every = np.concatenate(parts).astype(np.float64)  # not empty: checked by _validated_values
    counted = [s for s in episode_stats.values() if s["count"]]
    counts = np.array([s["count"] for s in counted], dtype=np.float64)
    out: dict[str, list[float] | list[int]] = {
        "min": [float(every.min())], "max": [float(every.max())], "mean": [float(every.mean())],
        "std": [float(every.std())], "count": [int(every.size)]}
    for key in QUANTILE_KEYS:
        out[key] = [float(np.dot(counts, [s[key] for s in counted]) / counts.sum())]
    return out


def _copy_other_files(root: Path, build: Path) -> None:
    """Everything but data/, meta/info.json, meta/stats.json and the episodes table (written anew): videos are
    hard-linked, other files (tasks, README, ...) copied. :data:`UNCOPIED_ENTRIES` are left behind. Symlinks are
    followed, to directories (videos/ kept on another disk) and to files (a Hugging Face cache snapshot, whose files
    all point into its blobs/): the output holds what they point to."""
    rewritten = {INFO_PATH, STATS_PATH}
    paths: list[Path] = []
    for entry in sorted(root.iterdir()):  # top level first: the skipped trees (a .git's copies) are not walked
        if entry.name != "data" and entry.name not in UNCOPIED_ENTRIES:
            paths += _files_under(entry)
    for path in paths:
        relative = path.relative_to(root)
        top = relative.parts[0]
        if relative in rewritten or EPISODES_DIR in relative.parents:
            continue
        if not path.exists():
            raise DatasetError(f"{path} is a broken symlink (to {os.readlink(path)!r}): the dataset's file is missing, "
                               "so it cannot be copied into the labelled dataset")
        target = build / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if top == "videos":
            _link_or_copy(path, target)
        else:
            shutil.copy2(path, target)


def _files_under(entry: Path) -> list[Path]:
    """``entry`` when it is not a directory, else the files under it (sorted by directory), with symlinked
    directories walked as the directories they stand for (``Path.rglob`` does not enter them before Python 3.13);
    a directory met again through a symlink loop is not walked twice."""
    if not entry.is_dir():
        return [entry]
    files: list[Path] = []
    walked: set[str] = set()
    for directory, subdirectories, names in os.walk(entry, followlinks=True):
        real = os.path.realpath(directory)
        if real in walked:
            subdirectories.clear()
            continue
        walked.add(real)
        subdirectories.sort()
        files += [Path(directory) / name for name in sorted(names)]
    return files


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        # The file itself: link(2) (what os.link calls on Linux) links a symlink, not its target, and a relative
        # symlink (a Hugging Face cache's, into ../../blobs) would dangle from the target's directory.
        os.link(os.path.realpath(source), target)
    except OSError:
        # Another filesystem (EXDEV), or one without hard links: copy the bytes instead.
        shutil.copy2(source, target)


def build_dir_prefix(dst: Path) -> str:
    """The name every build directory of ``dst`` starts with (an interrupted write leaves one to clear away)."""
    return f".{dst.name}.tsg-tmp-"


def _make_build_dir(dst: Path) -> Path:
    """An empty directory next to ``dst`` (same filesystem, so moving out of it is a rename), created with the
    default permissions (``tempfile.mkdtemp`` would make it, and so the renamed dataset, private)."""
    for _ in range(100):
        build = dst.parent / f"{build_dir_prefix(dst)}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            build.mkdir()
        except FileExistsError:
            continue
        return build
    raise DatasetError(f"cannot create a temporary directory next to {dst}")


def _move_into_place(build: Path, dst: Path, info_pending: Path) -> None:
    """Move the finished build to ``dst`` so that an interrupted move leaves no directory with ``meta/info.json``.

    A new ``dst`` is one rename of the whole build; into an existing ``dst`` (holding ``tsg_rewards/``) the entries
    are moved one by one and ``meta/info.json`` last. The files and renames are flushed to disk before
    ``meta/info.json`` is put in place: the kernel may write a rename before the data it names, so after a power cut
    the dataset could otherwise look complete with its data files missing or empty.
    """
    fsync_tree(build)
    if not dst.exists():
        os.replace(info_pending, build / INFO_PATH)
        fsync_dir(build / INFO_PATH.parent)
        os.rename(build, dst)
        fsync_dir(dst.parent)
        return
    for entry in sorted(build.iterdir()):
        if entry != info_pending:
            os.replace(entry, dst / entry.name)
    fsync_dir(dst)
    os.replace(info_pending, dst / INFO_PATH)
    fsync_dir(dst / INFO_PATH.parent)


def _compression_of(parquet: pq.ParquetFile) -> str:
    """The source file's codec (LeRobot writes snappy), as ``pq.ParquetWriter`` names it."""
    if not parquet.num_row_groups or not parquet.metadata.num_columns:
        return "snappy"
    codec = parquet.metadata.row_group(0).column(0).compression.upper()
    return {"UNCOMPRESSED": "none", "LZ4_RAW": "lz4"}.get(codec, codec.lower())


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path} holds a JSON {type(data).__name__}, not an object")
    return data


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # LeRobot's own formatting (write_json: indent 4, UTF-8 kept).
    path.write_text(json.dumps(data, indent=4, ensure_ascii=False), encoding="utf-8")
