"""Edge tables: what tsg eval writes and tsg trust reads, without pickle, refusing other schemas and damage."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from trusted_scene_graph.trust import TrustError
from trusted_scene_graph.trust.dataset import EDGES_FILE, EdgeTable, load_tables
from trusted_scene_graph.trust.features import FEATURE_NAMES


def table(edges: int = 4, group: str = "bag/episode-0") -> EdgeTable:
    features = np.arange(edges * len(FEATURE_NAMES), dtype=np.float32).reshape(edges, -1)
    features[0, 3] = np.nan
    return EdgeTable(features, np.arange(edges) % 2 == 0, np.full(edges, group))


def test_a_table_round_trips_with_nan_kept(tmp_path):
    saved = table().save(tmp_path / EDGES_FILE)
    loaded = EdgeTable.load(tmp_path)  # a tsg eval output directory works as well as the file
    np.testing.assert_array_equal(loaded.features, table().features)  # NaN compares equal here
    np.testing.assert_array_equal(loaded.correct, table().correct)
    assert loaded.group.tolist() == ["bag/episode-0"] * 4
    with np.load(saved, allow_pickle=False) as data:  # readable without pickle: no object arrays inside
        assert all(data[key].dtype != object for key in data.files)


def test_tables_join_keeping_their_groups(tmp_path):
    first = table(group="a/episode-0").save(tmp_path / "a.npz")
    second = table(3, group="b/episode-1").save(tmp_path / "b.npz")
    joined = load_tables([first, second])
    assert len(joined) == 7 and sorted(set(joined.group)) == ["a/episode-0", "b/episode-1"]


def test_a_missing_corrupt_or_foreign_file_is_refused_by_name(tmp_path):
    with pytest.raises(TrustError, match=r"edge table .*missing\.npz does not exist"):
        EdgeTable.load(tmp_path / "missing.npz")
    # A zip archive whose members are not .npy arrays: the archive opens, its arrays do not.
    with zipfile.ZipFile(tmp_path / "corrupt.npz", "w") as archive:
        for key in ("features", "correct", "group", "feature_names", "feature_schema_version"):
            archive.writestr(f"{key}.npy", b"not an array")
    with pytest.raises(TrustError, match=r"corrupt\.npz cannot be read: \['features', .*are not \.npy arrays"):
        EdgeTable.load(tmp_path / "corrupt.npz")
    # A damaged member: its bytes no longer match the archive's checksum.
    damaged = table().save(tmp_path / "damaged.npz")
    raw = bytearray(damaged.read_bytes())
    raw[60:80] = bytes(20)
    damaged.write_bytes(bytes(raw))
    with pytest.raises(TrustError, match=r"damaged\.npz cannot be read"):
        EdgeTable.load(damaged)
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(TrustError, match=r"other\.npz is not an edge table: it lacks \['features'"):
        EdgeTable.load(tmp_path / "other.npz")


def test_a_file_that_is_not_an_npz_archive_is_refused_by_name(tmp_path):
    (tmp_path / "edges.npz").write_text("features,correct\n0.5,1\n")
    with pytest.raises(TrustError, match=r"edges\.npz is not an \.npz edge table \(tsg eval --out DIR writes"):
        EdgeTable.load(tmp_path / "edges.npz")
    (tmp_path / "metrics.json").write_text('{"edge_precision": 0.5}')
    with pytest.raises(TrustError, match=r"metrics\.json is not an \.npz edge table"):
        EdgeTable.load(tmp_path / "metrics.json")
    np.save(tmp_path / "features.npy", np.zeros((2, len(FEATURE_NAMES)), dtype=np.float32))
    with pytest.raises(TrustError, match=r"features\.npy is not an \.npz edge table"):
        EdgeTable.load(tmp_path / "features.npy")


def test_a_table_of_another_feature_schema_is_refused(tmp_path):
    path = table().save(tmp_path / "old.npz")
    with np.load(path) as data:
        arrays = dict(data)
    arrays["feature_schema_version"] = np.int64(0)
    np.savez(path, **arrays)
    with pytest.raises(TrustError, match="feature schema version 0 .*run tsg eval again"):
        EdgeTable.load(path)


def test_shapes_must_agree():
    with pytest.raises(TrustError, match=r"correct must hold one value per edge \(4\)"):
        EdgeTable(np.zeros((4, len(FEATURE_NAMES)), np.float32), np.zeros(3, bool), np.full(4, "g"))
    with pytest.raises(TrustError, match=r"features must have shape \(edges, 23\)"):
        EdgeTable(np.zeros((4, 2), np.float32), np.zeros(4, bool), np.full(4, "g"))
    with pytest.raises(TrustError, match="no edge tables given"):
        load_tables([])


@pytest.mark.parametrize(("key", "value", "message"), [
    ("feature_schema_version", np.array("2.0"), r"'feature_schema_version' must be one integer, got <U3"),
    ("feature_schema_version", np.array([2, 2]), r"'feature_schema_version' must be one integer, got int64 of shape"),
    ("features", np.full((4, len(FEATURE_NAMES)), "x"), r"'features' must be numbers, got <U1"),
    ("correct", np.array([True, False, True]), r"correct must hold one value per edge \(4\), got shape \(3,\)"),
    ("group", np.full((4, 1), "a"), r"group must hold one value per edge \(4\), got shape \(4, 1\)"),
])
def test_a_table_with_arrays_of_the_wrong_kind_is_refused_by_name(tmp_path, key, value, message):
    path = table().save(tmp_path / "edited.npz")
    with np.load(path) as data:
        arrays = dict(data)
    arrays[key] = value
    np.savez(path, **arrays)
    with pytest.raises(TrustError, match=rf"edge table .*edited\.npz cannot be read: {message}"):
        EdgeTable.load(path)
