"""Labelled edge tables: what ``tsg eval`` writes (``edges.npz``) and ``tsg trust train``/``report`` read.

One row per claimed edge of an evaluated frame: its features (:data:`~.features.FEATURES`), whether it is correct
(the predicate holds between the matched ground-truth objects), and its group (bag and episode: a scene never spans
two groups, so grouped splits keep it on one side). Stored as a numpy ``.npz`` of plain numeric and fixed-width
string arrays, read with ``allow_pickle=False``: no pickle anywhere.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trusted_scene_graph.trust import TrustError
from trusted_scene_graph.trust.features import FEATURE_NAMES, FEATURE_SCHEMA_VERSION

EDGES_FILE = "edges.npz"
_KEYS = ("features", "correct", "group", "feature_names", "feature_schema_version")


@dataclass(frozen=True)
class EdgeTable:
    """``features`` (E, F) float32, ``correct`` (E,) bool, ``group`` (E,) str."""

    features: np.ndarray
    correct: np.ndarray
    group: np.ndarray
    feature_names: tuple[str, ...] = FEATURE_NAMES

    def __post_init__(self) -> None:
        edges = self.features.shape[0] if self.features.ndim == 2 else -1
        if self.features.ndim != 2 or self.features.shape[1] != len(self.feature_names):
            raise TrustError(f"features must have shape (edges, {len(self.feature_names)}), got "
                             f"{self.features.shape}")
        for name in ("correct", "group"):
            if getattr(self, name).shape != (edges,):
                raise TrustError(f"{name} must hold one value per edge ({edges}), got shape "
                                 f"{getattr(self, name).shape}")

    def __len__(self) -> int:
        return int(self.correct.size)

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        np.savez_compressed(path, features=self.features.astype(np.float32), correct=self.correct.astype(bool),
                            group=self.group.astype(str), feature_names=np.array(self.feature_names, dtype=str),
                            feature_schema_version=np.int64(FEATURE_SCHEMA_VERSION))
        return path

    @classmethod
    def load(cls, path: Path | str) -> EdgeTable:
        """Read one table; a missing, corrupt or other-schema file raises :class:`TrustError` naming it."""
        path = Path(path)
        if path.is_dir():
            path = path / EDGES_FILE
        if not path.is_file():
            raise TrustError(f"edge table {path} does not exist (tsg eval --out DIR writes DIR/{EDGES_FILE})")
        # An .npz is a zip archive; checking first turns numpy's "allow_pickle" hint (text files) and a raw
        # TypeError (.npy arrays, which np.load returns as a bare ndarray) into one message naming the file.
        not_a_table = f"{path} is not an .npz edge table (tsg eval --out DIR writes DIR/{EDGES_FILE})"
        if not zipfile.is_zipfile(path):
            raise TrustError(not_a_table)
        try:
            loaded = np.load(path, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise TrustError(not_a_table)
            with loaded as data:
                missing = [key for key in _KEYS if key not in data.files]
                if missing:
                    raise TrustError(f"{path} is not an edge table: it lacks {missing}")
                arrays = {key: data[key] for key in _KEYS}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise TrustError(f"edge table {path} cannot be read: {exc}") from exc
        # NpzFile hands back a member without the .npy header as raw bytes instead of failing.
        not_arrays = [key for key in _KEYS if not isinstance(arrays[key], np.ndarray)]
        if not_arrays:
            raise TrustError(f"edge table {path} cannot be read: {not_arrays} are not .npy arrays")
        version_array, features = arrays["feature_schema_version"], arrays["features"]
        if version_array.shape != () or version_array.dtype.kind not in "iu":
            raise TrustError(f"edge table {path} cannot be read: 'feature_schema_version' must be one integer, got "
                             f"{version_array.dtype} of shape {version_array.shape}")
        if features.dtype.kind not in "fiub":
            raise TrustError(f"edge table {path} cannot be read: 'features' must be numbers, got {features.dtype}")
        version = int(version_array)
        names = tuple(str(n) for n in arrays["feature_names"])
        if version != FEATURE_SCHEMA_VERSION or names != FEATURE_NAMES:
            raise TrustError(f"edge table {path} has feature schema version {version} ({len(names)} features); this "
                             f"package computes version {FEATURE_SCHEMA_VERSION} ({len(FEATURE_NAMES)} features): "
                             "run tsg eval again to rewrite it")
        correct = arrays["correct"]
        if correct.dtype != np.bool_:
            raise TrustError(f"{path}: 'correct' must be booleans, got {correct.dtype}")
        try:
            return cls(features.astype(np.float32), correct, arrays["group"].astype(str), names)
        except TrustError as exc:  # arrays of the right kind and the wrong shape: which of many files it is
            raise TrustError(f"edge table {path} cannot be read: {exc}") from exc

    @classmethod
    def concatenate(cls, tables: Sequence[EdgeTable]) -> EdgeTable:
        if not tables:
            raise TrustError("no edge tables given")
        return cls(np.concatenate([t.features for t in tables]), np.concatenate([t.correct for t in tables]),
                   np.concatenate([t.group for t in tables]))


def load_tables(paths: Sequence[Path | str]) -> EdgeTable:
    """Read and join edge tables (files, or ``tsg eval`` output directories holding ``edges.npz``)."""
    return EdgeTable.concatenate([EdgeTable.load(path) for path in paths])
