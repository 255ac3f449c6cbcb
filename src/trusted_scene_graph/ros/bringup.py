"""In-process bringup: the node list, its parameters and lifecycle autostart on one MultiThreadedExecutor.

The launch file (``launch/trusted_scene_graph.launch.py``) reads the same node list
(:data:`trusted_scene_graph.config.nodes.NODES`), so what
``ros2 launch`` starts on a robot and what ``tsg bringup`` (and the tests) start here cannot drift apart.
"""

from __future__ import annotations

import difflib
import gc
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import rclpy
from rclpy.exceptions import InvalidHandle, ParameterException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.lifecycle import LifecycleNode
from rclpy.signals import SignalHandlerOptions
from rclpy.task import Future

from trusted_scene_graph.config.nodes import NODES
from trusted_scene_graph.config.schema import (
    ROS_BUILTIN_PARAMETERS,
    SCHEMA,
    Config,
    ConfigError,
    is_ros_builtin,
    looks_meant_for_the_node,
)
from trusted_scene_graph.signals import signal_handlers

# Threads of the executor: sensor buffering, perception and the query service each get one, plus a spare.
EXECUTOR_THREADS = 4
# Wait sets built again after an entity was destroyed while one was built (BringupExecutor.wait_for_ready_callbacks):
# one destroy costs one; a transition destroys a few subscriptions.
WAIT_SET_REBUILDS = 16

# rclpy callbacks share one GIL. With CPython's default 5 ms switch interval, a query waits several intervals
# behind CPU-bound perception; 0.5 ms hands the GIL over sooner (measured with `tsg bench service`: see README).
GIL_SWITCH_INTERVAL_S = 0.0005

RCLError = _rclpy.RCLError  # what an rcl call on a shut-down context raises
#: What rclpy.init raises for --ros-args rcl does not take: unknown arguments, or a rule it cannot parse.
ROS_ARGS_ERRORS = (_rclpy.UnknownROSArgsError, RCLError)


