"""The 'recorded' VLM backend: answers read from a JSONL file (cached runs of a real model, or hand-written ones).

One JSON object per line::

    {"image": "000000451431.jpg", "statement": "The person is inside the refrigerator.", "answer": "yes",
     "probability": 0.83, "nmlp": 2.4, "raw_text": "Yes"}

- ``image``: the image's name, a string matched on the file name without folders and extension, or a
  non-negative integer (the frame's stamp in nanoseconds, as the scene-graph node and ``tsg eval`` name frames).
- the claim: ``statement`` (or ``caption``, VSR's name for it; both only if they state the same claim), or
  ``subject``, ``predicate`` and ``object``, read as :func:`~trusted_scene_graph.vlm.base.relation_statement` words
  them ("The cat is left of the dog."). Statements match case-insensitively, ignoring runs of whitespace and a
  final full stop.
- ``answer``: true/false, "yes"/"no" or 1/0: whether the model said the statement is true.
- ``probability`` (or ``confidence``, the same; both may be given only if equal): the probability the model gave
  to its answer, in [0.5, 1] (the answer is the likelier one).
- ``nmlp`` (finite and >= 0: it is minus a mean log-probability), ``raw_text``, ``margin`` (a contrastive model's
  top-1 minus top-2 caption probability, in [0, 1]) and ``answer_mass`` (a generative model's ``P(yes) + P(no)``,
  in [0, 1]): optional.

A field whose value is ``null`` counts as absent (``"statement": null`` with a ``caption`` uses the caption). The
file is UTF-8, with or without a byte-order mark; only a line feed ends a line, so a statement may hold any other
Unicode line separator (U+2028, which ``json.dumps(..., ensure_ascii=False)`` writes unescaped). Blank lines are
ignored. A malformed line, or a second answer for the same image and statement, is an error naming the file and
line. Asking for a claim the file does not hold is an error naming the image and the statement.
:meth:`RecordedVlm.from_file` can restrict the predicates (``predicates``): then a line whose ``predicate`` is not
one of them is an error; lines that give the claim as a sentence are not checked.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from trusted_scene_graph.vlm.base import (
    ANSWER_PROBABILITY_TOLERANCE,
    VlmAnswer,
    VlmError,
    image_key,
    judge_relation_as_statement,
    predicate_key,
    relation_statement,
    statement_key,
)

_PARAMETER = "vlm.recorded_path"
_ANSWER_WORDS = {"yes": True, "true": True, "no": False, "false": False}


class RecordedVlm:
    """Answers looked up by (image, statement) from a table built by :meth:`from_file`."""

    # The answers were given to other pixels: judging a changed (noised) image gives the same answer, so a
    # perceptual-sensitivity check means nothing here (read by vlm.base.looks_at_pixels).
    looks_at_pixels = False

    def __init__(self, answers: Mapping[tuple[str, str], VlmAnswer], source: str = "recorded answers") -> None:
        self.source = source
        self._answers = dict(answers)
        self._images_by_statement: dict[str, list[str]] = {}
        for image, statement in self._answers:
            self._images_by_statement.setdefault(statement, []).append(image)

    def __len__(self) -> int:
        return len(self._answers)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], predicates: Collection[str] | None = None) -> RecordedVlm:
        """Read ``vlm.recorded_path``; ``predicates`` as in :meth:`from_file`."""
        path = config[_PARAMETER]
        if not str(path).strip():
            raise VlmError(f"{_PARAMETER} is empty: the 'recorded' VLM backend needs a JSONL file of answers")
        return cls.from_file(Path(path), predicates=predicates)

    @classmethod
    def from_file(cls, path: Path, predicates: Collection[str] | None = None) -> RecordedVlm:
        """Read and validate a JSONL file of answers (see the module docstring).

        ``predicates``: when given, the only predicates a line's ``predicate`` may name (compared as
        :func:`~trusted_scene_graph.vlm.base.predicate_key` spells them, so "left of" is "left_of"); None accepts
        any (VSR's relations are free text).
        """
        path = Path(path)
        allowed = None if predicates is None else {predicate_key(p): p for p in predicates}
        try:
            # utf-8-sig: a byte-order mark (editors on Windows write one) is not part of the first line.
            text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise VlmError(f"{_PARAMETER}: cannot read {str(path)!r}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise VlmError(f"{_PARAMETER}: {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        answers: dict[tuple[str, str], VlmAnswer] = {}
        first_line: dict[tuple[str, str], int] = {}
        # Only "\n" ends a record: str.splitlines also splits at U+2028, U+2029, \x85, ..., which JSON strings may
        # hold unescaped. A "\r" left by CRLF line ends is JSON whitespace.
        for line_number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise VlmError(f"{where}: not valid JSON: {exc.msg}") from exc
            key, answer = _parse_record(record, where)
            if allowed is not None:
                _check_predicate(record, allowed, where)
            if key in first_line:
                raise VlmError(f"{where}: a second answer for image {key[0]!r} and statement {key[1]!r} "
                               f"(the first is on line {first_line[key]})")
            first_line[key] = line_number
            answers[key] = answer
        return cls(answers, source=str(path))

    def judge_relation(self, image_rgb: np.ndarray, subject: str, predicate: str, object_: str, *,
                       image_id: str | None = None) -> VlmAnswer:
        """The recorded answer for "The <subject> is <predicate> the <object>." (as :meth:`judge`)."""
        return judge_relation_as_statement(self, image_rgb, subject, predicate, object_, image_id=image_id)

    def judge(self, image_rgb: np.ndarray, statement: str, *, image_id: str | None = None) -> VlmAnswer:
        """The recorded answer for ``statement`` about the image ``image_id`` (the pixels are not looked at).

        Without ``image_id`` the statement must have been recorded for exactly one image.
        """
        key = statement_key(statement)
        if image_id is None:
            images = self._images_by_statement.get(key, [])
            if len(images) != 1:
                raise VlmError(f"{self.source}: statement {statement!r} was recorded for {len(images)} images "
                               f"({sorted(images)[:5]}); pass image_id to choose one")
            return self._answers[(images[0], key)]
        try:
            return self._answers[(image_key(image_id), key)]
        except KeyError:
            raise VlmError(f"{self.source} has no answer for image {image_id!r} and statement {statement!r} "
                           f"(key {(image_key(image_id), key)!r})") from None


def _parse_record(record: Any, where: str) -> tuple[tuple[str, str], VlmAnswer]:
    if not isinstance(record, dict):
        raise VlmError(f"{where}: expected a JSON object, got {type(record).__name__}")
    image = record.get("image")
    if isinstance(image, int) and not isinstance(image, bool) and image >= 0:
        image = str(image)  # a stamp in nanoseconds: the node names the frame str(stamp_ns)
    if not isinstance(image, str) or not image.strip():
        raise VlmError(f"{where}: 'image' must be a non-empty string or a non-negative integer (a stamp in "
                       f"nanoseconds), got {image!r}")
    statement = _parse_statement(record, where)
    if statement is None:
        parts = [record.get(name) for name in ("subject", "predicate", "object")]
        if not all(isinstance(part, str) and part.strip() for part in parts):
            raise VlmError(f"{where}: needs 'statement' (or 'caption'), or 'subject', 'predicate' and 'object' "
                           f"strings; got keys {sorted(record)}")
        statement = relation_statement(*parts)
    if not isinstance(statement, str) or not statement.strip():
        raise VlmError(f"{where}: 'statement' must be a non-empty string, got {statement!r}")
    answer = _parse_answer(record.get("answer"), where)
    probability = _parse_probability(record, where)
    if probability < 0.5 - ANSWER_PROBABILITY_TOLERANCE:  # as VlmAnswer: a float32 two-way softmax's rounding
        raise VlmError(f"{where}: the probability is that of the answer given, the likelier one, so at least 0.5; "
                       f"got {probability!r} for answer {'yes' if answer else 'no'} (a yes at 0.3 is a no at 0.7)")
    nmlp = _optional_number(record, "nmlp", where)
    if not (math.isnan(nmlp) or (math.isfinite(nmlp) and nmlp >= 0.0)):
        raise VlmError(f"{where}: 'nmlp' must be a finite number >= 0 (minus a mean log-probability), got {nmlp!r}")
    margin = _optional_number(record, "margin", where)
    answer_mass = _optional_number(record, "answer_mass", where)
    for name, value in (("margin", margin), ("answer_mass", answer_mass)):
        if not (math.isnan(value) or 0.0 <= value <= 1.0):
            raise VlmError(f"{where}: {name!r} must be a number in [0, 1], got {value!r}")
    raw_text = "" if record.get("raw_text") is None else record["raw_text"]  # null: absent
    if not isinstance(raw_text, str):
        raise VlmError(f"{where}: 'raw_text' must be a string, got {raw_text!r}")
    return (image_key(image), statement_key(statement)), VlmAnswer(answer, probability, nmlp, raw_text, margin,
                                                                               answer_mass)


def _parse_statement(record: dict, where: str) -> Any:
    """``statement``, or its alias ``caption`` (VSR's name); both only when they state the same claim. None when
    neither is given (null counts as not given)."""
    given = {name: record[name] for name in ("statement", "caption") if record.get(name) is not None}
    if len(given) == 2 and (not all(isinstance(value, str) for value in given.values())
                            or statement_key(given["statement"]) != statement_key(given["caption"])):
        raise VlmError(f"{where}: 'statement' {given['statement']!r} and its alias 'caption' {given['caption']!r} "
                       "differ; give one of them")
    return next(iter(given.values()), None)


def _parse_probability(record: dict, where: str) -> float:
    """``probability``, or its alias ``confidence`` (the issue's name for it); both only when they agree."""
    # A null field is absent.
    given = {name: record[name] for name in ("probability", "confidence") if record.get(name) is not None}
    if not given:
        raise VlmError(f"{where}: needs 'probability' (or 'confidence'), the probability of the answer in [0.5, 1]")
    for name, value in given.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise VlmError(f"{where}: {name!r} must be a number in [0, 1], got {value!r}")
    if len(given) == 2 and given["probability"] != given["confidence"]:
        raise VlmError(f"{where}: 'probability' {given['probability']!r} and its alias 'confidence' "
                       f"{given['confidence']!r} differ; give one of them")
    return float(next(iter(given.values())))


def _optional_number(record: dict, name: str, where: str) -> float:
    value = record.get(name)
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise VlmError(f"{where}: {name!r} must be a number, got {value!r}")
    return float(value)


def _check_predicate(record: dict, allowed: Mapping[str, str], where: str) -> None:
    predicate = record.get("predicate")
    sentence_given = any(record.get(name) is not None for name in ("statement", "caption"))  # null: not given
    if sentence_given or not isinstance(predicate, str):
        return  # the claim is the sentence; a stray 'predicate' field is not part of it
    if predicate_key(predicate) not in allowed:
        raise VlmError(f"{where}: predicate {predicate!r} is not one of the allowed predicates "
                       f"{sorted(allowed.values())}")


def _parse_answer(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _ANSWER_WORDS:
        return _ANSWER_WORDS[value.strip().lower()]
    raise VlmError(f"{where}: 'answer' must be true/false, 'yes'/'no' or 1/0, got {value!r}")
