"""``tsg label INPUT --pair ... --out OUTPUT``: what it labels, where it writes, and how a rerun resumes.

INPUT is a rosbag2 bag, a folder of bags, or a LeRobot v3 dataset directory (``meta/info.json``).

* Bags: one work item per bag, committed as ``OUTPUT/<bag name>/`` (the labelled copy, or with ``rewards_only`` a
  bag of the rewards alone, plus its ``rewards.parquet``, :mod:`.bags`); ``OUTPUT/rewards.parquet`` joins the tables
  of the bags labelled.
* LeRobot: one work item per episode, committed as ``OUTPUT/tsg_rewards/episode-NNNNNN/rewards.parquet``; when every
  episode is done the dataset is written into ``OUTPUT`` around them (:mod:`.lerobot`).

Rerunning the same command finishes an interrupted run: committed items are skipped (the engine's rule), and an
OUTPUT dataset that is already complete is left as it is. A manifest (:data:`MANIFEST_FILE`: input, pairs, config
hash, LeRobot options, the bags' output form) makes a rerun with other settings an error instead of a mix of old and
new labels (unless the earlier run committed nothing: its manifest is then replaced); as it names the input by its
path, a LeRobot episode committed from rows that have since changed is refused too (each records a fingerprint of its
rows, :func:`.lerobot.check_committed_episodes`). A non-empty OUTPUT that tsg label did not write (hidden entries
included) is refused. Every setting is checked before the manifest is written.
One lock is held over the whole run (for LeRobot: clearing an interrupted dataset write, labelling, writing the
dataset), so a second run into OUTPUT is refused. The source is only read: an OUTPUT inside INPUT (or INPUT inside
OUTPUT) is refused, and tsg label deletes nothing in OUTPUT it did not write.
"""

from __future__ import annotations

import difflib
import glob
import json
import math
import re
import shutil
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trusted_scene_graph.config.schema import Config
from trusted_scene_graph.dataset import DatasetError
from trusted_scene_graph.dataset.lerobot import (
    INFO_PATH,
    LABELLER_SUBDIR,
    UNCOPIED_ENTRIES,
    LeRobotDataset,
    build_dir_prefix,
)
from trusted_scene_graph.example_models import GROUNDING_DINO_EXAMPLE_ID, MONOCULAR_DEPTH_EXAMPLE_ID
from trusted_scene_graph.files import partial_path, replace_text
from trusted_scene_graph.label import LabelError
from trusted_scene_graph.label.bags import (
    REWARDS_FILE,
    BagJob,
    bag_key,
    check_labelled_bags,
    find_bags,
    label_bag_item,
    merge_rewards_tables,
    nested_bags,
    rewards_table_note,
    short_list,
    valid_fraction,
)
from trusted_scene_graph.label.engine import (
    LOCK_FILE,
    ItemDone,
    RunSummary,
    WorkItem,
    check_run_options,
    exclusive,
    run_items,
)
from trusted_scene_graph.label.lerobot import (
    REWARD_COLUMN,
    VALID_COLUMN,
    FrameSource,
    assemble,
    check_committed_episodes,
    check_frame_source,
    label_episode_item,
    lerobot_jobs,
)
from trusted_scene_graph.perception.detector import PerceptionError, configured_labels
from trusted_scene_graph.perception.hf import resolve_model_source
from trusted_scene_graph.reward import pairs_from_config
from trusted_scene_graph.reward.sides import EE_FRAME, GOAL_FRAME, frame_of
from trusted_scene_graph.text import plural

#: The run's settings, in --out (bags) or --out/tsg_rewards (LeRobot): a rerun must match them.
MANIFEST_FILE = "tsg_label.json"
MANIFEST_FORMAT = 1
#: The backends a labeller loads weights for, (backend parameter, backend) -> (weights parameter, a model id for the
#: error to suggest downloading). No VLM: a labelling pipeline has objects only, and never loads one.
MODEL_WEIGHTS = {
    ("detector.backend", "grounding_dino"): ("detector.model_path", GROUNDING_DINO_EXAMPLE_ID),
    ("depth.backend", "monocular"): ("depth.model_path", MONOCULAR_DEPTH_EXAMPLE_ID),
}


