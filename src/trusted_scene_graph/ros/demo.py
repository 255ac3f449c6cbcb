"""``tsg demo``: a simulated Fetch pick-and-place published over DDS into a real ``tsg bringup`` process.

The bringup runs as its own process, exactly as a user starts it, so the demo exercises real inter-process
DDS traffic: images out, ``/scene_graph`` and ``/scene_graph/query_distance`` back.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rclpy.executors import (
    Executor,
    ExternalShutdownException,
    ShutdownException,
    SingleThreadedExecutor,
    TimeoutException,
)
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from trusted_scene_graph_msgs.msg import SceneGraph as SceneGraphMsg
from trusted_scene_graph_msgs.srv import QueryDistance

from trusted_scene_graph.config.schema import Config
from trusted_scene_graph.graph.model import SceneGraph
from trusted_scene_graph.report import (
    DistanceSample,
    distance_table,
    graph_tables,
    plot_distances,
    print_tables,
    write_json,
)
from trusted_scene_graph.ros import convert
from trusted_scene_graph.ros.scene_graph_node import QUERY_SERVICE, SCENE_GRAPH_TOPIC
from trusted_scene_graph.ros.sim_publisher import SimCameraPublisher, extrinsic_overrides

SUBJECT, OBJECT = "gripper", "cube"
SERVICE_WAIT_S = 60.0
DRAIN_S = 2.0
# The rate was not held when more frames than this came late (a single slow frame is not worth a warning).
LATE_FRACTION_TO_WARN = 0.05
# The first frame warms up the renderer and DDS (several times a later frame's time): it is never counted late, nor
# in the render times, or a short run warned and suggested a rate from it ('~89 ms ... try --rate 1' at 3 Hz).
WARM_UP_FRAMES = 1
# A suggested --rate leaves this share of a frame period free, for the callbacks and a busier moment.
RATE_HEADROOM = 0.75
# Callbacks run after each frame before rendering the next; far above the two or three a frame brings.
MAX_CALLBACKS_PER_FRAME = 100
# Distinct invalid-answer messages kept in summary.json and printed: the first few say why; more repeat it.
MAX_INVALID_MESSAGES = 3
# Lines of bringup.log printed when the bringup failed.
LOG_TAIL_LINES = 20
SUMMARY, PLOT, PARAMETERS, LOG = "summary.json", "distance.png", "params.yaml", "bringup.log"

# The bringup latches one graph (GRAPH_QOS); the demo keeps up to this many unread ones (compatible with it), so a
# graph is not overwritten by the next while the demo renders a frame.
DEMO_GRAPH_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL, history=HistoryPolicy.KEEP_LAST)


class FramePacer:
    """Schedules frames at ``rate_hz`` and counts the late ones (not the :data:`WARM_UP_FRAMES`).

    A frame is late when it (rendering, publishing and the callbacks after it) ends after the next frame was due.
    The schedule then restarts from now instead of publishing a burst to catch up: a burst would only flood the
    bringup, which keeps the newest frame anyway, and leave no time to receive its graphs.
    """

    def __init__(self, rate_hz: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not (rate_hz > 0 and math.isfinite(rate_hz)):
            raise ValueError(f"frame rate must be positive and finite, got {rate_hz} Hz")
        self.rate_hz = rate_hz
        self.period_s = 1.0 / rate_hz
        self._clock = clock
        self._next_tick_s = clock()
        self.frames = 0
        self.late = 0
        self.render_s: list[float] = []  # of the frames after the warm-up

    def frame_done(self, render_s: float) -> None:
        """Count a published frame whose rendering and publishing took ``render_s``; schedule the next one."""
        self.frames += 1
        self._next_tick_s += self.period_s
        now_s = self._clock()
        late = now_s > self._next_tick_s
        if late:
            self._next_tick_s = now_s  # a late warm-up frame restarts the schedule too
        if self.frames > WARM_UP_FRAMES:
            self.render_s.append(render_s)
            self.late += late

    def remaining_s(self) -> float:
        """Time until the next frame is due (<= 0: due now)."""
        return self._next_tick_s - self._clock()

    def median_render_ms(self) -> float:
        return float(np.median(self.render_s)) * 1e3 if self.render_s else math.nan

    def slow_render_ms(self) -> float:
        """The render time that all but :data:`LATE_FRACTION_TO_WARN` of the frames stay within: what a rate must
        leave room for so that it draws no warning (the median would leave every slower frame late)."""
        if not self.render_s:
            return math.nan
        return float(np.quantile(self.render_s, 1.0 - LATE_FRACTION_TO_WARN, method="higher")) * 1e3

    def suggested_rate_hz(self) -> float:
        """A rate whose period the slow frames (:meth:`slow_render_ms`) fill to :data:`RATE_HEADROOM` at most: whole
        Hz above 1 Hz."""
        achievable_hz = RATE_HEADROOM / (self.slow_render_ms() / 1e3)
        if achievable_hz >= 1.0:
            return float(math.floor(achievable_hz))
        return max(0.1, math.floor(achievable_hz * 10) / 10)

    def warning(self) -> str | None:
        """One line when more than :data:`LATE_FRACTION_TO_WARN` of the frames came late, else None. It suggests a
        lower rate only when rendering explains the lateness; frames that rendered in time yet came late were held
        up by something else (other load on the machine), which no rate fixes."""
        paced = len(self.render_s)
        if paced == 0 or self.late <= LATE_FRACTION_TO_WARN * paced:
            return None
        behind = (f"publishing fell behind {self.rate_hz:g} Hz on {self.late} of {paced} frames after the first "
                  f"(rendering takes ~{self.median_render_ms():.0f} ms, {self.slow_render_ms():.0f} ms for the slowest "
                  f"{LATE_FRACTION_TO_WARN:.0%})")
        suggested_hz = self.suggested_rate_hz()
        if suggested_hz >= self.rate_hz:
            return f"{behind}; rendering fits the period, so other load on the machine held the frames up"
        return f"{behind}; try --rate {suggested_hz:g}"


def run_ready_callbacks(executor: Executor, max_callbacks: int = MAX_CALLBACKS_PER_FRAME) -> int:
    """Run the callbacks that are ready now without waiting for more (rclpy has no spin_some); return how many ran.

    ``spin_once(timeout_sec=0)`` runs at most one callback and does not say whether there was one.
    """
    for count in range(max_callbacks):
        try:
            handler, _, _ = executor.wait_for_ready_callbacks(timeout_sec=0.0)
        except (TimeoutException, ShutdownException):
            return count
        handler()
        handler.result()  # raises the callback's exception, as spin_once does
    return max_callbacks


def true_distance_m(frame, subject: str = SUBJECT, obj: str = OBJECT) -> float:
    """Ground-truth distance between two labelled objects of a ``SimFrame``."""
    positions = {o.label: o.position_m for o in frame.objects}
    return float(np.linalg.norm(positions[subject] - positions[obj]))


class DistanceRecorder:
    """Pairs perceived distances (by the stamp of the graph they came from) with the true ones."""

    def __init__(self) -> None:
        self.true_by_stamp: dict[int, float] = {}
        self.samples: list[DistanceSample] = []
        self._sampled_stamps: set[int] = set()
        self.first_stamp_ns: int | None = None
        self.answers = 0
        self.invalid_answers: list[str] = []

    def frame_published(self, stamp_ns: int, true_m: float) -> None:
        if self.first_stamp_ns is None:
            self.first_stamp_ns = stamp_ns
        self.true_by_stamp[stamp_ns] = true_m

    def answer(self, response: QueryDistance.Response) -> None:
        self.answers += 1
        stamp_ns = convert.stamp_to_ns(response.graph_stamp)
        if not response.valid:
            self.invalid_answers.append(response.message)
            return
        true_m = self.true_by_stamp.get(stamp_ns)
        # One sample per graph: two queries sent before the first is served are both answered from the newer graph.
        if true_m is not None and self.first_stamp_ns is not None and stamp_ns not in self._sampled_stamps:
            self._sampled_stamps.add(stamp_ns)
            self.samples.append(DistanceSample((stamp_ns - self.first_stamp_ns) / 1e9, response.distance_m, true_m))

    def invalid_messages(self, limit: int = MAX_INVALID_MESSAGES) -> list[str]:
        """The first ``limit`` distinct messages of the invalid answers, in the order they came."""
        return list(dict.fromkeys(self.invalid_answers))[:limit]


def start_bringup_process(config: Config, work_dir: Path) -> subprocess.Popen:
    params = work_dir / PARAMETERS
    params.write_text(config.to_ros_parameters_yaml())
    log = (work_dir / LOG).open("w")
    return subprocess.Popen([sys.executable, "-m", "trusted_scene_graph.cli", "bringup", "--config", str(params)],
                            stdout=log, stderr=subprocess.STDOUT)


def stop_process(process: subprocess.Popen, timeout_s: float = 10.0) -> int:
    """Stop ``process`` with SIGINT (SIGKILL after ``timeout_s``) unless it has ended; return its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def demo_bringup_config(config: Config, camera) -> Config:
    """``config`` with the simulator camera's pose as a static extrinsic.

    The source is overridden too, not only the pose: the demo publishes no tf, so a config reading the pose from tf
    (config/benchmark.yaml) gave no graph at all, and a plane fit would replace the exact pose the demo knows. An
    override rather than a refusal, so the configs written for the simulated scenes run as they are."""
    return config.with_overrides(extrinsic_overrides(camera))