def use_short_gil_switch_interval() -> None:
    """Set the process-wide GIL switch interval for a process that serves queries beside perception."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


@contextmanager
def startup_objects_frozen() -> Iterator[None]:
    """Within the block, everything alive at its start (modules, the nodes, and their models when they were
    configured before it: ``autostart``) is left out of the cyclic garbage collector's passes (``gc.freeze``;
    ``gc.unfreeze`` after it, which unfreezes every frozen object: the blocks do not nest).

    A full collection walks every tracked object with the GIL held, so every callback, a distance query included,
    waits for it; a running bringup holds enough objects (its imports and models) for such a pause to last longer
    than a frame period. Frozen, they are skipped, and what the nodes allocate afterwards is still collected:
    ``tsg bench service`` reports the full collections during its run and their longest pause. Cyclic garbage among
    the frozen objects is not freed until the block ends, which is why it is entered once the nodes are up, by what
    runs them (``tsg bringup``, the node's executable), not by a node, which a user may compose into a process of
    their own.

    No collection runs first, though the start-up's garbage is then frozen too (once, a bounded amount): a
    collection finalizes whatever rclpy entity is garbage while the nodes' DDS threads run, and a Fast DDS
    participant destroyed from a finalizer that way spun forever in a test process (``gc.collect`` inside
    ``rmw_destroy_node``)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class BringupError(ConfigError):
    """A node failed to come up (invalid parameters, or its configure/activate transition failed)."""


def activate(node: LifecycleNode, name: str) -> None:
    """Configure then activate a lifecycle node; :class:`BringupError` names the transition that failed and why (the
    node's ``configure_error`` or ``activate_error``: rclpy turns a transition's exception into a bare ERROR)."""
    for transition, reason_attribute in ((node.trigger_configure, "configure_error"),
                                         (node.trigger_activate, "activate_error")):
        result = transition()
        if result != rclpy.lifecycle.TransitionCallbackReturn.SUCCESS:
            reason = getattr(node, reason_attribute, None)
            raise BringupError(f"node {name!r}: {transition.__name__} returned {result.name}"
                               + (f": {reason}" if reason else ""))


def override_error(node_name: str, exc: ParameterException) -> BringupError:
    """An override of a parameter rclpy declares itself (``use_sim_time``) that has the wrong type."""
    return BringupError(f"node {node_name!r}: {exc} (check the --ros-args -p values and the parameter file)")


def unknown_parameter_overrides(node_name: str, context=None) -> list[str]:
    """The parameters that rcl's arguments (``--ros-args -p NAME:=VALUE``, ``--params-file``) give the node
    ``node_name`` but that neither the schema nor rclpy declares: a misspelled ``-p trust.treshold:=0.7`` would
    otherwise have no effect at all. Read from a throwaway node of that name, which sees the same overrides."""
    from rclpy.node import Node

    from trusted_scene_graph.ros.params import given_overrides

    # Read, not declared from the overrides: declaring an untyped `[]` (reward.pairs: []) raises in rclpy. rclpy
    # still declares its own (use_sim_time), as the node will.
    try:
        probe = Node(node_name, context=context, enable_rosout=False, start_parameter_services=False)
    except ParameterException as exc:
        raise override_error(node_name, exc) from exc
    try:
        names = list(given_overrides(probe))
    finally:
        probe.destroy_node()
    return [name for name in names if name not in SCHEMA and not is_ros_builtin(name)]


def check_parameter_overrides(context=None) -> None:
    """:class:`BringupError` naming every parameter override of a bringup node that looks meant for it but that
    neither the schema nor rclpy knows, with close names suggested: a name in one of the schema's groups
    (``trust.anything``) or close to one of its names (``trust.treshold``). Other names are left alone: a shared
    ``/**`` section of a robot's parameter file (``robot_description``, another node's settings) reaches every node."""
    known = [*SCHEMA, *ROS_BUILTIN_PARAMETERS]
    for spec in NODES:
        unknown = [name for name in unknown_parameter_overrides(spec.name, context) if looks_meant_for_the_node(name)]
        if unknown:
            described = "; ".join(
                f"{name!r}" + (f" (did you mean {', '.join(close)}?)"
                               if (close := difflib.get_close_matches(name, known, n=3)) else "")
                for name in unknown)
            raise BringupError(f"node {spec.name!r}: unknown parameter{'s' if len(unknown) > 1 else ''} given in "
                               f"--ros-args: {described}")


class BringupExecutor(MultiThreadedExecutor):
    """A MultiThreadedExecutor whose :meth:`shutdown` lets the callbacks its worker threads hold finish first, and
    that keeps spinning when a lifecycle transition destroys entities while it runs (:meth:`wait_for_ready_callbacks`,
    :meth:`_take_waitable`).

    In this rclpy (9.1) ``Executor.shutdown`` does not wait for outstanding callbacks whatever its timeout, and
    destroys the executor's guard condition before ``MultiThreadedExecutor.shutdown`` joins the worker threads: a
    callback still running then fails triggering that guard ("exception was never retrieved: cannot use Destroyable
    because destruction was requested"). Call it once ``spin`` has returned, as :meth:`Bringup.stop` does: a spin
    still running submits to the closed pool (ros2/rclpy#1724).
    """

    def shutdown(self, timeout_sec: float | None = None, *, wait_for_threads: bool = True) -> bool:
        self._executor.shutdown(wait=wait_for_threads)  # the worker pool (private: no public way to drain it)
        return super().shutdown(timeout_sec, wait_for_threads=wait_for_threads)

    def wait_for_ready_callbacks(self, *args, **kwargs):
        """rclpy's, building the wait set again when an entity was destroyed while it was being built.

        A lifecycle transition destroys the node's input subscriptions (deactivate) in another thread than the one
        that builds the wait set. When a subscription's QoS event handler is destroyed after the executor listed the
        node's waitables, this rclpy skips entering it but still adds it to the wait set, which raises InvalidHandle
        and ended the spin: the node then processed nothing more (ros2/rclpy#1284). The failed pass has waited for
        nothing, and the next one lists the node's entities afresh, without the destroyed one. A handle that stays
        invalid (an entity destroyed but still listed) is raised after :data:`WAIT_SET_REBUILDS` passes, and any
        InvalidHandle once the context is shut down at once (the caller's shutdown path)."""
        rebuilds = 0
        while True:
            try:
                return super().wait_for_ready_callbacks(*args, **kwargs)
            except InvalidHandle:
                rebuilds += 1
                if rebuilds > WAIT_SET_REBUILDS or not self.context.ok():
                    raise

    def _take_waitable(self, waitable):
        """rclpy's, with no work to do for a waitable destroyed between becoming ready and being taken, as rclpy's
        own ``_take_subscription``, ``_take_client`` and ``_take_service`` do for theirs. For a waitable (a destroyed
        subscription's QoS event handler) it raised instead, before the handler releases the entity's callback
        group: the exception ended the spin, and the group stayed taken (ros2/rclpy#1284). Private in rclpy; this
        package pins its rclpy (Kilted), and ``tests/ros/test_bringup_executor.py`` checks the behaviour."""
        try:
            return super()._take_waitable(waitable)
        except InvalidHandle:
            return None


class Bringup:
    """Create the nodes, drive them to active (``autostart``) and spin them on one executor in a thread.

    Use as a context manager inside an initialised rclpy context::

        with Bringup(config) as bringup:
            ...  # nodes are active; bringup.nodes["scene_graph"]

    :meth:`stop` stops in an order that leaves no thread inside rclpy: the spin thread returns first (the
    context and the nodes still valid), then the executor's worker threads finish their callbacks, and only then
    are the nodes destroyed. The caller shuts the context down after :meth:`stop`.
    """

    def __init__(self, config: Config, autostart: bool | None = None, context=None) -> None:
        self.config = config
        self.autostart = config["autostart"] if autostart is None else autostart
        self.context = context
        self.nodes: dict[str, LifecycleNode] = {}
        self.executor: BringupExecutor | None = None
        self._thread: threading.Thread | None = None
        self._stop_requested: Future | None = None
        self.error: BaseException | None = None  # what stopped the executor, when an error did

    def start(self) -> Bringup:
        try:
            self.executor = BringupExecutor(num_threads=EXECUTOR_THREADS, context=self.context)
            for spec in NODES:
                try:
                    node = spec.load_class()(self.config, node_name=spec.name, context=self.context)
                except ParameterException as exc:  # an override rclpy declares itself, of the wrong type
                    raise override_error(spec.name, exc) from exc
                self.nodes[spec.name] = node
                self.executor.add_node(node)
            if self.autostart:
                for name, node in self.nodes.items():
                    activate(node, name)
            self._stop_requested = Future()
            # Not a daemon: a thread still inside rclpy's wait when the interpreter finalises aborts the process
            # (it takes the GIL during finalisation: "terminate called without an active exception"). stop() joins
            # it; a daemon would only hide a missing stop() until that abort.
            self._thread = threading.Thread(target=self._spin, name="tsg-executor")
            self._thread.start()
        except BaseException:  # a failed transition, or Ctrl-C while the nodes load: nothing may be left running
            self.stop()
            raise
        return self

    def _spin(self) -> None:
        context = self.executor.context
        try:
            # Until stop() completes the future: it wakes the executor's wait, so the thread returns promptly.
            self.executor.spin_until_future_complete(self._stop_requested)
        except ExternalShutdownException:
            pass
        except (RCLError, InvalidHandle) as exc:
            # The context shut down under the executor (rclpy.shutdown() while it spins) between its check of the
            # context and its wait: the same stop as ExternalShutdownException. With the context valid, an error.
            if context.ok():
                self.error = exc
                raise
        except BaseException as exc:
            # An error no callback handled ended the executor: the nodes no longer run. Kept for the caller (an
            # exit code), and raised on, so the thread's traceback is printed.
            self.error = exc
            raise

    @property
    def running(self) -> bool:
        """Whether the executor still spins (false once stopped, or once an error stopped it)."""
        return self._thread is not None and self._thread.is_alive()

    def wait(self, stop_requested: Callable[[], bool] = lambda: False, poll_s: float = 0.1) -> None:
        """Block until the executor stops (an error, or rclpy shut down) or ``stop_requested()`` holds.

        Polls rather than blocking in one call so that a signal handler that only sets a flag takes effect
        within ``poll_s``."""
        while self.running and not stop_requested():
            self._thread.join(timeout=poll_s)

    def stop(self) -> None:
        """Stop spinning, let running callbacks finish, destroy the nodes; safe to call more than once."""
        if self._stop_requested is not None and not self._stop_requested.done():
            self._stop_requested.set_result(None)
        if self._thread is not None:
            # No timeout: the wait was woken, and what remains are callbacks finishing. Returning with the
            # thread still inside rclpy would abort the process when the interpreter exits.
            self._thread.join()
            self._thread = None
        if self.executor is not None:
            # Joins the worker threads, so no callback still uses a node destroyed below.
            self.executor.shutdown()
        for node in self.nodes.values():
            node.destroy_node()
        self.nodes.clear()

    def __enter__(self) -> Bringup:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


# The signals that stop `tsg bringup`: Ctrl-C, and what ros2 launch and process managers send.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """The handler of :data:`STOP_SIGNALS` in ``tsg bringup``: the first signal asks for the clean stop, the next one
    exits at once.

    While the nodes load (``running`` false) the first signal raises :class:`KeyboardInterrupt`, which unwinds
    :meth:`Bringup.start`. Once they run, it only records the signal (:attr:`requested`): the main thread then stops
    the bringup outside the handler, waiting for running callbacks, since a stop cut short would leave threads inside
    rclpy. A callback that does not return would make that wait endless; a second signal is the way out: it writes one
    line to stderr and ends the process without waiting, with the shell's code for the signal (128 + its number:
    130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, exit_process: Callable[[int], object] = os._exit) -> None:
        self.running = False
        self.received: list[int] = []
        self._exit_process = exit_process

    @property
    def requested(self) -> bool:
        return bool(self.received)

    def __call__(self, signum: int, _frame=None) -> None:
        if self.received:
            # os.write, not print: the handler may run while the main thread is inside a write to sys.stderr, and a
            # buffered stream entered again from the handler raises "reentrant call".
            os.write(2, f"{signal.Signals(signum).name} again: exiting without waiting for callbacks\n".encode())
            self._exit_process(128 + signum)
            return  # an exit_process that returns (a test's) leaves the state as it was
        self.received.append(signum)
        if not self.running:
            raise KeyboardInterrupt  # while the nodes load: unwinds start(), which stops what it started


