"""``tsg``: the scene graph live on ROS 2 (bringup, demo, replay) and offline (config, sim record, eval, label,
trust, bench).

Each command is a typed function returning an exit code, testable by calling it. ROS-dependent modules are
imported inside the commands, so ``tsg --help`` works before the workspace is built.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trusted_scene_graph.config.schema import (
    SCHEMA,
    STRING,
    Config,
    ConfigError,
    load_config_file,
    load_parameter_file,
    parse_value,
    render_parameter_file,
)
from trusted_scene_graph.errors import TsgError
from trusted_scene_graph.example_models import GENERATIVE_VLM_EXAMPLE_ID, GROUNDING_DINO_EXAMPLE_ID
from trusted_scene_graph.text import plural

DEFAULT_CONFIG = Path(__file__).resolve().parents[3] / "config" / "default.yaml"
#: How --help names DEFAULT_CONFIG: relative to the checkout, not the absolute path of whoever built the help.
DEFAULT_CONFIG_SHOWN = "config/default.yaml of the checkout, else the schema defaults"
#: Largest rendered image side: beyond it MuJoCo's offscreen framebuffer fails on common GPUs and EGL drivers, with an
#: error that reads like a missing MUJOCO_GL.
MAX_IMAGE_SIDE_PX = 4096

EVAL_VSR = "eval-vsr"  # the parser behind `tsg eval vsr`, left out of `tsg --help`
VSR_WORD = "vsr"
EVAL_VSR_RULE = ("A bag directory named vsr in the current directory is evaluated as a bag unless a VSR-only option "
                 "(--images, --annotations, ...) follows; write `tsg eval ./vsr` to be explicit.")

#: trusted_scene_graph.sim.depth_noise.DEPTH_NOISE_PRESETS, spelled out so `tsg --help` need not import numpy/scipy
#: (a test keeps the two equal).
DEPTH_NOISE_CHOICES = ("none", "kinect", "realsense")

# Exit codes: 0 success, 1 the command ran but its result is a failure (e.g. no graph arrived), 2 bad input.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(TsgError):
    """A command-line option that does not apply to the rest of the command line."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to each option's help, unless the help already names its default or there is no value
    to show (a flag, or a None/empty default whose meaning the help text states)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.nargs == 0 or action.default is None or action.default == []:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help shows defaults; subparsers inherit the class (add_subparsers' parser_class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


class MissingInterfacesError(TsgError):
    """The colcon-built message package is not importable."""


def require_interfaces() -> None:
    """Fail with instructions when ``trusted_scene_graph_msgs`` has not been built or sourced."""
    try:
        import trusted_scene_graph_msgs.msg  # noqa: F401
    except ImportError as exc:
        raise MissingInterfacesError(
            "trusted_scene_graph_msgs is not importable: run `make setup`, then `source scripts/env.sh` "
            f"(or source ros2_ws/install/setup.bash on a ROS install) ({exc})"
        ) from exc


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``name=value`` pairs, values parsed as YAML (``trust.threshold=0.7``, ``extrinsic.translation_m=[0,0,1]``)."""
    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--set expects name=value, got {pair!r}")
        parsed = parse_value(value)
        spec = SCHEMA.get(name.strip())
        if parsed is None and spec is not None and spec.type == STRING and not value.strip():
            parsed = ""  # `--set topics.ee_pose=`: nothing after '=' is the empty string, not YAML's null
        overrides[name.strip()] = parsed
        check_unquoted_pairs(name.strip(), value, parsed)
    return overrides


def check_unquoted_pairs(name: str, text: str, value: Any) -> None:
    """YAML splits ``[gripper:cube,shaping=exp]`` at its comma, leaving a pair setting as an entry of its own: say to
    quote the entry instead of the pair parser's puzzling error on ``shaping=exp``."""
    if name != "reward.pairs" or not isinstance(value, list):
        return
    loose = [entry for entry in value if isinstance(entry, str) and "=" in entry and ":" not in entry.partition("=")[0]]
    if loose:
        quoted = text.strip().removeprefix("[").removesuffix("]")
        raise ConfigError(f"--set reward.pairs={text}: YAML split the list at each comma, so {loose[0]!r} became an "
                          f"entry of its own; quote each pair with its settings: 'reward.pairs=[\"{quoted}\"]'")


def load(config_path: Path | None, overrides: Sequence[str] = ()) -> Config:
    """The config file (default: the repository's config/default.yaml, else the schema defaults) plus overrides."""
    if config_path is not None:
        config = load_config_file(config_path)
    else:
        config = load_config_file(DEFAULT_CONFIG) if DEFAULT_CONFIG.is_file() else Config()
    return config.with_overrides(parse_overrides(overrides)) if overrides else config


def cmd_bringup(
    config_path: Path | None, overrides: Sequence[str], autostart: bool | None, ros_args: Sequence[str]
) -> int:
    """Run the nodes in one process until Ctrl-C."""
    require_interfaces()
    from trusted_scene_graph.ros.bringup import run_bringup

    if config_path is None:
        config, builtins = load(None, overrides), {}
    else:
        config, builtins = load_parameter_file(config_path)  # the file read once, for both halves
        config = config.with_overrides(parse_overrides(overrides)) if overrides else config
    return run_bringup(config, autostart=autostart, ros_args=[*ros_parameter_args(builtins), *ros_args])


def builtin_ros_args(config_path: Path | None) -> list[str]:
    """``-p name:=value`` for each of rclpy's own parameters (``use_sim_time``, ``qos_overrides.*``, ...) that the
    parameter file sets for the node, as ``ros2 launch`` would pass them; placed before the user's ``--ros-args``,
    which therefore win (rcl keeps the last value given for a name)."""
    return [] if config_path is None else ros_parameter_args(load_parameter_file(config_path)[1])


def ros_parameter_args(builtins: Mapping[str, Any]) -> list[str]:
    """``-p name:=value`` arguments for rclpy's own parameters ``builtins`` (see :func:`builtin_ros_args`)."""
    # JSON is YAML, which is how rcl parses a -p value: true, 5, "best_effort" keep their types.
    return [arg for name, value in builtins.items() for arg in ("-p", f"{name}:={json.dumps(value)}")]


def cmd_config(config_path: Path | None, overrides: Sequence[str], out: Path | None) -> int:
    """Validate a config and print it (or write it to ``out``) as a commented ROS 2 parameter file, with rclpy's own
    parameters (``use_sim_time``, ``qos_overrides.*``) the file sets kept. An existing ``out`` is replaced, atomically
    (a generator's output, as ``> file`` would; never half-written)."""
    from trusted_scene_graph.files import replace_text

    if config_path is None:
        config, builtins = load(None), {}
    else:
        config, builtins = load_parameter_file(config_path)
    config = config.with_overrides(parse_overrides(overrides)) if overrides else config
    text = render_parameter_file(config, builtins)
    if out is None:
        print(text, end="")
    else:
        if out.is_dir():
            raise UsageError(f"--out {out}: cannot write the parameter file: Is a directory")
        try:
            replace_text(out, text)
        except OSError as exc:
            raise UsageError(f"--out {out}: cannot write the parameter file: {exc.strerror}") from exc
    return EXIT_OK


def cmd_demo(config_path: Path | None, overrides: Sequence[str], seconds: float, rate_hz: float, out: Path,
             width: int, height: int, seed: int, depth_encoding: str) -> int:
    """Publish a simulated Fetch pick-and-place into the bringup and report the graph and distances."""
    # Checked before the bringup starts: --rate 0 used to fail with a ZeroDivisionError after it had started.
    for option, value in (("--seconds", seconds), ("--rate", rate_hz), ("--width", width), ("--height", height)):
        if not 0 < value < float("inf"):  # NaN fails too
            raise UsageError(f"{option} must be a positive number, got {value:g}")
    check_sim_image(width, height, seed)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    require_interfaces()
    from trusted_scene_graph.evaluation.report import missing_directories, prepare_output_dir, remove_empty_directories
    from trusted_scene_graph.ros.demo import run_demo

    config = load(config_path, overrides)
    created = missing_directories(out)
    prepare_output_dir(out)  # a file on the way (--out file/x) or no write permission fails now, not at the end
    try:
        return run_demo(config, seconds=seconds, rate_hz=rate_hz, out_dir=out, width=width, height=height, seed=seed,
                        depth_encoding=depth_encoding)
    except BaseException:
        remove_empty_directories(created)  # the demo failed before writing anything: leave no empty --out
        raise


def check_sim_image(width: int, height: int, seed: int, *, episodes: int = 1, prefix: str = "") -> None:
    """The simulator's limits, named by option before anything starts: sim record's (RecordSettings: a seed >= 0, an
    image of at least 16x16, one episode or more) and :data:`MAX_IMAGE_SIDE_PX`, which would otherwise fail as a
    renderer error that blames MUJOCO_GL."""
    from trusted_scene_graph.sim import SimError
    from trusted_scene_graph.sim.record import RecordSettings

    for option, value in (("--width", width), ("--height", height)):
        if value > MAX_IMAGE_SIDE_PX:
            raise UsageError(f"{option} {value}: at most {MAX_IMAGE_SIDE_PX} px (MuJoCo's offscreen framebuffer)")
    for option, value, minimum in (("--episodes", episodes, 1), ("--seed", seed, 0)):
        if value < minimum:
            raise UsageError(f"{option} {value}: must be at least {minimum}")
    try:
        RecordSettings(width=width, height=height, seed=seed)
    except SimError as exc:  # named by the options: the settings' names are not the command line's
        raise UsageError(f"--width {width} --height {height}: {exc}") from exc


def cmd_bench_service(config_path: Path | None, out: Path, calls: int, rate_hz: float, concurrency: int) -> int:
    """QueryDistance latency against an echo service on the same executor, while frames flow."""
    from trusted_scene_graph.report import check_output_file

    if not 0 < rate_hz < float("inf"):  # NaN fails too
        raise UsageError(f"--rate {rate_hz:g}: must be a positive finite frame rate [Hz]")
    require_interfaces()
    check_output_file(out)
    from trusted_scene_graph.bench.service import run_service_bench

    return run_service_bench(load(config_path), out_path=out, calls=calls, frame_rate_hz=rate_hz,
                             concurrency=concurrency)


def cmd_bench_perception(config_path: Path | None, out: Path, repeats: int, detector_size: str,
                         detector_repeats: int) -> int:
    """Lifting + tracking + relations for 20 and 50 objects against one GroundingDINO forward pass."""
    from trusted_scene_graph.bench.perception import run_perception_bench

    return run_perception_bench(load(config_path), out_path=out, repeats=repeats, detector_size=detector_size,
                                detector_repeats=detector_repeats)


def cmd_bench_trust(config_path: Path | None, overrides: Sequence[str], out: Path, repeats: int, detector_size: str,
                    detector_repeats: int) -> int:
    """Trust features + model + calibration + pruning for 20 and 50 objects against one GroundingDINO forward."""
    from trusted_scene_graph.bench.trust import run_trust_bench

    return run_trust_bench(load(config_path, overrides), out_path=out, repeats=repeats, detector_size=detector_size,
                           detector_repeats=detector_repeats)


def cmd_bench_label(config_path: Path | None, overrides: Sequence[str], out: Path, bag: Path | None,
                    episodes: int | None, width: int | None, height: int | None, bags: int, repeats: int,
                    engine_repeats: int, pairs: Sequence[str], ray: bool, local: bool) -> int:
    """tsg label's frames/s against reading the same bag, and 2 vs 1 workers on Ray and the local engine."""
    from trusted_scene_graph.bench.label import (
        DEFAULT_EPISODES,
        DEFAULT_HEIGHT,
        DEFAULT_PAIRS,
        DEFAULT_WIDTH,
        run_label_bench,
    )
    from trusted_scene_graph.report import check_output_file
    from trusted_scene_graph.signals import Terminated, sigterm_interrupts
    from trusted_scene_graph.sim.record import benchmark_config

    check_output_file(out)
    if bag is None:  # the bag it records: the simulator's limits, named by option, before anything starts
        check_sim_image(width or DEFAULT_WIDTH, height or DEFAULT_HEIGHT, 0,
                        episodes=DEFAULT_EPISODES if episodes is None else episodes)

    # The bench records its own bag with config/benchmark.yaml's settings unless a config is given.
    config = load(config_path) if config_path is not None else benchmark_config()
    if overrides:
        config = config.with_overrides(parse_overrides(overrides))
    try:
        # SIGTERM stops it as Ctrl-C does: the scratch directory (recorded bag, labelled copies) is removed.
        with sigterm_interrupts():
            return run_label_bench(config, out, bag=bag, episodes=episodes, width=width, height=height, items=bags,
                                   repeats=repeats, engine_repeats=engine_repeats,
                                   pairs=tuple(pairs) or DEFAULT_PAIRS, ray=ray, local=local)
    except KeyboardInterrupt as stop:
        stopped_by = signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT
        print(f"tsg bench label: {'terminated (SIGTERM)' if stopped_by == signal.SIGTERM else 'interrupted'}; "
              "nothing written", file=sys.stderr)
        return 128 + stopped_by


def cmd_trust_train(data: Sequence[Path], out: Path, target_precision: float, delta: float, method: str,
                    calibration: str, n_estimators: int, max_depth: int, learning_rate: float, seed: int) -> int:
    """Fit the trust model on ``tsg eval`` edge tables and save it (model.json + trust_model.json)."""
    import shlex

    from trusted_scene_graph.trust.training import relative_path, train

    if not 0 <= seed < 2**63:  # named by its option, not by the estimator's random_state
        raise UsageError(f"--seed {seed}: must be an integer in [0, 2**63)")
    # The equivalent command line, recorded in the model's provenance (paths relative to the working directory).
    command = shlex.join([
        "tsg", "trust", "train", "--data", *(relative_path(path) for path in data), "--out", relative_path(out),
        "--target-precision", f"{target_precision!r}", "--delta", f"{delta!r}", "--method", method,
        "--calibration", calibration, "--n-estimators", str(n_estimators), "--max-depth", str(max_depth),
        "--learning-rate", f"{learning_rate!r}", "--seed", str(seed)])
    model = train(list(data), out, command=command, target_precision=target_precision, delta=delta,
                  threshold_method=method, calibration=calibration, n_estimators=n_estimators, max_depth=max_depth,
                  learning_rate=learning_rate, random_state=seed)
    training, held_out, choice = model.metadata_["training"], model.metadata_["metrics_held_out"], model.threshold_
    precision = "n/a" if choice.precision is None else f"{choice.precision:.3f}"
    chosen = (f"threshold {choice.threshold:.3f} keeps {choice.coverage:.1%} at precision {precision} (lower bound "
              f"{choice.precision_lower_bound:.3f} at delta {choice.delta:g}, scene-level: design effect "
              f"{choice.design_effect:.1f} over {choice.kept_groups} scenes)" if choice.feasible
              else f"no threshold reaches precision {choice.target_precision:g} at delta {choice.delta:g}")
    print(f"trained on {training['edges']} facts ({training['correct']} correct) from {training['groups']} scenes: "
          f"{training['split_edges']['fit']} to fit, {training['split_edges']['calibration']} to calibrate, "
          f"{held_out['edges']} held out to choose the threshold (AUROC {held_out['auroc']:.3f}, ECE "
          f"{held_out['ece']:.3f}); {chosen} -> {out}")
    if model.warning:
        print(f"tsg trust train: warning: {model.warning}", file=sys.stderr)
    return EXIT_OK


def cmd_trust_report(model_dir: Path, data: Sequence[Path], out: Path) -> int:
    """The model against the two baselines on held-out edge tables: metrics.json, report.md and PNGs."""
    from trusted_scene_graph.trust.training import report

    metrics = report(model_dir, list(data), out)
    fused = metrics["methods"]["fused"]

    def shown(value: float | None) -> str:  # None or NaN: undefined (one class only: no ROC)
        return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"

    print(f"{metrics['edges']} facts: fused AUROC {shown(fused['auroc'])}, ECE {shown(fused['ece'])}; "
          + ", ".join(f"{name} AUROC {shown(values['auroc'])}"
                      for name, values in metrics["methods"].items() if name != "fused")
          + f" -> {out}")
    if metrics.get("model_warning"):
        print(f"tsg trust report: warning: {metrics['model_warning']}", file=sys.stderr)
    if metrics["groups_also_in_training"]:
        print(f"tsg trust report: warning: {metrics['groups_also_in_training']} of the {metrics['groups']} scenes of "
              "this data were in the model's training data; report on scenes it has not seen", file=sys.stderr)
    return EXIT_OK


def progress_bar(*columns: Any) -> Any:
    """A transient rich progress bar on stderr, shown only on an interactive terminal.

    rich's Progress prints an empty line when it stops on a non-interactive console; on stdout that line led every
    logged command output. On stderr, and disabled when stderr is a file or pipe, stdout holds only the results.
    """
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    return Progress(*columns, console=console, transient=True, disable=not console.is_interactive)


def cmd_label(config_path: Path | None, overrides: Sequence[str], source: Path, out: Path, pairs: Sequence[str],
              engine: str, workers: int, ray_address: str | None, max_retries: int, camera: str | None,
              depth: str | None, instances: str | None, intrinsics: str | None, ee_position: str | None,
              goal_position: str | None, invalid_reward: float, overwrite_column: bool,
              replace_reward: bool = False, rewards_only: bool = False) -> int:
    """Label a bag, a folder of bags or a LeRobot v3 dataset with dense rewards (trusted_scene_graph.label.run).

    Exit 0 when every item is labelled (or was, by an earlier run), 1 when some failed (the others are kept: rerun to
    retry them), 2 for bad input.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from trusted_scene_graph.dataset.lerobot import LeRobotDataset
    from trusted_scene_graph.label.lerobot import FrameSource
    from trusted_scene_graph.label.run import EngineSettings, run_label
    from trusted_scene_graph.signals import Terminated, sigterm_interrupts

    config = load(config_path, overrides)
    frame_source = None
    for option, value, minimum in (("--workers", workers, 1), ("--max-retries", max_retries, 0)):
        if value < minimum:
            raise UsageError(f"{option} {value}: must be at least {minimum}")
    if ray_address is not None and engine != "ray":  # the core's own check names its arguments, not the options
        raise UsageError(f"--ray-address {ray_address} is only used with --engine ray, not --engine {engine}; add "
                         "--engine ray, or leave --ray-address out")
    lerobot_options = {"--camera": camera, "--depth": depth, "--instances": instances, "--intrinsics": intrinsics,
                       "--ee-position": ee_position, "--goal-position": goal_position,
                       # NaN is the default (not given); a flag is given when set.
                       "--invalid-reward": None if math.isnan(invalid_reward) else invalid_reward,
                       "--overwrite-column": overwrite_column or None}
    if LeRobotDataset.is_dataset(source):
        if intrinsics is None:
            raise UsageError(f"{source} is a LeRobot dataset: --intrinsics FX,FY,CX,CY is required (LeRobot stores "
                             "no camera intrinsics)")
        try:
            values = tuple(float(v) for v in intrinsics.split(","))
        except ValueError:
            values = ()
        if len(values) != 4 or not all(math.isfinite(v) and v > 0 for v in values):
            raise UsageError(f"--intrinsics {intrinsics!r}: expected four positive finite numbers FX,FY,CX,CY [px]")
        if camera is None:
            dataset = LeRobotDataset(source)
            # The features --depth and --instances name are not the camera.
            image_keys = [key for key in dataset.image_keys if key not in (depth, instances)]
            if not dataset.image_keys:
                videos = f"its cameras are the video features {dataset.video_keys}" if dataset.video_keys else (
                    "it has no image or video feature")
                raise UsageError(f"{source} stores no camera as images ({videos}): tsg label reads image features "
                                 "only and does not decode videos; record the dataset with images (lerobot's "
                                 "use_videos=False)")
            if len(image_keys) > 1:
                raise UsageError(f"--camera is required: {source} has image features {image_keys}")
            if not image_keys:
                raise UsageError(f"--camera is required: every image feature of {source} ({dataset.image_keys}) is "
                                 "named by --depth or --instances")
            camera = image_keys[0]
        frame_source = FrameSource(camera, values, depth, instances, ee_position, goal_position)
    else:
        given = [option for option, value in lerobot_options.items() if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)} {'apply' if len(given) > 1 else 'applies'} to LeRobot datasets "
                             f"only; {source} is not one")
    frames_done = 0
    frameless: list[str] = []  # items labelled now that had no camera frame at all
    columns = (TextColumn("labelling"), BarColumn(), MofNCompleteColumn(), TextColumn("items"),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn())
    with progress_bar(*columns) as progress:
        task = progress.add_task("label", total=None, rate="")

        def advance(done: Any) -> None:
            nonlocal frames_done
            frames_done += done.frames
            if not done.skipped and done.error is None and done.frames == 0:
                frameless.append(done.key)
            elapsed_s = progress.tasks[0].elapsed or 0.0
            rate = f"{frames_done / elapsed_s:.1f} frames/s" if elapsed_s > 0 and frames_done else ""
            progress.update(task, advance=1, rate=rate)

        try:
            # SIGTERM (kill, a process manager) stops the run as Ctrl-C does: workers ended, staging removed, a note.
            with sigterm_interrupts():
                outcome = run_label(source, out, config, pairs,
                                    EngineSettings(engine, workers, ray_address, max_retries), frame_source,
                                    invalid_reward=invalid_reward, overwrite_column=overwrite_column,
                                    replace_reward=replace_reward, rewards_only=rewards_only, progress=advance,
                                    on_items=lambda count: progress.update(task, total=count))
        except KeyboardInterrupt as stop:
            stopped_by = signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT
            how = "terminated (SIGTERM)" if stopped_by == signal.SIGTERM else "interrupted"
            print(f"tsg label: {how}; rerun the same command to finish (labelled items are kept)", file=sys.stderr)
            return 128 + stopped_by  # the shell's code for the signal: 130 for SIGINT, 143 for SIGTERM
        except OSError as exc:
            # --out became unwritable or full during the run (its files, the joined table): items committed before
            # are whole and kept, as after an interruption.
            where = f"{exc.filename}: " if exc.filename else ""
            print(f"tsg label: error: cannot write {where}{exc.strerror or exc}; rerun the same command once it can "
                  "be written (labelled items are kept)", file=sys.stderr)
            return EXIT_FAILED
    summary = outcome.summary
    if summary is not None:
        rate = summary.frames / summary.seconds if summary.seconds > 0 else 0.0
        print(f"{plural(len(summary.done), 'item')} labelled ({plural(summary.frames, 'frame')}, {rate:.1f} frames/s), "
              f"{len(summary.skipped)} already done, {len(summary.failed)} failed; {summary.retries} retried")
        for key, reason in summary.failed.items():
            print(f"tsg label: error: {key}: {reason}", file=sys.stderr)
        for key in frameless:
            print(f"tsg label: warning: {key}: labelled no frame (it has no message on the config's colour topic)"
                  if outcome.kind == "bags" else f"tsg label: warning: {key}: the episode has no frame",
                  file=sys.stderr)
    for key, text in outcome.warnings.items():
        print(f"tsg label: warning: {key}: {text}", file=sys.stderr)
    several = len({source_name for source_name, _ in outcome.valid_fraction}) > 1
    for (source_name, pair), (fraction, reason) in outcome.valid_fraction.items():
        print(f"  {f'{source_name} ' if several else ''}{pair}: {fraction:.1%} of frames valid")
        if fraction == 0.0:
            print(f"tsg label: warning: {source_name}: no frame has a valid {pair} reward ({reason})", file=sys.stderr)
    if outcome.table is not None:
        print(f"rewards table: {outcome.table}")
    if outcome.note:
        print(outcome.note)
    if not outcome.ok:
        died = set(summary.worker_died)
        remedies = [*(["fix or remove the failed inputs"] if set(summary.failed) - died else []),
                    *(["rerun the same command to retry the items whose worker died"] if died else [])]
        kept = "the other items are kept" if summary.done or summary.skipped else "nothing was labelled"
        print(f"tsg label: {kept}; {', or '.join(remedies)}", file=sys.stderr)
    return EXIT_OK if outcome.ok else EXIT_FAILED


def cmd_sim_record(config_path: Path | None, overrides: Sequence[str], out: Path, scene: str, episodes: int,
                   seed: int, camera: str | None, width: int, height: int, depth_noise: str, depth_encoding: str,
                   storage: str, policy_noise: float | None, frames_per_scene: int | None) -> int:
    """Record simulated episodes with ground truth into a new bag.

    ``policy_noise`` (Fetch only) and ``frames_per_scene`` (tabletop only) are None when not given; giving one for
    the other kind of task is a :class:`UsageError` rather than a silently ignored option.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from trusted_scene_graph.sim.record import TABLETOP, RecordSettings, frames_per_episode, record_sim_bag

    if scene == TABLETOP and policy_noise is not None:
        raise UsageError(f"--policy-noise applies to the Fetch tasks only, not to --task {scene}")
    if scene != TABLETOP and frames_per_scene is not None:
        raise UsageError(f"--frames-per-scene applies to --task {TABLETOP} only, not to --task {scene}")
    check_sim_image(width, height, seed, episodes=episodes)
    if frames_per_scene is not None and frames_per_scene < 1:
        raise UsageError(f"--frames-per-scene {frames_per_scene}: must be at least 1")
    defaults = RecordSettings()
    settings = RecordSettings(
        scene=scene, episodes=episodes, seed=seed, camera=camera, width=width, height=height, depth_noise=depth_noise,
        depth_encoding=depth_encoding, storage=storage,
        policy_noise=defaults.policy_noise if policy_noise is None else policy_noise,
        frames_per_scene=defaults.frames_per_scene if frames_per_scene is None else frames_per_scene)
    total = episodes * frames_per_episode(settings)
    columns = (TextColumn(f"recording {scene}"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
               TimeRemainingColumn())
    config = load(config_path, overrides)
    try:
        with progress_bar(*columns) as progress:
            task = progress.add_task("record", total=total)
            summary = record_sim_bag(out, settings, config,
                                     progress=lambda frames: progress.update(task, completed=frames))
    except KeyboardInterrupt:
        print(f"tsg sim record: interrupted; the partial bag {out} was removed (rerun the same command: the seed "
              "gives the same episodes)", file=sys.stderr)
        return 130
    success = f" ({summary.successes} successful)" if scene != TABLETOP else ""
    print(f"wrote {summary.path}: {plural(summary.episodes, scene + ' episode')}{success}, "
          f"{plural(summary.frames, 'frame')}, {plural(summary.messages, 'message')} ({settings.storage})")
    return EXIT_OK


def cmd_eval(config_path: Path | None, overrides: Sequence[str], bag: Path, out: Path, max_frames: int | None,
             ground_truth_topic: str) -> int:
    """Replay a bag offline through the node's code and write metrics.json, report.md and PNGs.

    A bag without ground truth on ``ground_truth_topic`` (a robot's own recording) exits 0 with a note: its timing and
    frame counts are the result. The options, the config and the bag's path are checked first, then the output
    directory, before the bag is read; an output directory this command created is removed again when the bag then
    cannot be read at all. The run's warnings (``metrics["warnings"]``) are printed as ``tsg eval: warning: ...``
    before the results, never as raw Python warnings.
    """
    import warnings

    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from trusted_scene_graph.evaluation import EvaluationError, EvaluationWarning
    from trusted_scene_graph.evaluation.bag_eval import check_evaluable, evaluate_bag, skipped_frames
    from trusted_scene_graph.evaluation.report import (
        ground_truth_note,
        missing_directories,
        prepare_output_dir,
        provenance,
        remove_empty_directories,
        report_title,
        target_rows,
        target_samples,
        write_report,
    )

    if max_frames is not None and max_frames < 1:
        raise UsageError(f"--max-frames {max_frames}: must be >= 1")
    config = load(config_path, overrides)
    if not bag.exists():
        raise UsageError(f"bag {bag} does not exist")
    created = missing_directories(out)
    prepare_output_dir(out)  # a bad --out fails now, not after the whole bag was replayed
    columns = (TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TextColumn("messages"),
               TimeRemainingColumn())
    with warnings.catch_warnings(record=True) as caught:
        try:
            with progress_bar(*columns) as progress:
                task = progress.add_task("eval", total=None)
                result = evaluate_bag(bag, config, ground_truth_topic=ground_truth_topic, max_frames=max_frames,
                                      progress=lambda done, total: progress.update(task, completed=done, total=total))
        except BaseException:
            remove_empty_directories(created)  # nothing was written: leave no empty --out behind
            raise
        # Warnings of other code (libraries) join the run's own, which the metrics already hold.
        run_warnings = result.metrics["warnings"]
        run_warnings += [text for text in dict.fromkeys(str(w.message) for w in caught
                                                         if not issubclass(w.category, EvaluationWarning))
                         if text not in run_warnings]
        result.metrics["provenance"] = provenance(bag, out, config_path, overrides, max_frames, ground_truth_topic)
        try:
            write_report(result.metrics, result.samples, out, title=report_title(bag, out, overrides))
        except OSError as exc:  # the directory was writable a moment ago: a full disk, a removed directory
            raise EvaluationError(f"cannot write the report into {out}: {exc}") from exc
    late = [text for text in dict.fromkeys(str(w.message) for w in caught) if text not in run_warnings]
    for text in [*run_warnings, *late]:  # a damaged bag is named before anything is said about its content
        print(f"tsg eval: warning: {text}", file=sys.stderr)
    frames = result.metrics["frames"]
    damaged = result.metrics["input"]["read_error"] is not None
    before_damage = " before the damage" if damaged else ""
    # Frames left unscored (out of order, without ground truth, incomplete), beside the failed ones.
    skipped = "".join(f", {count} {cause}" for cause, count in skipped_frames(
        frames["out_of_order"], frames["without_ground_truth"], frames.get("incomplete", 0),
        result.metrics["input"]["has_ground_truth"]).items())
    note = ground_truth_note(result.metrics)
    if note is not None:
        processed = frames["without_ground_truth"]
        print(f"{plural(processed, 'frame')} processed{before_damage} ({frames['failed']} failed{skipped}), none "
              f"scored; report in {out}/report.md")
        if processed or not damaged:  # otherwise the error below says what the damage left
            print(f"tsg eval: note: {note}")
    else:
        print(f"{plural(frames['evaluated'], 'frame')} evaluated{before_damage} ({frames['failed']} failed{skipped}); "
              f"report in {out}/report.md")
        for metric, value, target, status in target_rows(result.metrics):
            samples = target_samples(result.metrics, metric.strip("`"))  # "too few samples (n=N)" says it already
            count = f", n={samples}" if samples is not None and status in ("met", "missed") else ""
            print(f"  {metric.strip('`')}: {value} (target {target}: {status}{count})")
    if note is None or frames["without_ground_truth"] == 0:
        check_evaluable(result.metrics)  # nothing scored and nothing timed: an error naming the likely cause
    return result.exit_code


def cmd_eval_vsr(config_path: Path | None, overrides: Sequence[str], images: Path, annotations: Path, out: Path,
                 vlm: str | None, vlm_model: str | None, vlm_recorded: str | None, detector_model: str | None,
                 target_accuracy: float, folds: int, limit: int | None, skip_invalid: bool) -> int:
    """VLM trust on VSR annotations (Imran & Lee's protocol); writes metrics.json, report.md and PNGs."""
    from trusted_scene_graph.evaluation.vsr import run_vsr_eval

    extra: dict[str, Any] = {}
    if vlm is not None:
        extra["vlm.backend"] = vlm
    if vlm_model is not None:
        extra["vlm.model_path"] = vlm_model
    if vlm_recorded is not None:
        extra["vlm.recorded_path"] = vlm_recorded
    if detector_model is not None:
        extra.update({"detector.backend": "grounding_dino", "detector.model_path": detector_model})
    config = load(config_path, overrides).with_overrides(extra)
    check_vsr_options(config)
    for option, value, example in (("--vlm-model", vlm_model, GENERATIVE_VLM_EXAMPLE_ID),
                                   ("--detector-model", detector_model, GROUNDING_DINO_EXAMPLE_ID)):
        if value is not None:
            check_model_option(option, value, example)
    return run_vsr_eval(config, images, annotations, out, target_accuracy=target_accuracy, folds=folds, limit=limit,
                        skip_invalid=skip_invalid, log=print)


def check_model_option(option: str, value: str, example_id: str) -> None:
    """A model option names a local model directory, or an ``org/name`` id looked up in the local Hugging Face cache
    (as ``perception.hf.resolve_model_source`` takes them); refused by the option's name otherwise."""
    path = Path(value).expanduser()
    how_to_get = f"download one on a machine with network access, e.g. `hf download {example_id} --local-dir DIR`"
    if path.is_file():
        raise UsageError(f"{option} {value}: a file, expected a model directory (config.json plus weights)")
    hub_id = value.count("/") == 1 and not value.startswith((".", "/", "~"))
    if not path.exists() and not hub_id:
        raise UsageError(f"{option} {value}: no such model directory; {how_to_get}")


def check_vsr_options(config: Config) -> None:
    """The setup problems :func:`run_vsr_eval` would report by config key, named by the options that fix them."""
    backend = config["vlm.backend"]
    if backend == "none":
        raise UsageError("the VSR evaluation needs a VLM: pass --vlm generative --vlm-model DIR (a local model "
                         "directory) or --vlm recorded --vlm-recorded FILE (a JSONL of recorded answers)")
    if backend == "generative" and not config["vlm.model_path"]:
        raise UsageError("--vlm generative needs --vlm-model DIR, a local model directory (download one on a machine "
                         f"with network access, e.g. `hf download {GENERATIVE_VLM_EXAMPLE_ID} --local-dir DIR`)")
    if backend == "recorded" and not config["vlm.recorded_path"]:
        raise UsageError("--vlm recorded needs --vlm-recorded FILE, a JSONL of recorded answers")
    if config["detector.backend"] == "sim":  # the one detector that needs simulator instance images
        raise UsageError("the VSR evaluation needs an open-vocabulary detector, not the 'sim' detector of the "
                         "config (it needs simulator instance images): pass --detector-model DIR (GroundingDINO "
                         "weights)")


def cmd_replay(bag: Path, rate: float, loop: bool, topics: Sequence[str] | None, start_offset_s: float,
               clock_hz: float | None, wait_for_subscribers_s: float) -> int:
    """Publish a bag's messages on their topics with the original timing."""
    from trusted_scene_graph.ros.replay import run_replay

    return run_replay(bag, rate=rate, loop=loop, topics=topics, start_offset_s=start_offset_s, clock_hz=clock_hz,
                      wait_for_subscribers_s=wait_for_subscribers_s)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="tsg", description=__doc__.split("\n\n")[0].replace("\n", " ").replace("``", ""),
                    epilog="`tsg eval vsr ...` runs the VSR evaluation (`tsg eval vsr --help`). " + EVAL_VSR_RULE)
    commands = parser.add_subparsers(dest="command", required=True)

    def with_config(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--config", type=Path, default=None, help=f"parameter file (default: {DEFAULT_CONFIG_SHOWN})")
        sub.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                         help="override one parameter (repeatable)")

    bringup = commands.add_parser("bringup", help="run the scene-graph nodes in one process")
    with_config(bringup)
    bringup.add_argument("--no-autostart", dest="autostart", action="store_const", const=False, default=None,
                         help="leave lifecycle nodes unconfigured (drive them with a lifecycle manager)")
    bringup.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[],
                         help="arguments passed to rclpy (remappings, log level)")

    config = commands.add_parser("config", help="validate a config and print it as a commented parameter file")
    with_config(config)
    config.add_argument("--out", type=Path, default=None, help="write to this file (default: stdout)")

    demo = commands.add_parser("demo", help="simulated Fetch pick-and-place through the live ROS graph")
    with_config(demo)
    demo.add_argument("--seconds", type=float, default=10.0, help="how long to publish frames [s]")
    demo.add_argument("--rate", dest="rate_hz", type=float, default=6.0,
                      help="frame rate [Hz]; lower it when the demo warns that publishing fell behind")
    demo.add_argument("--out", type=Path, default=Path("out/demo"), help="output directory")
    demo.add_argument("--width", type=int, default=640, help="image width [px]")
    demo.add_argument("--height", type=int, default=480, help="image height [px]")
    demo.add_argument("--seed", type=int, default=0, help="simulation seed")
    demo.add_argument("--depth-encoding", choices=("32FC1", "16UC1"), default="32FC1",
                      help="depth image encoding: 32FC1 metres or 16UC1 millimetres")

    sim = commands.add_parser("sim", help="simulated data")
    sims = sim.add_subparsers(dest="sim", required=True)
    record = sims.add_parser("record", help="record simulated episodes with ground truth into a rosbag2 bag")
    with_config(record)
    record.add_argument("--out", type=Path, required=True, help="bag directory to create (must not exist)")
    record.add_argument("--task", dest="scene", metavar="TASK", default="FetchPickAndPlace",
                        help="FetchReach, FetchPush, FetchPickAndPlace, FetchSlide or tabletop")
    record.add_argument("--episodes", type=int, default=1, help="episodes (tabletop: scenes) to record")
    record.add_argument("--seed", type=int, default=0, help="seed; the same seed gives the same bag content")
    record.add_argument("--camera", default=None, help="Fetch: a camera of the model (default: the task's view)")
    record.add_argument("--width", type=int, default=640, help="image width [px]")
    record.add_argument("--height", type=int, default=480, help="image height [px]")
    record.add_argument("--depth-noise", choices=DEPTH_NOISE_CHOICES, default="none", help="depth noise preset")
    record.add_argument("--depth-encoding", choices=("32FC1", "16UC1"), default="32FC1",
                        help="depth image encoding: 32FC1 metres or 16UC1 millimetres")
    record.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="rosbag2 storage format")
    # Default None: cmd_sim_record tells an option the user gave (refused on the wrong task) from one left out.
    record.add_argument("--policy-noise", type=float, default=None,
                        help="Fetch only: standard deviation of the noise on each scripted action component "
                             "(default: 0.0)")
    record.add_argument("--frames-per-scene", type=int, default=None,
                        help="tabletop only: frames per static scene (they differ by depth noise only) (default: 1)")

    label = commands.add_parser(
        "label", help="add dense rewards to a bag, a folder of bags or a LeRobot v3 dataset",
        description="Replay recorded data through the scene graph and write its dense rewards: for bags, a copy of "
                    "each bag with /scene_graph/reward added plus rewards.parquet; for a LeRobot v3 dataset, a new "
                    "dataset with a next.reward column. Resumable: rerun the same command to finish an interrupted "
                    "run (Ctrl-C or SIGTERM stops one with a note, exit 130 or 143).")
    with_config(label)
    label.add_argument("input", type=Path, metavar="INPUT", help="bag, folder of bags, or LeRobot v3 dataset")
    label.add_argument("--out", type=Path, required=True, help="output directory (never inside INPUT)")
    label.add_argument("--pair", dest="pairs", action="append", default=[], metavar="SUBJECT:OBJECT[,k=v...]",
                       help="a reward pair, repeatable (default: the config's reward.pairs)")
    label.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local: this process (--workers 1) or worker processes; ray: a Ray cluster")
    label.add_argument("--workers", type=int, default=1, help="items labelled at once")
    label.add_argument("--ray-address", default=None,
                       help="--engine ray: address of a running cluster (default: start a local one); INPUT and "
                            "--out must be on a filesystem every node shares")
    label.add_argument("--max-retries", type=int, default=3, help="retries of an item whose worker died")
    label.add_argument("--replace-reward", action="store_true",
                       help="bags that already have /scene_graph/reward (recorded from a live node): leave the "
                            "recorded rewards out of the copy and label them again")
    label.add_argument("--rewards-only", action="store_true",
                       help="bags: write a bag holding only /scene_graph/reward instead of a copy of each bag (play "
                            "it beside the source, ROS 2 Kilted or newer: ros2 bag play -i SOURCE -i OUT/<bag>)")
    lerobot = label.add_argument_group("LeRobot datasets (cameras stored as images; positions in the graph frame)")
    lerobot.add_argument("--camera", default=None, help="colour image feature (default: the only image feature)")
    lerobot.add_argument("--depth", default=None,
                         help="16-bit depth image feature in millimetres (required unless --set "
                              "depth.backend=monocular)")
    lerobot.add_argument("--instances", default=None,
                         help="16-bit instance-id image feature (required by the 'sim' detector; with real camera "
                              "images use --set detector.backend=grounding_dino)")
    lerobot.add_argument("--intrinsics", default=None, metavar="FX,FY,CX,CY",
                         help="pinhole intrinsics of the stored (undistorted) images [px]")
    lerobot.add_argument("--ee-position", default=None, metavar="KEY[START:STOP]",
                         help="feature holding the end effector's x, y, z [m], e.g. observation.state[0:3] (a "
                              "bare KEY: a feature of exactly 3 values)")
    lerobot.add_argument("--goal-position", default=None, metavar="KEY[START:STOP]",
                         help="feature holding the goal's x, y, z [m]")
    lerobot.add_argument("--invalid-reward", type=float, default=float("nan"),
                         help="next.reward of frames whose reward is not valid, and of each episode's last frame "
                              "(default: NaN; stats skip NaN)")
    lerobot.add_argument("--overwrite-column", action="store_true",
                         help="replace the next.reward and next.reward_valid columns the dataset already has")

    evaluate = commands.add_parser(
        "eval", help="replay a bag offline and score the graphs against its ground truth (`tsg eval vsr --help`: "
                     "VLM trust on VSR)",
        description="Replay a rosbag2 bag offline through the node's code and score the scene graphs against the "
                    "bag's ground truth; writes metrics.json, report.md, PNGs and edges.npz (the labelled trust "
                    "features of every evaluated fact, the training data of `tsg trust train`) into --out.",
        epilog="`tsg eval vsr ...` evaluates VLM trust on VSR annotations instead (`tsg eval vsr --help`). "
               + EVAL_VSR_RULE)
    with_config(evaluate)
    evaluate.add_argument("bag", type=Path, help="bag directory, .mcap or .db3 file")
    evaluate.add_argument("--out", type=Path, required=True,
                          help="output directory (metrics.json, report.md, PNGs, edges.npz)")
    evaluate.add_argument("--max-frames", type=int, default=None,
                          help="process at most this many frames (default: all frames)")
    evaluate.add_argument("--ground-truth-topic", default="/ground_truth", help="topic of GroundTruth messages")

    # No help=: eval-vsr is reached as `tsg eval vsr` (see main) and stays out of `tsg --help`'s command list.
    vsr = commands.add_parser(EVAL_VSR, prog="tsg eval vsr", description="VLM trust on VSR annotations (Imran & "
                              "Lee's protocol); writes metrics.json, report.md and PNGs.", epilog=EVAL_VSR_RULE)
    with_config(vsr)
    vsr.add_argument("--images", type=Path, required=True, help="directory of the annotation file's images")
    vsr.add_argument("--annotations", type=Path, required=True, help="VSR annotations (.jsonl or .json)")
    vsr.add_argument("--out", type=Path, default=Path("out/eval_vsr"), help="output directory")
    vsr.add_argument("--vlm", choices=("generative", "recorded"), default=None,
                     help="VLM backend (default: the config's vlm.backend)")
    vsr.add_argument("--vlm-model", default=None,
                     help="'generative': local model directory (default: the config's vlm.model_path)")
    vsr.add_argument("--vlm-recorded", default=None,
                     help="'recorded': JSONL of cached answers (default: the config's vlm.recorded_path)")
    vsr.add_argument("--detector-model", default=None,
                     help="GroundingDINO model directory, which sets detector.backend=grounding_dino (default: the "
                          "config's detector)")
    vsr.add_argument("--target-accuracy", type=float, default=0.60, help="accuracy the kept answers should reach")
    vsr.add_argument("--folds", type=int, default=5, help="grouped cross-validation folds of the fused trust")
    vsr.add_argument("--limit", type=int, default=None, help="evaluate only the first N samples (default: all)")
    vsr.add_argument("--skip-invalid", action="store_true", help="skip invalid annotation lines (counted)")

    replay = commands.add_parser(
        "replay", help="publish a bag's messages with their original timing",
        description="Publish a rosbag2 bag's messages on their recorded topics with the recorded timing and QoS, so "
                    "a live `tsg bringup` can be run on recorded data (a player for installs without `ros2 bag play`). "
                    "An mcap file without a valid end (a killed recorder) is played up to the damage, with a warning "
                    "and exit code 1. Ctrl-C or SIGTERM stops it with a summary.")
    replay.add_argument("bag", type=Path, help="bag directory, .mcap or .db3 file")
    replay.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    replay.add_argument("--loop", action="store_true", help="play again from the start until Ctrl-C or SIGTERM")
    replay.add_argument("--topics", nargs="+", default=None, help="play only these topics (default: all)")
    replay.add_argument("--start-offset", dest="start_offset_s", type=float, default=0.0,
                        help="skip this many seconds from the start [s]")
    replay.add_argument("--clock", dest="clock_hz", type=float, nargs="?", const=40.0, default=None,
                        help="publish /clock at this rate [Hz] (40, as ros2 bag play, when given without a value; "
                             "default: no /clock)")
    replay.add_argument("--wait-for-subscribers", dest="wait_for_subscribers_s", type=float, default=2.0,
                        help="before playing, wait up to this long for a subscriber on any replayed topic, then up to "
                             "0.5 s more for the other topics' discovery; topics still without one are listed in the "
                             "summary as 'not subscribed', and a warning is printed only when no topic has one; 0: "
                             "play at once [s]")

    bench = commands.add_parser("bench", help="benchmarks, each writing a JSON of side-by-side ratios")
    benches = bench.add_subparsers(dest="bench", required=True)
    service = benches.add_parser("service", help="QueryDistance latency vs an echo service")
    service.add_argument("--config", type=Path, default=None, help=f"parameter file (default: {DEFAULT_CONFIG_SHOWN})")
    service.add_argument("--out", type=Path, required=True, help="JSON output file")
    service.add_argument("--calls", type=int, default=2000, help="calls to each service")
    service.add_argument("--rate", dest="rate_hz", type=float, default=10.0, help="frame rate while measuring [Hz]")
    service.add_argument("--concurrency", type=int, default=4,
                         help="calls in flight, half to each service (an even number)")
    perception = benches.add_parser("perception", help="geometry after the detector vs one detector forward pass")
    perception.add_argument("--config", type=Path, default=None,
                            help=f"parameter file (default: {DEFAULT_CONFIG_SHOWN})")
    perception.add_argument("--out", type=Path, required=True, help="JSON output file")
    perception.add_argument("--repeats", type=int, default=50, help="timed frames per object count")
    perception.add_argument("--detector-size", choices=("full", "tiny"), default="full",
                            help="'full': Swin-T + BERT-base GroundingDINO at 800x1066 (about 15 s per pass on 2 "
                                 "cores); 'tiny': a miniature one, to check the command quickly")
    perception.add_argument("--detector-repeats", type=int, default=1,
                            help="timed detector passes after one warm-up (the minimum is reported)")
    trust_bench = benches.add_parser("trust", help="trust features + model + pruning vs one detector forward pass")
    with_config(trust_bench)
    trust_bench.add_argument("--out", type=Path, required=True, help="JSON output file")
    trust_bench.add_argument("--repeats", type=int, default=50, help="timed frames per object count")
    trust_bench.add_argument("--detector-size", choices=("full", "tiny"), default="full",
                             help="as for tsg bench perception")
    trust_bench.add_argument("--detector-repeats", type=int, default=1,
                             help="timed detector passes after one warm-up (the minimum is reported)")
    label_bench = benches.add_parser("label", help="tsg label frames/s vs reading the same bag; 2 vs 1 workers")
    label_bench.add_argument("--config", type=Path, default=None,
                             help="parameter file (default: config/benchmark.yaml's settings, which the bench records "
                                  "its bag with)")
    label_bench.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                             help="override one parameter (repeatable)")
    label_bench.add_argument("--out", type=Path, required=True, help="JSON output file")
    label_bench.add_argument("--bag", type=Path, default=None,
                             help="bench this bag (default: record a FetchPush bag in a scratch directory)")
    # Default None: a recording option given with --bag is refused rather than ignored.
    label_bench.add_argument("--episodes", type=int, default=None, help="episodes to record (default: 2)")
    label_bench.add_argument("--width", type=int, default=None, help="recorded image width [px] (default: 320)")
    label_bench.add_argument("--height", type=int, default=None, help="recorded image height [px] (default: 240)")
    label_bench.add_argument("--bags", type=int, default=4, help="items of the 2 vs 1 worker runs (copies of the bag)")
    label_bench.add_argument("--repeats", type=int, default=5, help="alternating timed reads and labellings")
    label_bench.add_argument("--engine-repeats", type=int, default=3,
                             help="alternating timed runs of 1 and of 2 workers, per engine")
    label_bench.add_argument("--pair", dest="pairs", action="append", default=[], metavar="SUBJECT:OBJECT[,k=v...]",
                             help="a reward pair, repeatable (default: gripper:cube)")
    label_bench.add_argument("--no-ray", dest="ray", action="store_false", help="skip the Ray engine comparison")
    label_bench.add_argument("--no-local", dest="local", action="store_false",
                             help="skip the local engine comparison")

    trust = commands.add_parser("trust", help="train and report the trust model")
    trusts = trust.add_subparsers(dest="trust", required=True)
    train = trusts.add_parser("train", help="fit the trust model on tsg eval edge tables (edges.npz)")
    train.add_argument("--data", type=Path, nargs="+", required=True,
                       help="edges.npz files, or tsg eval --out directories holding one")
    train.add_argument("--out", type=Path, required=True, help="model directory to write")
    train.add_argument("--target-precision", type=float, default=0.95, help="precision the kept edges must reach")
    train.add_argument("--delta", type=float, default=0.1,
                       help="allowed probability that the threshold misses the target precision (tested with "
                            "scenes as the unit, so approximate: see trust/threshold.py)")
    train.add_argument("--method", choices=("fixed_sequence", "bonferroni"), default="fixed_sequence",
                       help="multiple-testing correction of the Learn-then-Test threshold")
    train.add_argument("--calibration", choices=("auto", "platt", "isotonic"), default="auto",
                       help="'auto': Platt below 1,000 calibration edges, isotonic above")
    # 30 trees of depth 5 predict ~1,000 facts in about 1 ms on 2 cores (tsg bench trust); on the simulated training
    # bags 60 trees of depth 4 gained no held-out AUROC (0.8772 vs 0.8775).
    train.add_argument("--n-estimators", type=int, default=30, help="boosted trees")
    train.add_argument("--max-depth", type=int, default=5, help="depth of each tree")
    train.add_argument("--learning-rate", type=float, default=0.15, help="XGBoost eta")
    train.add_argument("--seed", type=int, default=0, help="seed of the grouped split and of XGBoost")
    trust_report = trusts.add_parser(
        "report", help="a trust model against two baselines on held-out edge tables",
        description="Score a trust model and two baselines (geometric alignment only, VLM confidence only) on the same "
                    "facts of held-out edge tables, and check its threshold against the target precision and delta "
                    "stored with the model. Writes metrics.json, report.md and five PNGs (ROC, risk-coverage, "
                    "reliability, feature importance, coverage at a target precision) into --out.")
    trust_report.add_argument("model", type=Path, help="model directory (tsg trust train --out), or 'default' for the "
                                                       "shipped model")
    trust_report.add_argument("--data", type=Path, nargs="+", required=True,
                              help="edges.npz files, or tsg eval --out directories holding one")
    trust_report.add_argument("--out", type=Path, required=True, help="report directory")
    commands.metavar = "{" + ",".join(name for name in commands.choices if name != EVAL_VSR) + "}"
    return parser


