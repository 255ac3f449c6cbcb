"""``tsg eval vsr``: when can a VLM's spatial claims be trusted? The VSR protocol of Imran & Lee (2026).

VSR (Visual Spatial Reasoning, Liu et al., TACL 2023, github.com/cambridgeltl/visual-spatial-reasoning) pairs COCO
images with captions such as "The cat is left of the dog." labelled true or false. For every caption:

1. the VLM judges it ("Is this statement true? ... Answer yes or no."); the VLM is *correct* when its answer equals
   the label;
2. the configured open-vocabulary detector (``detector.*``, e.g. Grounding DINO) looks for the caption's subject and
   object, with its vocabulary set to those two phrases; the best-scoring box of each is kept;
3. when the relation has a meaning in the image plane (:data:`RELATION_TO_IMAGE_PREDICATE`), the boxes verify it:
   a signed margin from :func:`~trusted_scene_graph.relations.image.image_relations`, divided by the mean size of
   the two boxes along the relation's axis (so "one object width apart" means the same for near and far objects);
4. three trust scores predict whether the VLM is right:

   - ``vlm_confidence``: the probability the VLM gave to its own answer;
   - ``geometric_alignment``: ``0.5 + 0.5 tanh(a)`` with the alignment ``a = s * m`` (``s`` = +1 when the VLM said
     "true", -1 when it said "false"; ``m`` = normalised margin): above 0.5 when the boxes agree with the VLM,
     below when they contradict it, exactly 0.5 when the claim cannot be verified (relation without a 2D meaning,
     an object not detected, subject and object the same phrase);
   - ``fused_logistic``: a logistic regression on [VLM probability, tanh(a) (0 when unverifiable), subject and
     object detection scores, verifiable flag], out of fold: grouped k-fold by image
     (:func:`sklearn.model_selection.cross_val_predict` with ``GroupKFold``), so no sample's score comes from a
     model that saw its image (:func:`fuse_logistic`).

Per score the report gives AUROC, AURC, the coverage at which the kept claims reach the target accuracy (default
0.60) and the expected calibration error. ``in front of``/``behind`` and the other depth, topological and
orientation relations have no defensible 2D box test and count as unverifiable.

Bad input never stops a run midway: an invalid annotation line (with ``skip_invalid``), a missing or unreadable
image, a VLM that cannot answer — each skips that sample and is counted in the report; a detector failure makes the
sample unverifiable. Per-sample results are appended to ``samples.jsonl`` as they are computed, so an interrupted
run leaves them behind; the summary files are written at the end.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trusted_scene_graph.arrays import json_ready
from trusted_scene_graph.config import Config
from trusted_scene_graph.evaluation import EvaluationError
from trusted_scene_graph.evaluation.metrics import aurc, auroc, coverage_at_precision, expected_calibration_error
from trusted_scene_graph.files import remove_files, replace_text
from trusted_scene_graph.geometry import Intrinsics
from trusted_scene_graph.perception.detector import CameraFrame, Detection, Detector, PerceptionError, make_detector
from trusted_scene_graph.relations.image import image_relations
from trusted_scene_graph.vlm import VisionLanguageModel, VlmAnswer, VlmError, make_vlm, needs_relation_triple

EXIT_OK, EXIT_FAILED = 0, 1  # as the CLI's: 1 = the command ran but evaluated nothing (or was interrupted)
DEFAULT_TARGET_ACCURACY = 0.60
DEFAULT_FOLDS = 5

# VSR relations with an image-plane meaning, and the image predicate that tests them. "on top of"/"on" use
# "above" as their 2D proxy (what rests on something is drawn higher in the picture), "under"/"beneath" "below".
# Depth ("in front of", "behind"), containment, contact and orientation relations are not decidable from two
# boxes, so they are absent: unverifiable.
RELATION_TO_IMAGE_PREDICATE: dict[str, str] = {
    "left of": "image_left_of",
    "at the left side of": "image_left_of",
    "right of": "image_right_of",
    "at the right side of": "image_right_of",
    "above": "image_above",
    "over": "image_above",
    "on top of": "image_above",
    "on": "image_above",
    "below": "image_below",
    "under": "image_below",
    "beneath": "image_below",
}
_OPPOSITE = {"image_left_of": "image_right_of", "image_right_of": "image_left_of",
             "image_above": "image_below", "image_below": "image_above"}
_SIZE_COLUMN = {"image_left_of": 2, "image_right_of": 2, "image_above": 3, "image_below": 3}  # width or height

SCORE_NAMES = ("vlm_confidence", "geometric_alignment", "fused_logistic")
FUSION_FEATURES = ("vlm_probability", "geometric_alignment", "subject_score", "object_score", "verifiable")
SKIP_REASONS = ("missing_image", "unreadable_image", "vlm_error")
UNVERIFIABLE_REASONS = ("relation", "missing_subject", "missing_object", "same_phrase", "detector_error")


# --- annotations --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VsrSample:
    """One VSR caption: ``label`` says whether ``caption`` is true of ``image``; ``line`` is where it was read
    (1-based line of a JSONL file, or 1-based position in a JSON list)."""

    line: int
    image: str
    caption: str
    label: bool
    relation: str
    subj: str
    obj: str


def read_vsr_annotations(path: Path) -> tuple[list[VsrSample], list[str]]:
    """The valid samples of a VSR annotation file and one message per invalid record (naming its line).

    The file is VSR's JSONL (one object per line with ``image``, ``caption``, ``label`` 0/1, ``relation`` and, in
    some releases, ``subj``/``obj``), or a JSON list of such objects. Without ``subj``/``obj`` they are read from
    the caption, which VSR words "The <subj> [is] <relation> the <obj>.". Blank lines are ignored. A file that
    cannot be read at all raises :class:`EvaluationError`.
    """
    path = Path(path)
    try:
        # As the recorded VLM answers are read: a byte-order mark is not part of the first line.
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise EvaluationError(f"cannot read VSR annotations {str(path)!r}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise EvaluationError(f"VSR annotations {str(path)!r} are not UTF-8 text ({exc.reason} at byte "
                              f"{exc.start})") from exc
    samples: list[VsrSample] = []
    problems: list[str] = []
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EvaluationError(f"{path}: not a valid JSON list: {exc.msg} at line {exc.lineno}") from exc
        numbered = [(index, record, f"{path}: record {index}") for index, record in enumerate(records, start=1)]
    else:
        numbered = []
        # Only a line feed ends a JSONL line: a caption may hold any other Unicode line separator (U+2028, which
        # json.dumps(ensure_ascii=False) leaves as it is), and splitlines() would split the record there.
        for line_number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                numbered.append((line_number, json.loads(line), where))
            except json.JSONDecodeError as exc:
                problems.append(f"{where}: not valid JSON: {exc.msg}")
    for line_number, record, where in numbered:
        try:
            samples.append(_parse_sample(record, line_number, where))
        except EvaluationError as exc:
            problems.append(str(exc))
    return samples, problems


def load_vsr_annotations(path: Path, *, skip_invalid: bool = False) -> list[VsrSample]:
    """The samples of a VSR annotation file (see :func:`read_vsr_annotations`).

    An invalid record raises :class:`EvaluationError` naming its line (and how many others are invalid), unless
    ``skip_invalid``, which drops it.
    """
    samples, problems = read_vsr_annotations(path)
    if problems and not skip_invalid:
        more = f" (and {len(problems) - 1} more invalid records)" if len(problems) > 1 else ""
        raise EvaluationError(f"{problems[0]}{more}; fix them or skip them (--skip-invalid)")
    return samples


def _parse_sample(record: Any, line: int, where: str) -> VsrSample:
    if not isinstance(record, dict):
        raise EvaluationError(f"{where}: expected a JSON object, got {type(record).__name__}")
    fields = {}
    for name in ("image", "caption", "relation"):
        value = record.get(name)
        if not isinstance(value, str) or not value.strip():
            raise EvaluationError(f"{where}: {name!r} must be a non-empty string, got {value!r}")
        fields[name] = " ".join(value.split())
    label = record.get("label")
    if isinstance(label, bool):
        pass
    elif isinstance(label, int) and label in (0, 1):
        label = bool(label)
    else:
        raise EvaluationError(f"{where}: 'label' must be 0 or 1, got {label!r}")
    subj, obj = record.get("subj"), record.get("obj")
    if subj is None and obj is None:
        subj, obj = _objects_from_caption(fields["caption"], fields["relation"], where)
    for name, value in (("subj", subj), ("obj", obj)):
        if not isinstance(value, str) or not value.strip():
            raise EvaluationError(f"{where}: {name!r} must be a non-empty string, got {value!r}")
    return VsrSample(line, fields["image"], fields["caption"], label, fields["relation"], " ".join(subj.split()),
                     " ".join(obj.split()))


def _objects_from_caption(caption: str, relation: str, where: str) -> tuple[str, str]:
    pattern = rf"the (?P<subj>.+?) (?:is |are )?{re.escape(relation)} the (?P<obj>.+?)\.?"
    match = re.fullmatch(pattern, caption.strip(), flags=re.IGNORECASE)
    if match is None:
        raise EvaluationError(f"{where}: no 'subj'/'obj' given and the caption {caption!r} does not read "
                              f"'The <subj> [is] {relation} the <obj>.'")
    return match["subj"].strip(), match["obj"].strip()


# --- geometry -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeometricVerdict:
    """The image-plane test of a relation: ``margin_px`` is how far past the decision boundary the boxes are
    (positive: the relation holds), ``normalised_margin`` the same in units of the boxes' mean size along the axis."""

    predicate: str
    margin_px: float
    normalised_margin: float

    @property
    def holds(self) -> bool:
        return self.normalised_margin > 0