def remove_stale_results(out_dir: Path) -> None:
    """Remove the summary and distance plot an earlier demo wrote into ``out_dir``: a run that fails before its
    report writes neither (the bringup never came up, Ctrl-C), and a run without samples writes no plot; the old
    ones would pass for its result. They are the demo's when summary.json is a demo summary."""
    try:
        previous = json.loads((out_dir / SUMMARY).read_text())
    except (OSError, ValueError):
        return
    if isinstance(previous, dict) and "graphs_received" in previous:
        (out_dir / PLOT).unlink(missing_ok=True)
        (out_dir / SUMMARY).unlink(missing_ok=True)


def _exit_status(code: int) -> str:
    return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"


def bringup_error(exit_code: int, ended_early: bool, log: Path) -> str | None:
    """Why the bringup failed the run, with the end of its log; None when it ran until stopped and exited 0."""
    if ended_early:
        what = f"the bringup {_exit_status(exit_code)} during the run"
    elif exit_code != 0:
        what = f"the bringup {_exit_status(exit_code)} when stopped"
    else:
        return None
    return _with_log_tail(what, log)


def startup_error(exit_code: int | None, log: Path, shown_as: Path | None = None) -> str:
    """Why the bringup never offered the query service: it ended (``exit_code``), or it still runs (None) after
    :data:`SERVICE_WAIT_S`; with the end of its log ``log``, named ``shown_as`` (where the demo keeps it)."""
    what = (f"the bringup {_exit_status(exit_code)} before it came up" if exit_code is not None
            else f"the bringup did not offer {QUERY_SERVICE} within {SERVICE_WAIT_S:g} s")
    return _with_log_tail(what, log, shown_as)