@dataclass(frozen=True)
class EngineSettings:
    engine: str = "local"
    workers: int = 1
    ray_address: str | None = None
    max_retries: int = 3


@dataclass
class LabelOutcome:
    kind: str  # "bags" or "lerobot"
    summary: RunSummary | None  # None when OUTPUT was already a complete labelled dataset
    table: Path | None = None  # the joined rewards table of the bags labelled (bags)
    # (source, pair) -> (fraction of frames valid, the commonest reason of the others); LeRobot also has pair
    # "all pairs (next.reward)": the frames whose next.reward is valid.
    valid_fraction: dict[tuple[str, str], tuple[float, str]] = field(default_factory=dict)
    note: str = ""
    # Item key -> what the run has to say of it though it was labelled (a cut-short bag labelled from what was read).
    warnings: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.summary is None or self.summary.ok


def check_paths(source: Path, out: Path) -> None:
    """The source is never written: refuse an OUTPUT that is INPUT, lies inside it, or contains it."""
    source, out = source.resolve(), out.resolve()
    if out == source or source in out.parents:
        raise LabelError(f"--out {out} is inside the input {source}; the source is never modified, choose another "
                         "directory")
    if out in source.parents:
        raise LabelError(f"the input {source} is inside --out {out}; choose an --out outside it")
    if out.exists() and not out.is_dir():
        raise LabelError(f"--out {out} exists and is not a directory")


def check_pair_names(config: Config, pairs: Sequence[str]) -> None:
    """Refuse a side no frame can ever resolve: a label outside the detector's closed label set (the 'sim' labels,
    the GroundingDINO vocabulary) that is neither an id nor a robot frame. Labelling would run to the end with every
    reward invalid."""
    labels = configured_labels(config)
    known = {label.lower() for label in labels}
    ee_names = config["reward.ee_names"]
    # Every name a side may be, lower case (as compared) -> as written; a typo gets the closest few, as --set does.
    names = {name.strip().lower(): name.strip() for name in (*labels, EE_FRAME, *ee_names, GOAL_FRAME)}
    for pair in pairs_from_config(config, list(pairs)):
        for name in (pair.subject, pair.object):
            wanted = name.strip().lower()
            if frame_of(name, ee_names) is None and not wanted.removeprefix("#").isdigit() and wanted not in known:
                close = difflib.get_close_matches(wanted, names, n=3)
                hint = f" (did you mean {', '.join(repr(names[match]) for match in close)}?)" if close else ""
                raise LabelError(f"pair {pair.name!r}: unknown object {name!r}{hint}; the detector's labels are "
                                 f"{list(labels)}, the end effector is one of {sorted({EE_FRAME, *ee_names})}, "
                                 "the goal is 'goal'")


def check_model_weights(config: Config) -> None:
    """Refuse a model backend whose weights are not where its parameter says (:data:`MODEL_WEIGHTS`: no such
    directory, a file, an id not in the local HF cache), as its loader would
    (:func:`~trusted_scene_graph.perception.hf.resolve_model_source`), but without loading the model: each item's
    worker would load it, and fail the same way on every item. Weights that are there but broken still fail each item
    as it starts."""
    for (backend_parameter, backend), (parameter, example_id) in MODEL_WEIGHTS.items():
        if config[backend_parameter] != backend:
            continue
        try:
            resolve_model_source(config[parameter], parameter, example_id)
        except PerceptionError as exc:
            raise LabelError(str(exc)) from exc


def manifest(kind: str, source: Path, config: Config, pairs: Sequence[str], frame_source: FrameSource | None,
             invalid_reward: float | None, bag_output: str | None = None) -> dict[str, Any]:
    """What decides the outputs of a run: a rerun into the same --out must match it, or finished items (labelled
    with other settings, or written in another form: ``bag_output`` is 'copy' or 'rewards only' for bags) would be
    mixed with new ones. ``invalid_reward`` is None for bags, which have no such setting: it is left out (a bags
    manifest of an earlier version holds it; only the keys written here are compared, so it still matches)."""
    setting = {} if invalid_reward is None else {"invalid_reward": repr(float(invalid_reward))}
    return {"format": MANIFEST_FORMAT, "kind": kind, "input": str(source.resolve()),
            "pairs": [asdict(pair) for pair in pairs_from_config(config, list(pairs))],
            "config_sha256": config.sha256(),
            "frame_source": asdict(frame_source) if frame_source is not None else None,
            **setting, "bag_output": bag_output}


