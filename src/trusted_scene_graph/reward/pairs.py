"""Reward pairs: which two things a reward measures, and how (``reward.pairs`` and ``tsg label --pair``).

A pair is written ``SUBJECT:OBJECT`` with optional per-pair settings after commas, each named like the ``reward.*``
parameter it overrides and validated by the same schema entry::

    gripper:cube
    gripper:red cube,distance_mode=surface,shaping=exp,shaping_scale_m=0.05
    cube:goal,smoothing_frames=3,hold_last_valid_s=0.5

A side is a label ("red cube", case-insensitive), an object id (``#3``), or a robot frame: one of
``reward.ee_names`` (the end effector) or ``goal`` (see :mod:`.sides`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from trusted_scene_graph import reward
from trusted_scene_graph.config.schema import SCHEMA, ConfigError, parse_value
from trusted_scene_graph.reward.sides import frame_of

#: The ``reward.*`` parameters a pair may override, as ``name=value`` after its sides.
PAIR_SETTINGS = ("distance_mode", "shaping", "shaping_scale_m", "min_trust", "min_depth_valid_fraction",
                 "smoothing_frames", "hold_last_valid_s")


@dataclass(frozen=True)
class RewardPair:
    """One reward: the distance between ``subject`` and ``object``, shaped and checked as its settings say."""

    subject: str
    object: str
    distance_mode: str = "centroid"
    shaping: str = "negative"
    shaping_scale_m: float = 0.1
    min_trust: float = 0.3
    min_depth_valid_fraction: float = 0.3
    smoothing_frames: int = 1
    hold_last_valid_s: float = 0.0

    def __post_init__(self) -> None:
        # Built directly (not through parse_pair), a typo such as distance_mode='centriod' would otherwise be taken
        # for another mode, or fail at the first frame without naming the pair.
        for side in (self.subject, self.object):
            if not isinstance(side, str) or not side.strip() or ":" in side:
                raise reward.RewardError(f"reward pair {self.name!r}: each side must be a non-empty name without ':'")
        if self.subject.strip().lower() == self.object.strip().lower():
            raise reward.RewardError(f"reward pair {self.name!r} measures {self.subject!r} against itself")
        for name in PAIR_SETTINGS:
            object.__setattr__(self, name, _setting(name, getattr(self, name), self.name))

    @property
    def name(self) -> str:
        return f"{self.subject}:{self.object}"


def _setting(name: str, value: Any, pair_text: str = "") -> Any:
    try:
        return SCHEMA[f"reward.{name}"].validate(value)
    except ConfigError as exc:
        raise reward.RewardError(f"reward pair {pair_text!r}: {exc}" if pair_text else str(exc)) from exc


def parse_pair(text: str, defaults: Mapping[str, Any] | None = None) -> RewardPair:
    """Parse ``SUBJECT:OBJECT[,setting=value...]``; settings not given come from ``defaults`` (a Config)."""
    head, *options = [part.strip() for part in text.split(",")]
    subject, sep, obj = head.partition(":")
    subject, obj = subject.strip(), obj.strip()
    if not sep or not subject or not obj or ":" in obj:
        raise reward.RewardError(f"reward pair {text!r} is not of the form 'SUBJECT:OBJECT[,setting=value...]'"
                                 + (" (one pair per SUBJECT:OBJECT)" if ":" in obj else ""))
    if subject.lower() == obj.lower():
        raise reward.RewardError(f"reward pair {text!r} measures {subject!r} against itself")
    values = {name: _setting(name, defaults[f"reward.{name}"]) for name in PAIR_SETTINGS} if defaults else {}
    for option in options:
        name, sep, raw = (part.strip() for part in option.partition("="))
        if not sep or name not in PAIR_SETTINGS:
            raise reward.RewardError(f"reward pair {text!r}: {option!r} is not one of "
                                     f"{', '.join(f'{s}=...' for s in PAIR_SETTINGS)}")
        try:
            value = parse_value(raw) if raw else raw
        except ConfigError as exc:
            raise reward.RewardError(f"reward pair {text!r}: {name}: {exc}") from exc
        values[name] = _setting(name, value, text)
    return replace(RewardPair(subject, obj), **values)


def pairs_from_config(config: Mapping[str, Any], texts: list[str] | None = None) -> list[RewardPair]:
    """The pairs in ``texts`` (default: ``reward.pairs``), each completed with the config's ``reward.*`` settings.
    Two pairs with the same sides are refused: their rewards could not be told apart."""
    texts = list(config["reward.pairs"] if texts is None else texts)
    pairs = [parse_pair(text, config) for text in texts]
    seen: dict[tuple[str, str], str] = {}
    for pair, text in zip(pairs, texts, strict=True):
        # A side's identity: the robot frame it names ('gripper' and 'ee' are both the end effector), else its label.
        key = tuple(frame_of(side, config["reward.ee_names"]) or side.strip().lower()
                    for side in (pair.subject, pair.object))
        if key[0] == key[1]:
            raise reward.RewardError(f"reward pair {text!r} measures the end effector against itself ("
                                     f"{pair.subject!r} and {pair.object!r} both name it)")
        if key in seen:
            raise reward.RewardError(f"reward pairs {seen[key]!r} and {text!r} measure the same two sides")
        seen[key] = text
    return pairs
