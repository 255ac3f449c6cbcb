"""The bringup's executor keeps spinning when a lifecycle transition destroys an entity while it runs.

rclpy (ros2/rclpy#1284) skips entering a waitable whose handle was destroyed but still adds it to the wait set, and
takes a ready waitable destroyed since without catching InvalidHandle (as it does for subscriptions, clients and
services): either raised out of the spin, so a node deactivated while frames arrived (its input subscriptions' QoS
event handlers destroyed) processed nothing more after it was activated again.
"""

from __future__ import annotations

import pytest
import rclpy
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.exceptions import InvalidHandle
from rclpy.executors import MultiThreadedExecutor
from rclpy.waitable import NumberOfEntities, Waitable

from trusted_scene_graph.ros.bringup import WAIT_SET_REBUILDS, BringupExecutor

pytestmark = pytest.mark.dds

DESTROYED = "cannot use Destroyable because destruction was requested"


class _DestroyedWhileListed(Waitable):
    """A waitable destroyed after the executor listed it: entering it fails, adding it raises (rclpy's bug), and
    ``passes_listed`` passes list it before it leaves the node's waitables, as a destroy_subscription finishing."""

    def __init__(self, node, passes_listed: int) -> None:
        super().__init__(ReentrantCallbackGroup())
        self.node, self.passes_left = node, passes_listed

    def __enter__(self) -> None:
        raise InvalidHandle(DESTROYED)

    def add_to_wait_set(self, wait_set) -> None:
        self.passes_left -= 1
        if self.passes_left == 0:
            self.node.remove_waitable(self)
        raise InvalidHandle(DESTROYED)

    def get_num_entities(self) -> NumberOfEntities:
        return NumberOfEntities()

    def is_ready(self, wait_set) -> bool:
        return False

    def take_data(self) -> None:
        return None

    async def execute(self, taken_data: None) -> None:
        return None


class _DestroyedWhenTaken(_DestroyedWhileListed):
    """A waitable that is ready, and destroyed by the time a worker takes its data."""

    def __init__(self, node) -> None:
        super().__init__(node, passes_listed=1)
        self.taken = 0

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info) -> None:
        return None

    def add_to_wait_set(self, wait_set) -> None:
        return None

    def is_ready(self, wait_set) -> bool:
        return self.taken == 0

    def take_data(self) -> None:
        self.taken += 1
        self.node.remove_waitable(self)
        raise InvalidHandle(DESTROYED)


@pytest.fixture
def node(ros_context):
    node = rclpy.create_node("executor_under_test")
    yield node
    node.destroy_node()


def _spin_with(executor_class, node, destroyed: Waitable, spins: int = 1) -> None:
    executor = executor_class(num_threads=2)
    executor.add_node(node)
    node.add_waitable(destroyed)
    try:
        for _ in range(spins):
            executor.spin_once(timeout_sec=0.05)
    finally:
        executor.shutdown()


def test_rclpy_s_own_executor_ends_its_spin_on_a_waitable_destroyed_while_listed(node):
    with pytest.raises(InvalidHandle, match=DESTROYED):
        _spin_with(MultiThreadedExecutor, node, _DestroyedWhileListed(node, passes_listed=1))


def test_the_bringup_executor_builds_the_wait_set_again_without_the_destroyed_waitable(node):
    destroyed = _DestroyedWhileListed(node, passes_listed=1)
    _spin_with(BringupExecutor, node, destroyed)  # no InvalidHandle
    assert destroyed.passes_left == 0 and destroyed not in list(node.waitables)


def test_a_handle_that_stays_invalid_is_raised_after_the_rebuilds(node):
    with pytest.raises(InvalidHandle, match=DESTROYED):
        _spin_with(BringupExecutor, node, _DestroyedWhileListed(node, passes_listed=WAIT_SET_REBUILDS + 2))


def test_rclpy_s_own_executor_ends_its_spin_on_a_ready_waitable_destroyed_before_it_is_taken(node):
    with pytest.raises(InvalidHandle, match=DESTROYED):
        _spin_with(MultiThreadedExecutor, node, _DestroyedWhenTaken(node), spins=5)


def test_the_bringup_executor_skips_a_ready_waitable_destroyed_before_it_is_taken(node):
    destroyed = _DestroyedWhenTaken(node)
    _spin_with(BringupExecutor, node, destroyed, spins=5)  # no InvalidHandle
    assert destroyed.taken == 1