def run_bringup(config: Config, autostart: bool | None = None, ros_args: list[str] | tuple[str, ...] = ()) -> int:
    """``tsg bringup``: the ros2/examples main skeleton around :class:`Bringup`; returns an exit code.

    SIGINT and SIGTERM are handled here (:class:`StopSignals`), not by rclpy: rclpy's handlers shut the context down
    from the signal while the executor's threads still wait and publish on it (errors "context is invalid", and a
    thread inside rclpy at interpreter exit aborted the process). Here a signal while running only requests the
    stop, and the context is shut down after :meth:`Bringup.stop` has joined every thread that uses it; a second
    signal ends the process without waiting.
    """
    use_short_gil_switch_interval()
    try:
        rclpy.init(args=["tsg", "--ros-args", *ros_args] if ros_args else None,
                   signal_handler_options=SignalHandlerOptions.NO)
    except ROS_ARGS_ERRORS as exc:
        # rcl names the unknown arguments (UnknownROSArgsError) or the rule it could not parse (RCLError).
        rclpy.try_shutdown()
        raise BringupError(f"rclpy refused --ros-args {' '.join(ros_args)}: {exc} (--ros-args takes "
                           "-p NAME:=VALUE, -r FROM:=TO, --params-file FILE, --log-level LEVEL...)") from exc
    try:
        check_parameter_overrides()
    except BaseException:
        rclpy.try_shutdown()
        raise
    on_stop_signal = StopSignals()
    try:
        with (signal_handlers(dict.fromkeys(STOP_SIGNALS, on_stop_signal)),
              Bringup(config, autostart=autostart) as bringup):
            on_stop_signal.running = True
            logger = bringup.nodes[NODES[0].name].get_logger()
            logger.info("bringup running; Ctrl-C to stop")
            with startup_objects_frozen():
                bringup.wait(stop_requested=lambda: on_stop_signal.requested)
            if bringup.error is not None:
                logger.fatal(f"the executor stopped on an error no callback handled: "
                             f"{type(bringup.error).__name__}: {bringup.error}")
                return 1
            if on_stop_signal.requested:
                logger.info("stopping: waiting for running callbacks to finish (signal again to exit without "
                            "waiting)")
    except KeyboardInterrupt:
        pass
    finally:
        rclpy.try_shutdown()
    return 0