def vsr_only_options(parser: argparse.ArgumentParser) -> set[str]:
    """Option strings of `tsg eval vsr` that `tsg eval BAG` does not have."""
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return set(commands.choices[EVAL_VSR]._option_string_actions) - set(commands.choices["eval"]._option_string_actions)


def route_eval_vsr(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """``eval vsr ...`` -> ``eval-vsr ...``, the rule of :data:`EVAL_VSR_RULE`: `tsg eval BAG` and `tsg eval vsr`
    share the position, which argparse cannot tell apart, so a path ``vsr`` that exists stays a bag unless a VSR-only
    option follows. ``./vsr`` is never rewritten."""
    if argv[:2] != ["eval", VSR_WORD]:
        return argv
    vsr_options = vsr_only_options(parser)
    if not Path(VSR_WORD).exists() or any(token.partition("=")[0] in vsr_options for token in argv[2:]):
        return [EVAL_VSR, *argv[2:]]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    from trusted_scene_graph import keep_hub_offline

    keep_hub_offline()  # before any command imports huggingface_hub
    parser = build_parser()
    args = parser.parse_args(route_eval_vsr(list(sys.argv[1:] if argv is None else argv), parser))
    try:
        if args.command == "bringup":
            return cmd_bringup(args.config, args.overrides, args.autostart, args.ros_args)
        if args.command == "config":
            return cmd_config(args.config, args.overrides, args.out)
        if args.command == "demo":
            return cmd_demo(args.config, args.overrides, args.seconds, args.rate_hz, args.out, args.width,
                            args.height, args.seed, args.depth_encoding)
        if args.command == "sim" and args.sim == "record":
            return cmd_sim_record(args.config, args.overrides, args.out, args.scene, args.episodes, args.seed,
                                  args.camera, args.width, args.height, args.depth_noise, args.depth_encoding,
                                  args.storage, args.policy_noise, args.frames_per_scene)
        if args.command == "eval":
            return cmd_eval(args.config, args.overrides, args.bag, args.out, args.max_frames,
                            args.ground_truth_topic)
        if args.command == EVAL_VSR:
            return cmd_eval_vsr(args.config, args.overrides, args.images, args.annotations, args.out, args.vlm,
                                args.vlm_model, args.vlm_recorded, args.detector_model, args.target_accuracy,
                                args.folds, args.limit, args.skip_invalid)
        if args.command == "label":
            return cmd_label(args.config, args.overrides, args.input, args.out, args.pairs, args.engine, args.workers,
                             args.ray_address, args.max_retries, args.camera, args.depth, args.instances,
                             args.intrinsics, args.ee_position, args.goal_position, args.invalid_reward,
                             args.overwrite_column, args.replace_reward, args.rewards_only)
        if args.command == "replay":
            return cmd_replay(args.bag, args.rate, args.loop, args.topics, args.start_offset_s, args.clock_hz,
                              args.wait_for_subscribers_s)
        if args.command == "bench" and args.bench == "service":
            return cmd_bench_service(args.config, args.out, args.calls, args.rate_hz, args.concurrency)
        if args.command == "bench" and args.bench == "perception":
            return cmd_bench_perception(args.config, args.out, args.repeats, args.detector_size,
                                        args.detector_repeats)
        if args.command == "bench" and args.bench == "trust":
            return cmd_bench_trust(args.config, args.overrides, args.out, args.repeats, args.detector_size,
                                   args.detector_repeats)
        if args.command == "bench" and args.bench == "label":
            return cmd_bench_label(args.config, args.overrides, args.out, args.bag, args.episodes, args.width,
                                   args.height, args.bags, args.repeats, args.engine_repeats, args.pairs, args.ray,
                                   args.local)
        if args.command == "trust" and args.trust == "train":
            return cmd_trust_train(args.data, args.out, args.target_precision, args.delta, args.method,
                                   args.calibration, args.n_estimators, args.max_depth, args.learning_rate,
                                   args.seed)
        if args.command == "trust" and args.trust == "report":
            return cmd_trust_report(args.model, args.data, args.out)
    except TsgError as exc:
        command = "eval vsr" if args.command == EVAL_VSR else " ".join(
            word for word in (args.command, getattr(args, "sim", None), getattr(args, "bench", None),
                             getattr(args, "trust", None)) if word)
        print(f"tsg {command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # Whoever read the output went away (tsg eval ... | head): end quietly, as Python's documentation advises,
        # pointing stdout at /dev/null so the interpreter's last flush does not print a traceback either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse rejects unknown commands first


if __name__ == "__main__":
    sys.exit(main())
