"""Edge tables: what tsg eval writes and tsg trust reads, without pickle, refusing other schemas and damage."""

from __future__ import annotations

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
    (tmp_path / "corrupt.npz").write_bytes(b"not a zip file")
    with pytest.raises(TrustError, match=r"corrupt\.npz cannot be read"):
        EdgeTable.load(tmp_path / "corrupt.npz")
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(TrustError, match=r"other\.npz is not an edge table: it lacks \['features'"):
        EdgeTable.load(tmp_path / "other.npz")


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
