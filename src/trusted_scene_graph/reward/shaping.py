"""Distance to reward: the shapings a pair can use (``reward.shaping``)."""

from __future__ import annotations

import numpy as np

from trusted_scene_graph import reward

#: negative: -d (metres; Fetch's own dense reward). exp: exp(-d / scale), in (0, 1]. tanh: 1 - tanh(d / scale), in
#: (0, 1]. progress: 1 - d / max(d0, scale) with d0 the episode's first valid distance (0 at the start, 1 at
#: contact, negative when moving away). The floor at the scale keeps progress bounded when an episode starts (nearly)
#: in contact, where 1 - d / d0 would amplify millimetres of noise without bound; such an episode starts above 0.
SHAPINGS = ("negative", "exp", "tanh", "progress")


def shape_reward(distance_m: float | np.ndarray, shaping: str, scale_m: float = 0.1,
                 first_distance_m: float | None = None) -> float | np.ndarray:
    """The reward for a distance (a float or an array of them) under ``shaping``."""
    d = np.asarray(distance_m, dtype=np.float64)
    if shaping == "negative":
        out = -d
    elif shaping in ("exp", "tanh"):
        if not scale_m > 0:
            raise reward.RewardError(f"shaping {shaping!r} needs a scale > 0 m, got {scale_m!r}")
        out = np.exp(-d / scale_m) if shaping == "exp" else 1.0 - np.tanh(d / scale_m)
    elif shaping == "progress":
        if first_distance_m is None or not np.isfinite(first_distance_m) or first_distance_m < 0:
            raise reward.RewardError(f"shaping 'progress' needs the episode's first distance, got {first_distance_m!r}")
        if not scale_m > 0:
            raise reward.RewardError(f"shaping 'progress' needs a scale > 0 m, got {scale_m!r}")
        out = 1.0 - d / max(float(first_distance_m), scale_m)
    else:
        raise reward.RewardError(f"unknown shaping {shaping!r}; expected one of {list(SHAPINGS)}")
    return float(out) if out.ndim == 0 else out
