"""Atomic and durable file writes, shared by the labellers, the trust model and the launch's parameter files.

Hand-written: the standard library has the pieces (``os.replace``, ``os.fsync``) but not their order, and the one
library that packaged it (``atomicwrites``) is archived.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path


def partial_path(path: Path) -> Path:
    """Where :func:`replace_text` writes ``path`` before moving it into place: a hidden sibling (same file system, so
    the move is a rename)."""
    return path.with_name(f".{path.name}.tmp")


def replace_text(path: Path, text: str, *, durable: bool = False, partial: Path | None = None) -> None:
    """Write ``text`` to ``path`` atomically: a reader sees the old file or the new one, never a torn one. With
    ``durable`` the new file also survives a machine crash once this returns (its data, then its name, are flushed),
    for records that make a rerun skip work. ``partial`` overrides :func:`partial_path` (one per process, where
    processes may write the same file at once). Where ``path`` is a symbolic link the file it points to is replaced
    (even if it does not exist yet) and the link kept: renaming onto the link would replace the link itself."""
    if path.is_symlink():
        try:
            target = path.resolve()
        except RuntimeError:  # a loop of links, on Python < 3.13
            target = path
        if target.is_symlink():  # a loop of links (Python 3.13 returns it unresolved): the OSError callers report
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path))
        # The partial file moves with it: a rename only works within one file system.
        partial = target.with_name(partial.name) if partial is not None else None
        path = target
    partial = partial or partial_path(path)
    with partial.open("w", encoding="utf-8") as stream:
        stream.write(text)
        if durable:
            stream.flush()
            os.fsync(stream.fileno())
    os.replace(partial, path)
    if durable:
        fsync_dir(path.parent)


def fsync_tree(root: Path) -> None:
    """Flush every file and directory under ``root``, before a rename publishes it: a rename alone can reach the disk
    before the data it names, and a crash would then leave a published tree of empty files."""
    for directory, _, files in os.walk(root):
        for name in files:
            descriptor = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        fsync_dir(Path(directory))


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (the names created, renamed or removed in it)."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def remove_files(directory: Path, names: Iterable[str]) -> None:
    """Delete the files (or symlinks) ``names`` in ``directory`` that exist: the outputs an earlier run left, which a
    run that does not write them again would otherwise show stale beside its own. Directories are left alone."""
    for name in names:
        path = Path(directory) / name
        if path.is_file() or path.is_symlink():
            path.unlink()