#: What ``ray.init(address=...)`` takes: 'auto', 'local', a Ray Client address (ray://HOST[:PORT]) or a cluster's
#: HOST:PORT; in both an IPv6 host is in brackets (its own colons would otherwise read as the port's).
RAY_ADDRESS = re.compile(r"auto|local|ray://(?:\[[0-9A-Fa-f:.]+\]|[^\s/:\[\]]+)(?::\d{1,5})?/?"
                         r"|(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):\d{1,5}")


def check_ray_address(address: str | None) -> None:
    """Refuse a ``--ray-address`` that ``ray.init`` cannot parse, before the manifest is written (Ray is not
    started for the check: whether a cluster answers there is found when the run joins it)."""
    if address is None:
        return
    port = address.rstrip("/").rpartition(":")[2]  # ray://HOST:PORT/ may end in a slash
    if RAY_ADDRESS.fullmatch(address) is None or (port.isdigit() and not 0 < int(port) < 65536):
        raise LabelError(f"--ray-address {address!r}: expected HOST:PORT of a running cluster's head (e.g. "
                         "127.0.0.1:6379), ray://HOST:PORT (Ray Client), 'auto' or 'local'")


def check_bag_opens(bag: Path) -> None:
    """Refuse a bag that cannot be opened at all (an empty or garbage file, a broken metadata.yaml), before --out is
    made: for a single input bag there are no other items to label. A bag damaged after some messages opens (its
    messages before the damage are labelled)."""
    from trusted_scene_graph.dataset.bag import BagReader

    try:
        with BagReader(bag):
            pass
    except DatasetError as exc:
        raise LabelError(str(exc)) from exc


def claim_output(out: Path, manifest_path: Path, wanted: dict[str, Any],
                 equivalent: Mapping[str, Collection[Any]] | None = None) -> None:
    """Write the run's manifest into a new or empty --out, or check that a rerun's settings match the manifest
    there (``equivalent``: per key, the values an older manifest may hold for ``wanted``'s). Refuses a non-empty
    --out that tsg label did not write (hidden entries too: a LeRobot run's dataset write would have to clear them).
    A manifest of a run that committed nothing (every item failed: a wrong topic, say) is replaced: there is nothing
    to mix. Called holding the lock of the manifest's directory (:func:`exclusive`)."""
    if manifest_path.is_file():
        try:
            found = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LabelError(f"cannot read {manifest_path}: {exc}; delete --out {out} to start over") from exc
        # Bag runs written before the output form was recorded wrote copies.
        found.setdefault("bag_output", "copy" if found.get("kind") == "bags" else None)
        for key, values in (equivalent or {}).items():
            if found.get(key) in values:
                found[key] = wanted[key]
        differing = [key for key in wanted if found.get(key) != json.loads(json.dumps(wanted[key]))]
        if differing and not _holds_output(out, manifest_path):
            _write_manifest(manifest_path, wanted)
            return
        if differing:
            form = (f": it holds {found['bag_output']!r} bags and this run writes {wanted['bag_output']!r} bags "
                    "(--rewards-only)" if "bag_output" in differing and "kind" not in differing else "")
            raise LabelError(f"--out {out} was labelled with other settings ({', '.join(differing)} differ{form}); a "
                             "rerun only resumes the same command: label into another --out, or delete it to start "
                             "over")
        return
    refuse_foreign_output(out, manifest_path)
    _write_manifest(manifest_path, wanted)


def _write_manifest(manifest_path: Path, wanted: dict[str, Any]) -> None:
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    replace_text(manifest_path, json.dumps(wanted, indent=2) + "\n")


