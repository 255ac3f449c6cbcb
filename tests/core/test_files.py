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


@pytest.mark.parametrize("exists", [True, False])
@pytest.mark.parametrize("partial_name", [None, ".report.json.123.tmp"])
def test_a_symlink_keeps_pointing_at_its_target_which_gets_the_new_text(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exists: bool, partial_name: str | None) -> None:
    # As `--out report.json` linked elsewhere: the move is made beside the target, not onto the link.
    moves: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def replace(src: os.PathLike, dst: os.PathLike) -> None:
        moves.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    (tmp_path / "elsewhere").mkdir()
    target = tmp_path / "elsewhere" / "report.json"
    if exists:
        target.write_text("old\n")
    link = tmp_path / "report.json"
    link.symlink_to(Path("elsewhere") / "report.json")  # relative, as `ln -s` makes it
    replace_text(link, "new\n", partial=link.with_name(partial_name) if partial_name else None)
    assert link.is_symlink() and os.readlink(link) == os.path.join("elsewhere", "report.json")
    assert target.read_text() == "new\n"
    # Within the target's directory: the link may lead to another file system, where a rename fails (EXDEV).
    assert [(src.parent, dst) for src, dst in moves] == [(target.parent, target)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "report.json"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]


def test_a_loop_of_symlinks_is_refused_as_an_os_error_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(OSError, match=r"Too many levels of symbolic links: '.*/a'"):
        replace_text(tmp_path / "a", "new\n")
    assert os.readlink(tmp_path / "a") == "b"