def _with_log_tail(what: str, log: Path, shown_as: Path | None = None) -> str:
    shown_as = log if shown_as is None else shown_as
    try:
        tail = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    except OSError as exc:
        return f"{what}; {shown_as} cannot be read: {exc.strerror or exc}"
    return "\n".join([f"{what}; the end of {shown_as}:", *(f"  {line}" for line in tail)])


def no_samples_error(recorder: DistanceRecorder, graphs_received: int) -> str:
    """Why no distance sample was recorded: how many of the answers were invalid, and their first messages."""
    text = (f"no {SUBJECT}-{OBJECT} distance samples: {len(recorder.invalid_answers)} of the {recorder.answers} "
            f"answers to the {graphs_received} distance queries were invalid")
    messages = recorder.invalid_messages()
    if not messages:
        return text
    return "\n".join([f"{text}; the first distinct messages:", *(f"  {message}" for message in messages)])


def _listed(paths: Sequence[Path]) -> str:
    names = [str(path) for path in paths]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def report_run(out_dir: Path, *, options: dict[str, Any], frames_published: int, pacer: FramePacer,
               recorder: DistanceRecorder, graphs_received: int, last: SceneGraph | None, bringup_exit_code: int,
               bringup_ended_early: bool, written: Sequence[Path], interrupted: bool = False) -> int:
    """Write summary.json (and distance.png when there are samples), print the run's results and its errors; the exit
    code: 130 when the run was ``interrupted`` (Ctrl-C or SIGTERM: what it collected is reported all the same), 1 when
    the bringup failed, no graph arrived or no distance sample was recorded, else 0. ``written``: the files the run
    wrote into ``out_dir`` already (the bringup's log and parameter file)."""
    samples = recorder.samples
    summary = {
        "frames_published": frames_published,
        "frames_late": pacer.late,
        "render_ms_median": pacer.median_render_ms() if pacer.render_s else None,
        "graphs_received": graphs_received,
        "objects": [{"id": o.id, "label": o.label, "score": o.score, "centroid_m": [float(v) for v in o.centroid_m],
                     "size_m": [float(v) for v in o.size_m], "track_age": o.track_age}
                    for o in (last.objects if last else ())],
        "distance_samples": [{"t": s.t, "perceived_m": s.perceived_m, "true_m": s.true_m} for s in samples],
        "distance_mae_m": float(np.mean([abs(s.perceived_m - s.true_m) for s in samples])) if samples else None,
        "invalid_answers": len(recorder.invalid_answers),
        "invalid_answer_messages": recorder.invalid_messages(),
        "bringup_exit_code": bringup_exit_code,
        "interrupted": interrupted,
        # The demo's own options; the bringup's parameters (the config with --set and the demo's overrides) are in
        # the parameter file beside this one.
        "options": options,
        "parameter_file": PARAMETERS if out_dir / PARAMETERS in written else None,
    }
    files = [out_dir / SUMMARY, *written]
    write_json(summary, files[0])
    if samples:
        plot_distances(samples, out_dir / PLOT,
                       f"{SUBJECT}-{OBJECT} distance, Fetch pick-and-place (seed {options['seed']})")
        files.append(out_dir / PLOT)
    # Stopped by the user, the bringup's exit and a run without graphs or samples are no failures to report.
    bringup_failed = None if interrupted else bringup_error(bringup_exit_code, bringup_ended_early, out_dir / LOG)
    errors = [bringup_failed] if bringup_failed else []
    if last is None and not interrupted:
        errors.append(f"no scene graph arrived ({frames_published} frames published); see {out_dir / LOG}")
    elif last is None:
        print(f"{frames_published} frames published, no scene graph received")
    else:
        print_tables([*graph_tables(last), distance_table(samples)])
        mae = summary["distance_mae_m"]
        print(f"{frames_published} frames published, {graphs_received} graphs received, {len(samples)} distance "
              "samples" + (f", mean |perceived - true| = {mae * 100:.1f} cm" if mae is not None and math.isfinite(mae)
                           else ""))
        if not samples and not interrupted:
            errors.append(no_samples_error(recorder, graphs_received))
    print(f"wrote {_listed(files)}")
    for error in errors:
        print(f"tsg demo: error: {error}", file=sys.stderr)
    if (warning := pacer.warning()) is not None:
        print(f"tsg demo: warning: {warning}", file=sys.stderr)
    if interrupted:
        print("tsg demo: interrupted (Ctrl-C or SIGTERM): the results above are those of the frames published until "
              "then", file=sys.stderr)
        return 130
    return 1 if errors else 0