def image_predicate(relation: str) -> str | None:
    """The image predicate testing a VSR relation, or None when it has no 2D meaning."""
    return RELATION_TO_IMAGE_PREDICATE.get(" ".join(relation.lower().split()))


def verify_relation(relation: str, subject_box_xywh_px: Sequence[float],
                    object_box_xywh_px: Sequence[float]) -> GeometricVerdict | None:
    """Test ``subject relation object`` on two boxes ``(x, y, w, h)``; None for a relation without a 2D meaning.

    The margin comes from :func:`~trusted_scene_graph.relations.image.image_relations` (centre to centre: for
    "left of", ``centre_x(object) - centre_x(subject)``), negative when the opposite predicate holds and 0 on the
    boundary. It is divided by the mean width (left/right) or height (above/below) of the two boxes, at least 1 px.
    """
    predicate = image_predicate(relation)
    if predicate is None:
        return None
    boxes = np.array([subject_box_xywh_px, object_box_xywh_px], dtype=np.float64)
    margins = {edge.predicate: edge.margin_px for edge in image_relations(boxes, [0, 1]) if edge.subject_id == 0}
    if predicate in margins:
        margin_px = margins[predicate]
    elif _OPPOSITE[predicate] in margins:
        margin_px = -margins[_OPPOSITE[predicate]]
    else:
        margin_px = 0.0
    # Floor of 1 px: a degenerate (zero-size) box must not turn a finite margin into an infinite one.
    size_px = max(float(boxes[:, _SIZE_COLUMN[predicate]].mean()), 1.0)
    return GeometricVerdict(predicate, float(margin_px), float(margin_px) / size_px)


