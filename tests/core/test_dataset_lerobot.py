"""LeRobot v3 datasets: the read-only view, image decoding and the copy with a reward column added.

The written dataset must load the way LeRobot loads it (``datasets`` with features built from ``info.json``), keep
every other column, stat and file as it was, never touch the source and never look complete when unfinished.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from lerobot_data import ACTION, FRONT, FRONT_DEPTH, STATE, WRIST, BuiltDataset, build_lerobot_dataset

from trusted_scene_graph.dataset import DatasetError
from trusted_scene_graph.dataset import lerobot as lerobot_module
from trusted_scene_graph.dataset.lerobot import (
    QUANTILE_KEYS,
    QUANTILES,
    LeRobotDataset,
    decode_image,
    write_with_column,
)

REWARD = "tsg.reward"
LENGTHS = (3, 4, 2)


@pytest.fixture
def built(tmp_path: Path) -> BuiltDataset:
    return build_lerobot_dataset(tmp_path / "src", episode_lengths=LENGTHS)


def _rewards(lengths: tuple[int, ...] = LENGTHS, seed: int = 0) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    values = {e: rng.uniform(-1.0, 0.0, n).astype(np.float32) for e, n in enumerate(lengths)}
    values[1][2] = np.nan  # a frame without a reward
    return values


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _hf_features(features: dict) -> object:
    """LeRobot's get_hf_features_from_features: the ``datasets`` features LeRobot loads the data files with."""
    import datasets

    out = {}
    for key, feature in features.items():
        shape = tuple(feature["shape"])
        if feature["dtype"] == "video":
            continue
        if feature["dtype"] == "image":
            out[key] = datasets.Image()
        elif shape == (1,):
            out[key] = datasets.Value(feature["dtype"])
        elif len(shape) == 1:
            out[key] = datasets.Sequence(length=shape[0], feature=datasets.Value(feature["dtype"]))
        else:
            out[key] = getattr(datasets, f"Array{len(shape)}D")(shape=shape, dtype=feature["dtype"])
    return datasets.Features(out)


# --- reading ---------------------------------------------------------------------------------------------------


def test_opening_reads_fps_features_and_where_each_episode_is(built: BuiltDataset) -> None:
    dataset = LeRobotDataset(built.root)
    assert dataset.fps == 10
    assert dataset.features[STATE]["shape"] == [6]
    assert dataset.image_keys == [FRONT, FRONT_DEPTH]
    assert dataset.video_keys == [WRIST]
    assert [(e.episode_index, e.length, e.data_file_index, e.dataset_from_index, e.dataset_to_index)
            for e in dataset.episodes] == [(0, 3, 0, 0, 3), (1, 4, 0, 3, 7), (2, 2, 1, 7, 9)]
    assert dataset.episodes[1].tasks == ("put the cube in the bowl",)
    assert dataset.data_file(2) == built.root / "data/chunk-000/file-001.parquet"