def _holds_output(out: Path, manifest_path: Path) -> bool:
    """Whether a run committed anything into ``out``: an item (the engine's dot-entries are its lock and staging),
    a joined table, a dataset."""
    engine_dir = manifest_path.parent
    if any(not entry.name.startswith(".") and entry != manifest_path for entry in engine_dir.iterdir()):
        return True
    return engine_dir != out and any(entry != engine_dir for entry in out.iterdir())  # LeRobot: the dataset


def refuse_foreign_output(out: Path, manifest_path: Path) -> None:
    """Refuse an --out without a manifest that holds anything but what a run killed while claiming it left (the
    manifest's temporary file, the lock file), naming what it holds."""
    if manifest_path.is_file() or not out.is_dir():
        return
    own_files = {partial_path(manifest_path), manifest_path.parent / LOCK_FILE}
    own_dirs = {parent for path in own_files for parent in path.parents if out in parent.parents}
    foreign, folders = [], [out]
    while folders:  # only into tsg label's own directories: --out may be any large directory
        for entry in sorted(folders.pop().iterdir()):
            if entry in own_dirs and entry.is_dir():
                folders.append(entry)
            elif entry not in own_files:
                foreign.append(str(entry.relative_to(out)))
    if foreign:
        raise LabelError(f"--out {out} is not empty and has no {manifest_path.name}: tsg label did not write it (it "
                         f"holds {short_list(foreign, 5)}); choose a new or empty directory")


