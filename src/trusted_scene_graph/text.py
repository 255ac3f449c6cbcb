"""Small text helpers shared by the CLI, the node's logs and the evaluation (standard library only, so that
``tsg --help`` stays light)."""

from __future__ import annotations


def plural(count: int, noun: str) -> str:
    """``1 frame``, ``2 frames``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
