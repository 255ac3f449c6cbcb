"""Helpers for driving a test node over DDS."""

from __future__ import annotations

import time
from collections.abc import Callable

import rclpy


def spin_until(node, condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Spin ``node`` until ``condition()`` holds or the timeout passes; return whether it held."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        rclpy.spin_once(node, timeout_sec=0.05)
    return condition()


def call(node, client, request, timeout_s: float = 5.0):
    """Call a service from a node that is not spun elsewhere."""
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout_s)
    if not future.done():
        raise TimeoutError(f"service {client.srv_name} did not answer in {timeout_s} s")
    return future.result()


def replay_into_node(bag, config, subscribe: Callable, received_enough: Callable[[], bool],
                     check_plans: Callable | None = None, rate: float = 0.5):
    """Replay ``bag`` (``tsg replay``'s player, at ``rate`` times its speed) into an active scene-graph node built
    from ``config``.

    ``subscribe(listener)`` creates the test's subscriptions on a listener node spun with the scene-graph node;
    ``check_plans(replay)`` may look at the opened replay before it plays. Waits up to 5 s after the last message
    for ``received_enough()``. Returns the (destroyed) node, whose stats stay readable, and the replay's stats."""
    import threading

    from rclpy.executors import MultiThreadedExecutor
    from rich.console import Console

    from trusted_scene_graph.ros.replay import BagReplay, ReplayOptions
    from trusted_scene_graph.ros.scene_graph_node import SceneGraphNode

    node = SceneGraphNode(config)
    node.trigger_configure()
    node.trigger_activate()
    listener = rclpy.create_node("replay_listener")
    subscribe(listener)
    player = rclpy.create_node("tsg_replay")
    executor = MultiThreadedExecutor(num_threads=4)
    for each in (node, listener):
        executor.add_node(each)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        options = ReplayOptions(rate=rate, wait_for_subscribers_s=10.0)
        with BagReplay(bag, options, Console(quiet=True)) as replay:
            if check_plans is not None:
                check_plans(replay)
            stats = replay.play(player)
            deadline = time.monotonic() + 5.0  # the last frame's messages may still be on their way
            while not received_enough() and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        executor.shutdown()
        spinner.join(timeout=5.0)
        for each in (player, listener, node):
            each.destroy_node()
    return node, stats