def run_demo(config: Config, seconds: float, rate_hz: float, out_dir: Path, width: int = 640, height: int = 480,
             seed: int = 0, depth_encoding: str = "32FC1") -> int:
    from trusted_scene_graph.sim import FetchScene

    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_results(out_dir)
    scene = FetchScene(width=width, height=height, seed=seed)
    config = demo_bringup_config(config, scene.camera)
    intrinsics = scene.camera.intrinsics
    recorder = DistanceRecorder()
    graphs: list[SceneGraphMsg] = []
    bringup_ended_early = interrupted = False
    with tempfile.TemporaryDirectory(prefix="tsg-demo-") as tmp:
        process = start_bringup_process(config, Path(tmp))
        rclpy.init()
        node = rclpy.create_node("tsg_demo")
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        try:
            camera = SimCameraPublisher(node, config, depth_encoding)
            client = node.create_client(QueryDistance, QUERY_SERVICE)

            def on_graph(msg: SceneGraphMsg) -> None:
                graphs.append(msg)
                future = client.call_async(QueryDistance.Request(subject=SUBJECT, object=OBJECT, mode="centroid"))
                future.add_done_callback(lambda f: recorder.answer(f.result()))

            node.create_subscription(SceneGraphMsg, SCENE_GRAPH_TOPIC, on_graph, DEMO_GRAPH_QOS)
            pacer = FramePacer(rate_hz)  # made again when publishing starts; this one reports a run stopped before
            try:
                deadline = time.monotonic() + SERVICE_WAIT_S
                while not client.service_is_ready():  # the bringup loads its models: it may take a while
                    if process.poll() is not None or time.monotonic() > deadline:
                        # Named where it is kept: the finally below copies the log out of the temporary directory.
                        print(f"tsg demo: error: {startup_error(process.poll(), Path(tmp) / LOG, out_dir / LOG)}",
                              file=sys.stderr)
                        return 1
                    executor.spin_once(timeout_sec=0.1)
                print(f"tsg demo: publishing {width}x{height} Fetch frames at {rate_hz:g} Hz for {seconds:g} s")
                end = time.monotonic() + seconds
                pacer = FramePacer(rate_hz)
                # A bringup that ends before the demo stops it fails the run: checked once a frame and while
                # draining.
                while time.monotonic() < end:
                    if process.poll() is not None:
                        bringup_ended_early = True
                        break
                    start = time.monotonic()
                    frame = scene.step()
                    stamp_ns = node.get_clock().now().nanoseconds
                    recorder.frame_published(stamp_ns, true_distance_m(frame))
                    camera.publish(frame, intrinsics, stamp_ns)
                    render_s = time.monotonic() - start
                    # Always, even when behind: otherwise nothing is received while rendering cannot keep up.
                    run_ready_callbacks(executor)
                    pacer.frame_done(render_s)
                    while (remaining := pacer.remaining_s()) > 0:
                        executor.spin_once(timeout_sec=remaining)
                drain_end = time.monotonic() + DRAIN_S
                while time.monotonic() < drain_end and not bringup_ended_early:
                    executor.spin_once(timeout_sec=0.05)
                    bringup_ended_early = process.poll() is not None
            except (KeyboardInterrupt, ExternalShutdownException):
                # rclpy turns Ctrl-C and SIGTERM into ExternalShutdownException: the frames so far are reported.
                interrupted = True
        finally:
            executor.shutdown()
            node.destroy_node()
            rclpy.try_shutdown()
            bringup_exit_code = stop_process(process)
            scene.close()
            # Kept from the temporary directory: the bringup's log, and the parameter file it read (the config with
            # --set and the demo's overrides; summary.json's own "options" are only the demo's).
            written = [Path(shutil.copyfile(Path(tmp) / name, out_dir / name)) for name in (PARAMETERS, LOG)]

    last = convert.graph_from_msg(graphs[-1]) if graphs else None
    options = {"seconds": seconds, "rate_hz": rate_hz, "width": width, "height": height, "seed": seed,
               "depth_encoding": depth_encoding}
    return report_run(out_dir, options=options, frames_published=camera.published, pacer=pacer, recorder=recorder,
                      graphs_received=len(graphs), last=last, bringup_exit_code=bringup_exit_code,
                      bringup_ended_early=bringup_ended_early, written=written, interrupted=interrupted)
