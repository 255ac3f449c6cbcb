"""Small text helpers shared by the CLI, the node's logs and the evaluation (standard library only, so that
``tsg --help`` stays light)."""

from __future__ import annotations

import math
from typing import Any


def plural(count: int, noun: str) -> str:
    """``1 frame``, ``2 frames``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def format_number(value: Any, digits: int = 3) -> str:
    """A number for a report or a figure: n/a when undefined, 3 significant digits below 0.1 (a rate of 0.0004, a
    good scorer's E-AURC of the order 1/n, would read as zero), else ``digits`` decimals."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3g}" if 0.0 < abs(value) < 0.1 else f"{value:.{digits}f}"
    return str(value)