def test_is_dataset_tells_a_lerobot_dataset_from_a_bag_or_an_empty_directory(built: BuiltDataset,
                                                                             tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    bag.mkdir()
    (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    assert LeRobotDataset.is_dataset(built.root)
    assert not LeRobotDataset.is_dataset(bag)
    assert not LeRobotDataset.is_dataset(tmp_path / "missing")


@pytest.mark.parametrize("chunks_size", [1000, 1])
def test_episode_table_returns_each_episodes_frames_in_order_from_its_file(tmp_path: Path, chunks_size: int) -> None:
    built = build_lerobot_dataset(tmp_path / "src", episode_lengths=LENGTHS, chunks_size=chunks_size)
    dataset = LeRobotDataset(built.root)
    for episode in dataset.episodes:
        table = dataset.episode_table(episode.episode_index)
        assert table.column("frame_index").to_pylist() == list(range(episode.length))
        assert set(table.column("episode_index").to_pylist()) == {episode.episode_index}
        assert table.column("index").to_pylist() == list(range(episode.dataset_from_index,
                                                                episode.dataset_to_index))
        np.testing.assert_array_equal(np.stack(table.column(STATE).to_numpy(zero_copy_only=False)),
                                      np.stack([f.state for f in built.frames[episode.episode_index]]))
    if chunks_size == 1:  # the second file went to the next chunk, as LeRobot numbers them
        assert dataset.data_file(2) == built.root / "data/chunk-001/file-000.parquet"


def test_episode_table_sorts_rows_stored_out_of_order(built: BuiltDataset) -> None:
    path = built.root / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    pq.write_table(table.take(np.arange(table.num_rows)[::-1]), path)
    frames = LeRobotDataset(built.root).episode_table(1, columns=["frame_index", ACTION])
    assert frames.column_names == ["frame_index", ACTION]
    assert frames.column("frame_index").to_pylist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(np.stack(frames.column(ACTION).to_numpy(zero_copy_only=False)),
                                  np.stack([f.action for f in built.frames[1]]))


@pytest.mark.parametrize("embed_images", [True, False])
def test_episode_images_decode_rgb_and_16_bit_depth_from_bytes_or_paths(tmp_path: Path, embed_images: bool) -> None:
    built = build_lerobot_dataset(tmp_path / "src", episode_lengths=LENGTHS, embed_images=embed_images)
    dataset = LeRobotDataset(built.root)
    rgb = list(dataset.episode_images(2, FRONT))
    depth = list(dataset.episode_images(2, FRONT_DEPTH))
    assert len(rgb) == len(depth) == 2
    for image, frame in zip(rgb, built.frames[2], strict=True):
        assert image.dtype == np.uint8
        np.testing.assert_array_equal(image, frame.rgb)
    for image, frame in zip(depth, built.frames[2], strict=True):
        assert image.dtype == np.uint16 and image.shape == (6, 8)
        np.testing.assert_array_equal(image, frame.depth_mm)


def test_decode_image_reads_32_bit_integer_images_in_the_uint16_range(tmp_path: Path) -> None:
    # Older Pillow versions open 16-bit grayscale PNGs as 32-bit "I" images; a TIFF gives the same mode.
    from PIL import Image

    ids = np.array([[0, 7], [65535, 300]], dtype=np.int32)
    buffer = io.BytesIO()
    Image.fromarray(ids).save(buffer, format="TIFF")
    decoded = decode_image({"bytes": buffer.getvalue(), "path": None}, column="ids")
    assert decoded.dtype == np.uint16
    np.testing.assert_array_equal(decoded, ids)
    buffer = io.BytesIO()
    Image.fromarray(ids + 70000).save(buffer, format="TIFF")
    with pytest.raises(DatasetError, match=r"image 'ids' frame 3 is a 32-bit integer image with values outside"):
        decode_image({"bytes": buffer.getvalue(), "path": None}, column="ids", frame_index=3)


def test_decode_image_errors_name_the_column_and_frame(tmp_path: Path) -> None:
    from PIL import Image

    with pytest.raises(DatasetError, match=r"image 'cam' of episode 2 frame 5 cannot be decoded from 9 bytes"):
        decode_image({"bytes": b"not a png", "path": "frame-000005.png"}, column="cam", frame_index=5,
                     episode_index=2)
    with pytest.raises(DatasetError, match=r"image 'cam' frame 1 is None, not an image cell"):
        decode_image(None, column="cam", frame_index=1)
    with pytest.raises(DatasetError, match=r"image 'cam' frame 1 has neither bytes nor a path"):
        decode_image({"bytes": None, "path": None}, column="cam", frame_index=1)
    with pytest.raises(DatasetError, match=r"image 'cam' frame 1: cannot read .*images/x.png"):
        decode_image({"bytes": None, "path": "images/x.png"}, root=tmp_path, column="cam", frame_index=1)
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((2, 2), np.float32)).save(buffer, format="TIFF")
    with pytest.raises(DatasetError, match=r"image 'cam' frame 0 is a floating-point image \(mode F\)"):
        decode_image({"bytes": buffer.getvalue(), "path": None}, column="cam", frame_index=0)


def test_episode_images_of_a_corrupt_cell_name_the_column_and_frame(built: BuiltDataset) -> None:
    path = built.root / "data/chunk-000/file-001.parquet"
    table = pq.read_table(path)
    cells = table.column(FRONT).to_pylist()
    cells[1] = {"bytes": b"\x89PNG broken", "path": "frame-000001.png"}
    position = table.schema.get_field_index(FRONT)
    pq.write_table(table.set_column(position, table.schema.field(FRONT), pa.array(cells, table.schema.field(
        FRONT).type)), path)
    images = LeRobotDataset(built.root).episode_images(2, FRONT)
    next(images)
    with pytest.raises(DatasetError, match=rf"image '{FRONT}' of episode 2 frame 1 cannot be decoded"):
        next(images)


def test_video_stored_cameras_are_not_decoded(built: BuiltDataset) -> None:
    dataset = LeRobotDataset(built.root)
    with pytest.raises(DatasetError, match=rf"camera '{WRIST}' .* is stored as video; only image-stored cameras"):
        dataset.episode_images(0, WRIST)
    with pytest.raises(DatasetError, match=r"has no camera 'observation.images.top'"):
        dataset.episode_images(0, "observation.images.top")
    with pytest.raises(DatasetError, match=rf"feature '{STATE}' .* has dtype 'float32', not 'image'"):
        dataset.episode_images(0, STATE)


def test_opening_refuses_a_directory_that_is_not_a_v3_dataset(built: BuiltDataset, tmp_path: Path) -> None:
    info_path = built.root / "meta/info.json"
    info = json.loads(info_path.read_text())
    with pytest.raises(DatasetError, match=r"is not a LeRobot dataset: .*meta/info.json is missing"):
        LeRobotDataset(tmp_path)
    with pytest.raises(DatasetError, match=r"not a directory"):
        LeRobotDataset(tmp_path / "missing")
    info_path.write_text("{not json")
    with pytest.raises(DatasetError, match=r"cannot read .*meta/info.json: Expecting property name"):
        LeRobotDataset(built.root)
    info_path.write_text(json.dumps({**info, "codebase_version": "v2.1"}))
    with pytest.raises(DatasetError, match=r"codebase_version 'v2.1': only LeRobot v3.x datasets are read; v2.1 "
                                           r"datasets must first be converted to v3.0 with lerobot's convert script "
                                           r"\(python -m lerobot.datasets.v30.convert_dataset_v21_to_v30"):
        LeRobotDataset(built.root)
    info_path.write_text(json.dumps({**info, "fps": 0}))
    with pytest.raises(DatasetError, match=r"has fps 0, not a positive number"):
        LeRobotDataset(built.root)
    info_path.write_text(json.dumps({**info, "total_frames": 10}))
    with pytest.raises(DatasetError, match=r"says total_frames=10 but the episodes .* add up to 9 frames"):
        LeRobotDataset(built.root)
    info_path.write_text(json.dumps({k: v for k, v in info.items() if k != "data_path"}))
    with pytest.raises(DatasetError, match=r"meta/info.json has no 'data_path'"):
        LeRobotDataset(built.root)


@pytest.mark.parametrize(("edit", "match"), [
    ({"data_path": None}, r"has data_path None, not a path template string such as "
                          r"'data/chunk-\{chunk_index:03d\}/file-\{file_index:03d\}.parquet'"),
    ({"data_path": 7}, r"has data_path 7, not a path template string"),
    ({"video_path": ["videos"]}, r"has video_path \['videos'\], not a path template string such as 'videos/"),
    ({"total_episodes": "3"}, r"says total_episodes='3' but .* lists 3 episodes"),
    ({"total_frames": "9"}, r"says total_frames='9' but the episodes .* add up to 9 frames"),
])
def test_a_corrupt_info_json_field_is_refused_naming_the_field_and_its_value(built: BuiltDataset, edit: dict,
                                                                             match: str) -> None:
    info_path = built.root / "meta/info.json"
    info_path.write_text(json.dumps({**json.loads(info_path.read_text()), **edit}))
    with pytest.raises(DatasetError, match=match):
        LeRobotDataset(built.root)


def test_a_dataset_without_videos_may_have_a_null_video_path(tmp_path: Path) -> None:
    built = build_lerobot_dataset(tmp_path / "src", with_video=False)
    assert json.loads((built.root / "meta/info.json").read_text())["video_path"] is None
    assert LeRobotDataset(built.root).video_keys == []


def test_opening_refuses_a_missing_data_file(built: BuiltDataset) -> None:
    (built.root / "data/chunk-000/file-001.parquet").unlink()
    with pytest.raises(DatasetError, match=r"data file .*data/chunk-000/file-001.parquet of episode 2 is missing"):
        LeRobotDataset(built.root)


def test_a_data_file_missing_frames_of_an_episode_is_reported(built: BuiltDataset, tmp_path: Path) -> None:
    path = built.root / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    pq.write_table(table.slice(1), path)  # drops frame 0 of episode 0
    dataset = LeRobotDataset(built.root)
    with pytest.raises(DatasetError, match=r"file-000.parquet holds 2 rows of episode 0 .* but the episode has "
                                           r"length 3: frames 0..2 are expected"):
        dataset.episode_table(0)
    with pytest.raises(DatasetError, match=r"file-000.parquet holds 2 rows of episode 0 but the episode has length 3"):
        write_with_column(dataset, tmp_path / "dst", REWARD, _rewards())
    assert not (tmp_path / "dst").exists()


# --- writing ---------------------------------------------------------------------------------------------------


def test_written_dataset_has_the_reward_per_frame_and_everything_else_unchanged(built: BuiltDataset,
                                                                                tmp_path: Path) -> None:
    before = _tree_digest(built.root)
    source = LeRobotDataset(built.root)
    rewards = _rewards()
    written = write_with_column(source, tmp_path / "dst", REWARD, rewards)

    assert _tree_digest(built.root) == before  # the source is never modified
    assert written.root == tmp_path / "dst"
    assert written.features[REWARD] == {"dtype": "float32", "shape": [1], "names": None}
    assert list(written.features)[:-1] == list(source.features)
    assert {k: v for k, v in written.info.items() if k != "features"} == {
        k: v for k, v in source.info.items() if k != "features"}
    assert written.episodes == source.episodes
    for episode in written.episodes:
        column = written.episode_table(episode.episode_index, columns=[REWARD]).column(REWARD)
        assert column.type == pa.float32()
        np.testing.assert_array_equal(column.to_numpy(), rewards[episode.episode_index])
    for src_file in source.data_files():
        dst_file = written.root / src_file.relative_to(built.root)
        src_table, dst_table = pq.read_table(src_file), pq.read_table(dst_file)
        assert dst_table.column_names == [*src_table.column_names, REWARD]
        assert dst_table.drop_columns([REWARD]).equals(src_table)  # same values, types and row order
        assert pq.ParquetFile(dst_file).num_row_groups == pq.ParquetFile(src_file).num_row_groups
        src_hf = json.loads(src_table.schema.metadata[b"huggingface"])
        dst_hf = json.loads(dst_table.schema.metadata[b"huggingface"])
        assert dst_hf["info"]["features"] == {**src_hf["info"]["features"],
                                              REWARD: {"dtype": "float32", "_type": "Value"}}
    for relative in ("meta/tasks.parquet", "README.md"):
        assert (written.root / relative).read_bytes() == (built.root / relative).read_bytes()


@pytest.mark.parametrize("loader", ["load_dataset", "from_parquet"])
def test_written_dataset_loads_the_way_lerobot_loads_it(built: BuiltDataset, tmp_path: Path, loader: str) -> None:
    import datasets

    rewards = _rewards()
    written = write_with_column(LeRobotDataset(built.root), tmp_path / "dst", REWARD, rewards)
    files = [str(p) for p in sorted((written.root / "data").glob("*/*.parquet"))]
    features = _hf_features(written.info["features"])
    if loader == "load_dataset":
        loaded = datasets.load_dataset("parquet", data_files=files, features=features, split="train",
                                       cache_dir=str(tmp_path / "hf-cache"))
    else:  # what LeRobot's load_nested_dataset does today
        loaded = datasets.Dataset.from_parquet(files, features=features, cache_dir=str(tmp_path / "hf-cache"))
    assert loaded.features[REWARD] == datasets.Value("float32")
    assert len(loaded) == written.total_frames
    for row_number, (episode, frame, reward) in enumerate(zip(loaded["episode_index"], loaded["frame_index"],
                                                              loaded[REWARD], strict=True)):
        np.testing.assert_array_equal(np.float32(reward), rewards[episode][frame], err_msg=f"row {row_number}")
    first = loaded[0]  # images decode through datasets' Image feature, as LeRobot reads them
    np.testing.assert_array_equal(np.asarray(first[FRONT]), built.frames[0][0].rgb)
    np.testing.assert_array_equal(np.asarray(first[FRONT_DEPTH]), built.frames[0][0].depth_mm)


def test_written_stats_are_nan_aware_and_the_other_features_stats_are_kept(built: BuiltDataset,
                                                                           tmp_path: Path) -> None:
    rewards = _rewards()
    rewards[2][:] = np.nan  # an episode without any reward
    written = write_with_column(LeRobotDataset(built.root), tmp_path / "dst", REWARD, rewards)

    src_stats = json.loads((built.root / "meta/stats.json").read_text())
    dst_stats = json.loads((written.root / "meta/stats.json").read_text())
    assert {k: v for k, v in dst_stats.items() if k != REWARD} == src_stats
    every = np.concatenate([v[~np.isnan(v)] for v in rewards.values()]).astype(np.float64)
    stats = dst_stats[REWARD]
    assert stats["count"] == [every.size] == [3 + 3]
    np.testing.assert_allclose([stats["min"][0], stats["max"][0], stats["mean"][0], stats["std"][0]],
                               [every.min(), every.max(), every.mean(), every.std()], rtol=1e-12)
    # Over the dataset LeRobot averages the episodes' quantiles weighted by their counts.
    counts = np.array([3, 3])
    per_episode = np.array([np.quantile(rewards[e][~np.isnan(rewards[e])].astype(np.float64), QUANTILES,
                                        method="inverted_cdf") for e in (0, 1)])
    np.testing.assert_allclose([stats[k][0] for k in QUANTILE_KEYS], counts @ per_episode / counts.sum(),
                               rtol=1e-12)

    src_episodes = pq.read_table(built.root / "meta/episodes/chunk-000/file-000.parquet")
    dst_episodes = pq.read_table(written.root / "meta/episodes/chunk-000/file-000.parquet")
    added = [c for c in dst_episodes.column_names if c not in src_episodes.column_names]
    assert added == [f"stats/{REWARD}/{k}" for k in ("min", "max", "mean", "std", "count", *QUANTILE_KEYS)]
    assert dst_episodes.drop_columns(added).equals(src_episodes)
    assert dst_episodes.schema.field(f"stats/{REWARD}/count").type == pa.list_(pa.int64())
    rows = dst_episodes.to_pylist()
    for episode in (0, 1):
        finite = rewards[episode][~np.isnan(rewards[episode])].astype(np.float64)
        assert rows[episode][f"stats/{REWARD}/count"] == [finite.size]
        np.testing.assert_allclose(rows[episode][f"stats/{REWARD}/mean"], [finite.mean()], rtol=1e-12)
        np.testing.assert_allclose(rows[episode][f"stats/{REWARD}/std"], [finite.std()], rtol=1e-12)
        np.testing.assert_allclose(rows[episode][f"stats/{REWARD}/q50"],
                                   [np.quantile(finite, 0.5, method="inverted_cdf")], rtol=1e-12)
    # The episode without a reward: count 0, std 0, min +inf, max -inf and the dataset's values, which LeRobot's
    # aggregation leaves out.
    assert rows[2][f"stats/{REWARD}/count"] == [0] and rows[2][f"stats/{REWARD}/std"] == [0.0]
    assert rows[2][f"stats/{REWARD}/min"] == [np.inf] and rows[2][f"stats/{REWARD}/max"] == [-np.inf]
    for key in ("mean", *QUANTILE_KEYS):
        assert rows[2][f"stats/{REWARD}/{key}"] == stats[key]


def _lerobot_aggregate(rows: list[dict], feature: str) -> dict[str, np.ndarray]:
    """LeRobot's compute_stats.aggregate_feature_stats (src/lerobot/datasets/compute_stats.py), which its
    delete_episodes and split_dataset run over the episodes' ``stats/<feature>/...`` rows to rebuild stats.json."""
    stats = [{k: np.asarray(row[f"stats/{feature}/{k}"], np.float64) for k in ("min", "max", "mean", "std", "count",
                                                                             *QUANTILE_KEYS)} for row in rows]
    means, variances = np.stack([s["mean"] for s in stats]), np.stack([s["std"] ** 2 for s in stats])
    counts = np.stack([s["count"] for s in stats])
    total_count = counts.sum(axis=0)
    total_mean = (means * counts).sum(axis=0) / total_count
    total_variance = ((variances + (means - total_mean) ** 2) * counts).sum(axis=0) / total_count
    out = {"min": np.min(np.stack([s["min"] for s in stats]), axis=0),
           "max": np.max(np.stack([s["max"] for s in stats]), axis=0),
           "mean": total_mean, "std": np.sqrt(total_variance), "count": total_count}
    for key in QUANTILE_KEYS:
        out[key] = (np.stack([s[key] for s in stats]) * counts).sum(axis=0) / total_count
    return out


def test_lerobots_own_aggregation_of_the_episode_stats_gives_stats_json_also_with_an_episode_without_values(
        built: BuiltDataset, tmp_path: Path) -> None:
    import datasets

    rewards = _rewards()
    rewards[1][:] = np.nan  # e.g. the object never seen in episode 1
    rewards[2][:2] = (-5.0, 9.0)  # the dataset's extremes, in the episode deleted below
    written = write_with_column(LeRobotDataset(built.root), tmp_path / "dst", REWARD, rewards)
    episodes_file = written.root / "meta/episodes/chunk-000/file-000.parquet"
    rows = sorted(pq.read_table(episodes_file).to_pylist(), key=lambda row: row["episode_index"])
    # LeRobot's load_episodes reads this table with datasets: the count-0 episode's +inf/-inf load as they are.
    loaded = datasets.Dataset.from_parquet(str(episodes_file), cache_dir=str(tmp_path / "hf-cache"))
    assert loaded[1][f"stats/{REWARD}/min"] == [np.inf] and loaded[1][f"stats/{REWARD}/max"] == [-np.inf]
    stats_text = (written.root / "meta/stats.json").read_text()
    assert "Infinity" not in stats_text and "NaN" not in stats_text
    stats = json.loads(stats_text)[REWARD]
    assert stats["min"] == [-5.0] and stats["max"] == [9.0]
    aggregated = _lerobot_aggregate(rows, REWARD)
    for key, value in stats.items():
        np.testing.assert_allclose(aggregated[key], value, rtol=1e-9, err_msg=key)
    # lerobot-edit-dataset delete_episodes --episode_indices [2]: the stats of episodes 0 and 1 are episode 0's.
    kept = _lerobot_aggregate(rows[:2], REWARD)
    zero = rewards[0].astype(np.float64)
    np.testing.assert_allclose([kept[k][0] for k in ("mean", "std", "count")], [zero.mean(), zero.std(), zero.size],
                               rtol=1e-9)
    # Not the deleted episode 2's -5 and 9 brought back by episode 1's stand-ins.
    assert (kept["min"][0], kept["max"][0]) == (zero.min(), zero.max())
    assert all(np.isfinite(v).all() for v in kept.values())


def test_a_placeholder_written_where_a_frame_has_no_value_is_left_out_of_the_stats(built: BuiltDataset,
                                                                                   tmp_path: Path) -> None:
    # tsg label --invalid-reward -5: the frames without a reward hold -5, which is no reward.
    rewards = _rewards()
    counted = {e: ~np.isnan(v) for e, v in rewards.items()}
    counted[2][:] = False  # an episode without any reward
    written_values = {e: np.where(counted[e], v, -5.0).astype(np.float32) for e, v in rewards.items()}
    as_nan = {e: np.where(counted[e], v, np.nan).astype(np.float32) for e, v in rewards.items()}
    placeholders = write_with_column(LeRobotDataset(built.root), tmp_path / "placeholders", REWARD, written_values,
                                     counted_by_episode=counted)
    nans = write_with_column(LeRobotDataset(built.root), tmp_path / "nans", REWARD, as_nan)
    stats_of = [json.loads((d.root / "meta/stats.json").read_text())[REWARD] for d in (placeholders, nans)]
    assert stats_of[0] == stats_of[1] and stats_of[0]["min"][0] > -5.0
    episodes_of = [pq.read_table(d.root / "meta/episodes/chunk-000/file-000.parquet").select(
        [f"stats/{REWARD}/count", f"stats/{REWARD}/min"]).to_pylist() for d in (placeholders, nans)]
    assert episodes_of[0] == episodes_of[1]
    assert episodes_of[0][2] == {f"stats/{REWARD}/count": [0], f"stats/{REWARD}/min": [math.inf]}
    column = placeholders.episode_table(2, columns=[REWARD]).column(REWARD).to_numpy()
    assert (column == -5.0).all()  # the values written are the placeholders


def test_episode_stats_are_added_to_every_episodes_file(tmp_path: Path) -> None:
    built = build_lerobot_dataset(tmp_path / "src", episode_lengths=LENGTHS, episodes_per_meta_file=2,
                                  chunks_size=1)
    rewards = {e: np.full(n, float(e), np.float32) for e, n in enumerate(LENGTHS)}
    written = write_with_column(LeRobotDataset(built.root), tmp_path / "dst", REWARD, rewards)
    means = {}
    for path in sorted((written.root / "meta/episodes").glob("*/*.parquet")):
        for row in pq.read_table(path).to_pylist():
            means[row["episode_index"]] = row[f"stats/{REWARD}/mean"]
    assert means == {0: [0.0], 1: [1.0], 2: [2.0]}
    assert written.data_file(2) == written.root / "data/chunk-001/file-000.parquet"


def test_rows_stored_out_of_order_keep_their_order_and_get_their_frames_reward(built: BuiltDataset,
                                                                               tmp_path: Path) -> None:
    path = built.root / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    pq.write_table(table.take(np.arange(table.num_rows)[::-1]), path)
    rewards = _rewards()
    written = write_with_column(LeRobotDataset(built.root), tmp_path / "dst", REWARD, rewards)
    out = pq.read_table(written.root / "data/chunk-000/file-000.parquet")
    assert out.column("index").to_pylist() == list(range(6, -1, -1))
    expected = [rewards[e][f] for e, f in zip(out.column("episode_index").to_pylist(),
                                              out.column("frame_index").to_pylist(), strict=True)]
    np.testing.assert_array_equal(out.column(REWARD).to_numpy(), np.array(expected, np.float32))


def test_videos_are_hard_linked_and_copied_when_linking_fails(built: BuiltDataset, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    source = LeRobotDataset(built.root)
    videos = sorted((built.root / "videos").rglob("*.mp4"))
    assert len(videos) == 2
    linked = write_with_column(source, tmp_path / "linked", REWARD, _rewards())
    for video in videos:
        target = linked.root / video.relative_to(built.root)
        assert target.read_bytes() == video.read_bytes()
        assert os.path.samefile(target, video)

    def cross_device(src: object, dst: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(lerobot_module.os, "link", cross_device)
    copied = write_with_column(source, tmp_path / "copied", REWARD, _rewards())
    for video in videos:
        target = copied.root / video.relative_to(built.root)
        assert target.read_bytes() == video.read_bytes()
        assert not os.path.samefile(target, video)


def test_a_hugging_face_cache_snapshot_whose_files_are_symlinks_is_written_with_the_files_they_point_to(
        tmp_path: Path) -> None:
    # What LeRobotDataset(repo_id) without a root and `hf download` without --local-dir leave: every file of
    # snapshots/<revision>/ a relative symlink into the repository's blobs/.
    repository = tmp_path / "hub" / "datasets--me--ds"
    built = build_lerobot_dataset(repository / "snapshots" / "0123abcd", episode_lengths=LENGTHS)
    blobs = repository / "blobs"
    blobs.mkdir()
    for index, path in enumerate(sorted(p for p in built.root.rglob("*") if p.is_file())):
        blob = blobs / f"{index:040x}"
        path.rename(blob)
        path.symlink_to(os.path.relpath(blob, path.parent))
    written = write_with_column(LeRobotDataset(built.root), tmp_path / "out" / "labelled", REWARD, _rewards())
    copied = sorted(p.relative_to(written.root) for p in written.root.rglob("*") if p.is_file())
    assert copied == sorted(p.relative_to(built.root) for p in built.root.rglob("*") if p.is_file())
    assert not any((written.root / path).is_symlink() for path in copied)
    for video in sorted((built.root / "videos").rglob("*.mp4")):
        assert os.path.samefile(written.root / video.relative_to(built.root), video.resolve())  # the blob, linked
    assert (written.root / "meta/tasks.parquet").read_bytes() == (built.root / "meta/tasks.parquet").read_bytes()


def test_symlinked_directories_are_copied_as_the_directories_they_stand_for(built: BuiltDataset,
                                                                           tmp_path: Path) -> None:
    # Videos kept on another disk, a camera's directory or meta/ linked in from elsewhere.
    expected = {str(p.relative_to(built.root)): p.read_bytes() for p in built.root.rglob("*")
                if p.is_file() and p.relative_to(built.root).parts[0] == "videos" or p.name == "tasks.parquet"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (built.root / "videos").rename(elsewhere / "videos")
    (built.root / "videos").symlink_to(elsewhere / "videos")
    [camera] = (elsewhere / "videos").iterdir()
    camera.rename(elsewhere / "camera")
    camera.symlink_to(elsewhere / "camera")
    (built.root / "meta").rename(elsewhere / "meta")
    (built.root / "meta").symlink_to(elsewhere / "meta")
    (elsewhere / "camera" / "loop").symlink_to(elsewhere / "camera")  # walked once, not forever
    written = write_with_column(LeRobotDataset(built.root), tmp_path / "dst", REWARD, _rewards())
    assert {relative: (written.root / relative).read_bytes() for relative in expected} == expected
    assert not (written.root / camera.relative_to(elsewhere) / "loop").exists()


def test_a_broken_symlink_in_the_dataset_is_refused_naming_it_and_nothing_is_written(built: BuiltDataset,
                                                                                    tmp_path: Path) -> None:
    tasks = built.root / "meta/tasks.parquet"
    tasks.unlink()
    tasks.symlink_to("../../gone/tasks.parquet")
    with pytest.raises(DatasetError, match=r"meta/tasks\.parquet is a broken symlink \(to '\.\./\.\./gone/tasks"
                                           r"\.parquet'\): the dataset's file is missing"):
        write_with_column(LeRobotDataset(built.root), tmp_path / "dst", REWARD, _rewards())
    assert sorted(p.name for p in tmp_path.iterdir()) == [built.root.name]  # no destination, no build directory


def test_a_git_clones_repository_is_not_copied(built: BuiltDataset, tmp_path: Path) -> None:
    # git clone https://huggingface.co/datasets/...: .git/lfs/objects holds a second copy of every file.
    objects = built.root / ".git/lfs/objects/ab/cd"
    objects.mkdir(parents=True)
    (objects / "abcd").write_bytes(b"x" * 1000)
    (built.root / ".git/config").write_text('[remote "origin"]\n\turl = https://huggingface.co/datasets/a/b\n')
    (built.root / ".gitattributes").write_text("*.parquet filter=lfs diff=lfs merge=lfs -text\n")
    written = write_with_column(LeRobotDataset(built.root), tmp_path / "dst", REWARD, _rewards())
    assert not (written.root / ".git").exists()
    assert (written.root / ".gitattributes").read_bytes() == (built.root / ".gitattributes").read_bytes()


def test_extra_bool_columns_are_written_as_bool_features_with_stats(built: BuiltDataset, tmp_path: Path) -> None:
    valid = {e: np.arange(n) % 2 == 0 for e, n in enumerate(LENGTHS)}
    written = write_with_column(LeRobotDataset(built.root), tmp_path / "dst", REWARD, _rewards(),
                                extra_bool_columns={"tsg.reward_valid": valid})
    assert written.features["tsg.reward_valid"] == {"dtype": "bool", "shape": [1], "names": None}
    column = written.episode_table(1, columns=["tsg.reward_valid"]).column("tsg.reward_valid")
    assert column.type == pa.bool_()
    assert column.to_pylist() == [True, False, True, False]
    stats = json.loads((written.root / "meta/stats.json").read_text())["tsg.reward_valid"]
    assert stats["count"] == [9] and stats["mean"] == [pytest.approx(5 / 9)]


def test_overwrite_replaces_a_column_in_place(built: BuiltDataset, tmp_path: Path) -> None:
    first = write_with_column(LeRobotDataset(built.root), tmp_path / "first", REWARD, _rewards(seed=1))
    with pytest.raises(DatasetError, match=rf"already has a column '{REWARD}' \(float32\); pass overwrite=True"):
        write_with_column(first, tmp_path / "second", REWARD, _rewards(seed=2))
    assert not (tmp_path / "second").exists()
    new = {e: np.full(n, 0.5, np.float32) for e, n in enumerate(LENGTHS)}
    second = write_with_column(first, tmp_path / "second", REWARD, new, overwrite=True)
    assert list(second.features) == list(first.features)
    table = pq.read_table(second.data_file(0))
    assert table.column_names == pq.read_table(first.data_file(0)).column_names
    assert set(table.column(REWARD).to_pylist()) == {0.5}
    assert json.loads((second.root / "meta/stats.json").read_text())[REWARD]["mean"] == [0.5]
    episodes = pq.read_table(second.root / "meta/episodes/chunk-000/file-000.parquet")
    assert episodes.column_names == pq.read_table(first.root / "meta/episodes/chunk-000/file-000.parquet").column_names
    assert episodes.column(f"stats/{REWARD}/max").to_pylist() == [[0.5]] * 3
    with pytest.raises(DatasetError, match=r"column 'index' of .* \(int64\) is part of the recording and cannot be"):
        write_with_column(first, tmp_path / "third", "index", new, overwrite=True)


def test_destination_may_already_hold_the_labellers_subdirectory(built: BuiltDataset, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    (dst / "tsg_rewards").mkdir(parents=True)
    (dst / "tsg_rewards" / "frames.csv").write_text("episode,frame,reward\n")
    written = write_with_column(LeRobotDataset(built.root), dst, REWARD, _rewards())
    assert (dst / "tsg_rewards" / "frames.csv").read_text() == "episode,frame,reward\n"
    assert sorted(p.name for p in dst.iterdir()) == ["README.md", "data", "meta", "tsg_rewards", "videos"]
    assert REWARD in written.features
    assert not list(tmp_path.glob(".dst.tsg-tmp-*"))


def test_a_failed_write_leaves_no_destination_and_no_temporary_files(built: BuiltDataset, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lerobot_module, "_write_episode_files", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_with_column(LeRobotDataset(built.root), tmp_path / "dst", REWARD, _rewards())
    assert not (tmp_path / "dst").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


@pytest.mark.parametrize("dst_exists", [False, True])
def test_an_interrupted_move_never_leaves_a_dataset_that_looks_complete(built: BuiltDataset, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        dst_exists: bool) -> None:
    dst = tmp_path / "dst"
    if dst_exists:
        (dst / "tsg_rewards").mkdir(parents=True)
    real_replace = os.replace

    def killed_before_info(src: os.PathLike, target: os.PathLike) -> None:
        if Path(target).name == "info.json":
            raise KeyboardInterrupt
        real_replace(src, target)

    monkeypatch.setattr(lerobot_module.os, "replace", killed_before_info)
    with pytest.raises(KeyboardInterrupt):
        write_with_column(LeRobotDataset(built.root), dst, REWARD, _rewards())
    if dst_exists:
        assert (dst / "data").is_dir()  # the files were moved, but the dataset is not declared
        assert not LeRobotDataset.is_dataset(dst)
    else:
        assert not dst.exists()  # a new destination appears in one rename, complete


@pytest.mark.parametrize("dst_exists", [False, True])
def test_every_written_file_and_directory_is_flushed_to_disk_before_info_json_is_put_in_place(
        built: BuiltDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dst_exists: bool) -> None:
    # A rename can reach the disk before the data it names: after a power cut, an info.json made durable before the
    # data files would make a rerun take a dataset with empty files for complete.
    dst = tmp_path / "dst"
    if dst_exists:
        (dst / "tsg_rewards").mkdir(parents=True)
    events: list[tuple[str, str]] = []
    builds: list[Path] = []
    real_fsync, real_replace, real_rename = os.fsync, os.replace, os.rename
    real_make_build_dir = lerobot_module._make_build_dir

    def fsync(descriptor: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    def replace(src: os.PathLike, target: os.PathLike) -> None:
        real_replace(src, target)
        events.append(("move", str(target)))

    def rename(src: os.PathLike, target: os.PathLike) -> None:
        real_rename(src, target)
        events.append(("move", str(target)))

    monkeypatch.setattr(lerobot_module.os, "fsync", fsync)
    monkeypatch.setattr(lerobot_module.os, "replace", replace)
    monkeypatch.setattr(lerobot_module.os, "rename", rename)
    monkeypatch.setattr(lerobot_module, "_make_build_dir", lambda dst: builds.append(real_make_build_dir(dst)) or
                        builds[-1])
    written = write_with_column(LeRobotDataset(built.root), dst, REWARD, _rewards())
    monkeypatch.undo()

    placed = next(i for i, (kind, path) in enumerate(events) if kind == "move" and path.endswith("meta/info.json"))
    before = [path for kind, path in events[:placed] if kind == "fsync"]
    (build,) = builds
    files = [p.relative_to(written.root) for p in written.root.rglob("*") if p.is_file()
             and "tsg_rewards" not in p.parts]
    for relative in files:
        if relative != Path("meta/info.json"):
            assert str(build / relative) in before, f"{relative} was not flushed before meta/info.json"
    for relative in {Path("."), *(r.parent for r in files)}:
        assert str(build / relative) in before or str(dst / relative) in before, f"directory {relative}"
    # The moves into place are flushed too: the destination's entries, and info.json's own name last of all.
    last = [(kind, path) for kind, path in events if kind == "fsync"][-1][1]
    assert last == str((dst / "meta") if dst_exists else tmp_path)
    if dst_exists:
        assert str(dst) in before


def test_a_new_destination_gets_the_usual_directory_permissions(built: BuiltDataset, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    reference.mkdir()
    written = write_with_column(LeRobotDataset(built.root), tmp_path / "out" / "dst", REWARD, _rewards())
    assert written.root.stat().st_mode & 0o777 == reference.stat().st_mode & 0o777


def test_values_must_cover_every_episode_with_one_value_per_frame(built: BuiltDataset, tmp_path: Path) -> None:
    before = _tree_digest(built.root)
    source = LeRobotDataset(built.root)
    dst = tmp_path / "dst"
    short = {**_rewards(), 1: np.zeros(3, np.float32)}
    with pytest.raises(DatasetError, match=rf"column '{REWARD}': episode 1 has length 4 but 3 values were given"):
        write_with_column(source, dst, REWARD, short)
    with pytest.raises(DatasetError, match=r"episode 0 has length 3 but shape \(3, 2\) values were given"):
        write_with_column(source, dst, REWARD, {**_rewards(), 0: np.zeros((3, 2))})
    missing = {e: v for e, v in _rewards().items() if e != 2}
    with pytest.raises(DatasetError, match=r"no values for episode\(s\) \[2\] of .*; every episode needs one value"):
        write_with_column(source, dst, REWARD, missing)
    with pytest.raises(DatasetError, match=r"values given for episode\(s\) \[7\] that .* does not have"):
        write_with_column(source, dst, REWARD, {**_rewards(), 7: np.zeros(1)})
    infinite = _rewards()
    infinite[0][1] = -np.inf
    with pytest.raises(DatasetError, match=r"episode 0 frame 1 is -inf; use NaN for a frame without a value"):
        write_with_column(source, dst, REWARD, infinite)
    with pytest.raises(DatasetError, match=r"every value is NaN, so there are no stats to write"):
        write_with_column(source, dst, REWARD, {e: np.full(n, np.nan) for e, n in enumerate(LENGTHS)})
    with pytest.raises(DatasetError, match=r"episode 0 values have dtype <U1, not numbers"):
        write_with_column(source, dst, REWARD, {**_rewards(), 0: np.array(["a", "b", "c"])})
    with pytest.raises(DatasetError, match=r"column 'valid': episode 0 values have dtype float32, not bool"):
        write_with_column(source, dst, REWARD, _rewards(), extra_bool_columns={"valid": _rewards()})
    assert not dst.exists()
    assert _tree_digest(built.root) == before


def test_column_names_dtypes_and_destinations_are_checked(built: BuiltDataset, tmp_path: Path) -> None:
    source = LeRobotDataset(built.root)
    with pytest.raises(DatasetError, match=r"column name 'tsg/reward' must be a non-empty string without '/'"):
        write_with_column(source, tmp_path / "dst", "tsg/reward", _rewards())
    with pytest.raises(DatasetError, match=r"column dtype 'int8' is not one of \['float32', 'float64'\]"):
        write_with_column(source, tmp_path / "dst", REWARD, _rewards(), dtype="int8")
    with pytest.raises(DatasetError, match=r"column names \['tsg.reward', 'tsg.reward'\] repeat a name"):
        write_with_column(source, tmp_path / "dst", REWARD, _rewards(), extra_bool_columns={REWARD: {}})
    with pytest.raises(DatasetError, match=r"already has a column 'action' \(float32\)"):
        write_with_column(source, tmp_path / "dst", ACTION, _rewards())
    with pytest.raises(DatasetError, match=r"destination .*src/labelled is inside the source dataset"):
        write_with_column(source, built.root / "labelled", REWARD, _rewards())
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match=r"destination .*occupied is not empty \(holds \['notes.txt'\]\)"):
        write_with_column(source, occupied, REWARD, _rewards())
    (tmp_path / "file").write_text("")
    with pytest.raises(DatasetError, match=r"destination .*file exists and is not a directory"):
        write_with_column(source, tmp_path / "file", REWARD, _rewards())
    assert (occupied / "notes.txt").read_text() == "mine"


def test_a_data_file_no_episode_refers_to_is_refused(built: BuiltDataset, tmp_path: Path) -> None:
    # LeRobot loads every parquet file under data/, so one without the new column would break loading.
    stray = built.root / "data/chunk-000/file-002.parquet"
    stray.write_bytes((built.root / "data/chunk-000/file-001.parquet").read_bytes())
    with pytest.raises(DatasetError, match=r"data file\(s\) \[.*file-002.parquet'\] of .* belong to no episode"):
        write_with_column(LeRobotDataset(built.root), tmp_path / "dst", REWARD, _rewards())