def alignment(vlm_says_true: bool, verdict: GeometricVerdict | None) -> float:
    """Agreement of the boxes with the VLM's verdict: ``+/-1 * normalised margin``; NaN when unverifiable."""
    if verdict is None:
        return math.nan
    return verdict.normalised_margin if vlm_says_true else -verdict.normalised_margin


def geometric_trust(alignments: np.ndarray) -> np.ndarray:
    """``0.5 + 0.5 tanh(alignment)`` in (0, 1); exactly 0.5 (no evidence either way) where the alignment is NaN."""
    values = np.asarray(alignments, dtype=np.float64)
    return np.where(np.isnan(values), 0.5, 0.5 + 0.5 * np.tanh(np.nan_to_num(values)))


# --- detection ----------------------------------------------------------------------------------------------------


class PhrasePairDetector:
    """Boxes of a caption's subject and object: the configured detector with its vocabulary set to the two phrases.

    The weights are loaded once, at construction (so missing weights fail before any sample is read); for
    ``grounding_dino`` every phrase pair reuses the loaded model with its own tokenised prompt.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._config = config
        self._base = make_detector(self._with_vocabulary(("object",)))
        if self._base.needs_instances:
            raise EvaluationError(f"detector.backend {config['detector.backend']!r} needs simulator instance "
                                  "images, which VSR does not have; use an open-vocabulary detector "
                                  "(detector.backend: grounding_dino)")
        self._detectors: dict[tuple[str, ...], Detector] = {}

    def _with_vocabulary(self, phrases: Sequence[str]) -> Config:
        return Config({**self._config, "detector.vocabulary": list(phrases), "detector.label_map": []})

    def _detector(self, phrases: tuple[str, ...]) -> Detector:
        detector = self._detectors.get(phrases)
        if detector is not None:
            return detector
        if self._config["detector.backend"] == "grounding_dino":
            from trusted_scene_graph.perception.grounding_dino import GroundingDinoDetector

            config = self._config
            # No suppression across the two phrases (nms_iou 1): the subject's box must not remove the object's
            # where they overlap (a rider on a horse); the best box of each phrase is kept below.
            detector = GroundingDinoDetector(
                self._base.model, self._base.processor, phrases, box_threshold=config["detector.box_threshold"],
                text_threshold=config["detector.text_threshold"], nms_iou=1.0,
                min_box_area_px=config["detector.min_pixels"], device=config["detector.device"],
                half_precision=config["detector.half_precision"])
        else:
            detector = make_detector(self._with_vocabulary(phrases))
        if len(self._detectors) >= 256:  # bounded: VSR has thousands of phrase pairs
            self._detectors.clear()
        self._detectors[phrases] = detector
        return detector

    def detect(self, image_rgb: np.ndarray, subject: str, object_: str) -> tuple[Detection | None, Detection | None]:
        """The highest-scoring detection of each phrase (None when it is not found)."""
        phrases = tuple(dict.fromkeys((subject.strip(), object_.strip())))
        height_px, width_px = image_rgb.shape[:2]
        # The 2D detector never reads the intrinsics; CameraFrame needs some that match the image size.
        # The longer side as focal length: fx = width made a very tall image look 90 degrees wide, which Intrinsics
        # refuses.
        focal_px = float(max(width_px, height_px))
        intrinsics = Intrinsics(width=width_px, height=height_px, fx=focal_px, fy=focal_px, cx=width_px / 2,
                                cy=height_px / 2)
        detections = self._detector(phrases).detect(CameraFrame(0, image_rgb, None, intrinsics))
        best: dict[str, Detection] = {}
        for detection in detections:
            if detection.label not in best or detection.score > best[detection.label].score:
                best[detection.label] = detection
        return best.get(subject.strip()), best.get(object_.strip())


# --- one sample ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VsrOutcome:
    """Everything measured for one sample: the VLM's answer, the two detections and the geometric verdict."""

    sample: VsrSample
    answer: VlmAnswer
    subject: Detection | None
    object: Detection | None
    verdict: GeometricVerdict | None
    unverifiable_reason: str = ""  # one of UNVERIFIABLE_REASONS, "" when verified

    @property
    def vlm_correct(self) -> bool:
        return self.answer.answer == self.sample.label

    @property
    def alignment(self) -> float:
        return alignment(self.answer.answer, self.verdict)

    def to_json(self) -> dict[str, Any]:
        sample, verdict = self.sample, self.verdict
        return {
            "line": sample.line, "image": sample.image, "caption": sample.caption, "label": sample.label,
            "relation": sample.relation, "subj": sample.subj, "obj": sample.obj,
            "vlm_answer": self.answer.answer, "vlm_probability": self.answer.probability,
            "vlm_nmlp": _finite_or_none(self.answer.nmlp), "vlm_answer_mass": _finite_or_none(self.answer.answer_mass),
            "vlm_raw_text": self.answer.raw_text,
            "vlm_correct": self.vlm_correct,
            "subject_box_xywh_px": list(self.subject.box_xywh_px) if self.subject else None,
            "subject_score": self.subject.score if self.subject else None,
            "object_box_xywh_px": list(self.object.box_xywh_px) if self.object else None,
            "object_score": self.object.score if self.object else None,
            "image_predicate": verdict.predicate if verdict else None,
            "margin_px": verdict.margin_px if verdict else None,
            "normalised_margin": verdict.normalised_margin if verdict else None,
            "geometry_holds": verdict.holds if verdict else None,
            "alignment": _finite_or_none(self.alignment),
            "unverifiable_reason": self.unverifiable_reason or None,
        }


