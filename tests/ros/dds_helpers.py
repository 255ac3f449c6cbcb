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
