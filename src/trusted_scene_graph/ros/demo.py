"""``tsg demo``: a simulated Fetch pick-and-place published over DDS into a real ``tsg bringup`` process.

The bringup runs as its own process, exactly as a user starts it, so the demo exercises real inter-process
DDS traffic: images out, ``/scene_graph`` and ``/scene_graph/query_distance`` back.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import Executor, ShutdownException, SingleThreadedExecutor, TimeoutException
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from trusted_scene_graph_msgs.msg import SceneGraph as SceneGraphMsg
from trusted_scene_graph_msgs.srv import QueryDistance

from trusted_scene_graph.config.schema import Config
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
# The rate was not held when more frames than this came late (a single slow first frame is not worth a warning).
LATE_FRACTION_TO_WARN = 0.05
# A suggested --rate leaves this share of a frame period free, for the callbacks and a busier moment.
RATE_HEADROOM = 0.75
# Callbacks run after each frame before rendering the next; far above the two or three a frame brings.
MAX_CALLBACKS_PER_FRAME = 100

# The bringup latches one graph (GRAPH_QOS); the demo keeps up to this many unread ones (compatible with it), so a
# graph is not overwritten by the next while the demo renders a frame.
DEMO_GRAPH_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL, history=HistoryPolicy.KEEP_LAST)


class FramePacer:
    """Schedules frames at ``rate_hz`` and counts the late ones.

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
        self.render_s: list[float] = []

    def frame_done(self, render_s: float) -> None:
        """Count a published frame whose rendering and publishing took ``render_s``; schedule the next one."""
        self.frames += 1
        self.render_s.append(render_s)
        self._next_tick_s += self.period_s
        now_s = self._clock()
        if now_s > self._next_tick_s:
            self.late += 1
            self._next_tick_s = now_s

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
        if self.frames == 0 or self.late <= LATE_FRACTION_TO_WARN * self.frames:
            return None
        behind = (f"publishing fell behind {self.rate_hz:g} Hz on {self.late} of {self.frames} frames (rendering takes "
                  f"~{self.median_render_ms():.0f} ms, {self.slow_render_ms():.0f} ms for the slowest "
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
        self.first_stamp_ns: int | None = None
        self.invalid_answers: list[str] = []

    def frame_published(self, stamp_ns: int, true_m: float) -> None:
        if self.first_stamp_ns is None:
            self.first_stamp_ns = stamp_ns
        self.true_by_stamp[stamp_ns] = true_m

    def answer(self, response: QueryDistance.Response) -> None:
        stamp_ns = convert.stamp_to_ns(response.graph_stamp)
        if not response.valid:
            self.invalid_answers.append(response.message)
            return
        true_m = self.true_by_stamp.get(stamp_ns)
        if true_m is not None and self.first_stamp_ns is not None:
            self.samples.append(DistanceSample((stamp_ns - self.first_stamp_ns) / 1e9, response.distance_m, true_m))


def start_bringup_process(config: Config, work_dir: Path) -> subprocess.Popen:
    params = work_dir / "params.yaml"
    params.write_text(config.to_ros_parameters_yaml())
    log = (work_dir / "bringup.log").open("w")
    return subprocess.Popen([sys.executable, "-m", "trusted_scene_graph.cli", "bringup", "--config", str(params)],
                            stdout=log, stderr=subprocess.STDOUT)


def stop_process(process: subprocess.Popen, timeout_s: float = 10.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_demo(config: Config, seconds: float, rate_hz: float, out_dir: Path, width: int = 640, height: int = 480,
             seed: int = 0, depth_encoding: str = "32FC1") -> int:
    from trusted_scene_graph.sim import FetchScene

    out_dir.mkdir(parents=True, exist_ok=True)
    scene = FetchScene(width=width, height=height, seed=seed)
    config = config.with_overrides(extrinsic_overrides(scene.camera))
    intrinsics = scene.camera.intrinsics
    recorder = DistanceRecorder()
    graphs: list[SceneGraphMsg] = []
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
            deadline = time.monotonic() + SERVICE_WAIT_S
            while not client.service_is_ready():
                if process.poll() is not None or time.monotonic() > deadline:
                    print((Path(tmp) / "bringup.log").read_text(), file=sys.stderr)
                    print("tsg demo: the bringup did not come up", file=sys.stderr)
                    return 1
                executor.spin_once(timeout_sec=0.1)
            print(f"tsg demo: publishing {width}x{height} Fetch frames at {rate_hz:g} Hz for {seconds:g} s")
            end = time.monotonic() + seconds
            pacer = FramePacer(rate_hz)
            while time.monotonic() < end:
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
            while time.monotonic() < drain_end:
                executor.spin_once(timeout_sec=0.05)
        finally:
            executor.shutdown()
            node.destroy_node()
            rclpy.try_shutdown()
            stop_process(process)
            scene.close()
            (out_dir / "bringup.log").write_text((Path(tmp) / "bringup.log").read_text())

    last = convert.graph_from_msg(graphs[-1]) if graphs else None
    summary = {
        "frames_published": camera.published,
        "frames_late": pacer.late,
        "render_ms_median": pacer.median_render_ms() if pacer.frames else None,
        "graphs_received": len(graphs),
        "objects": [{"id": o.id, "label": o.label, "score": o.score, "centroid_m": [float(v) for v in o.centroid_m],
                     "size_m": [float(v) for v in o.size_m], "track_age": o.track_age}
                    for o in (last.objects if last else ())],
        "distance_samples": [{"t": s.t, "perceived_m": s.perceived_m, "true_m": s.true_m} for s in recorder.samples],
        "distance_mae_m": (float(np.mean([abs(s.perceived_m - s.true_m) for s in recorder.samples]))
                           if recorder.samples else None),
        "invalid_answers": len(recorder.invalid_answers),
        "config": {"seconds": seconds, "rate_hz": rate_hz, "width": width, "height": height, "seed": seed,
                   "depth_encoding": depth_encoding},
    }
    write_json(summary, out_dir / "summary.json")
    if recorder.samples:
        plot_distances(recorder.samples, out_dir / "distance.png",
                       f"{SUBJECT}-{OBJECT} distance, Fetch pick-and-place (seed {seed})")
    warning = pacer.warning()
    if last is None:
        print(f"tsg demo: no scene graph arrived ({camera.published} frames published); see "
              f"{out_dir / 'bringup.log'}", file=sys.stderr)
        if warning is not None:
            print(f"tsg demo: warning: {warning}", file=sys.stderr)
        return 1
    print_tables([*graph_tables(last), distance_table(recorder.samples)])
    mae = summary["distance_mae_m"]
    print(f"{camera.published} frames published, {len(graphs)} graphs received, "
          f"{len(recorder.samples)} distance samples"
          + (f", mean |perceived - true| = {mae * 100:.1f} cm" if mae is not None and math.isfinite(mae) else ""))
    print(f"wrote {out_dir / 'summary.json'} and {out_dir / 'distance.png'}")
    if warning is not None:
        print(f"tsg demo: warning: {warning}", file=sys.stderr)
    return 0