def evaluate_sample(sample: VsrSample, image_rgb: np.ndarray, vlm: VisionLanguageModel,
                    detector: PhrasePairDetector) -> VsrOutcome:
    """Judge, detect and verify one sample. A :class:`VlmError` propagates (the sample cannot be scored); a
    detector failure (:class:`PerceptionError`) leaves it unverifiable. A VLM that judges relation triples only
    (``contrastive``) gets ``subj``, ``relation``, ``obj`` instead of the caption."""
    if needs_relation_triple(vlm):
        answer = vlm.judge_relation(image_rgb, sample.subj, sample.relation, sample.obj, image_id=sample.image)
    else:
        answer = vlm.judge(image_rgb, sample.caption, image_id=sample.image)
    # The detector reads its prompt in lower case: phrases differing only in case or spacing are one phrase to it.
    same_phrase = " ".join(sample.subj.lower().split()) == " ".join(sample.obj.lower().split())
    try:
        subject, object_ = detector.detect(image_rgb, sample.subj, sample.subj if same_phrase else sample.obj)
    except PerceptionError:
        return VsrOutcome(sample, answer, None, None, None, "detector_error")
    if image_predicate(sample.relation) is None:
        reason = "relation"
    elif same_phrase:
        reason = "same_phrase"  # one label for both: which box is the subject cannot be told
    elif subject is None:
        reason = "missing_subject"
    elif object_ is None:
        reason = "missing_object"
    else:
        verdict = verify_relation(sample.relation, subject.box_xywh_px, object_.box_xywh_px)
        return VsrOutcome(sample, answer, subject, object_, verdict)
    return VsrOutcome(sample, answer, subject, object_, None, reason)


