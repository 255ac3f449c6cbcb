"""In-process bringup: the node list, its parameters and lifecycle autostart on one MultiThreadedExecutor.

The launch file (``launch/trusted_scene_graph.launch.py``) reads the same node list
(:data:`trusted_scene_graph.config.nodes.NODES`), so what
``ros2 launch`` starts on a robot and what ``tsg bringup`` (and the tests) start here cannot drift apart.
"""

from __future__ import annotations

import sys
import threading

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode

from trusted_scene_graph.config.nodes import NODES
from trusted_scene_graph.config.schema import Config, ConfigError

# Threads of the executor: sensor buffering, perception and the query service each get one, plus a spare.
EXECUTOR_THREADS = 4

# rclpy callbacks share one GIL. With CPython's default 5 ms switch interval, a query waits several intervals
# behind CPU-bound perception; 0.5 ms hands the GIL over sooner (measured with `tsg bench service`: see README).
GIL_SWITCH_INTERVAL_S = 0.0005


def use_short_gil_switch_interval() -> None:
    """Set the process-wide GIL switch interval for a process that serves queries beside perception."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


class BringupError(ConfigError):
    """A node failed to come up (invalid parameters, or its configure/activate transition failed)."""


def activate(node: LifecycleNode, name: str) -> None:
    """Configure then activate a lifecycle node; :class:`BringupError` names the transition that failed and why."""
    for transition in (node.trigger_configure, node.trigger_activate):
        result = transition()
        if result != rclpy.lifecycle.TransitionCallbackReturn.SUCCESS:
            reason = getattr(node, "configure_error", None)
            raise BringupError(f"node {name!r}: {transition.__name__} returned {result.name}"
                               + (f": {reason}" if reason else ""))


class Bringup:
    """Create the nodes, drive them to active (``autostart``) and spin them on one executor in a thread.

    Use as a context manager inside an initialised rclpy context::

        with Bringup(config) as bringup:
            ...  # nodes are active; bringup.nodes["scene_graph"]
    """

    def __init__(self, config: Config, autostart: bool | None = None, context=None) -> None:
        self.config = config
        self.autostart = config["autostart"] if autostart is None else autostart
        self.context = context
        self.nodes: dict[str, LifecycleNode] = {}
        self.executor: MultiThreadedExecutor | None = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None  # what stopped the executor, when an error did

    def start(self) -> Bringup:
        self.executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS, context=self.context)
        for spec in NODES:
            node = spec.load_class()(self.config, node_name=spec.name, context=self.context)
            self.nodes[spec.name] = node
            self.executor.add_node(node)
        if self.autostart:
            for name, node in self.nodes.items():
                try:
                    activate(node, name)
                except BringupError:
                    self.stop()
                    raise
        self._thread = threading.Thread(target=self._spin, name="tsg-executor", daemon=True)
        self._thread.start()
        return self

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass
        except BaseException as exc:
            # An error no callback handled ended the executor: the nodes no longer run. Kept for the caller (an
            # exit code), and raised on, so the thread's traceback is printed.
            self.error = exc
            raise

    def wait(self) -> None:
        """Block until the executor stops (shutdown or Ctrl-C)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=0.5)

    def stop(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(timeout_sec=2.0)
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        for node in self.nodes.values():
            node.destroy_node()
        self.nodes.clear()

    def __enter__(self) -> Bringup:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def run_bringup(config: Config, autostart: bool | None = None, ros_args: list[str] | tuple[str, ...] = ()) -> int:
    """``tsg bringup``: the ros2/examples main skeleton around :class:`Bringup`; returns an exit code."""
    use_short_gil_switch_interval()
    rclpy.init(args=["tsg", "--ros-args", *ros_args] if ros_args else None)
    try:
        with Bringup(config, autostart=autostart) as bringup:
            logger = bringup.nodes[NODES[0].name].get_logger()
            logger.info("bringup running; Ctrl-C to stop")
            bringup.wait()
            if bringup.error is not None:
                logger.fatal(f"the executor stopped on an error no callback handled: "
                             f"{type(bringup.error).__name__}: {bringup.error}")
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        rclpy.try_shutdown()
    return 0