def run_label(source: Path, out: Path, config: Config, pairs: Sequence[str], engine: EngineSettings,
              frame_source: FrameSource | None = None, *, invalid_reward: float = float("nan"),
              overwrite_column: bool = False, replace_reward: bool = False, rewards_only: bool = False,
              progress: Callable[[ItemDone], None] | None = None,
              on_items: Callable[[int], None] | None = None) -> LabelOutcome:
    """Label ``source`` into ``out``; see the module docstring. Every setting is checked before anything is
    written into ``out``. ``on_items`` is called with the number of items (bags, episodes) before they are
    labelled; ``progress`` as each settles."""
    pairs = list(pairs) if pairs else list(config["reward.pairs"])
    if not pairs:
        raise LabelError("no reward pairs to label: give --pair SUBJECT:OBJECT (repeatable) or set reward.pairs in "
                         "the config")
    check_pair_names(config, pairs)  # a bad pair fails before any work
    check_paths(source, out)
    check_run_options(engine.engine, engine.workers, engine.max_retries, engine.ray_address)
    check_ray_address(engine.ray_address)
    if engine.ray_address is None:
        # Not when joining a cluster: its nodes load the weights, from paths or HF caches this machine may not have.
        check_model_weights(config)
    run = {**asdict(engine), "progress": progress}  # EngineSettings' fields are run_items' keyword arguments
    on_items = on_items if on_items is not None else (lambda count: None)
    if rewards_only and replace_reward:
        raise LabelError("--rewards-only writes no copy of a bag, so --replace-reward has no recorded rewards to leave "
                         "out: give one or the other")
    if LeRobotDataset.is_dataset(source):
        if replace_reward:
            raise LabelError(f"{source} is a LeRobot dataset: --replace-reward is for bags; a dataset's "
                             f"{REWARD_COLUMN!r} column is replaced with --overwrite-column")
        if rewards_only:
            raise LabelError(f"{source} is a LeRobot dataset: --rewards-only is for bags; a dataset gets its "
                             f"{REWARD_COLUMN!r} column in a new dataset whose videos are hard links, not copies")
        return _label_lerobot(source, out, config, pairs, frame_source, invalid_reward, overwrite_column, run,
                              on_items)
    if frame_source is not None:
        raise LabelError(f"{source} is a rosbag2 input; the camera, depth, intrinsics and position options are for "
                         "LeRobot datasets (bags name their topics in the config)")
    lerobot_only = [*([f"invalid_reward={invalid_reward!r}"] if not math.isnan(invalid_reward) else []),
                    *(["overwrite_column"] if overwrite_column else [])]  # NaN, the default: no invalid_reward given
    if lerobot_only:
        verb = "apply" if len(lerobot_only) > 1 else "applies"
        raise LabelError(f"{source} is a rosbag2 input; {' and '.join(lerobot_only)} {verb} to LeRobot datasets only "
                         "(a bag's invalid frames are marked in its rewards, which it gets added, not replaced)")
    bags = find_bags(source)
    if len(bags) == 1 and bags[0] == source:  # one bag, no other items: one that cannot be opened fails now
        check_bag_opens(source)
    keys = [bag_key(bag) for bag in bags]
    # --out holds each bag's output by its name, and the run's own files beside them.
    if taken := [bag.name for bag, key in zip(bags, keys, strict=True) if key in (REWARDS_FILE, MANIFEST_FILE)]:
        raise LabelError(f"{source}: {' and '.join(taken)} would be written where --out keeps its joined "
                         f"{REWARDS_FILE} and {MANIFEST_FILE}; rename or copy the bag")
    items = []
    for key, bag in zip(keys, bags, strict=True):
        try:
            items.append(WorkItem(key, BagJob(str(bag.resolve()), dict(config), tuple(pairs), replace_reward,
                                              rewards_only)))
        except LabelError as exc:
            raise LabelError(f"bag {bag}: its name {key!r} cannot name an output directory (use letters, digits, "
                             "'.', '_' and '-'); rename or copy the bag") from exc
    wanted = manifest("bags", source, config, pairs, None, None, "rewards only" if rewards_only else "copy")
    refuse_foreign_output(out, out / MANIFEST_FILE)  # before the lock file is made in it
    with exclusive(out):  # also over the joined table, so a second run is refused before it does anything
        claim_output(out, out / MANIFEST_FILE, wanted, {"config_sha256": [config.legacy_sha256()]})
        check_labelled_bags(bags, keys, out)  # the manifest names the input by its path, not its content
        on_items(len(items))
        summary = run_items(items, label_bag_item, out, **run)
        outcome = LabelOutcome("bags", summary)
        labelled = [key for key in keys if key not in summary.failed]
        if labelled:  # the bags that are done, also when others failed (their names are in summary.failed)
            outcome.table = out / REWARDS_FILE
            joined = merge_rewards_tables([out / key / REWARDS_FILE for key in labelled], outcome.table)
            outcome.valid_fraction = valid_fraction(joined)
            outcome.warnings = {key: note for key in labelled
                                if (note := rewards_table_note(out / key / REWARDS_FILE)) is not None}
    if bags != [source]:
        for folder, deeper in nested_bags(source).items():
            outcome.warnings[f"{folder}/"] = (f"holds {plural(len(deeper), 'bag')} of its own ({short_list(deeper)}), "
                                               f"not labelled: tsg label takes the bags directly inside {source}; "
                                               f"label {source / folder} on its own")
    return outcome


