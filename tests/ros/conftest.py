"""Fixtures for tests that talk over real rclpy + Fast DDS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("trusted_scene_graph_msgs", reason="ros2_ws not built/sourced: run `make test`")


@pytest.fixture
def ros_context() -> Iterator[None]:
    """An initialised default rclpy context, shut down after the test."""
    rclpy.init()
    try:
        yield
    finally:
        rclpy.try_shutdown()


@pytest.fixture
def test_node(ros_context) -> Iterator:
    """A plain node for the test's publishers, subscribers and clients, spun by ``spin_until``."""
    node = rclpy.create_node("test_driver")
    yield node
    node.destroy_node()
