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
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
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
from trusted_scene_graph.ros.scene_graph_node import GRAPH_QOS, QUERY_SERVICE, SCENE_GRAPH_TOPIC
from trusted_scene_graph.ros.sim_publisher import SimCameraPublisher, extrinsic_overrides

SUBJECT, OBJECT = "gripper", "cube"
SERVICE_WAIT_S = 60.0
DRAIN_S = 2.0


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

            node.create_subscription(SceneGraphMsg, SCENE_GRAPH_TOPIC, on_graph, GRAPH_QOS)
            deadline = time.monotonic() + SERVICE_WAIT_S
            while not client.service_is_ready():
                if process.poll() is not None or time.monotonic() > deadline:
                    print((Path(tmp) / "bringup.log").read_text(), file=sys.stderr)
                    print("tsg demo: the bringup did not come up", file=sys.stderr)
                    return 1
                executor.spin_once(timeout_sec=0.1)
            print(f"tsg demo: publishing {width}x{height} Fetch frames at {rate_hz:g} Hz for {seconds:g} s")
            period_s = 1.0 / rate_hz
            end = time.monotonic() + seconds
            next_tick = time.monotonic()
            while time.monotonic() < end:
                frame = scene.step()
                stamp_ns = node.get_clock().now().nanoseconds
                recorder.frame_published(stamp_ns, true_distance_m(frame))
                camera.publish(frame, intrinsics, stamp_ns)
                next_tick += period_s
                while (remaining := next_tick - time.monotonic()) > 0:
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
    if last is None:
        print(f"tsg demo: no scene graph arrived ({camera.published} frames published); see "
              f"{out_dir / 'bringup.log'}", file=sys.stderr)
        return 1
    print_tables([*graph_tables(last), distance_table(recorder.samples)])
    mae = summary["distance_mae_m"]
    print(f"{camera.published} frames published, {len(graphs)} graphs received, "
          f"{len(recorder.samples)} distance samples"
          + (f", mean |perceived - true| = {mae * 100:.1f} cm" if mae is not None and math.isfinite(mae) else ""))
    print(f"wrote {out_dir / 'summary.json'} and {out_dir / 'distance.png'}")
    return 0