def _label_lerobot(source: Path, out: Path, config: Config, pairs: list[str], frame_source: FrameSource | None,
                   invalid_reward: float, overwrite_column: bool, run: dict,
                   on_items: Callable[[int], None]) -> LabelOutcome:
    dataset = LeRobotDataset(source)
    if frame_source is None:
        raise LabelError(f"{source} is a LeRobot dataset: give --intrinsics FX,FY,CX,CY (and --camera when it has "
                         f"several image features: {dataset.image_keys})")
    check_frame_source(dataset, frame_source, config)
    check_output_columns(dataset, overwrite_column)
    wanted = manifest("lerobot", source, config, pairs, frame_source, invalid_reward)
    manifest_path = out / LABELLER_SUBDIR / MANIFEST_FILE
    refuse_foreign_output(out, manifest_path)  # before the lock file is made in it
    # One lock over the whole run: a second run must not clear, label or write the dataset beside this one.
    with exclusive(manifest_path.parent):
        claim_output(out, manifest_path, wanted, {"config_sha256": [config.legacy_sha256()]})
        # The manifest names the input by its path: committed episodes must also still be what was labelled.
        check_committed_episodes(dataset, frame_source, manifest_path.parent)
        if (out / INFO_PATH).is_file():
            labelled = [(e.episode_index, e.length) for e in LeRobotDataset(out).episodes]
            if labelled != [(e.episode_index, e.length) for e in dataset.episodes]:
                # Episodes added to (or removed from) the source since: the finished dataset is not its labels.
                raise LabelError(f"{out} is the labelled dataset of {source} as it was: "
                                 f"{plural(len(labelled), 'episode')} ({plural(sum(n for _, n in labelled), 'frame')})"
                                 ", where the source now has "
                                 f"{plural(len(dataset.episodes), 'episode')} ({plural(dataset.total_frames, 'frame')})"
                                 "; label into a fresh --out")
            return LabelOutcome("lerobot", None, note=f"{out} is already the labelled dataset; nothing to do")
        clear_interrupted_assembly(out, dataset)
        others = sorted(entry.name for entry in out.iterdir() if entry.name != LABELLER_SUBDIR)
        if others:  # the dataset write would refuse them, after every episode is labelled
            raise LabelError(f"--out {out} holds {', '.join(others)}, which tsg label did not write there; move "
                             "it away (the labelled dataset is written around tsg_rewards/ alone)")
        items = lerobot_jobs(dataset, config, pairs, frame_source)
        on_items(len(items))
        summary = run_items(items, label_episode_item, manifest_path.parent, **run)
        outcome = LabelOutcome("lerobot", summary)
        if summary.ok:
            frames, valid, per_pair = assemble(dataset, out, invalid_reward=invalid_reward,
                                               overwrite=overwrite_column)
            # Each pair over its own frames, then next.reward's: the pairs' sum, valid where all of them are at the
            # next frame (never at an episode's last frame, so it can be below every pair's own share).
            outcome.valid_fraction = {**per_pair, (dataset.root.name, f"all pairs ({REWARD_COLUMN})"): (valid, "")}
            outcome.note = f"wrote the dataset {out} ({frames} frames, {REWARD_COLUMN} and {VALID_COLUMN})"
    return outcome


def check_output_columns(dataset: LeRobotDataset, overwrite_column: bool) -> None:
    """Refuse, before any episode is labelled, a source that already has a column the dataset write adds, unless
    --overwrite-column is given and the column can be replaced (a float or bool column, not a camera's)."""
    existing = [name for name in (REWARD_COLUMN, VALID_COLUMN) if name in dataset.features]
    if existing and not overwrite_column:
        raise LabelError(f"{dataset.root} already has the column(s) {existing}; pass --overwrite-column to replace "
                         f"{'it' if len(existing) == 1 else 'them'}")
    for name in existing:
        dtype = dataset.features[name].get("dtype")
        if dtype in ("image", "video", "string"):
            raise LabelError(f"column {name!r} of {dataset.root} is a {dtype} feature, which --overwrite-column does "
                             "not replace; rename it in the source, or label a copy without it")


def assembly_entries(dataset: LeRobotDataset) -> set[str]:
    """The names a dataset write of ``dataset`` puts into --out: data/, meta/ and the source's other top-level
    entries it copies (videos/, a README, ...); never :data:`UNCOPIED_ENTRIES` (tsg_rewards/, huggingface_hub's
    .cache/, a git clone's .git/)."""
    return {"data", "meta", *(entry.name for entry in dataset.root.iterdir() if entry.name not in UNCOPIED_ENTRIES)}


def clear_interrupted_assembly(out: Path, dataset: LeRobotDataset) -> None:
    """Remove what an interrupted dataset write left: its build directory next to ``out`` and the entries it had
    moved into ``out`` before ``meta/info.json`` (always moved last), by name (:func:`assembly_entries`): anything
    else in ``out`` is not tsg label's to delete. The episode tables in tsg_rewards stay."""
    for build in out.parent.glob(f"{glob.escape(build_dir_prefix(out))}*"):  # --out 'ep[1]' is no pattern
        shutil.rmtree(build)
    written = assembly_entries(dataset)
    for entry in out.iterdir():
        if entry.name in written and entry.name != LABELLER_SUBDIR:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
