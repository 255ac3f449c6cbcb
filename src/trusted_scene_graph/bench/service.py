"""``tsg bench service``: QueryDistance latency against an echo service, side by side, while frames flow.

Both services run on the bringup's MultiThreadedExecutor, each in its own callback group, with the same message
types; the echo service answers a fixed response, so it measures the floor (DDS round trip + executor dispatch).
Calls alternate query, echo, query, echo... so both see the same machine load, and the ratio of their p99
latencies is the number to watch (absolute milliseconds depend on the machine).
"""

from __future__ import annotations

import os
import platform
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from trusted_scene_graph_msgs.srv import QueryDistance

from trusted_scene_graph.config.schema import Config
from trusted_scene_graph.report import write_json
from trusted_scene_graph.ros.bringup import Bringup, use_short_gil_switch_interval
from trusted_scene_graph.ros.scene_graph_node import QUERY_SERVICE
from trusted_scene_graph.ros.sim_publisher import SimCameraPublisher
from trusted_scene_graph.sim.synthetic import SyntheticFrame

ECHO_SERVICE = "/bench/echo_distance"


def _echo_node(context=None) -> Node:
    node = Node("bench_echo", context=context)
    group = MutuallyExclusiveCallbackGroup()

    def echo(request: QueryDistance.Request, response: QueryDistance.Response) -> QueryDistance.Response:
        response.valid, response.distance_m, response.trust, response.message = True, 0.0, 1.0, ""
        return response

    node.create_service(QueryDistance, ECHO_SERVICE, echo, callback_group=group)
    return node


def _percentile_ms(latencies_s: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(latencies_s) * 1e3, q))


def run_service_bench(config: Config, out_path: Path, calls: int = 2000, frame_rate_hz: float = 10.0,
                      warmup_calls: int = 50) -> int:
    use_short_gil_switch_interval()  # as `tsg bringup` runs
    rclpy.init()
    try:
        with Bringup(config) as bringup:
            echo = _echo_node()
            bringup.executor.add_node(echo)
            client_node = Node("bench_client")
            query_client = client_node.create_client(QueryDistance, QUERY_SERVICE)
            echo_client = client_node.create_client(QueryDistance, ECHO_SERVICE)
            camera = SimCameraPublisher(client_node, config)
            client_executor = SingleThreadedExecutor()
            client_executor.add_node(client_node)
            spinner = threading.Thread(target=client_executor.spin, daemon=True)
            spinner.start()
            for client in (query_client, echo_client):
                if not client.wait_for_service(timeout_sec=30.0):
                    raise RuntimeError(f"service {client.srv_name} did not appear")

            frame = SyntheticFrame()
            stop = threading.Event()

            def feed_frames() -> None:
                period_s = 1.0 / frame_rate_hz
                while not stop.is_set():
                    camera.publish(frame, frame.intrinsics, client_node.get_clock().now().nanoseconds)
                    stop.wait(period_s)

            feeder = threading.Thread(target=feed_frames, daemon=True)
            feeder.start()
            scene_node = bringup.nodes["scene_graph"]
            deadline = time.monotonic() + 30.0
            while scene_node.latest_graph is None and time.monotonic() < deadline:
                time.sleep(0.05)
            request = QueryDistance.Request(subject="gripper", object="cube", mode="centroid")
            latencies: dict[str, list[float]] = {"query": [], "echo": []}
            invalid = 0
            frames_before = scene_node.stats.processed
            start = time.perf_counter()
            for i in range(warmup_calls + calls):
                for name, client in (("query", query_client), ("echo", echo_client)):
                    t0 = time.perf_counter()
                    response = client.call(request, timeout_sec=5.0)
                    elapsed = time.perf_counter() - t0
                    if response is None:
                        raise RuntimeError(f"{name} call {i} timed out")
                    if i >= warmup_calls:
                        latencies[name].append(elapsed)
                        invalid += name == "query" and not response.valid
                if i == warmup_calls - 1:
                    start = time.perf_counter()
                    frames_before = scene_node.stats.processed
            wall_s = time.perf_counter() - start
            frames_during = scene_node.stats.processed - frames_before
            stop.set()
            feeder.join()
            client_executor.shutdown()
            client_node.destroy_node()
        # Destroyed only once the bringup's executor has stopped: destroying a node it is still waiting on races with
        # its wait set ("cannot use Destroyable because destruction was requested").
        echo.destroy_node()
    finally:
        rclpy.try_shutdown()

    result = {
        "calls_each": calls,
        "query_p50_ms": _percentile_ms(latencies["query"], 50),
        "query_p99_ms": _percentile_ms(latencies["query"], 99),
        "echo_p50_ms": _percentile_ms(latencies["echo"], 50),
        "echo_p99_ms": _percentile_ms(latencies["echo"], 99),
        "calls_per_s": 2 * calls / wall_s,
        "frames_processed_during": frames_during,
        "frame_rate_hz": frame_rate_hz,
        "query_invalid": invalid,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    result["p50_ratio"] = result["query_p50_ms"] / result["echo_p50_ms"]
    result["p99_ratio"] = result["query_p99_ms"] / result["echo_p99_ms"]
    write_json(result, out_path)
    print(f"QueryDistance p50 {result['query_p50_ms']:.2f} ms, p99 {result['query_p99_ms']:.2f} ms; "
          f"echo p50 {result['echo_p50_ms']:.2f} ms, p99 {result['echo_p99_ms']:.2f} ms; "
          f"p99 ratio {result['p99_ratio']:.2f}; {result['calls_per_s']:.0f} calls/s; "
          f"{frames_during} frames processed meanwhile -> {out_path}")
    return 0