# --- fusion -------------------------------------------------------------------------------------------------------


def fusion_features(outcomes: Sequence[VsrOutcome]) -> np.ndarray:
    """(N, 5) features in :data:`FUSION_FEATURES` order; tanh-squashed alignment, 0 when unverifiable."""
    rows = [(o.answer.probability, 0.0 if o.verdict is None else math.tanh(o.alignment),
             o.subject.score if o.subject else 0.0, o.object.score if o.object else 0.0, float(o.verdict is not None))
            for o in outcomes]
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(FUSION_FEATURES))


@dataclass(frozen=True)
class FusionResult:
    """Out-of-fold fused scores (NaN everywhere when fusion was not possible, ``note`` says why)."""

    scores: np.ndarray
    folds: int
    note: str = ""

    @property
    def available(self) -> bool:
        return not self.note


def fuse_logistic(features: np.ndarray, correct: np.ndarray, groups: Sequence[str],
                  folds: int = DEFAULT_FOLDS) -> FusionResult:
    """P(VLM correct) from a standardised logistic regression, each sample scored by a model fitted on the other
    images only (``cross_val_predict`` with ``GroupKFold`` over ``groups``, ``min(folds, images)`` folds).

    Not possible (NaN scores, a note) with fewer than two images, or when a training fold lacks correct or wrong
    samples (a classifier cannot be fitted on one class).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(correct, dtype=bool).astype(np.int64)
    group_array = np.asarray(list(groups), dtype=object)
    if features.ndim != 2 or not len(features) == len(labels) == len(group_array):
        raise EvaluationError(f"fuse_logistic: features {features.shape}, {len(labels)} labels and "
                              f"{len(group_array)} groups do not match")
    nan_scores = np.full(len(labels), np.nan)
    image_count = len(set(group_array.tolist()))
    if image_count < 2:
        return FusionResult(nan_scores, 0, f"needs samples from at least 2 images for grouped cross-validation, "
                                           f"got {image_count}")
    splitter = GroupKFold(n_splits=min(folds, image_count))
    for fold, (train, _) in enumerate(splitter.split(features, labels, group_array), start=1):
        if len(np.unique(labels[train])) < 2:
            return FusionResult(nan_scores, splitter.n_splits,
                                f"training fold {fold} of {splitter.n_splits} has only "
                                f"{'correct' if labels[train].all() else 'wrong'} VLM answers")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    probabilities = cross_val_predict(model, features, labels, groups=group_array, cv=splitter,
                                      method="predict_proba")
    return FusionResult(probabilities[:, 1], splitter.n_splits)


# --- metrics and report -------------------------------------------------------------------------------------------


def score_metrics(scores: np.ndarray, correct: np.ndarray, target_accuracy: float) -> dict[str, float]:
    """AUROC, AURC, coverage (and its threshold) at ``target_accuracy`` and ECE of one trust score."""
    coverage, threshold = coverage_at_precision(scores, correct, target_accuracy)
    return {"auroc": auroc(scores, correct), "aurc": aurc(scores, correct), "coverage_at_target": coverage,
            "threshold_at_target": threshold, "ece": expected_calibration_error(scores, correct)}


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def summarise(outcomes: Sequence[VsrOutcome], target_accuracy: float = DEFAULT_TARGET_ACCURACY,
              folds: int = DEFAULT_FOLDS) -> tuple[dict[str, Any], dict[str, np.ndarray], np.ndarray]:
    """Metrics of the evaluated samples: ``(metrics, scores by name, correct)``.

    Scores are computed for every sample; a score that could not be computed (fusion not possible) is left out
    of the returned scores and has null metrics.
    """
    correct = np.array([o.vlm_correct for o in outcomes], dtype=bool)
    verifiable = np.array([o.verdict is not None for o in outcomes], dtype=bool)
    fusion = fuse_logistic(fusion_features(outcomes), correct, [o.sample.image for o in outcomes], folds)
    scores = {
        "vlm_confidence": np.array([o.answer.probability for o in outcomes], dtype=np.float64),
        "geometric_alignment": geometric_trust(np.array([o.alignment for o in outcomes], dtype=np.float64)),
    }
    if fusion.available:
        scores["fused_logistic"] = fusion.scores
    score_table: dict[str, Any] = {}
    for name in SCORE_NAMES:
        if name not in scores:
            score_table[name] = None
            continue
        entry = score_metrics(scores[name], correct, target_accuracy)
        entry["auroc_verifiable"] = auroc(scores[name][verifiable], correct[verifiable])
        score_table[name] = entry
    reasons = Counter(o.unverifiable_reason for o in outcomes if o.unverifiable_reason)
    geometry_correct = [o.verdict.holds == o.sample.label for o in outcomes if o.verdict is not None]
    agreement = [o.alignment > 0 for o in outcomes if o.verdict is not None]
    per_relation: dict[str, dict[str, Any]] = {}
    for outcome in outcomes:
        entry = per_relation.setdefault(outcome.sample.relation, {"count": 0, "verifiable": 0, "vlm_correct": 0})
        entry["count"] += 1
        entry["verifiable"] += outcome.verdict is not None
        entry["vlm_correct"] += outcome.vlm_correct
    for entry in per_relation.values():
        entry["vlm_accuracy"] = entry.pop("vlm_correct") / entry["count"]
    metrics = {
        "target_accuracy": target_accuracy,
        "vlm": {
            "accuracy": float(correct.mean()) if len(correct) else math.nan,
            "accuracy_verifiable": float(correct[verifiable].mean()) if verifiable.any() else math.nan,
            "answered_true": int(sum(o.answer.answer for o in outcomes)),
            "mean_probability": float(scores["vlm_confidence"].mean()) if len(outcomes) else math.nan,
        },
        "geometry": {
            "verifiable": int(verifiable.sum()),
            "unverifiable": {reason: int(reasons.get(reason, 0)) for reason in UNVERIFIABLE_REASONS},
            "missing_detections": {"subject": sum(o.subject is None for o in outcomes),
                                   "object": sum(o.object is None for o in outcomes)},
            "accuracy": float(np.mean(geometry_correct)) if geometry_correct else math.nan,
            "agreement_with_vlm": float(np.mean(agreement)) if agreement else math.nan,
        },
        "scores": score_table,
        "fusion": {"model": "logistic_regression", "features": list(FUSION_FEATURES), "folds": fusion.folds,
                   "grouped_by": "image", "note": fusion.note or None},
        "per_relation": dict(sorted(per_relation.items())),
    }
    return metrics, scores, correct


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_report(metrics: Mapping[str, Any]) -> str:
    """``report.md``: the counts, the VLM's accuracy, the geometry and a table of the trust scores."""
    counts, vlm, geometry = metrics["counts"], metrics["vlm"], metrics["geometry"]
    target = metrics["target_accuracy"]
    lines = [
        "# VSR: when to trust the VLM's spatial claims",
        "",
        f"Annotations `{metrics['annotations']}`, images `{metrics['images_dir']}`, VLM backend "
        f"`{metrics['vlm_backend']}`, detector `{metrics['detector_backend']}`."
        + (" **Interrupted: partial results.**" if metrics.get("interrupted") else ""),
        "",
        "## Samples",
        "",
        f"- read: {counts['annotations']} valid, {counts['invalid_annotations']} invalid (skipped)",
        f"- evaluated: {counts['evaluated']} of {counts['requested']}",
        "- skipped: " + ", ".join(f"{reason.replace('_', ' ')} {counts['skipped'][reason]}"
                                    for reason in SKIP_REASONS),
        f"- detector errors (sample kept, unverifiable): {counts['detector_errors']}",
        "",
        "## VLM",
        "",
        f"- accuracy: {_fmt(vlm['accuracy'])} (on verifiable samples: {_fmt(vlm['accuracy_verifiable'])})",
        f"- answered \"true\": {vlm['answered_true']} of {counts['evaluated']}; mean probability of its answer "
        f"{_fmt(vlm['mean_probability'])}",
        "",
        "## Geometry (2D boxes)",
        "",
        f"- verifiable: {geometry['verifiable']} of {counts['evaluated']}; unverifiable: "
        + ", ".join(f"{reason.replace('_', ' ')} {count}" for reason, count in geometry["unverifiable"].items()),
        f"- missing detections: subject {geometry['missing_detections']['subject']}, object "
        f"{geometry['missing_detections']['object']}",
        f"- accuracy of the box verdict against the labels: {_fmt(geometry['accuracy'])}; agreement with the VLM: "
        f"{_fmt(geometry['agreement_with_vlm'])}",
        "",
        f"## Trust scores (does the VLM's answer deserve trust? target accuracy {target:.2f})",
        "",
        "| score | AUROC | AUROC (verifiable) | AURC | coverage at target | threshold | ECE |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in SCORE_NAMES:
        entry = metrics["scores"][name]
        if entry is None:
            lines.append(f"| {name} | n/a | n/a | n/a | n/a | n/a | n/a |")
            continue
        lines.append(f"| {name} | {_fmt(entry['auroc'])} | {_fmt(entry['auroc_verifiable'])} | "
                     f"{_fmt(entry['aurc'])} | {_fmt(entry['coverage_at_target'])} | "
                     f"{_fmt(entry['threshold_at_target'])} | {_fmt(entry['ece'])} |")
    fusion = metrics["fusion"]
    lines += [
        "",
        f"Fusion: logistic regression on {', '.join(fusion['features'])}; grouped {fusion['folds']}-fold "
        f"cross-validation by image (each score from a model that never saw the image)."
        + (f" Not computed: {fusion['note']}." if fusion["note"] else ""),
        "",
        "## Per relation",
        "",
        "| relation | samples | verifiable | VLM accuracy |",
        "|---|---|---|---|",
    ]
    for relation, entry in metrics["per_relation"].items():
        lines.append(f"| {relation} | {entry['count']} | {entry['verifiable']} | {_fmt(entry['vlm_accuracy'])} |")
    if metrics["problems"]:
        lines += ["", "## Problems (first ones)", ""] + [f"- {problem}" for problem in metrics["problems"]]
    figures = [name for name in ("roc.png", "risk_coverage.png") if name in metrics.get("figures", [])]
    if figures:
        lines += ["", "## Figures", ""] + [f"![{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"


# --- the command --------------------------------------------------------------------------------------------------


def _read_image(images_dir: Path, name: str) -> tuple[np.ndarray | None, tuple[str, str]]:
    """The image as (H, W, 3) uint8 RGB, or None and (skip reason, message)."""
    from PIL import Image

    path = images_dir / name
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8), ("", "")
    except FileNotFoundError:
        return None, ("missing_image", f"image {name!r} not found in {str(images_dir)!r}")
    except OSError as exc:  # PIL.UnidentifiedImageError is an OSError; so are truncated files
        return None, ("unreadable_image", f"image {name!r} is unreadable: {exc}")


def run_vsr_eval(config: Mapping[str, Any], images_dir: Path, annotations_path: Path, out_dir: Path, *,
                 target_accuracy: float = DEFAULT_TARGET_ACCURACY, folds: int = DEFAULT_FOLDS,
                 limit: int | None = None, skip_invalid: bool = False,
                 vlm: VisionLanguageModel | None = None,
                 log: Callable[[str], None] | None = None) -> int:
    """Evaluate trust in the VLM on a VSR annotation file; write metrics.json, report.md, samples.jsonl, roc.png and
    risk_coverage.png into ``out_dir``. Returns 0, or 1 when no sample could be evaluated or the run was interrupted
    (the files are written either way).

    ``config`` supplies ``vlm.*`` (unless ``vlm`` is given) and ``detector.*``; images are ``images_dir / image``.
    ``limit`` evaluates only the first samples; ``skip_invalid`` drops invalid annotation records (otherwise they
    raise :class:`EvaluationError` before anything runs). Configuration problems (no VLM, missing weights, a
    detector that needs simulator instances) raise :class:`~trusted_scene_graph.errors.TsgError` up front.
    """
    if not (math.isfinite(target_accuracy) and 0.0 <= target_accuracy <= 1.0):
        raise EvaluationError(f"target accuracy must be in [0, 1], got {target_accuracy}")
    if folds < 2:
        raise EvaluationError(f"folds must be at least 2, got {folds}")
    if limit is not None and limit < 1:
        raise EvaluationError(f"limit must be at least 1, got {limit}")
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    if not images_dir.is_dir():
        raise EvaluationError(f"VSR image folder {str(images_dir)!r} does not exist or is not a folder")
    log = log or (lambda message: None)
    samples, problems = read_vsr_annotations(annotations_path)
    if problems and not skip_invalid:
        load_vsr_annotations(annotations_path)  # raises, naming the first invalid record
    from trusted_scene_graph.evaluation.report import prepare_output_dir

    prepare_output_dir(out_dir)  # a bad --out fails now, not after the models load and every sample is asked
    invalid_count = len(problems)
    requested = samples[:limit] if limit is not None else samples
    vlm_backend = type(vlm).__name__ if vlm is not None else config["vlm.backend"]
    if vlm is None:
        vlm = make_vlm(config)
        if vlm is None:
            raise EvaluationError("vlm.backend is 'none': the VSR evaluation needs a VLM; set vlm.backend to "
                                  "'generative' (with vlm.model_path) or 'recorded' (with vlm.recorded_path)")
    detector = PhrasePairDetector(config)
    out_dir.mkdir(parents=True, exist_ok=True)

    outcomes: list[VsrOutcome] = []
    skipped: Counter[str] = Counter()
    # The last image read, its pixels or why there are none: consecutive captions of one image read it once.
    image_name, image_rgb, image_problem = None, None, ("", "")
    interrupted = False
    with open(out_dir / "samples.jsonl", "w", encoding="utf-8") as samples_file:
        try:
            for index, sample in enumerate(requested, start=1):
                if sample.image != image_name:
                    image_name, image_rgb, image_problem = sample.image, *_read_image(images_dir, sample.image)
                if image_rgb is None:
                    skipped[image_problem[0]] += 1
                    problems.append(f"line {sample.line}: {image_problem[1]}")
                    continue
                try:
                    outcome = evaluate_sample(sample, image_rgb, vlm, detector)
                except VlmError as exc:
                    skipped["vlm_error"] += 1
                    problems.append(f"line {sample.line}: the VLM could not answer: {exc}")
                    continue
                outcomes.append(outcome)
                samples_file.write(json.dumps(json_ready(outcome.to_json())) + "\n")
                samples_file.flush()
                if index % 50 == 0:
                    log(f"{index}/{len(requested)} samples")
        except KeyboardInterrupt:
            interrupted = True
            log(f"interrupted after {len(outcomes)} samples; writing partial results")

    metrics, scores, correct = summarise(outcomes, target_accuracy, folds)
    metrics = {
        "annotations": str(annotations_path),
        "images_dir": str(images_dir),
        "vlm_backend": vlm_backend,
        "detector_backend": config["detector.backend"],
        "interrupted": interrupted,
        "counts": {
            "annotations": len(samples),
            "invalid_annotations": invalid_count,
            "requested": len(requested),
            "evaluated": len(outcomes),
            "skipped": {reason: int(skipped.get(reason, 0)) for reason in SKIP_REASONS},
            "detector_errors": sum(o.unverifiable_reason == "detector_error" for o in outcomes),
        },
        **metrics,
        "problems": problems[:50],
    }
    from trusted_scene_graph.evaluation.plots import plot_risk_coverage, plot_roc

    figures = []
    remove_files(out_dir, ("roc.png", "risk_coverage.png"))  # an earlier run's, not shown beside these results
    curves = {name: (values, correct) for name, values in scores.items()}
    for name, plot, title in (("roc.png", plot_roc, "ROC: predicting whether the VLM is right"),
                              ("risk_coverage.png", plot_risk_coverage, "Risk-coverage of the VLM's answers")):
        try:
            plot(curves, out_dir / name, title)
            figures.append(name)
        except EvaluationError as exc:  # nothing to draw (no samples, or only one outcome)
            metrics["problems"].append(f"{name} not drawn: {exc}")
    metrics["figures"] = figures
    replace_text(out_dir / "metrics.json", json.dumps(json_ready(metrics), indent=2) + "\n")
    replace_text(out_dir / "report.md", render_report(metrics))
    skipped_text = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in skipped.items() if count)
    log(f"evaluated {len(outcomes)} of {len(requested)} samples"
        + (f" (skipped: {skipped_text}; the first: {problems[invalid_count]})" if skipped_text else "")
        + f"; results in {out_dir}")
    return EXIT_OK if outcomes and not interrupted else EXIT_FAILED
