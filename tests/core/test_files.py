"""Atomic and durable writes (trusted_scene_graph.files)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trusted_scene_graph import files
from trusted_scene_graph.files import partial_path, replace_text


def test_replace_text_puts_the_whole_new_text_in_place_and_leaves_no_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text("old\n")
    replace_text(path, "new\n")
    assert path.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_a_failed_move_leaves_the_old_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "source.json"
    path.write_text("old\n")

    def fail(src: os.PathLike, dst: os.PathLike) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        replace_text(path, "new\n")
    assert path.read_text() == "old\n"
    assert partial_path(path).read_text() == "new\n"  # never visible under the real name


def test_a_durable_write_flushes_the_data_before_the_move_and_the_directory_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A rename can reach the disk before the data it names: flushed in this order, a crash leaves the old record or
    # the whole new one.
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    def replace(src: os.PathLike, dst: os.PathLike) -> None:
        real_replace(src, dst)
        events.append(("move", str(dst)))

    monkeypatch.setattr(files.os, "fsync", fsync)
    monkeypatch.setattr(files.os, "replace", replace)
    path = tmp_path / "source.json"
    replace_text(path, "{}\n", durable=True)
    assert events == [("fsync", str(partial_path(path))), ("move", str(path)), ("fsync", str(tmp_path))]


def test_a_plain_write_does_not_flush(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flushed: list[int] = []
    monkeypatch.setattr(files.os, "fsync", flushed.append)
    replace_text(tmp_path / "params.yaml", "a: 1\n", partial=tmp_path / ".params.yaml.123.tmp")
    assert flushed == []
    assert (tmp_path / "params.yaml").read_text() == "a: 1\n"
